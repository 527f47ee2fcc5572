//! Commits sealed batches to L1 in order, starting after the contract's last committed batch,
//! so a restart neither double-commits nor skips. Each commit's transaction (hash, gas, block)
//! is recorded in the store ([`proofmill_store::Store::record_commit`]) once its receipt is
//! seen; a commit whose receipt was not seen (the process stopped between send and receipt,
//! or the write failed) is recorded from the chain's `BatchCommitted` event before anything
//! else is committed.

use proofmill_coordinator::{Committed, Component, CoordinatorError, SettlementPort};
use proofmill_l1::{L1, L1Error, TxOutcome, TxStatus};
use proofmill_store::CommitRecord;
use proofmill_telemetry::names;
use std::sync::Arc;
use std::time::Duration;

const INTERVAL: Duration = Duration::from_millis(250);

/// Refuses a rollup contract that holds another chain than the store's.
pub(super) async fn check_chain(
    port: &SettlementPort,
    l1: &dyn L1,
) -> Result<(), CoordinatorError> {
    let l1_err = |e: L1Error| CoordinatorError::Config(format!("L1: {e}"));
    let last = l1.last_committed_batch().await.map_err(l1_err)?;
    let (n, expected) = if last == 0 {
        match port.store().batch(port.chain_id(), 1).await? {
            Some(b) => (0, transition(&b)?.old_state_root),
            None => return Ok(()),
        }
    } else {
        match port.store().batch(port.chain_id(), last).await? {
            Some(b) => (last, transition(&b)?.new_state_root),
            None => {
                return Err(CoordinatorError::Config(format!(
                    "L1 rollup has {last} batches committed but the store does not have batch {last}: \
                     wrong rollup address or L1 state for this data"
                )));
            }
        }
    };
    let on_chain = l1.state_root(n).await.map_err(l1_err)?;
    if on_chain != expected {
        return Err(CoordinatorError::Config(format!(
            "L1 rollup state root after batch {n} is {on_chain}, the store's is {expected}: \
             the rollup holds another chain (wrong address, genesis or L1 state file)"
        )));
    }
    Ok(())
}

/// The devnet's reading of a batch's public values (what its rollup contract commits).
fn transition(
    batch: &proofmill_types::Batch,
) -> Result<proofmill_devnet::StateTransition, CoordinatorError> {
    proofmill_devnet::StateTransition::from_public_values(&batch.public_values)
        .map_err(|e| CoordinatorError::Config(format!("batch {}: {e}", batch.number)))
}

pub(super) async fn run(port: SettlementPort, l1: Arc<dyn L1>) {
    let shutdown = port.shutdown();
    let mut asks = port.commit_requests();
    let mut pauses = port.pause_watch();
    // Whether commits L1 made may lack their record: at start (this process may have stopped
    // between a send and its record) and after a failed round.
    let mut unrecorded = true;
    loop {
        // Another coordinator may be active: two committers must not both commit.
        if port.holds_lease() && unrecorded {
            match recover_records(&port, &*l1).await {
                Ok(()) => unrecorded = false,
                Err(e) => {
                    tracing::warn!(error = %e, "recording commits found on L1 failed; retrying")
                }
            }
        }
        if port.holds_lease() && !unrecorded {
            if port.paused(Component::Committer).is_some() {
                // Paused: L1 is still watched, so status stays true; nothing is sent.
                match l1.last_committed_batch().await {
                    Ok(last) => port.report(|s| s.last_committed_batch = Some(last)),
                    Err(e) => {
                        tracing::debug!(error = %e, "reading L1 while the committer is paused")
                    }
                }
            } else if let Err(e) = commit_sealed(&port, &*l1).await {
                unrecorded = true;
                if matches!(e, CommitError::L1(_)) {
                    metrics::counter!(names::L1_ERRORS_TOTAL, names::KIND => "commit").increment(1);
                }
                tracing::warn!(error = %e, "committing batches to L1 failed; retrying");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(INTERVAL) => {}
            Some(ask) = asks.recv() => {
                let done = commit_now(&port, &*l1, ask.batch).await;
                // It may have stopped between a commit and its record.
                unrecorded |= done.is_err();
                let _ = ask.reply.send(done);
            }
            // A resume commits at once.
            _ = pauses.changed() => {}
            _ = shutdown.begun() => return,
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum CommitError {
    #[error(transparent)]
    L1(#[from] L1Error),
    #[error(transparent)]
    Store(#[from] proofmill_store::StoreError),
}

/// Commits every sealed batch L1 does not have.
async fn commit_sealed(port: &SettlementPort, l1: &dyn L1) -> Result<u64, CommitError> {
    let sealed = port
        .store()
        .last_sealed_batch(port.chain_id())
        .await?
        .unwrap_or(0);
    commit_through(port, l1, sealed, false).await
}

/// An operator's `commit now` of `batch`: it and the uncommitted batches before it (L1 takes
/// them in order), also while the committer is paused.
async fn commit_now(
    port: &SettlementPort,
    l1: &dyn L1,
    batch: u64,
) -> Result<Committed, CoordinatorError> {
    if !port.holds_lease() {
        return Err(CoordinatorError::FailedPrecondition(
            "this coordinator's lease on the store is not surely held: it sends no L1 \
             transaction"
                .into(),
        ));
    }
    let failed = |e: CommitError| CoordinatorError::Transport(format!("committing on L1: {e}"));
    let last = l1
        .last_committed_batch()
        .await
        .map_err(|e| failed(e.into()))?;
    if batch <= last {
        return Err(CoordinatorError::FailedPrecondition(format!(
            "batch {batch} is committed already (L1's last committed batch is {last})"
        )));
    }
    if port.store().batch(port.chain_id(), batch).await?.is_none() {
        let sealed = port
            .store()
            .last_sealed_batch(port.chain_id())
            .await?
            .unwrap_or(0);
        return Err(CoordinatorError::UnknownBatch(format!(
            "{batch}: not sealed (the last sealed batch is {sealed})"
        )));
    }
    let reached = commit_through(port, l1, batch, true)
        .await
        .map_err(failed)?;
    if reached < batch {
        return Err(CoordinatorError::FailedPrecondition(format!(
            "L1 committed up to batch {reached}; batch {} was not committed (the log says why)",
            reached + 1
        )));
    }
    tracing::info!(first = last + 1, last = batch, "commit now by an operator");
    Ok(Committed {
        first_batch: last + 1,
        last_batch: batch,
    })
}

/// Commits the batches after L1's last committed one up to `upto`; returns the last batch
/// L1 has committed afterwards. A revert stops it (logged; the next round retries), and so
/// does a pause, unless the operator commits `by_hand`.
async fn commit_through(
    port: &SettlementPort,
    l1: &dyn L1,
    upto: u64,
    by_hand: bool,
) -> Result<u64, CommitError> {
    let mut last = l1.last_committed_batch().await?;
    port.report(|s| s.last_committed_batch = Some(last));
    metrics::gauge!(names::L1_LAST_COMMITTED_BATCH).set(last as f64);
    while last < upto {
        if !by_hand && port.paused(Component::Committer).is_some() {
            return Ok(last);
        }
        let n = last + 1;
        let Some(batch) = port.store().batch(port.chain_id(), n).await? else {
            return Ok(last);
        };
        let pv = match transition(&batch) {
            Ok(pv) => pv,
            Err(e) => {
                tracing::error!(batch = n, error = %e, "cannot commit the batch to L1");
                return Ok(last);
            }
        };
        let out = match l1
            .commit_batch(n, pv.new_state_root, pv.batch_commitment)
            .await
        {
            Ok(out) => out,
            Err(L1Error::Reverted(r)) => {
                count_tx("reverted");
                tracing::error!(batch = n, revert = %r, "L1 rejected commitBatch; will retry");
                return Ok(last);
            }
            Err(e) => return Err(e.into()),
        };
        if let TxStatus::Reverted(r) = &out.status {
            count_tx("reverted");
            tracing::error!(batch = n, revert = %r, "commitBatch reverted on L1; will retry");
            return Ok(last);
        }
        tracing::info!(batch = n, gas = out.gas_used, "batch committed on L1");
        // L1 has it now: the next round starts after it whether or not this record is
        // written; if it is not, the caller's error makes the next round recover it first.
        port.store().record_commit(&commit_record(n, &out)).await?;
        count_tx("success");
        let gas = out.gas_used as f64;
        metrics::histogram!(names::L1_TRANSACTION_GAS, names::KIND => "commit").record(gas);
        metrics::histogram!(names::L1_BATCH_GAS, names::KIND => "commit").record(gas);
        last = n;
        port.report(|s| s.last_committed_batch = Some(last));
        metrics::gauge!(names::L1_LAST_COMMITTED_BATCH).set(last as f64);
    }
    Ok(last)
}

fn commit_record(batch: u64, out: &TxOutcome) -> CommitRecord {
    CommitRecord {
        batch,
        tx_hash: crate::hex_hash(&out.tx_hash),
        gas_used: out.gas_used,
        block: out.block,
        recorded_at: crate::now_ms(),
    }
}

/// Records, from the chain's `BatchCommitted` events, the commits L1 has above the last one
/// recorded. A commit older than the node's event search (`log_lookback_blocks`) stays
/// without a record: its hash is known nowhere else, and the monitor shows it as committed.
async fn recover_records(port: &SettlementPort, l1: &dyn L1) -> Result<(), CommitError> {
    let on_chain = l1.last_committed_batch().await?;
    let recorded = port
        .store()
        .last_commit_record()
        .await?
        .map_or(0, |r| r.batch);
    if on_chain <= recorded {
        return Ok(());
    }
    for c in l1.committed_batches(recorded + 1).await? {
        if c.batch > on_chain {
            continue;
        }
        let record = CommitRecord {
            batch: c.batch,
            tx_hash: crate::hex_hash(&c.tx_hash),
            gas_used: c.gas_used,
            block: c.block,
            recorded_at: crate::now_ms(),
        };
        tracing::info!(
            batch = c.batch, tx = %record.tx_hash,
            "recorded a commit found on L1 whose receipt was not seen"
        );
        port.store().record_commit(&record).await?;
    }
    Ok(())
}

fn count_tx(outcome: &'static str) {
    metrics::counter!(names::L1_TRANSACTIONS_TOTAL, names::KIND => "commit", names::OUTCOME => outcome)
        .increment(1);
}
