//! Layered configuration: flag > environment > TOML config file > built-in default.
//!
//! The schema is the clap command tree of [`Cli`] and nothing else: an option `--some-option`
//! reads the environment variable `PROOFMILL_SOME_OPTION` (clap `env`) and the config key
//! `some_option`. Config values are injected as the options' default values, so clap's own
//! precedence (command line, then environment, then default) gives the layering.
//!
//! Parsing runs in two passes: the first (without the config file) finds the subcommand and
//! `--config`/`PROOFMILL_CONFIG`; the second runs on a command tree whose defaults were
//! replaced by the file's values. Keys that are not options of the invoked subcommand (or
//! global options) are an error, and so are values of the wrong TOML type or values the
//! option's parser rejects.

use crate::args::Cli;
use anyhow::{Context as _, anyhow, bail};
use clap::{Arg, ArgAction, ArgMatches, Command, CommandFactory, FromArgMatches};
use std::any::TypeId;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Prefix of every environment variable.
#[cfg_attr(not(test), allow(dead_code))]
pub const ENV_PREFIX: &str = "PROOFMILL_";

/// Id of the `--config` option; it cannot be set from a config file.
const CONFIG_ID: &str = "config";

/// Environment variable of the option with long name `long` (the rule the `env` attributes
/// of [`crate::args`] follow; checked by a test).
#[cfg_attr(not(test), allow(dead_code))]
pub fn env_name(long: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        long.to_ascii_uppercase().replace('-', "_")
    )
}

/// Config-file key of the option with long name `long`.
pub fn toml_key(long: &str) -> String {
    long.replace('-', "_")
}

/// Parses a full command line (including the binary name) with the environment and the
/// config file. Errors are either a [`clap::Error`] (usage errors, `--help`, `--version`; the
/// caller should `exit()` it) or a config/validation error.
pub fn parse<I, T>(argv: I) -> anyhow::Result<Cli>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let argv: Vec<OsString> = argv.into_iter().map(Into::into).collect();
    let first = Cli::command().try_get_matches_from(&argv)?;
    let matches = match config_path(&first) {
        None => first,
        Some(file) => {
            let table = load(&file)?;
            let cmd = apply(Cli::command(), &subcommand_path(&first), &table, &file)?;
            cmd.try_get_matches_from(&argv)?
        }
    };
    let mut cli = Cli::from_arg_matches(&matches)?;
    cli.finish()?;
    Ok(cli)
}

fn config_path(matches: &ArgMatches) -> Option<PathBuf> {
    // `--config` is global: its value is visible at every level; look at the deepest one.
    let mut found = matches
        .try_get_one::<PathBuf>(CONFIG_ID)
        .ok()
        .flatten()
        .cloned();
    let mut m = matches;
    while let Some((_, sub)) = m.subcommand() {
        if let Some(p) = sub.try_get_one::<PathBuf>(CONFIG_ID).ok().flatten() {
            found = Some(p.clone());
        }
        m = sub;
    }
    found
}

/// Names of the invoked subcommands, outermost first (`["bench", "dispatch"]`).
fn subcommand_path(matches: &ArgMatches) -> Vec<String> {
    let mut path = Vec::new();
    let mut m = matches;
    while let Some((name, sub)) = m.subcommand() {
        path.push(name.to_string());
        m = sub;
    }
    path
}

/// Reads and parses a config file.
pub fn load(file: &Path) -> anyhow::Result<toml::Table> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read config file {}", file.display()))?;
    text.parse::<toml::Table>().map_err(|e| {
        anyhow!(
            "config file {} is not valid TOML: {}",
            file.display(),
            e.to_string().trim_end()
        )
    })
}

/// An option a config key may set.
struct Target<'a> {
    arg: &'a Arg,
    /// Defined on the root command (a global option) rather than on the subcommand.
    on_root: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Bool,
    Integer,
    String,
}

impl Kind {
    fn of(arg: &Arg) -> Kind {
        if matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse) {
            return Kind::Bool;
        }
        let t = arg.get_value_parser().type_id();
        let integers = [
            TypeId::of::<u8>(),
            TypeId::of::<u16>(),
            TypeId::of::<u32>(),
            TypeId::of::<u64>(),
            TypeId::of::<usize>(),
            TypeId::of::<i8>(),
            TypeId::of::<i16>(),
            TypeId::of::<i32>(),
            TypeId::of::<i64>(),
            TypeId::of::<isize>(),
        ];
        if t == TypeId::of::<bool>() {
            Kind::Bool
        } else if integers.iter().any(|i| t == *i) {
            Kind::Integer
        } else {
            Kind::String
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Kind::Bool => "a boolean (true or false)",
            Kind::Integer => "an integer",
            Kind::String => "a string",
        }
    }
}

fn is_list(arg: &Arg) -> bool {
    arg.get_value_delimiter().is_some()
}

/// Options of the subcommand at `path` that a config file may set: the subcommand's own
/// options and the global options of the root command, except `--config` itself.
fn targets<'a>(root: &'a Command, path: &[String]) -> Vec<Target<'a>> {
    let mut leaf = root;
    for name in path {
        leaf = leaf
            .find_subcommand(name)
            .expect("subcommand path comes from matches");
    }
    let settable = |a: &&Arg| {
        a.get_long().is_some()
            && a.get_id() != CONFIG_ID
            && !matches!(
                a.get_action(),
                ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
            )
    };
    let mut out: Vec<Target<'a>> = root
        .get_arguments()
        .filter(|a| a.is_global_set())
        .filter(settable)
        .map(|arg| Target { arg, on_root: true })
        .collect();
    if !path.is_empty() {
        out.extend(leaf.get_arguments().filter(settable).map(|arg| Target {
            arg,
            on_root: false,
        }));
    }
    out
}

/// Returns `root` with the config values of `table` installed as the defaults of the options
/// of the subcommand at `path`.
pub fn apply(
    root: Command,
    path: &[String],
    table: &toml::Table,
    file: &Path,
) -> anyhow::Result<Command> {
    let command_name = std::iter::once(root.get_name().to_string())
        .chain(path.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    let targets = targets(&root, path);
    let key_of =
        |t: &Target| toml_key(t.arg.get_long().expect("settable options have a long name"));

    let mut unknown: Vec<&str> = table
        .keys()
        .map(String::as_str)
        .filter(|k| !targets.iter().any(|t| key_of(t) == *k))
        .collect();
    if !unknown.is_empty() {
        unknown.sort_unstable();
        let mut valid: Vec<String> = targets.iter().map(key_of).collect();
        valid.sort_unstable();
        let config_hint = if unknown.contains(&CONFIG_ID) {
            " (`config` cannot be set inside a config file)"
        } else {
            ""
        };
        let plural = if unknown.len() == 1 { "" } else { "s" };
        bail!(
            "config file {}: unknown key{plural} {} for `{command_name}`{config_hint}; valid keys: {}",
            file.display(),
            unknown
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", "),
            valid.join(", "),
        );
    }

    // (id, value, on_root) of every default to install.
    let mut defaults: Vec<(String, String, bool)> = Vec::new();
    for (key, value) in table {
        let target = targets
            .iter()
            .find(|t| key_of(t) == *key)
            .expect("checked above");
        let value = config_value(target.arg, value)
            .and_then(|v| validate(target.arg, &v).map(|()| v))
            .map_err(|e| {
                anyhow!(
                    "config file {}: invalid value for `{key}`: {e}",
                    file.display()
                )
            })?;
        defaults.push((target.arg.get_id().to_string(), value, target.on_root));
    }
    drop(targets);

    let mut root = root;
    for (id, value, on_root) in defaults {
        let set = move |c: Command| c.mut_arg(id, |a| a.default_value(value));
        root = if on_root {
            set(root)
        } else {
            at_path(root, path, set)
        };
    }
    Ok(root)
}

/// Applies `f` to the subcommand at `path` of `cmd`.
fn at_path(cmd: Command, path: &[String], f: impl FnOnce(Command) -> Command) -> Command {
    match path.split_first() {
        None => f(cmd),
        Some((head, rest)) => cmd.mut_subcommand(head, |c| at_path(c, rest, f)),
    }
}

/// The command-line form of a config value, type-checked against the option.
fn config_value(arg: &Arg, value: &toml::Value) -> Result<String, String> {
    let kind = Kind::of(arg);
    match value {
        toml::Value::Array(items) if is_list(arg) => {
            if items.is_empty() {
                return Err("the list is empty".to_string());
            }
            let delimiter = arg.get_value_delimiter().expect("list").to_string();
            let items = items
                .iter()
                .map(|v| scalar(kind, v).map_err(|e| format!("list item: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(items.join(&delimiter))
        }
        toml::Value::Array(_) => Err(format!("expected {}, found an array", kind.describe())),
        v => scalar(kind, v),
    }
}

fn scalar(kind: Kind, value: &toml::Value) -> Result<String, String> {
    match (kind, value) {
        (Kind::Bool, toml::Value::Boolean(b)) => Ok(b.to_string()),
        (Kind::Integer, toml::Value::Integer(i)) => Ok(i.to_string()),
        (Kind::String, toml::Value::String(s)) => Ok(s.clone()),
        (kind, toml::Value::Table(_)) => {
            Err(format!("expected {}, found a table", kind.describe()))
        }
        (kind, v) => Err(format!(
            "expected {}, found {} `{v}`",
            kind.describe(),
            v.type_str()
        )),
    }
}

/// Runs the option's own value parser on `value`, so a bad config value is reported against
/// the config file instead of surfacing later as a bad default.
fn validate(arg: &Arg, value: &str) -> Result<(), String> {
    if Kind::of(arg) == Kind::Bool && matches!(value, "true" | "false") {
        return Ok(());
    }
    let long = arg.get_long().expect("settable options have a long name");
    let probe = arg
        .clone()
        .env(None::<&str>)
        .default_value(None::<&str>)
        .global(false)
        .required(false);
    Command::new("proofmill")
        .no_binary_name(true)
        .disable_help_flag(true)
        .arg(probe)
        .try_get_matches_from([format!("--{long}={value}")])
        .map(|_| ())
        .map_err(|e| clap_message(&e))
}

/// First line of a clap error without the `error: ` prefix.
fn clap_message(e: &clap::Error) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Command as Sub, LogFormat};
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
                let long = arg.get_long().unwrap_or_else(|| {
                    panic!("`{path}`: option {} has no long name", arg.get_id())
                });
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
        assert_eq!(cli.global.log_format, LogFormat::Pretty);
        assert!(cli.global.config.is_none());
        let Sub::Coordinator(c) = cli.command else {
            panic!()
        };
        assert_eq!(c.listen.to_string(), "127.0.0.1:3900");
        assert_eq!(c.db, "sqlite://./proofmill-data/proofmill.db?mode=rwc");
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            c.blobs,
            format!("file://{}", cwd.join("proofmill-data/blobs").display())
        );
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
        assert_eq!(c.max_message_bytes, 67_108_864);
        assert_eq!(c.prover_token, None);
        assert_eq!(
            (c.shutdown_grace, c.batch_size, c.batch_interval),
            (10_000, 16, 2_000)
        );
        assert_eq!((c.seed, c.tree_depth, c.accounts), (1, 16, 64));
        assert_eq!(c.version_tag, "devnet-v1");
        assert_eq!(c.max_batches, None);

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

        let Sub::Status(s) = parse(["proofmill", "status"]).unwrap().command else {
            panic!()
        };
        assert_eq!(s.coordinator, "http://127.0.0.1:3900");
        assert!(!s.json);

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
            (10, 2, 1, 16, 16, 64)
        );
        assert_eq!(d.proof_types, vec![(pt("exec"), "exec".to_string())]);
        assert_eq!(d.data_dir, cwd.join("./proofmill-data"));

        let cli = parse(["proofmill", "bench", "dispatch"]).unwrap();
        let Sub::Bench {
            command: crate::args::BenchCommand::Dispatch(b),
        } = cli.command
        else {
            panic!()
        };
        assert_eq!((b.provers, b.jobs, b.db), (8, 20_000, None));
    }

    #[test]
    fn config_values_land_in_the_struct() {
        let cli = parse_with(
            r#"
            listen = "0.0.0.0:4000"
            proof_types = ["exec", "audit:exec"]
            devnet = true
            batch_size = 4
            max_batches = 7
            prover_token = "s3cret"
            blobs = "file:///var/blobs"
            log_format = "json"
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
        assert_eq!(c.blobs, "file:///var/blobs");
        // Untouched options keep their defaults.
        assert_eq!(c.accounts, 64);

        // A list may also be one comma-separated string; a nested subcommand works too.
        let cli = parse_with(
            "coordinators = \"http://a:1,http://b:2\"\ncapacity = 3",
            &["prover"],
        )
        .unwrap();
        let Sub::Prover(p) = cli.command else {
            panic!()
        };
        assert_eq!(p.coordinators, vec!["http://a:1", "http://b:2"]);
        assert_eq!(p.capacity, 3);
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
        assert_eq!((b.jobs, b.db.as_deref()), (5, Some("sqlite:///tmp/x.db")));
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
        println!("env layering child ok");
    }
}
