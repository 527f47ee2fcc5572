//! What a running coordinator says about itself (`StatusInfo`): what the binary tells it
//! ([`About`], once at startup) and what it knows (version, start time, store, proof types).

use std::sync::{Arc, OnceLock};

/// What the binary knows and the coordinator does not: its build, where batches settle,
/// and the configuration it was started with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct About {
    /// The build it came from (e.g. a commit); empty when unknown.
    pub build: String,
    /// Where batches settle (e.g. `embedded`, `rpc http://…`); empty: `none`.
    pub l1: String,
    /// Every option, as its operator set it (secrets redacted by the caller).
    pub config: Vec<ConfigValue>,
}

/// One option of the running process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigValue {
    pub key: String,
    /// As TOML; a secret redacted; empty when unset.
    pub value: String,
    /// `default`, `derived`, `file PATH`, `env NAME` or `flag`.
    pub source: String,
}

/// Set once ([`crate::Coordinator::describe`]); read by `StatusInfo`.
#[derive(Clone, Default)]
pub(crate) struct AboutCell(Arc<OnceLock<About>>);

impl AboutCell {
    pub fn set(&self, about: About) {
        let _ = self.0.set(about);
    }

    pub fn get(&self) -> About {
        self.0.get().cloned().unwrap_or_default()
    }
}
