//! Layered configuration: flag > environment > TOML config file > built-in default.
//!
//! The schema is the clap command tree of [`Cli`] and nothing else: an option `--some-option`
//! reads the environment variable `PROOFMILL_SOME_OPTION` (clap `env`) and the config key
//! `some_option`. Config values are injected as the options' default values, so clap's own
//! precedence (command line, then environment, then default) gives the layering.
//!
//! Parsing runs in two passes: the first (without the config file, and with no option
//! required, since the file may hold one) finds the subcommand and
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
#[cfg_attr(not(test), allow(dead_code))]
pub fn parse<I, T>(argv: I) -> anyhow::Result<Cli>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    parse_effective(argv).map(|(cli, _)| cli)
}

/// [`parse`], also returning where each value of the invoked subcommand came from (for
/// `--print-config`).
pub fn parse_effective<I, T>(argv: I) -> anyhow::Result<(Cli, Effective)>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let argv: Vec<OsString> = argv.into_iter().map(Into::into).collect();
    // Only to find the config file and the subcommand: a required option may be in the file.
    let first = match lenient(Cli::command()).try_get_matches_from(&argv) {
        Ok(m) => m,
        // Usage errors and `--help` come from the real command, which marks required options.
        Err(lenient_error) => {
            return Err(match Cli::command().try_get_matches_from(&argv) {
                Err(e) => blame_source(e, &argv),
                Ok(_) => blame_source(lenient_error, &argv),
            });
        }
    };
    let path = subcommand_path(&first);
    let (cmd, file) = match config_path(&first) {
        None => (Cli::command(), None),
        Some(file) => {
            let table = load(&file)?;
            let cmd = apply(Cli::command(), &path, &table, &file)?;
            (cmd, Some((file, table)))
        }
    };
    let matches = cmd
        .clone()
        .try_get_matches_from(&argv)
        .map_err(|e| blame_source(e, &argv))?;
    let mut cli = Cli::from_arg_matches(&matches)?;
    cli.finish()?;
    let effective = Effective::new(&cmd, &path, &matches, file.as_ref(), &cli);
    Ok((cli, effective))
}

/// A clap error about a bad value, reworded to name where the value came from when that was
/// not the command line: clap blames the flag even for a value from the environment.
/// (Config-file values are checked before clap sees them; see [`validate`].)
fn blame_source(e: clap::Error, argv: &[OsString]) -> anyhow::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(
        e.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return e.into();
    }
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return e.into();
    };
    let Some(long) = arg
        .strip_prefix("--")
        .and_then(|a| a.split([' ', '=']).next())
    else {
        return e.into();
    };
    let flag = format!("--{long}");
    let on_command_line = argv.iter().any(|a| {
        a.to_str()
            .is_some_and(|a| a == flag || a.starts_with(&format!("{flag}=")))
    });
    let env = env_name(long);
    if on_command_line || std::env::var_os(&env).is_none() {
        return e.into();
    }
    let value = match e.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(v)) => format!(" '{v}'"),
        _ => String::new(),
    };
    anyhow!(
        "invalid value{value} in environment variable {env} (the variable of {flag}): {}",
        reason(&e)
    )
}

/// Why a value was refused, without the flag clap names: the parser's own error, or for a
/// value outside a fixed set, the valid values.
fn reason(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue};
    if let Some(source) = std::error::Error::source(e) {
        return source.to_string();
    }
    if let Some(ContextValue::Strings(valid)) = e.get(ContextKind::ValidValue) {
        return format!("valid values: {}", valid.join(", "));
    }
    clap_message(e)
}

/// `cmd` with no option required, at any depth.
fn lenient(mut cmd: Command) -> Command {
    let required: Vec<_> = cmd
        .get_arguments()
        .filter(|a| a.is_required_set())
        .map(|a| a.get_id().clone())
        .collect();
    for id in required {
        cmd = cmd.mut_arg(id, |a| a.required(false));
    }
    let subs: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for sub in subs {
        cmd = cmd.mut_subcommand(sub, lenient);
    }
    cmd
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
        // A value from the file satisfies a required option (clap does not count defaults).
        let set = move |c: Command| c.mut_arg(id, |a| a.default_value(value).required(false));
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
        .map_err(|e| reason(&e))
}

/// First line of a clap error without the `error: ` prefix.
fn clap_message(e: &clap::Error) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

mod effective;
pub use effective::{Effective, redact_password};

#[cfg(test)]
mod tests;
