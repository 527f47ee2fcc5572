#![allow(dead_code)]
use proofmill_scheduler::{Effect, ProverInfo};
use proofmill_types::{Job, JobKey, ProofType, ProverId};
use std::collections::BTreeSet;

pub fn pt(s: &str) -> ProofType {
    ProofType::new(s).unwrap()
}

pub fn pid(s: &str) -> ProverId {
    ProverId(s.to_string())
}

pub fn info(types: &[&str], capacity: u32, version: &str) -> ProverInfo {
    ProverInfo {
        name: "p".into(),
        proof_types: types.iter().map(|t| pt(t)).collect::<BTreeSet<_>>(),
        capacity,
        version: version.into(),
    }
}

pub fn job(batch: u64, t: &str, version: &str) -> Job {
    Job::new_queued(
        JobKey::new(proofmill_types::DEFAULT_CHAIN, batch, pt(t)),
        version.into(),
        0,
    )
}

pub fn dispatches(effects: &[Effect]) -> Vec<(ProverId, Job)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Dispatch { prover, job } => Some((prover.clone(), job.clone())),
            _ => None,
        })
        .collect()
}
