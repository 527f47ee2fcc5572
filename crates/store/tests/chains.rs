//! Several chains in one store (migration 0012): batches, jobs, proofs and attempts are
//! named by (chain, batch number), so two chains' batch 1 are two batches; every per-batch
//! read, cursor and count is per chain. A store from before the migration keeps its rows
//! as the default chain's. On SQLite and PostgreSQL.

#[macro_use]
mod common;

use common::*;
use proofmill_store::{JobFilter, StoreError};
use proofmill_types::{Attempt, ChainId, DEFAULT_CHAIN};
use sqlx::AssertSqlSafe;

store_test!(chains_number_their_own_batches);

const OTHER: ChainId = 7;

fn of_chain(chain: ChainId, number: u64, required: &[&str]) -> Batch {
    Batch {
        chain,
        // Different content on each chain: no conflict, as the key differs.
        input_digest: digest(number * 1_000 + chain),
        ..batch(number, required)
    }
}

fn chain_key(chain: ChainId, batch: u64, t: &str) -> JobKey {
    JobKey::new(chain, batch, pt(t))
}

async fn chains_number_their_own_batches(store: Arc<dyn Store>, _: &str) {
    for n in 1..=3 {
        assert!(
            store
                .insert_batch(&of_chain(DEFAULT_CHAIN, n, &["exec"]), 1)
                .await
                .unwrap()
        );
    }
    for n in [1, 2, 5] {
        assert!(
            store
                .insert_batch(&of_chain(OTHER, n, &["exec", "stark"]), 1)
                .await
                .unwrap()
        );
    }
    // Idempotent per chain; a conflict is one within its chain.
    assert!(
        !store
            .insert_batch(&of_chain(OTHER, 1, &["exec", "stark"]), 1)
            .await
            .unwrap()
    );
    let conflict = store
        .insert_batch(&of_chain(OTHER, 1, &["exec"]).with_digest(9), 1)
        .await;
    assert!(
        matches!(conflict, Err(StoreError::BatchConflict(1))),
        "{conflict:?}"
    );

    assert_eq!(
        store.batch(OTHER, 1).await.unwrap(),
        Some(of_chain(OTHER, 1, &["exec", "stark"]))
    );
    assert_eq!(
        store.batch(DEFAULT_CHAIN, 1).await.unwrap(),
        Some(of_chain(DEFAULT_CHAIN, 1, &["exec"]))
    );
    assert_eq!(store.batch(9, 1).await.unwrap(), None);
    assert_eq!(
        store.last_sealed_batch(DEFAULT_CHAIN).await.unwrap(),
        Some(3)
    );
    assert_eq!(store.last_sealed_batch(OTHER).await.unwrap(), Some(5));
    assert_eq!(store.last_sealed_batch(9).await.unwrap(), None);
    assert_eq!(store.batch_gaps(OTHER, 0, 10).await.unwrap(), vec![(3, 4)]);
    assert_eq!(
        store.batch_gaps(DEFAULT_CHAIN, 0, 10).await.unwrap(),
        vec![]
    );

    // Proving the other chain's batch 1 proves nothing of the default chain's.
    let mut changes = Vec::new();
    for t in ["exec", "stark"] {
        let k = chain_key(OTHER, 1, t);
        changes.push(Change::Job(with_state(k.clone(), JobState::Proven, 9)));
        changes.push(Change::Proof(proof(k, 5)));
    }
    changes.push(Change::AttemptStarted(Attempt {
        key: chain_key(OTHER, 1, "exec"),
        token: FencingToken(5),
        prover: ProverId("p".into()),
        prover_name: "p".into(),
        backup: false,
        started_at: 3,
        ended_at: None,
        outcome: None,
        detail: String::new(),
        prove_ms: None,
    }));
    store.apply(&changes).await.unwrap();
    assert_eq!(store.last_proven_batch(OTHER).await.unwrap(), Some(1));
    assert_eq!(store.last_proven_batch(DEFAULT_CHAIN).await.unwrap(), None);
    assert!(
        store
            .proof(&chain_key(OTHER, 1, "exec"))
            .await
            .unwrap()
            .is_some()
    );
    assert!(store.proof(&key(1, "exec")).await.unwrap().is_none());
    assert_eq!(
        store.job(&key(1, "exec")).await.unwrap().unwrap().state,
        JobState::Queued
    );
    assert_eq!(store.attempts(OTHER, 1, None, 10).await.unwrap().len(), 1);
    assert!(
        store
            .attempts(DEFAULT_CHAIN, 1, None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Counts and lists per chain, or of all.
    let other = store.job_counts(Some(OTHER)).await.unwrap();
    assert_eq!(other[&pt("exec")][&JobState::Proven], 1);
    assert_eq!(other[&pt("stark")][&JobState::Queued], 2);
    let all = store.job_counts(None).await.unwrap();
    assert_eq!(all[&pt("exec")][&JobState::Queued], 5);
    let listed: Vec<String> = store
        .jobs(&JobFilter {
            chain: Some(OTHER),
            proof_type: Some(pt("exec")),
            ..JobFilter::default()
        })
        .await
        .unwrap()
        .iter()
        .map(|j| j.key.to_string())
        .collect();
    assert_eq!(listed, ["7:1/exec", "7:2/exec", "7:5/exec"]);
    let open: Vec<String> = store
        .open_jobs()
        .await
        .unwrap()
        .iter()
        .map(|j| j.key.to_string())
        .collect();
    assert_eq!(open.len(), 3 + 4);
    assert_eq!(open[..3], ["1/exec", "2/exec", "3/exec"]);

    // A job of a chain that has no such batch does not exist.
    let missing = store
        .apply(&[Change::Job(with_state(
            chain_key(OTHER, 3, "exec"),
            JobState::Leased,
            9,
        ))])
        .await;
    assert!(
        matches!(&missing, Err(StoreError::Database(m)) if m.contains("7:3/exec")),
        "{missing:?}"
    );

    // Replacing the other chain's batch 2 leaves the default chain's batch 2 as it was.
    store
        .apply(&[
            Change::Job(with_state(
                chain_key(OTHER, 2, "exec"),
                JobState::Cancelled,
                9,
            )),
            Change::Job(with_state(
                chain_key(OTHER, 2, "stark"),
                JobState::Cancelled,
                9,
            )),
        ])
        .await
        .unwrap();
    let new = Batch {
        input_key: "inputs/new".into(),
        ..of_chain(OTHER, 2, &["exec"])
    };
    store.replace_batch(&new, 11).await.unwrap();
    assert_eq!(store.batch(OTHER, 2).await.unwrap(), Some(new));
    assert_eq!(
        store.batch(DEFAULT_CHAIN, 2).await.unwrap(),
        Some(of_chain(DEFAULT_CHAIN, 2, &["exec"]))
    );
    assert_eq!(
        store.job(&key(2, "exec")).await.unwrap().unwrap().state,
        JobState::Queued
    );
}

trait WithDigest {
    fn with_digest(self, seed: u64) -> Self;
}

impl WithDigest for Batch {
    fn with_digest(mut self, seed: u64) -> Self {
        self.input_digest = digest(seed);
        self
    }
}

/// The migrations before 0012, as a proofmill before chains ran them: read from the
/// migration files themselves, so the list is the store's own.
fn before_chains(dialect: &str) -> sqlx::migrate::Migrator {
    use sqlx::SqlSafeStr as _;
    use sqlx::migrate::{Migration, MigrationType, Migrator};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(dialect);
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let migrations = files
        .iter()
        .filter_map(|path| {
            let stem = path.file_stem()?.to_str()?;
            let (version, name) = stem.split_once('_')?;
            let version: i64 = version.parse().ok()?;
            (version < 12).then(|| {
                let sql = std::fs::read_to_string(path).unwrap();
                Migration::new(
                    version,
                    name.to_string().into(),
                    MigrationType::Simple,
                    AssertSqlSafe(sql).into_sql_str(),
                    false,
                )
            })
        })
        .collect::<Vec<_>>();
    assert_eq!(migrations.len(), 10, "{files:?}");
    Migrator::with_migrations(migrations)
}

/// Rows as a store before chains held them: a batch proven with its attempt, one queued.
const OLD_ROWS: [&str; 6] = [
    "INSERT INTO batches (number, version, input_key, input_digest, input_size, required, \
     created_at, public_values) VALUES (1, 'v1', 'inputs/1', X'0101010101010101010101010101010101010101010101010101010101010101', 10, 'exec', 5, X'AA')",
    "INSERT INTO batches (number, version, input_key, input_digest, input_size, required, \
     created_at, public_values) VALUES (2, 'v1', 'inputs/2', X'0202020202020202020202020202020202020202020202020202020202020202', 10, 'exec', 5, X'BB')",
    "INSERT INTO jobs (batch, proof_type, state, version, failed_attempts, lost_attempts, \
     not_before, updated_at) VALUES (1, 'exec', 'proven', 'v1', 0, 0, 0, 5), \
     (2, 'exec', 'queued', 'v1', 0, 0, 0, 5)",
    "INSERT INTO proofs (batch, proof_type, blob_key, size, digest, prover, prover_name, token, \
     leased_at, received_at, prove_ms) VALUES (1, 'exec', 'proofs/1', 96, X'0303030303030303030303030303030303030303030303030303030303030303', 'p', 'p', 4, 1, 2, 1)",
    "INSERT INTO attempts (token, batch, proof_type, prover, prover_name, backup, started_at, \
     ended_at, outcome, detail, prove_ms) VALUES (4, 1, 'exec', 'p', 'p', 0, 1, 2, 'proven', '', 1)",
    "UPDATE token_high SET value = 4",
];

async fn a_store_from_before_chains_keeps_its_rows_on_the_default_chain(url: &str) {
    let dialect = if url.starts_with("sqlite") {
        "sqlite"
    } else {
        "postgres"
    };
    if dialect == "sqlite" {
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(url)
            .await
            .unwrap();
        before_chains(dialect).run(&mut conn).await.unwrap();
        for sql in OLD_ROWS {
            sqlx::raw_sql(AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .unwrap();
        }
    } else {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url)
            .await
            .unwrap();
        before_chains(dialect).run(&mut conn).await.unwrap();
        for sql in OLD_ROWS {
            let sql = sql.replace("X'", "'\\x");
            sqlx::raw_sql(AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .unwrap();
        }
    }
    let store = open_store(url).await.unwrap();
    let one = store
        .batch(DEFAULT_CHAIN, 1)
        .await
        .unwrap()
        .expect("batch 1 kept");
    assert_eq!(
        (one.chain, one.public_values.as_bytes()),
        (DEFAULT_CHAIN, &[0xAA][..])
    );
    assert_eq!(
        store.last_sealed_batch(DEFAULT_CHAIN).await.unwrap(),
        Some(2)
    );
    assert_eq!(
        store.last_proven_batch(DEFAULT_CHAIN).await.unwrap(),
        Some(1)
    );
    assert!(store.proof(&key(1, "exec")).await.unwrap().is_some());
    assert_eq!(
        store
            .attempts(DEFAULT_CHAIN, 1, None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    let open: Vec<String> = store
        .open_jobs()
        .await
        .unwrap()
        .iter()
        .map(|j| j.key.to_string())
        .collect();
    assert_eq!(open, ["2/exec"]);
    assert_eq!(store.max_fencing_token().await.unwrap(), 4);
    // Foreign keys hold on the rebuilt tables: a proof of no job is refused.
    let orphan = store
        .apply(&[Change::Proof(proof(JobKey::new(OTHER, 1, pt("exec")), 9))])
        .await;
    assert!(orphan.is_err(), "a proof without its job was stored");
    // And a new chain's batch 1 goes in beside the old one.
    assert!(
        store
            .insert_batch(&of_chain(OTHER, 1, &["exec"]), 1)
            .await
            .unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_a_store_from_before_chains_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display());
    a_store_from_before_chains_keeps_its_rows_on_the_default_chain(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_store_from_before_chains_keeps_its_rows() {
    let url = proofmill_testkit::shared_database("before_chains").expect("test postgres");
    a_store_from_before_chains_keeps_its_rows_on_the_default_chain(&url).await;
}
