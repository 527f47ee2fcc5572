//! Tests of the config schema: the mechanical flag/env/TOML rule, layering, errors.
use super::*;
use crate::args::{Command as Sub, LogFormat};
use proofmill_scheduler::PolicyName;
use proofmill_types::ProofType;

fn pt(s: &str) -> ProofType {
    ProofType::new(s).unwrap()
}

fn write_config(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let path = dir.path().join("proofmill.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Parses `args` (without the binary name) with a config file holding `toml`.
fn parse_with(toml: &str, args: &[&str]) -> anyhow::Result<Cli> {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(&dir, toml);
    let mut argv: Vec<OsString> = vec!["proofmill".into()];
    argv.extend(args.iter().map(OsString::from));
    argv.push("--config".into());
    argv.push(path.into());
    parse(argv)
}

fn all_commands(cmd: &Command, path: String, out: &mut Vec<(String, Command)>) {
    out.push((path.clone(), cmd.clone()));
    for sub in cmd.get_subcommands() {
        all_commands(sub, format!("{path} {}", sub.get_name()), out);
    }
}

/// Every option of every subcommand has a long name and the environment variable the
/// mechanical rule gives; a new option without them fails here.
#[test]
fn every_option_has_long_name_and_mechanical_env() {
    let mut root = Cli::command();
    root.build();
    let mut commands = Vec::new();
    all_commands(&root, "proofmill".into(), &mut commands);
    let mut checked = 0;
    for (path, cmd) in &commands {
        for arg in cmd.get_arguments() {
            if matches!(arg.get_action(), ArgAction::Help | ArgAction::Version) {
                continue;
            }
            let long = arg
                .get_long()
                .unwrap_or_else(|| panic!("`{path}`: option {} has no long name", arg.get_id()));
            assert_eq!(
                toml_key(long),
                arg.get_id().as_str(),
                "`{path}`: id is not the config key"
            );
            let env = arg
                .get_env()
                .unwrap_or_else(|| panic!("`{path}`: --{long} has no environment variable"));
            assert_eq!(
                env.to_str(),
                Some(env_name(long).as_str()),
                "`{path}`: --{long}"
            );
            checked += 1;
        }
    }
    // Sanity: the walk reached the nested `bench dispatch` and the globals.
    assert!(
        commands
            .iter()
            .any(|(p, _)| p == "proofmill bench dispatch")
    );
    assert!(checked > 40, "only {checked} options checked");
}

/// Every option of every runnable subcommand can be set from a config file, and each
/// built-in default is accepted when given that way.
#[test]
fn every_default_round_trips_through_config() {
    let root = Cli::command();
    let leaves: Vec<Vec<String>> = vec![
        vec!["coordinator".into()],
        vec!["prover".into()],
        vec!["status".into()],
        vec!["demo".into()],
        vec!["bench".into(), "dispatch".into()],
        vec!["bench".into(), "settle".into()],
        vec!["bench".into(), "makespan".into()],
        vec!["l1".into(), "deploy".into()],
    ];
    for path in leaves {
        let mut table = toml::Table::new();
        for t in targets(&root, &path) {
            let Some(default) = t.arg.get_default_values().first() else {
                continue;
            };
            let default = default.to_str().unwrap();
            let kind = Kind::of(t.arg);
            let one = |s: &str| match kind {
                Kind::Bool => toml::Value::Boolean(s.parse().unwrap()),
                Kind::Integer => toml::Value::Integer(s.parse().unwrap()),
                Kind::String => toml::Value::String(s.to_string()),
            };
            let value = if is_list(t.arg) {
                toml::Value::Array(default.split(',').map(one).collect())
            } else {
                one(default)
            };
            table.insert(toml_key(t.arg.get_long().unwrap()), value);
        }
        assert!(table.len() >= 2, "{path:?}");
        let dir = tempfile::tempdir().unwrap();
        let file = write_config(&dir, &toml::to_string(&table).unwrap());
        let mut argv = vec!["proofmill".to_string()];
        argv.extend(path.iter().cloned());
        argv.extend(["--config".into(), file.display().to_string()]);
        parse(argv).unwrap_or_else(|e| panic!("{path:?}: {e:#}"));
    }
}

#[test]
fn built_in_defaults() {
    let cli = parse(["proofmill", "coordinator"]).unwrap();
    assert_eq!(cli.global.log_format, LogFormat::Auto);
    assert!(cli.global.config.is_none());
    let Sub::Coordinator(c) = cli.command else {
        panic!()
    };
    assert_eq!(c.listen.to_string(), "127.0.0.1:3900");
    assert_eq!(
        c.admin_listen, None,
        "the HTTP admin API is off unless asked for"
    );
    // Every default path is in the data dir, made absolute.
    let cwd = std::env::current_dir().unwrap();
    let data = cwd.join("proofmill-data");
    assert_eq!(c.data_dir, data);
    assert_eq!(
        c.db(),
        format!("sqlite://{}/proofmill.db?mode=rwc", data.display())
    );
    assert_eq!(
        c.blobs(),
        format!("file://{}", data.join("blobs").display())
    );
    assert_eq!(c.l1_state(), data.join("l1.log"));
    assert_eq!(c.proof_types, vec![(pt("exec"), "exec".to_string())]);
    assert!(!c.devnet);
    assert_eq!(
        (c.prover_timeout, c.heartbeat_interval, c.missed_heartbeats),
        (600_000, 5_000, 3)
    );
    assert_eq!(
        (c.max_attempts, c.max_lost_attempts, c.send_interval),
        (5, 10, 5_000)
    );
    assert_eq!(
        (
            c.cordon_after_invalid,
            c.batch_failure_provers,
            c.reconnect_grace
        ),
        (3, 3, 1_000)
    );
    assert_eq!(c.straggler_factor, 3);
    assert_eq!(c.assignment_policy, PolicyName::OldestFirst);
    assert_eq!(c.intake_window, 1024);
    assert_eq!(c.max_message_bytes, 67_108_864);
    assert_eq!(c.prover_token, None);
    assert_eq!(
        (&c.prover_tokens_file, &c.admin_tokens_file, c.insecure),
        (&None, &None, false)
    );
    assert_eq!(
        (&c.tls_cert, &c.tls_key, &c.tls_client_ca),
        (&None, &None, &None)
    );
    assert_eq!(
        (
            c.proof_memory_bytes,
            c.max_prover_streams,
            c.max_unregistered_streams
        ),
        (1 << 30, 10_000, 1024)
    );
    assert_eq!(
        (c.shutdown_grace, c.batch_size, c.batch_interval),
        (10_000, 16, 2_000)
    );
    assert_eq!((c.seed, c.tree_depth, c.accounts), (1, 16, 64));
    assert_eq!(c.version_tag, "devnet-v1");
    assert_eq!(c.max_batches, None);
    assert_eq!(c.metrics_listen, None);
    assert!(!c.metrics_per_prover);

    let Sub::Prover(p) = parse(["proofmill", "prover"]).unwrap().command else {
        panic!()
    };
    assert_eq!(p.coordinators, vec!["http://127.0.0.1:3900".to_string()]);
    assert_eq!(p.backend, vec![(pt("exec"), "exec".to_string())]);
    assert_eq!(
        (p.capacity, p.version_tag.as_str(), p.max_message_bytes),
        (1, "devnet-v1", 67_108_864)
    );
    assert!(!p.name.is_empty());
    assert_eq!(p.prover_token, None);
    assert_eq!((&p.tls.tls_ca, &p.tls.tls_cert), (&None, &None));
    assert_eq!(p.metrics_listen, None);

    let Sub::Status(s) = parse(["proofmill", "status"]).unwrap().command else {
        panic!()
    };
    assert_eq!(s.coordinator, "http://127.0.0.1:3900");
    assert!(!s.json);
    assert_eq!(s.access.admin_token, None);

    let Sub::Demo(d) = parse(["proofmill", "demo"]).unwrap().command else {
        panic!()
    };
    assert_eq!(
        (
            d.batches,
            d.provers,
            d.seed,
            d.batch_size,
            d.tree_depth,
            d.accounts
        ),
        (10, 2, 1, 4, 16, 64)
    );
    // Real proofs by default: groth16 on the 4x16 demo circuit.
    assert_eq!(d.proof_types, vec![(pt("groth16"), "groth16".to_string())]);
    assert_eq!(d.backends.groth16_shape, None);
    assert_eq!(d.data_dir, cwd.join("./proofmill-data"));

    let cli = parse(["proofmill", "bench", "dispatch"]).unwrap();
    let Sub::Bench {
        command: crate::args::BenchCommand::Dispatch(b),
    } = cli.command
    else {
        panic!()
    };
    assert_eq!((b.provers, b.jobs, b.target.db), (8, 20_000, None));
}

#[test]
fn config_values_land_in_the_struct() {
    let cli = parse_with(
        r#"
        listen = "0.0.0.0:4000"
        admin_listen = "127.0.0.1:4001"
        proof_types = ["exec", "audit:exec"]
        devnet = true
        batch_size = 4
        max_batches = 7
        prover_token = "s3cret"
        prover_tokens_file = "/etc/proofmill/provers.tokens"
        admin_tokens_file = "/etc/proofmill/admin.tokens"
        tls_cert = "/etc/proofmill/tls.pem"
        tls_key = "/etc/proofmill/tls.key"
        tls_client_ca = "/etc/proofmill/provers-ca.pem"
        insecure = true
        proof_memory_bytes = 536870912
        max_prover_streams = 50
        max_unregistered_streams = 5
        blobs = "file:///var/blobs"
        log_format = "json"
        assignment_policy = "earliest-finish"
        metrics_listen = "127.0.0.1:9100"
        metrics_per_prover = true
        "#,
        &["coordinator"],
    )
    .unwrap();
    assert_eq!(cli.global.log_format, LogFormat::Json);
    let Sub::Coordinator(c) = cli.command else {
        panic!()
    };
    assert_eq!(c.listen.to_string(), "0.0.0.0:4000");
    assert_eq!(
        c.admin_listen.map(|a| a.to_string()).as_deref(),
        Some("127.0.0.1:4001")
    );
    assert_eq!(
        c.proof_types,
        vec![
            (pt("exec"), "exec".to_string()),
            (pt("audit"), "exec".to_string())
        ]
    );
    assert!(c.devnet);
    assert_eq!(c.batch_size, 4);
    assert_eq!(c.max_batches, Some(7));
    assert_eq!(c.prover_token.as_deref(), Some("s3cret"));
    let path = |s: &str| Some(PathBuf::from(s));
    assert_eq!(
        (&c.prover_tokens_file, &c.admin_tokens_file),
        (
            &path("/etc/proofmill/provers.tokens"),
            &path("/etc/proofmill/admin.tokens")
        )
    );
    assert_eq!(
        (&c.tls_cert, &c.tls_key, &c.tls_client_ca),
        (
            &path("/etc/proofmill/tls.pem"),
            &path("/etc/proofmill/tls.key"),
            &path("/etc/proofmill/provers-ca.pem")
        )
    );
    assert!(c.insecure);
    let config = crate::commands::coordinator::coordinator_config(&c, crate::backends::builtin());
    assert_eq!(
        (
            config.proof_memory_bytes,
            config.max_prover_streams,
            config.max_unregistered_streams
        ),
        (512 << 20, 50, 5)
    );
    assert_eq!(
        config.scheduler.assignment_policy,
        PolicyName::EarliestFinish
    );
    assert_eq!(
        c.metrics_listen.map(|a| a.to_string()).as_deref(),
        Some("127.0.0.1:9100")
    );
    assert!(config.metrics_per_prover);
    assert_eq!(c.blobs(), "file:///var/blobs");
    // Untouched options keep their defaults.
    assert_eq!(c.accounts, 64);

    // A list may also be one comma-separated string; a nested subcommand works too.
    let cli = parse_with(
        "coordinators = \"http://a:1,http://b:2\"\ncapacity = 3\nmetrics_listen = \"127.0.0.1:0\"",
        &["prover"],
    )
    .unwrap();
    let Sub::Prover(p) = cli.command else {
        panic!()
    };
    assert_eq!(p.coordinators, vec!["http://a:1", "http://b:2"]);
    assert_eq!(p.capacity, 3);
    assert_eq!(p.metrics_listen.map(|a| a.port()), Some(0));
    let cli = parse_with(
        "jobs = 5\ndb = \"sqlite:///tmp/x.db\"",
        &["bench", "dispatch"],
    )
    .unwrap();
    let Sub::Bench {
        command: crate::args::BenchCommand::Dispatch(b),
    } = cli.command
    else {
        panic!()
    };
    assert_eq!(
        (b.jobs, b.target.db.as_deref()),
        (5, Some("sqlite:///tmp/x.db"))
    );
}

/// `--data-dir` moves every default path; a path set explicitly stays where it was put.
#[test]
fn data_dir_is_the_root_of_every_default_path() {
    let cli = parse_with(
        "data_dir = \"/srv/pm\"\nl1_state = \"/var/l1/state.log\"",
        &["coordinator"],
    )
    .unwrap();
    let Sub::Coordinator(c) = &cli.command else {
        panic!()
    };
    assert_eq!(c.db(), "sqlite:///srv/pm/proofmill.db?mode=rwc");
    assert_eq!(c.blobs(), "file:///srv/pm/blobs");
    assert_eq!(c.l1_state(), Path::new("/var/l1/state.log"));
    let derived = cli.derived_defaults();
    assert!(
        derived.contains(&("groth16_keys", "/srv/pm/keys".to_string())),
        "{derived:?}"
    );
    let cli = parse(["proofmill", "prover", "--data-dir", "/srv/p"]).unwrap();
    let Sub::Prover(p) = cli.command else {
        panic!()
    };
    assert_eq!(p.data_dir, Path::new("/srv/p"));
}

/// `--listen` resolves a host name; an address is taken as it is.
#[test]
fn listen_takes_host_names() {
    let cli = parse(["proofmill", "coordinator", "--listen", "localhost:3901"]).unwrap();
    let Sub::Coordinator(c) = cli.command else {
        panic!()
    };
    assert!(c.listen.ip().is_loopback(), "{}", c.listen);
    assert_eq!(c.listen.port(), 3901);
    let cli = parse(["proofmill", "demo", "--listen", "[::1]:0"]).unwrap();
    let Sub::Demo(d) = cli.command else { panic!() };
    assert_eq!(d.listen.to_string(), "[::1]:0");
    assert_eq!(d.admin_listen.to_string(), "127.0.0.1:0");
    let cli = parse([
        "proofmill",
        "coordinator",
        "--admin-listen",
        "localhost:3902",
    ])
    .unwrap();
    let Sub::Coordinator(c) = cli.command else {
        panic!()
    };
    let admin = c.admin_listen.expect("set");
    assert!(admin.ip().is_loopback() && admin.port() == 3902, "{admin}");
    let msg = format!(
        "{:#}",
        parse_with("admin_listen = \"nowhere\"", &["coordinator"]).unwrap_err()
    );
    assert!(msg.contains("expected HOST:PORT"), "{msg}");
    let msg = format!(
        "{:#}",
        parse_with("listen = \"localhost\"", &["coordinator"]).unwrap_err()
    );
    assert!(msg.contains("expected HOST:PORT"), "{msg}");
}

#[test]
fn flags_override_config() {
    let cli = parse_with(
        "batch_size = 4\ndevnet = false\nproof_types = [\"exec\"]\nlog_format = \"json\"",
        &[
            "coordinator",
            "--batch-size",
            "9",
            "--devnet",
            "--proof-types",
            "a,b:exec",
            "--log-format",
            "compact",
        ],
    )
    .unwrap();
    assert_eq!(cli.global.log_format, LogFormat::Compact);
    let Sub::Coordinator(c) = cli.command else {
        panic!()
    };
    assert_eq!(c.batch_size, 9);
    assert!(c.devnet);
    assert_eq!(
        c.proof_types,
        vec![(pt("a"), "a".to_string()), (pt("b"), "exec".to_string())]
    );
}

#[test]
fn unknown_key_is_an_error_naming_it() {
    let err = parse_with("batch_size = 4\nlisten_addr = \"x\"", &["coordinator"]).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("unknown key `listen_addr`"), "{msg}");
    assert!(msg.contains("proofmill coordinator"), "{msg}");
    assert!(
        msg.contains("valid keys:") && msg.contains("listen,") && msg.contains("log_format"),
        "{msg}"
    );
    // A valid key of another subcommand is unknown here; dashes are not the key form.
    let msg = format!("{:#}", parse_with("capacity = 2", &["status"]).unwrap_err());
    assert!(msg.contains("unknown key `capacity`"), "{msg}");
    let msg = format!("{:#}", parse_with("batch-size = 2", &["demo"]).unwrap_err());
    assert!(
        msg.contains("unknown key `batch-size`") && msg.contains("batch_size"),
        "{msg}"
    );
    let msg = format!(
        "{:#}",
        parse_with("config = \"x.toml\"", &["demo"]).unwrap_err()
    );
    assert!(msg.contains("`config` cannot be set"), "{msg}");
}

#[test]
fn wrong_types_and_bad_values_are_errors() {
    for (toml, needle) in [
        ("batch_size = \"4\"", "expected an integer, found string"),
        ("batch_size = 0", "invalid value for `batch_size`"),
        ("batch_size = -3", "invalid value for `batch_size`"),
        ("devnet = \"yes\"", "expected a boolean"),
        ("devnet = 1", "expected a boolean"),
        ("version_tag = 2", "expected a string, found integer"),
        ("listen = \"nowhere\"", "invalid value for `listen`"),
        ("seed = 1.5", "expected an integer, found float"),
        ("seed = [1]", "found an array"),
        ("proof_types = [\"Exec\"]", "proof type \"Exec\" is invalid"),
        ("proof_types = []", "the list is empty"),
        ("proof_types = [1]", "list item: expected a string"),
        ("tree_depth = 40", "invalid value for `tree_depth`"),
        ("log_format = \"fancy\"", "invalid value for `log_format`"),
        (
            "log_format = \"fancy\"",
            "valid values: auto, pretty, compact, json",
        ),
        ("l1 = \"sepolia\"", "valid values: none, embedded, rpc"),
        ("max_attempts = 0", "0 is not in 1.."),
        (
            "assignment_policy = \"fastest\"",
            "unknown assignment policy `fastest`; valid: oldest-first, earliest-finish",
        ),
        ("assignment_policy = 1", "expected a string, found integer"),
        ("db = \"mysql://x\"", "expected sqlite://"),
        (
            "blobs = \"ftp://host/dir\"",
            "unsupported blob store scheme",
        ),
        (
            "[devnet]\nx = 1",
            "expected a boolean (true or false), found a table",
        ),
    ] {
        let err = parse_with(toml, &["coordinator"]).expect_err(toml);
        let msg = format!("{err:#}");
        assert!(msg.contains(needle), "{toml}: {msg}");
        assert!(msg.contains("config file"), "{toml}: {msg}");
    }
    let msg = format!("{:#}", parse_with("capacity = 0", &["prover"]).unwrap_err());
    assert!(msg.contains("invalid value for `capacity`"), "{msg}");
    let msg = format!(
        "{:#}",
        parse_with("coordinators = [\"ftp://x\"]", &["prover"]).unwrap_err()
    );
    assert!(msg.contains("expected an http:// or https:// URL"), "{msg}");
    let msg = format!(
        "{:#}",
        parse_with("this is = not toml", &["prover"]).unwrap_err()
    );
    assert!(msg.contains("is not valid TOML"), "{msg}");
}

#[test]
fn bad_flags_and_cross_field_checks() {
    for argv in [
        &["proofmill", "prover", "--capacity", "0"][..],
        &["proofmill", "coordinator", "--batch-size", "0"],
        &["proofmill", "coordinator", "--proof-types", "exec,,x"],
        &["proofmill", "coordinator", "--proof-types", "exec:"],
        &["proofmill", "status", "--coordinator", "not a url"],
        &["proofmill", "bench"],
        &["proofmill"],
    ] {
        let err = parse(argv.iter().copied()).expect_err(&argv.join(" "));
        assert!(
            err.downcast_ref::<clap::Error>().is_some(),
            "{argv:?}: {err:#}"
        );
    }
    let msg = format!(
        "{:#}",
        parse([
            "proofmill",
            "coordinator",
            "--tree-depth",
            "3",
            "--accounts",
            "9"
        ])
        .unwrap_err()
    );
    assert!(msg.contains("does not fit"), "{msg}");
    let msg = format!(
        "{:#}",
        parse(["proofmill", "prover", "--backend", "exec,exec:exec"]).unwrap_err()
    );
    assert!(msg.contains("listed twice"), "{msg}");
    let msg = format!(
        "{:#}",
        parse(["proofmill", "status", "--config", "/nonexistent/p.toml"]).unwrap_err()
    );
    assert!(
        msg.contains("cannot read config file /nonexistent/p.toml"),
        "{msg}"
    );
}

/// Environment precedence runs in a child process (this test binary, filtered to
/// `env_layering_child`), so no test mutates the environment of this process.
#[test]
fn env_overrides_config_and_flags_override_env() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(
        &dir,
        "batch_size = 4\nseed = 5\ndevnet = true\naccounts = 6\nproof_types = [\"exec\", \"audit:exec\"]\nlog_format = \"json\"",
    );
    let mut child = std::process::Command::new(std::env::current_exe().unwrap());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with(ENV_PREFIX) {
            child.env_remove(key);
        }
    }
    let out = child
        .args([
            "--exact",
            "config::tests::env_layering_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("PROOFMILL_TEST_CHILD_CONFIG_FILE", &file)
        .env("PROOFMILL_BATCH_SIZE", "8")
        .env("PROOFMILL_SEED", "9")
        .env("PROOFMILL_DEVNET", "false")
        .env("PROOFMILL_LOG_FORMAT", "compact")
        .env("PROOFMILL_METRICS_LISTEN", "127.0.0.1:9200")
        .env("PROOFMILL_METRICS_PER_PROVER", "true")
        .env(
            "PROOFMILL_CONFIG",
            "/nonexistent/ignored-because-of-the-flag.toml",
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("1 passed"),
        "child test did not run:\n{stdout}"
    );
    assert!(
        stdout.contains("env layering child ok"),
        "child test did not run:\n{stdout}"
    );
}

#[test]
fn env_layering_child() {
    let Some(file) = std::env::var_os("PROOFMILL_TEST_CHILD_CONFIG_FILE") else {
        return;
    };
    let mut argv: Vec<OsString> = ["proofmill", "coordinator", "--seed", "10", "--config"]
        .into_iter()
        .map(OsString::from)
        .collect();
    argv.push(file);
    let cli = parse(argv).unwrap();
    assert_eq!(cli.global.log_format, LogFormat::Compact, "env over config");
    let Sub::Coordinator(c) = cli.command else {
        panic!()
    };
    assert_eq!(c.batch_size, 8, "env over config");
    assert!(!c.devnet, "env `false` over config `true`");
    assert_eq!(c.seed, 10, "flag over env");
    assert_eq!(c.accounts, 6, "config over default");
    assert_eq!(c.proof_types.len(), 2, "config over default");
    assert_eq!(c.tree_depth, 16, "default");
    assert_eq!(c.metrics_listen.map(|a| a.port()), Some(9200), "env");
    assert!(c.metrics_per_prover, "env");
    println!("env layering child ok");
}

/// A required option (`cordon --prover-id`) may come from the config file (or a flag over
/// it; the environment variable is clap's own), and its absence is clap's usual error,
/// with the usage line that marks it required.
#[test]
fn required_option_from_file_or_flag() {
    let cli = parse_with("prover_id = \"prv-file\"", &["cordon"]).unwrap();
    let Sub::Cordon(c) = cli.command else {
        panic!()
    };
    assert_eq!(c.prover_id, "prv-file");
    let cli = parse_with(
        "prover_id = \"prv-file\"",
        &["cordon", "--prover-id", "prv-flag"],
    )
    .unwrap();
    let Sub::Cordon(c) = cli.command else {
        panic!()
    };
    assert_eq!(c.prover_id, "prv-flag");
    let err = parse(["proofmill", "uncordon"]).unwrap_err();
    assert!(
        format!("{err:#}").contains("required arguments were not provided"),
        "{err:#}"
    );
    let help = parse(["proofmill", "cordon", "--help"]).unwrap_err();
    assert!(
        format!("{help:#}").contains("Usage: proofmill cordon [OPTIONS] --prover-id <PROVER_ID>"),
        "{help:#}"
    );
}

/// The controls' options come from a flag or the config file like every other; the
/// component's name is the coordinator's to check (a newer one may know more).
#[test]
fn controls_take_their_options_from_file_or_flag() {
    let cli = parse_with("component = \"sender\"\nreason = \"L1 fees\"", &["pause"]).unwrap();
    let Sub::Pause(p) = cli.command else { panic!() };
    assert_eq!(
        (p.component.as_str(), p.reason.as_str()),
        ("sender", "L1 fees")
    );
    let cli = parse_with(
        "component = \"sender\"",
        &["resume", "--component", "dispatch"],
    )
    .unwrap();
    let Sub::Resume(r) = cli.command else {
        panic!()
    };
    assert_eq!(r.component, "dispatch");
    let cli = parse_with("batch = 7", &["commit-now"]).unwrap();
    let Sub::CommitNow(c) = cli.command else {
        panic!()
    };
    assert_eq!(c.batch, 7);
    let err = parse(["proofmill", "commit-now", "--batch", "0"]).unwrap_err();
    assert!(format!("{err:#}").contains("--batch"), "{err:#}");
    let err = parse(["proofmill", "pause"]).unwrap_err();
    assert!(
        format!("{err:#}").contains("required arguments were not provided"),
        "{err:#}"
    );
    assert!(matches!(
        parse(["proofmill", "settle-now"]).unwrap().command,
        Sub::SettleNow(_)
    ));
}

#[test]
fn monitor_takes_its_options_from_file_or_flag() {
    let cli = parse_with(
        "coordinator = \"http://10.0.0.5:3900\"\nrefresh_ms = 500\nadmin_token = \"t0k\"",
        &["monitor"],
    )
    .unwrap();
    let Sub::Monitor(m) = cli.command else {
        panic!()
    };
    assert_eq!(
        (
            m.coordinator.as_str(),
            m.refresh_ms,
            m.access.admin_token.as_deref()
        ),
        ("http://10.0.0.5:3900", 500, Some("t0k"))
    );
    let Sub::Monitor(m) = parse(["proofmill", "monitor"]).unwrap().command else {
        panic!()
    };
    assert_eq!(m.refresh_ms, 2000);
    let err = parse(["proofmill", "monitor", "--refresh-ms", "10"]).unwrap_err();
    assert!(format!("{err:#}").contains("--refresh-ms"), "{err:#}");
}

#[test]
fn core_api_options_come_from_file_env_or_flag() {
    let cli = parse_with(
        "core_api_url = [\"http://a:1\", \"http://b:2/prover\"]\ncore_api_poll_interval = 250\n\
         core_api_listen = \"127.0.0.1:3321\"",
        &["coordinator"],
    )
    .unwrap();
    let Sub::Coordinator(c) = cli.command else {
        panic!()
    };
    assert_eq!(c.core_api_url, ["http://a:1", "http://b:2/prover"]);
    assert_eq!(c.core_api_poll_interval, 250);
    assert_eq!(c.core_api_timeout, 30_000);
    assert_eq!(c.core_api_listen, Some("127.0.0.1:3321".parse().unwrap()));
    // A comma list on the command line, as in the environment.
    let cli = parse([
        "proofmill",
        "coordinator",
        "--core-api-url",
        "http://a:1,http://b:2",
    ])
    .unwrap();
    let Sub::Coordinator(c) = cli.command else {
        panic!()
    };
    assert_eq!(c.core_api_url.len(), 2);
    let err = parse(["proofmill", "coordinator", "--core-api-url", "ftp://a"]).unwrap_err();
    assert!(format!("{err:#}").contains("http://"), "{err:#}");
}

/// `network`: every option from the config file lands in its field; a flag wins over the
/// file; the defaults; `--l1-rpc` is the same option as `--l1-rpc-url`; no key is an error.
#[test]
fn network_options_come_from_file_or_flag() {
    let inputs = tempfile::tempdir().unwrap();
    let toml = format!(
        "l1_rpc_url = \"http://l1:8545\"\nmarket_address = \"0x{}\"\nnetwork_key = \"0xabc\"\n\
         coordinator = \"http://c:3900\"\nadmin_token = \"tk\"\nstate_dir = \"/var/net\"\n\
         min_reward = \"1000000000000000000000\"\nask_reward = \"5\"\nmax_in_flight = 9\n\
         max_awaiting_validation = 12\nexpected_prove_secs = 45\nsafety_factor_percent = 150\n\
         deadline_margin_secs = 20\n\
         protocol_versions = [\"v1\", \"v2\"]\nconfirmations = 3\nmax_block_range = 500\n\
         from_block = 77\npoll_interval = 250\ninputs_file_dirs = [\"{}\"]\n\
         fetch_max_bytes = 4096\nfetch_timeout = 5000\nmax_backoff = 7000",
        "ab".repeat(20),
        inputs.path().display()
    );
    let cli = parse_with(&toml, &["network", "--max-in-flight", "2"]).unwrap();
    let Sub::Network(n) = cli.command else {
        panic!()
    };
    assert_eq!(n.l1_rpc_url, "http://l1:8545");
    assert_eq!(n.market_address, format!("0x{}", "ab".repeat(20)));
    assert_eq!(n.key().unwrap(), "0xabc");
    assert_eq!(n.coordinator, "http://c:3900");
    assert_eq!(n.access.admin_token.as_deref(), Some("tk"));
    assert_eq!(n.state_dir, PathBuf::from("/var/net"));
    assert_eq!(n.min_reward.to_string(), "1000000000000000000000");
    assert_eq!(n.ask_reward.map(|r| r.to_string()), Some("5".into()));
    assert_eq!(n.max_in_flight, 2, "flag over file");
    assert_eq!(n.max_awaiting_validation, 12);
    assert_eq!(
        (
            n.expected_prove_secs,
            n.safety_factor_percent,
            n.deadline_margin_secs
        ),
        (45, 150, 20)
    );
    assert_eq!(n.protocol_versions, ["v1", "v2"]);
    assert_eq!(
        (n.confirmations, n.max_block_range, n.from_block),
        (3, 500, Some(77))
    );
    assert_eq!(n.poll_interval, 250);
    assert_eq!(n.inputs_file_dirs, [inputs.path().to_path_buf()]);
    assert_eq!(
        (n.fetch_max_bytes, n.fetch_timeout, n.max_backoff),
        (4096, 5000, 7000)
    );

    let address = format!("0x{}", "12".repeat(20));
    let args = [
        "proofmill",
        "network",
        "--l1-rpc",
        "http://l1:8545",
        "--market-address",
        &address,
        "--network-key",
        "0x1",
    ];
    let Sub::Network(n) = parse(args).unwrap().command else {
        panic!()
    };
    assert_eq!(n.l1_rpc_url, "http://l1:8545");
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(n.state_dir, cwd.join("proofmill-network"));
    assert_eq!(n.coordinator, "http://127.0.0.1:3900");
    assert_eq!((n.min_reward.to_string(), n.ask_reward), ("0".into(), None));
    assert_eq!((n.max_in_flight, n.expected_prove_secs), (4, 60));
    assert_eq!(n.max_awaiting_validation, 64);
    assert_eq!((n.safety_factor_percent, n.deadline_margin_secs), (200, 60));
    assert_eq!(n.protocol_versions, ["devnet-v1"]);
    assert_eq!(
        (n.confirmations, n.max_block_range, n.from_block),
        (2, 10_000, None)
    );
    assert_eq!((n.poll_interval, n.fetch_max_bytes), (2_000, 256 << 20));
    assert!(n.inputs_file_dirs.is_empty());

    let err = parse(&args[..6]).unwrap_err();
    assert!(format!("{err:#}").contains("network key"), "{err:#}");
    let err = parse_with("min_reward = 5", &args[1..]).unwrap_err();
    assert!(format!("{err:#}").contains("min_reward"), "{err:#}");
    let mut bad = args.to_vec();
    bad.extend(["--min-reward", "lots"]);
    let err = parse(bad).unwrap_err();
    assert!(format!("{err:#}").contains("wei"), "{err:#}");
}
