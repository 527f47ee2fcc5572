//! Fixtures shared by the store's test files.
#![allow(dead_code)]

pub use proofmill_store::{Change, Store, open_store};
use proofmill_types::DEFAULT_CHAIN;
pub use proofmill_types::{
    Batch, Digest, FencingToken, Job, JobKey, JobState, Lease, ProofRecord, ProofType, ProverId,
    PublicValues,
};
pub use std::sync::Arc;

pub fn pt(name: &str) -> ProofType {
    ProofType::new(name).unwrap()
}

pub fn key(batch: u64, t: &str) -> JobKey {
    JobKey::new(DEFAULT_CHAIN, batch, pt(t))
}

pub fn digest(seed: u64) -> Digest {
    Digest::sha256(&seed.to_le_bytes())
}

pub fn batch(number: u64, required: &[&str]) -> Batch {
    Batch {
        chain: DEFAULT_CHAIN,
        number,
        version: "v1".into(),
        input_key: format!("inputs/{number:012}.bin"),
        input_digest: digest(number),
        input_size: number.wrapping_add(1000),
        // Opaque to the store: of any length, a NUL and high bytes among them.
        public_values: PublicValues::new(
            (0..(number % 200) + 1)
                .map(|i| (number.wrapping_mul(31) ^ i) as u8)
                .collect::<Vec<u8>>(),
        ),
        required: required.iter().map(|t| pt(t)).collect(),
        created_at: number.wrapping_add(1_700_000_000_000),
    }
}

pub fn leased(k: JobKey, token: u64, now: u64) -> Job {
    Job {
        key: k,
        state: JobState::Leased,
        version: "v1".into(),
        failed_attempts: 0,
        lost_attempts: 0,
        lease: Some(Lease {
            prover: ProverId("prover-1".into()),
            token: FencingToken(token),
            leased_at: now,
            deadline: now + 60_000,
        }),
        not_before: 0,
        last_error: None,
        updated_at: now,
    }
}

pub fn with_state(k: JobKey, state: JobState, now: u64) -> Job {
    let mut job = Job::new_queued(k, "v1".into(), now);
    job.state = state;
    job
}

pub fn proof(k: JobKey, token: u64) -> ProofRecord {
    ProofRecord {
        blob_key: format!("proofs/{}-{}.bin", k.batch, k.proof_type),
        size: 4096 + k.batch,
        digest: digest(k.batch + 77),
        prover: ProverId("prover-1".into()),
        prover_name: "gpu-box-1".into(),
        token: FencingToken(token),
        leased_at: 10,
        received_at: 20,
        prove_ms: 3,
        // Every other proof inline, so both forms round-trip through the same tests.
        inline: k.batch.is_multiple_of(2).then(|| vec![k.batch as u8; 96]),
        key: k,
    }
}

pub async fn insert_all(
    store: &dyn Store,
    numbers: impl IntoIterator<Item = u64>,
    required: &[&str],
) {
    for n in numbers {
        assert!(store.insert_batch(&batch(n, required), 5).await.unwrap());
    }
}

pub async fn set_states(store: &dyn Store, jobs: &[(u64, &str, JobState)]) {
    let changes: Vec<Change> = jobs
        .iter()
        .map(|(b, t, s)| Change::Job(with_state(key(*b, t), *s, 9)))
        .collect();
    store.apply(&changes).await.unwrap();
}

// Harness: every `store_test!` function runs once per backend.

pub struct Backend {
    pub store: Arc<dyn Store>,
    pub name: &'static str,
    /// To open more handles on the same data.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

pub async fn sqlite_backend() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("store.db").display()
    );
    Backend {
        store: open_store(&url).await.unwrap(),
        name: "sqlite",
        url,
        _dir: Some(dir),
    }
}

pub async fn postgres_backend(test: &str) -> Backend {
    let url = proofmill_testkit::shared_database(test).expect("test postgres");
    Backend {
        store: open_store(&url).await.unwrap(),
        name: "postgres",
        url,
        _dir: None,
    }
}

#[allow(unused_macros)] // not every test file uses it
macro_rules! store_test {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let b = crate::common::sqlite_backend().await;
                    super::$name(b.store.clone(), b.name).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let b = crate::common::postgres_backend(stringify!($name)).await;
                    super::$name(b.store.clone(), b.name).await;
                }
            )*
        }
    };
}
