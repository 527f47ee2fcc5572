//! Tasks go out before their leases are committed. A coordinator that stops in between (its
//! store stalled here, so the window stays open) leaves provers holding tasks the database
//! never saw; the next run gives those tasks back to the provers that report them. How far
//! dispatch may run ahead of the store is capped.
mod support;
use async_trait::async_trait;
use proofmill_coordinator::Coordinator;
use proofmill_proto::v1::RunningTask;
use proofmill_store::{
    Blobs, Change, CommitRecord, JobCounts, JobFilter, LeaseClaim, LeaseHolder, Result, Store,
    StoreError, VerifyRecord, open_store,
};
use proofmill_types::{
    Batch, BatchNumber, Job, JobKey, JobState, Millis, ProofRecord, ProofType, ProverId,
};
use std::sync::Arc;
use std::time::Duration;
use support::*;

fn key(batch: u64, proof_type: &str) -> JobKey {
    JobKey::new(
        proofmill_types::DEFAULT_CHAIN,
        batch,
        proofmill_types::ProofType::new(proof_type).unwrap(),
    )
}

/// A store whose writes wait while `stalled` is set (a disk that stopped answering).
struct StallingStore {
    inner: Arc<dyn Store>,
    stalled: tokio::sync::watch::Sender<bool>,
}

impl StallingStore {
    async fn open(env: &Env) -> Arc<Self> {
        Arc::new(StallingStore {
            inner: open_store(&env.db_url).await.unwrap(),
            stalled: tokio::sync::watch::channel(false).0,
        })
    }

    fn stall(&self, on: bool) {
        self.stalled.send_replace(on);
    }
}

use proofmill_types::ChainId;

#[async_trait]
impl Store for StallingStore {
    async fn insert_batch_holding(
        &self,
        batch: &Batch,
        held: &[proofmill_types::ProofType],
        now: Millis,
    ) -> Result<bool> {
        self.inner.insert_batch_holding(batch, held, now).await
    }
    async fn batch(&self, chain: ChainId, number: BatchNumber) -> Result<Option<Batch>> {
        self.inner.batch(chain, number).await
    }
    async fn last_sealed_batch(&self, chain: ChainId) -> Result<Option<BatchNumber>> {
        self.inner.last_sealed_batch(chain).await
    }
    async fn last_proven_batch(&self, chain: ChainId) -> Result<Option<BatchNumber>> {
        self.inner.last_proven_batch(chain).await
    }
    async fn open_jobs(&self) -> Result<Vec<Job>> {
        self.inner.open_jobs().await
    }
    async fn job(&self, key: &JobKey) -> Result<Option<Job>> {
        self.inner.job(key).await
    }
    async fn jobs(&self, filter: &JobFilter) -> Result<Vec<Job>> {
        self.inner.jobs(filter).await
    }
    async fn job_counts(&self, chain: Option<ChainId>) -> Result<JobCounts> {
        self.inner.job_counts(chain).await
    }
    async fn apply(&self, changes: &[Change]) -> Result<()> {
        let mut stalled = self.stalled.subscribe();
        stalled
            .wait_for(|on| !on)
            .await
            .map_err(|_| StoreError::Database("stall switch gone".into()))?;
        self.inner.apply(changes).await
    }
    async fn proof(&self, key: &JobKey) -> Result<Option<ProofRecord>> {
        self.inner.proof(key).await
    }
    async fn max_fencing_token(&self) -> Result<u64> {
        self.inner.max_fencing_token().await
    }
    async fn cordoned_provers(&self) -> Result<Vec<(ProverId, String)>> {
        self.inner.cordoned_provers().await
    }
    async fn paused_components(&self) -> Result<Vec<proofmill_store::PausedComponent>> {
        self.inner.paused_components().await
    }
    async fn attempts(
        &self,
        chain: ChainId,
        batch: BatchNumber,
        proof_type: Option<&ProofType>,
        limit: u32,
    ) -> Result<Vec<proofmill_types::Attempt>> {
        self.inner.attempts(chain, batch, proof_type, limit).await
    }
    async fn prune_attempts(&self, before: u64, limit: u32) -> Result<u64> {
        self.inner.prune_attempts(before, limit).await
    }
    async fn verify_record(&self, batch: BatchNumber) -> Result<Option<VerifyRecord>> {
        self.inner.verify_record(batch).await
    }
    async fn last_verify_record(&self) -> Result<Option<VerifyRecord>> {
        self.inner.last_verify_record().await
    }
    async fn pending_verify(&self) -> Result<Option<(BatchNumber, BatchNumber)>> {
        self.inner.pending_verify().await
    }
    async fn record_commit(&self, record: &CommitRecord) -> Result<()> {
        self.inner.record_commit(record).await
    }
    async fn commit_record(&self, batch: BatchNumber) -> Result<Option<CommitRecord>> {
        self.inner.commit_record(batch).await
    }
    async fn commit_records(
        &self,
        first: BatchNumber,
        last: BatchNumber,
        limit: u32,
    ) -> Result<Vec<CommitRecord>> {
        self.inner.commit_records(first, last, limit).await
    }
    async fn last_commit_record(&self) -> Result<Option<CommitRecord>> {
        self.inner.last_commit_record().await
    }
    async fn get_meta(&self, key: &str) -> Result<Option<String>> {
        self.inner.get_meta(key).await
    }
    async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.inner.set_meta(key, value).await
    }
    async fn init_meta(&self, key: &str, value: &str) -> Result<String> {
        self.inner.init_meta(key, value).await
    }
    async fn acquire_lease(&self, claim: &LeaseClaim) -> Result<Result<u64, LeaseHolder>> {
        self.inner.acquire_lease(claim).await
    }
    async fn renew_lease(&self, epoch: u64, ttl_ms: u64) -> Result<bool> {
        self.inner.renew_lease(epoch, ttl_ms).await
    }
    async fn release_lease(&self, epoch: u64) -> Result<()> {
        self.inner.release_lease(epoch).await
    }
    async fn lease_holder(&self) -> Result<Option<LeaseHolder>> {
        self.inner.lease_holder().await
    }
    fn fence_writes(&self, epoch: u64) {
        self.inner.fence_writes(epoch)
    }
    async fn replace_batch(&self, batch: &Batch, now: Millis) -> Result<()> {
        self.inner.replace_batch(batch, now).await
    }
    async fn batch_gaps(
        &self,
        chain: ChainId,
        from: BatchNumber,
        limit: u32,
    ) -> Result<Vec<(BatchNumber, BatchNumber)>> {
        self.inner.batch_gaps(chain, from, limit).await
    }
}

/// A coordinator over a [`StallingStore`], serving on a loopback port: (store, coordinator,
/// URL, server).
async fn start_stalling(
    env: &Env,
    config: proofmill_coordinator::CoordinatorConfig,
) -> (
    Arc<StallingStore>,
    Coordinator,
    String,
    proofmill_coordinator::Serving,
) {
    let store = StallingStore::open(env).await;
    let blobs = Blobs::from_url(&env.blobs_url).unwrap();
    let coord = Coordinator::start(config, store.clone(), blobs)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = coord.spawn_serve(listener);
    (store, coord, url, server)
}

async fn tasks_sent_before_their_lease_was_durable_survive_a_restart(db: Db) {
    let env = Env::new(db, "orphans");
    let (store, coord, url, server) = start_stalling(&env, fast_config()).await;
    submit(&coord, 1, &[]).await;
    submit(&coord, 2, &[]).await;
    coord.flush().await.unwrap();

    store.stall(true);
    let mut a = RawProver::register(&url, register("a", &["exec"], 2)).await;
    let t1 = a.task().await;
    let t2 = a.task().await;
    // The prover proved t1; its result is never acknowledged (the commit never happens).
    a.send(proofmill_proto::v1::prover_message::Kind::TaskResult(
        proofmill_proto::v1::TaskResult {
            task_id: t1.task_id.clone(),
            fencing_token: t1.fencing_token,
            outcome: Some(proofmill_proto::v1::task_result::Outcome::Proof(
                RawProver::proof_for(&t1),
            )),
            prove_ms: 1,
        },
    ))
    .await;
    let id = a.who();
    drop(a);
    drop(server);
    drop(coord);

    // The database never saw the leases.
    let c2 = start(&env, fast_config()).await;
    for t in [&t1, &t2] {
        let job = c2.coord.store().job(&key(t.batch, "exec")).await.unwrap();
        assert_eq!(job.unwrap().state, JobState::Queued, "{}", t.task_id);
    }
    let running = [&t1, &t2]
        .iter()
        .map(|t| RunningTask {
            task_id: t.task_id.clone(),
            fencing_token: t.fencing_token,
        })
        .collect();
    let mut a = RawProver::reconnect(&c2.url(), &id, register("a", &["exec"], 2), running).await;
    for t in [&t1, &t2] {
        let ack = a
            .submit(&t.task_id, t.fencing_token, RawProver::proof_for(t))
            .await;
        assert!(ack.accepted, "{}: {ack:?}", t.task_id);
        let proof = c2.coord.store().proof(&key(t.batch, "exec")).await;
        let proof = proof.unwrap().expect("proof stored");
        assert_eq!(proof.token.0, t.fencing_token, "kept under its first token");
    }
    assert!(
        a.pending.is_empty(),
        "nothing was sent twice: {:?}",
        a.pending
    );
    // New tokens stay above every token of the stopped run.
    submit(&c2.coord, 3, &[]).await;
    let t3 = a.task().await;
    assert!(t3.fencing_token > t1.fencing_token.max(t2.fencing_token));
    c2.stop().await;
}

async fn a_stalled_store_stops_dispatch_at_the_cap(db: Db) {
    let env = Env::new(db, "dispatch-cap");
    let mut config = fast_config();
    config.max_uncommitted_dispatches = 2;
    let (store, coord, url, server) = start_stalling(&env, config).await;
    for n in 1..=5 {
        submit(&coord, n, &[]).await;
    }
    coord.flush().await.unwrap();

    store.stall(true);
    let mut a = RawProver::register(&url, register("a", &["exec"], 5)).await;
    let mut batches = vec![a.task().await.batch, a.task().await.batch];
    let third = a.next(Duration::from_millis(500)).await;
    assert!(
        third.is_none(),
        "a third task went out uncommitted: {third:?}"
    );

    // Once the store answers again, the held tasks follow their commit.
    store.stall(false);
    for _ in 0..3 {
        batches.push(a.task().await.batch);
    }
    batches.sort();
    assert_eq!(batches, [1, 2, 3, 4, 5]);
    coord.flush().await.unwrap();
    for n in 1..=5 {
        let job = store.inner.job(&key(n, "exec")).await.unwrap().unwrap();
        assert_eq!(job.state, JobState::Leased, "batch {n}");
    }
    drop(a);
    server.stop().await.unwrap();
}

/// A prover may resend a result (after a reconnect) before the original's commit. The store
/// does not know the proof yet; the answer waits for the commit and is then "accepted", not
/// "stale": a prover drops a proof on any final answer, so "stale" here would lose it if the
/// coordinator then crashed.
async fn a_duplicate_sent_before_the_commit_is_answered_after_it(db: Db) {
    let env = Env::new(db, "early-duplicate");
    let (store, coord, url, server) = start_stalling(&env, fast_config()).await;
    submit(&coord, 1, &[]).await;
    coord.flush().await.unwrap();
    let mut a = RawProver::register(&url, register("a", &["exec"], 1)).await;
    let t = a.task().await;
    coord.flush().await.unwrap();

    store.stall(true);
    a.running.clear();
    let result = proofmill_proto::v1::TaskResult {
        task_id: t.task_id.clone(),
        fencing_token: t.fencing_token,
        outcome: Some(proofmill_proto::v1::task_result::Outcome::Proof(
            RawProver::proof_for(&t),
        )),
        prove_ms: 1,
    };
    for _ in 0..2 {
        a.send(proofmill_proto::v1::prover_message::Kind::TaskResult(
            result.clone(),
        ))
        .await;
    }
    let early = a.next(Duration::from_millis(500)).await;
    assert!(early.is_none(), "answered before the commit: {early:?}");
    store.stall(false);
    for n in 0..2 {
        let ack = a.ack_for(&t.task_id, t.fencing_token).await;
        assert!(ack.accepted, "answer {n}: {ack:?}");
    }
    let proof = store.inner.proof(&key(1, "exec")).await.unwrap();
    assert_eq!(proof.unwrap().token.0, t.fencing_token);
    drop(a);
    server.stop().await.unwrap();
}

/// A token whose lease ended (here by an error result) stays fenced after a restart, even as
/// the highest token issued: it is not taken for one sent but never committed. The prover that
/// still reports it is told to cancel it, and a resent result counts nothing.
async fn a_revoked_token_stays_fenced_after_a_restart(db: Db) {
    use proofmill_proto::v1::{
        TaskResult, coordinator_message::Kind as Out, prover_message::Kind as In,
        task_result::Outcome,
    };
    let env = Env::new(db, "revoked-restart");
    // A long backoff keeps the failed job queued and its token the highest issued.
    let mut config = fast_config();
    config.scheduler.retry_backoff_base_ms = 60_000;
    config.scheduler.retry_backoff_max_ms = 60_000;
    let c = start(&env, config.clone()).await;
    submit(&c.coord, 1, &[]).await;
    let mut a = RawProver::register(&c.url(), register("a", &["exec"], 1)).await;
    let t = a.task().await;
    a.running.clear();
    let failed = TaskResult {
        task_id: t.task_id.clone(),
        fencing_token: t.fencing_token,
        outcome: Some(Outcome::Error("out of memory".into())),
        prove_ms: 1,
    };
    a.send(In::TaskResult(failed.clone())).await;
    assert!(a.ack_for(&t.task_id, t.fencing_token).await.accepted);
    let id = a.who();
    drop(a);
    c.stop().await;

    let c2 = start(&env, config).await;
    let running = vec![RunningTask {
        task_id: t.task_id.clone(),
        fencing_token: t.fencing_token,
    }];
    let mut a = RawProver::reconnect(&c2.url(), &id, register("a", &["exec"], 1), running).await;
    match a.next(Duration::from_secs(10)).await {
        Some(Out::TaskCancelled(x)) => {
            assert_eq!(
                (x.task_id, x.fencing_token),
                (t.task_id.clone(), t.fencing_token)
            )
        }
        other => panic!("expected TaskCancelled, got {other:?}"),
    }
    a.running.clear();
    a.send(In::TaskResult(failed)).await;
    let ack = a.ack_for(&t.task_id, t.fencing_token).await;
    assert!(!ack.accepted, "{ack:?}");
    let job = c2
        .coord
        .store()
        .job(&key(1, "exec"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((job.state, job.failed_attempts), (JobState::Queued, 1));
    c2.stop().await;
}

on_both_stores!(
    a_revoked_token_stays_fenced_after_a_restart,
    tasks_sent_before_their_lease_was_durable_survive_a_restart,
    a_stalled_store_stops_dispatch_at_the_cap,
    a_duplicate_sent_before_the_commit_is_answered_after_it,
);
