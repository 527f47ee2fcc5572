//! The jobs the dispatch and fleet benches run: batches 1..=N whose inputs the exec
//! backend's intake check takes, proven by the simulated provers' zero-work proofs.

use futures::StreamExt as _;
use proofmill_coordinator::{Coordinator, NewBatch};
use proofmill_types::Digest;

/// A coordinator of the devnet's `exec` proof type, the one these jobs need.
pub fn exec_config() -> proofmill_coordinator::CoordinatorConfig {
    proofmill_coordinator::CoordinatorConfig::default().prove_with(
        proofmill_types::ProofType::new("exec").expect("a valid proof type"),
        std::sync::Arc::new(proofmill_devnet::ExecBackend),
    )
}

/// Batches submitted between two flushes: well inside the coordinator's intake window
/// (1,024 above the last stored batch), which a slow commit could otherwise overrun.
const FLUSH_EVERY: u64 = 512;

/// Submits batches `1..=jobs` (one job each), 16 at a time.
pub async fn submit(coord: &Coordinator, jobs: u64) -> anyhow::Result<()> {
    let mut first = 1;
    while first <= jobs {
        let last = (first + FLUSH_EVERY - 1).min(jobs);
        submit_range(coord, first, last).await?;
        coord.flush().await?;
        first = last + 1;
    }
    Ok(())
}

async fn submit_range(coord: &Coordinator, first: u64, last: u64) -> anyhow::Result<()> {
    futures::stream::iter(first..=last)
        .map(|n| {
            let coord = coord.clone();
            async move {
                // An input the exec backend's intake check takes (it decodes, names batch n,
                // starts from the old root); the simulated provers never execute it.
                let old_root = proofmill_devnet::fr_from_u64(n);
                let public = proofmill_devnet::StateTransition {
                    old_state_root: proofmill_devnet::fr_to_digest(old_root),
                    new_state_root: Digest::sha256(&(n + 1).to_be_bytes()),
                    batch_commitment: Digest::sha256(b"bench"),
                }
                .to_public_values();
                let input = proofmill_devnet::BatchInput {
                    number: n,
                    depth: 1,
                    old_root,
                    transfers: vec![],
                }
                .encode()
                .into();
                coord
                    .submit_batch(NewBatch {
                        chain: proofmill_types::DEFAULT_CHAIN,
                        number: n,
                        version: "bench".into(),
                        input,
                        public_values: public,
                        proof_types: vec![],
                    })
                    .await
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    Ok(())
}

/// Jobs the store shows proven. Counted by the store itself, not through the coordinator's
/// status, which lists every prover: polled often in a fleet of thousands, that list cost
/// the coordinator's core a fifth of its time (BENCHMARKS.md, Fleet, 2026-12-05).
pub async fn proven(coord: &Coordinator) -> anyhow::Result<u64> {
    let counts = coord.store().job_counts(None).await?;
    Ok(counts
        .values()
        .filter_map(|by_state| by_state.get(&proofmill_types::JobState::Proven))
        .sum())
}
