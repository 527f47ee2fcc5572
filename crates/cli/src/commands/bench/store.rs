//! The store a benchmark's coordinator writes to: a fresh SQLite file, a throwaway
//! PostgreSQL server started for the run, or a URL given.

use crate::args::BenchStore;
use anyhow::Context as _;
use proofmill_testkit::TestPostgres;

/// A store (and blob directory) for one run; what the bench started is removed on drop.
pub struct BenchDb {
    pub url: String,
    pub blobs: String,
    _dir: tempfile::TempDir,
    /// Stopped on drop (and by its watchdog if this process dies).
    _postgres: Option<TestPostgres>,
}

impl BenchDb {
    pub fn open(store: BenchStore, db: Option<String>) -> anyhow::Result<BenchDb> {
        let dir = tempfile::tempdir()?;
        let blobs = format!("file://{}/blobs", dir.path().display());
        let (url, postgres) = match (db, store) {
            (Some(url), _) => (url, None),
            (None, BenchStore::Sqlite) => (
                format!("sqlite://{}/bench.db?mode=rwc", dir.path().display()),
                None,
            ),
            (None, BenchStore::Postgres) => {
                // Synchronous commits (a commit is in the WAL before it returns), as a
                // production server has; fsync stays off (the test server's setting): the
                // coordinator is measured, not this machine's disk. Earlier Postgres figures
                // in BENCHMARKS.md came from a server run by hand with fsync on.
                let pg = TestPostgres::start_durable().context("starting PostgreSQL")?;
                (pg.url.clone(), Some(pg))
            }
        };
        Ok(BenchDb {
            url,
            blobs,
            _dir: dir,
            _postgres: postgres,
        })
    }
}
