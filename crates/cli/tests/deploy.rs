//! The deployment files in `deploy/`, checked against the binary the way an operator's
//! mistakes would show: every `PROOFMILL_*` variable and flag the compose file, the Dockerfile
//! and the systemd units set is an option of the subcommand they give it to (asked of the
//! binary with `--print-config`, which names each value's source, so a variable the binary
//! does not know shows up as not taken from the environment); the ports agree between the
//! services, Prometheus, Grafana and the image; and every metric the Grafana dashboard queries
//! is one a running coordinator or prover exports.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod common;
use common::proofmill;
use yaml_rust2::{Yaml, YamlLoader};

fn deploy_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(relative)
}

fn read(relative: &str) -> String {
    let path = deploy_file(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(relative: &str) -> Yaml {
    let mut docs = YamlLoader::load_from_str(&read(relative))
        .unwrap_or_else(|e| panic!("{relative} is not YAML: {e}"));
    assert_eq!(docs.len(), 1, "{relative}: one document");
    docs.remove(0)
}

fn text(y: &Yaml) -> String {
    match y {
        Yaml::String(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        Yaml::Real(r) => r.clone(),
        other => panic!("not a scalar: {other:?}"),
    }
}

/// What compose does with `${NAME:?message}` (required: the operator sets it; any value
/// here) and `${NAME:-default}`.
fn interpolate(value: &str) -> String {
    let Some(start) = value.find("${") else {
        return value.to_string();
    };
    let end = start + value[start..].find('}').expect("closing brace");
    let inner = &value[start + 2..end];
    let replaced = if let Some((_, default)) = inner.split_once(":-") {
        default.to_string()
    } else if inner.contains(":?") {
        "operator-supplied-value".to_string()
    } else {
        panic!("{value}: give a default (`:-`) or require it (`:?`)")
    };
    format!(
        "{}{replaced}{}",
        &value[..start],
        interpolate(&value[end + 1..])
    )
}

/// A service of the compose file, with `<<: *anchor` merged the way compose merges it.
struct Service {
    image: String,
    command: Vec<String>,
    env: BTreeMap<String, String>,
    /// Container ports it publishes.
    published: Vec<u16>,
}

fn services(compose: &Yaml) -> BTreeMap<String, Service> {
    let Yaml::Hash(all) = &compose["services"] else {
        panic!("services: a mapping")
    };
    let mut out = BTreeMap::new();
    for (name, body) in all {
        let field = |key: &str| -> Yaml {
            let own = &body[key];
            if !own.is_badvalue() {
                return own.clone();
            }
            body["<<"][key].clone()
        };
        let command = match field("command") {
            Yaml::Array(items) => items.iter().map(text).collect(),
            Yaml::BadValue => Vec::new(),
            other => panic!("command as a list, not {other:?}"),
        };
        let env = match field("environment") {
            Yaml::Hash(vars) => vars
                .iter()
                .map(|(k, v)| (text(k), interpolate(&text(v))))
                .collect(),
            Yaml::BadValue => BTreeMap::new(),
            other => panic!("environment as a mapping, not {other:?}"),
        };
        let published = match field("ports") {
            Yaml::Array(items) => items
                .iter()
                .map(|p| {
                    let p = text(p);
                    p.rsplit(':')
                        .next()
                        .unwrap()
                        .parse()
                        .expect("container port")
                })
                .collect(),
            _ => Vec::new(),
        };
        out.insert(
            text(name),
            Service {
                image: field("image").as_str().unwrap_or_default().to_string(),
                command,
                env,
                published,
            },
        );
    }
    out
}

/// `proofmill ARGS --print-config` with exactly `env` for an environment of `PROOFMILL_*`
/// variables, run in an empty directory.
fn effective_config(args: &[String], env: &BTreeMap<String, String>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = proofmill()
        .args(args)
        .arg("--print-config")
        .envs(env)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "`proofmill {} --print-config` with {env:?} refused: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Asserts the effective configuration took `key` from `source` (`flag`, `env NAME`).
fn assert_source(config: &str, key: &str, source: &str, whose: &str) {
    let line = config
        .lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("{whose}: `{key}` is not an option:\n{config}"));
    assert!(
        line.ends_with(&format!("# {source}")),
        "{whose}: `{key}` should come from {source}, the binary says: {line}"
    );
}

/// Asserts every variable and flag given is one the subcommand takes, from where it was given.
fn assert_all_taken(args: &[String], env: &BTreeMap<String, String>, whose: &str) {
    let config = effective_config(args, env);
    for name in env.keys() {
        let key = name
            .strip_prefix("PROOFMILL_")
            .unwrap_or_else(|| panic!("{whose}: {name} is not a proofmill variable"))
            .to_lowercase();
        assert_source(&config, &key, &format!("env {name}"), whose);
    }
    for flag in args.iter().filter_map(|a| a.strip_prefix("--")) {
        assert_source(&config, &flag.replace('-', "_"), "flag", whose);
    }
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("no port in {addr}"))
}

fn proofmill_services(compose: &Yaml) -> BTreeMap<String, Service> {
    let mut all = services(compose);
    all.retain(|_, s| s.image.starts_with("proofmill"));
    all
}

#[test]
fn compose_variables_are_options_of_their_subcommand() {
    let compose = yaml("docker-compose.yml");
    let ours = proofmill_services(&compose);
    assert!(
        ours.contains_key("coordinator") && ours.contains_key("prover"),
        "a coordinator and a prover service"
    );
    for (name, service) in &ours {
        let (proofmill_env, other): (BTreeMap<_, _>, BTreeMap<_, _>) = service
            .env
            .clone()
            .into_iter()
            .partition(|(k, _)| k.starts_with("PROOFMILL_"));
        assert!(
            other.is_empty(),
            "{name}: variables proofmill ignores: {other:?}"
        );
        assert_all_taken(&service.command, &proofmill_env, &format!("compose {name}"));
    }
}

#[test]
fn compose_ports_agree_between_services_prometheus_and_grafana() {
    let compose = yaml("docker-compose.yml");
    let all = services(&compose);
    let coordinator = &all["coordinator"];
    let prover = &all["prover"];

    let grpc = port_of(&coordinator.env["PROOFMILL_LISTEN"]);
    let admin = port_of(&coordinator.env["PROOFMILL_ADMIN_LISTEN"]);
    let coordinator_metrics = port_of(&coordinator.env["PROOFMILL_METRICS_LISTEN"]);
    let prover_metrics = port_of(&prover.env["PROOFMILL_METRICS_LISTEN"]);
    for addr in [
        "PROOFMILL_LISTEN",
        "PROOFMILL_ADMIN_LISTEN",
        "PROOFMILL_METRICS_LISTEN",
    ] {
        assert!(
            coordinator.env[addr].starts_with("0.0.0.0:"),
            "{addr}: a container must listen on every interface to be reached"
        );
    }
    assert!(coordinator.published.contains(&grpc), "gRPC port published");
    assert!(
        coordinator.published.contains(&admin),
        "admin port published"
    );

    // Provers find the coordinator by its service name and its gRPC port.
    let url = &prover.env["PROOFMILL_COORDINATORS"];
    assert_eq!(url, &format!("http://coordinator:{grpc}"));

    // Prometheus scrapes both metrics ports, every prover of a scaled service by DNS.
    let prometheus = yaml("prometheus/prometheus.yml");
    let Yaml::Array(jobs) = &prometheus["scrape_configs"] else {
        panic!("scrape_configs")
    };
    let mut targets = Vec::new();
    for job in jobs {
        if let Yaml::Array(statics) = &job["static_configs"] {
            for s in statics {
                for t in s["targets"].as_vec().unwrap() {
                    targets.push(text(t));
                }
            }
        }
        if let Yaml::Array(dns) = &job["dns_sd_configs"] {
            for d in dns {
                let port = d["port"].as_i64().unwrap();
                for n in d["names"].as_vec().unwrap() {
                    targets.push(format!("{}:{port}", text(n)));
                }
            }
        }
    }
    assert!(
        targets.contains(&format!("coordinator:{coordinator_metrics}")),
        "{targets:?}"
    );
    assert!(
        targets.contains(&format!("prover:{prover_metrics}")),
        "{targets:?}"
    );

    // Grafana reads the Prometheus of this project.
    let prometheus_port = all["prometheus"].published[0];
    let datasources = yaml("grafana/provisioning/datasources/prometheus.yml");
    let url = text(&datasources["datasources"][0]["url"]);
    assert_eq!(url, format!("http://prometheus:{prometheus_port}"));

    // The image says what it serves.
    let dockerfile = read("Dockerfile");
    let exposed: Vec<u16> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("EXPOSE "))
        .flat_map(|l| l.split_whitespace().map(|p| p.parse().unwrap()))
        .collect();
    for port in [grpc, admin, coordinator_metrics] {
        assert!(exposed.contains(&port), "Dockerfile EXPOSE lacks {port}");
    }
}

#[test]
fn dockerfile_variables_are_options() {
    let dockerfile = read("Dockerfile");
    let env: BTreeMap<String, String> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("ENV "))
        .flat_map(|l| l.split_whitespace())
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("ENV KEY=VALUE");
            (k.to_string(), v.to_string())
        })
        .collect();
    assert!(env.contains_key("PROOFMILL_DATA_DIR"), "{env:?}");
    for subcommand in ["coordinator", "prover"] {
        assert_all_taken(
            &[subcommand.to_string()],
            &env,
            &format!("Dockerfile for {subcommand}"),
        );
    }
}

/// The unit's `ExecStart` as arguments (continuation lines joined), without the binary.
fn exec_start(unit: &str) -> Vec<String> {
    let joined = unit.replace("\\\n", " ");
    let line = joined
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart=");
    let mut words = line.split_whitespace().map(str::to_string);
    let binary = words.next().unwrap();
    assert!(binary.ends_with("/proofmill"), "{binary}");
    words.collect()
}

fn env_file(relative: &str) -> BTreeMap<String, String> {
    read(relative)
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("KEY=VALUE");
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn systemd_units_give_options_of_their_subcommand() {
    for (unit, env) in [
        (
            "systemd/proofmill-coordinator.service",
            "systemd/coordinator.env.example",
        ),
        (
            "systemd/proofmill-prover.service",
            "systemd/prover.env.example",
        ),
    ] {
        let text = read(unit);
        let args = exec_start(&text);
        assert!(
            text.contains(&format!("EnvironmentFile=-/etc/proofmill/{}", {
                Path::new(env).file_stem().unwrap().to_str().unwrap()
            })),
            "{unit} reads the environment file its example is for"
        );
        assert_all_taken(&args, &env_file(env), unit);
    }
    let coordinator = read("systemd/proofmill-coordinator.service");
    assert!(
        coordinator.contains("LimitNOFILE=65536"),
        "a coordinator needs a descriptor per prover"
    );
}
