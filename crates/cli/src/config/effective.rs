//! `--print-config`: the configuration a subcommand runs with, each value with where it came
//! from (default, config file, environment, flag), secrets redacted.

use super::{CONFIG_ID, Kind, env_name, is_list, targets, toml_key};
use crate::args::Cli;
use clap::parser::ValueSource;
use clap::{ArgMatches, Command};
use std::fmt::Write as _;
use std::path::PathBuf;

const REDACTED: &str = "<redacted>";
/// `--print-config` itself: not part of the configuration it prints.
const PRINT_CONFIG_ID: &str = "print_config";

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The built-in default.
    Default,
    /// Not set: derived at startup from another option (e.g. a path in `--data-dir`).
    Derived,
    /// The config file.
    File(PathBuf),
    /// The environment variable.
    Env(String),
    /// The command line.
    Flag,
}

/// `default`, `derived`, `file PATH`, `env NAME` or `flag`: the words of the coordinator's
/// `StatusInfo` configuration.
impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::Derived => f.write_str("derived"),
            Source::File(path) => write!(f, "file {}", path.display()),
            Source::Env(var) => write!(f, "env {var}"),
            Source::Flag => f.write_str("flag"),
        }
    }
}

/// One option of the invoked subcommand.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its config key.
    pub key: String,
    /// TOML form of the value (a secret redacted); `None` when unset.
    pub value: Option<String>,
    pub source: Source,
}

/// The effective configuration of the invoked subcommand.
#[derive(Debug, Clone)]
pub struct Effective {
    command: String,
    file: Option<PathBuf>,
    pub entries: Vec<Entry>,
}

impl Effective {
    /// From the command tree that parsed (its defaults replaced by the file's values), the
    /// matches, the file, and the finished [`Cli`] for values derived at startup.
    pub(super) fn new(
        cmd: &Command,
        path: &[String],
        matches: &ArgMatches,
        file: Option<&(PathBuf, toml::Table)>,
        cli: &Cli,
    ) -> Effective {
        let mut leaf = matches;
        while let Some((_, sub)) = leaf.subcommand() {
            leaf = sub;
        }
        let derived = cli.derived_defaults();
        let entries = targets(cmd, path)
            .into_iter()
            .filter(|t| ![CONFIG_ID, PRINT_CONFIG_ID].contains(&t.arg.get_id().as_str()))
            .map(|t| {
                let long = t.arg.get_long().expect("settable options have a long name");
                let key = toml_key(long);
                let id = t.arg.get_id().as_str();
                let raw: Option<Vec<String>> = leaf
                    .try_get_raw(id)
                    .ok()
                    .flatten()
                    .map(|v| v.map(|s| s.to_string_lossy().into_owned()).collect());
                let from_file = file.is_some_and(|(_, table)| table.contains_key(&key));
                let (value, source) = match (raw, leaf.value_source(id)) {
                    (Some(v), Some(ValueSource::CommandLine)) => (Some(v), Source::Flag),
                    (Some(v), Some(ValueSource::EnvVariable)) => {
                        (Some(v), Source::Env(env_name(long)))
                    }
                    (Some(v), _) if from_file => {
                        let (file, _) = file.expect("from_file");
                        (Some(v), Source::File(file.clone()))
                    }
                    (Some(v), _) => (Some(v), Source::Default),
                    (None, _) => match derived.iter().find(|(k, _)| *k == key) {
                        Some((_, v)) => (Some(vec![v.clone()]), Source::Derived),
                        None => (None, Source::Default),
                    },
                };
                let value = value.map(|v| {
                    if t.arg.is_hide_env_values_set() {
                        toml::Value::String(REDACTED.into()).to_string()
                    } else {
                        render(Kind::of(t.arg), is_list(t.arg), &v)
                    }
                });
                Entry { key, value, source }
            })
            .collect();
        let command = std::iter::once(cmd.get_name().to_string())
            .chain(path.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        Effective {
            command,
            file: file.map(|(f, _)| f.clone()),
            entries,
        }
    }

    /// One line per option, in the config file's syntax, its source in a comment.
    /// The entries as `StatusInfo` lists them (an unset value as "").
    pub fn about_config(&self) -> Vec<proofmill_coordinator::ConfigValue> {
        self.entries
            .iter()
            .map(|e| proofmill_coordinator::ConfigValue {
                key: e.key.clone(),
                value: e.value.clone().unwrap_or_default(),
                source: e.source.to_string(),
            })
            .collect()
    }

    pub fn render(&self) -> String {
        let mut out = format!("# effective configuration of `{}`", self.command);
        match &self.file {
            Some(f) => write!(out, " (config file {})", f.display()),
            None => write!(out, " (no config file)"),
        }
        .expect("writing to a String");
        out.push('\n');
        for e in &self.entries {
            let line = match &e.value {
                Some(v) => format!("{} = {v}", e.key),
                None => format!("# {} (unset)", e.key),
            };
            let source = match &e.source {
                Source::Default if e.value.is_none() => String::new(),
                Source::Derived => "  # derived from data_dir".to_string(),
                other => format!("  # {other}"),
            };
            writeln!(out, "{line}{source}").expect("writing to a String");
        }
        out
    }
}

/// The TOML form of an option's raw values; a password in a URL is redacted.
fn render(kind: Kind, list: bool, values: &[String]) -> String {
    let one = |s: &String| -> toml::Value {
        let parsed = match kind {
            Kind::Bool => s.parse().ok().map(toml::Value::Boolean),
            Kind::Integer => s.parse().ok().map(toml::Value::Integer),
            Kind::String => None,
        };
        parsed.unwrap_or_else(|| toml::Value::String(redact_password(s)))
    };
    if list {
        toml::Value::Array(values.iter().map(one).collect()).to_string()
    } else {
        values
            .first()
            .map(one)
            .map(|v| v.to_string())
            .unwrap_or_default()
    }
}

/// `scheme://user:***@host/...` for a URL with a password; anything else as it is.
pub fn redact_password(s: &str) -> String {
    match url::Url::parse(s) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => s.to_string(),
    }
}
