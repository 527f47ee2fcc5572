//! What the proof market asks of the core: a batch's held jobs released to the own provers
//! (the market fell back), and a held job completed by a proving network's checked proof.

use super::Core;
use crate::persist::PersistJob;
use proofmill_store::Change;
use proofmill_types::{Batch, Job, JobState, ProofRecord};
use std::sync::Arc;

impl Core {
    /// See [`super::CoreMsg::ReleaseHeld`]; returns how many jobs were queued.
    pub(super) fn release_held(&mut self, batch: Arc<Batch>, held: Vec<Job>, now: u64) -> usize {
        let jobs: Vec<Job> = held
            .into_iter()
            .filter(|j| j.state == JobState::Held && self.scheduler.job(&j.key).is_none())
            .map(|mut j| {
                j.state = JobState::Queued;
                j.updated_at = now;
                j
            })
            .collect();
        if jobs.is_empty() {
            return 0;
        }
        tracing::info!(batch = %batch.id(), jobs = jobs.len(), "held jobs released to the own provers");
        let n = jobs.len();
        let changes = jobs.iter().cloned().map(Change::Job).collect();
        let effects = self.add(vec![batch], jobs);
        self.run_effects(effects, changes, Vec::new());
        n
    }

    /// See [`super::CoreMsg::MarketProof`]: `false` (nothing written) when the job is open
    /// here, that is released to the own provers: the network's proof is not used then.
    pub(super) fn market_proof(&mut self, job: Job, record: ProofRecord) -> bool {
        if self.scheduler.job(&job.key).is_some() {
            return false;
        }
        tracing::info!(job = %job.key, by = %record.prover_name, "proof from a proving network accepted");
        self.persist(PersistJob {
            changes: vec![Change::Job(job), Change::Proof(record)],
            ..Default::default()
        });
        true
    }
}
