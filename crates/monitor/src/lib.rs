//! `proofmill monitor`'s model and rendering. [`Model`] is pure: it takes status snapshots
//! ([`Snapshot`]) and watch events, keys ([`Key`]) and the results of the admin calls keys
//! ask for ([`Action`]); [`render`] draws it. The terminal and the coordinator connection
//! live in the CLI (`proofmill monitor`), so this crate's tests need neither.

mod model;
mod view;

pub use model::{
    Action, Focus, JobRow, Key, KeyOutcome, LogLine, MAX_ATTEMPTS, MAX_EVENTS, MAX_JOBS,
    MAX_VERIFY_TXS, Model, SENDER, Severity, Snapshot, StatusLine, THROUGHPUT_BUCKET_MS,
    THROUGHPUT_BUCKETS,
};
pub use view::{KEYS, age, render};
