//! The proof sender: every tick, settles the consecutive proven batches after the contract's
//! `lastVerifiedBatch` with as few `verifyBatches` transactions as the caps allow. A proof the
//! contract rejects is deleted and its job requeued; every other rejection deletes nothing.

use crate::{SettlementConfig, hex_hash, now_ms};
use proofmill_coordinator::{Component, CoordinatorError, Settled, SettlementPort};
use proofmill_l1::{L1, L1Error, Revert, TxOutcome, TxStatus};
use proofmill_store::StoreError;
use proofmill_store::{Change, VerifyRecord};
use proofmill_telemetry::names;
use proofmill_types::{JobKey, JobState, ProofType};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub(super) enum SendError {
    #[error(transparent)]
    L1(#[from] L1Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Coordinator(#[from] CoordinatorError),
}

pub(super) async fn run(port: SettlementPort, l1: Arc<dyn L1>, cfg: SettlementConfig) {
    let mut tick = tokio::time::interval(Duration::from_millis(cfg.send_interval_ms.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let shutdown = port.shutdown();
    let mut asks = port.settle_requests();
    let mut pauses = port.pause_watch();
    let mut paused = pauses.is_paused(Component::Sender);
    loop {
        let ask = tokio::select! {
            _ = tick.tick() => None,
            Some(ask) = asks.recv() => Some(ask),
            _ = pauses.changed() => {
                let was = std::mem::replace(&mut paused, pauses.is_paused(Component::Sender));
                if paused || !was {
                    continue;
                }
                // Resumed: catch up at once.
                None
            }
            _ = shutdown.begun() => return,
        };
        if let Some(ask) = ask {
            let _ = ask.reply.send(settle_now(&port, &*l1, &cfg).await);
            continue;
        }
        if !port.holds_lease() {
            // Another coordinator may be active: two senders must not both settle.
            continue;
        }
        if port.paused(Component::Sender).is_some() {
            // Paused: L1 is still watched, so status stays true; nothing is sent.
            if let Err(e) = observe(&port, &*l1).await {
                tracing::debug!(error = %e, "reading L1 while the sender is paused");
            }
            continue;
        }
        let _ = round(&port, &*l1, &cfg).await;
    }
}

/// One round, its failure logged and reported to `status`.
async fn round(
    port: &SettlementPort,
    l1: &dyn L1,
    cfg: &SettlementConfig,
) -> Result<u64, SendError> {
    let result = send_once(port, l1, cfg).await;
    if let Err(SendError::L1(_)) = &result {
        metrics::counter!(names::L1_ERRORS_TOTAL, names::KIND => "verify").increment(1);
    }
    let err = match &result {
        Ok(_) => return result,
        Err(SendError::L1(e)) if e.is_transient() => {
            tracing::warn!(error = %e, "L1 unavailable; settlement retries next tick");
            e.to_string()
        }
        Err(e) => {
            tracing::error!(error = %e, "settlement failed; retrying next tick");
            e.to_string()
        }
    };
    port.report(|s| s.last_error = Some(err));
    result
}

/// An operator's `settle now`: one round at once, unless the sender is paused or this
/// coordinator may not send.
async fn settle_now(
    port: &SettlementPort,
    l1: &dyn L1,
    cfg: &SettlementConfig,
) -> Result<Settled, CoordinatorError> {
    if port.paused(Component::Sender).is_some() {
        return Err(CoordinatorError::FailedPrecondition(
            "the proof sender is paused: `proofmill resume --component sender` first".into(),
        ));
    }
    if !port.holds_lease() {
        return Err(CoordinatorError::FailedPrecondition(
            "this coordinator's lease on the store is not surely held: it sends no L1 \
             transaction"
                .into(),
        ));
    }
    let failed = |e: SendError| CoordinatorError::Transport(format!("settling on L1: {e}"));
    let batches = round(port, l1, cfg).await.map_err(failed)?;
    let last_verified_batch = l1
        .last_verified_batch()
        .await
        .map_err(|e| failed(e.into()))?;
    tracing::info!(batches, last_verified_batch, "settle now by an operator");
    Ok(Settled {
        batches,
        last_verified_batch,
    })
}

/// Reads what L1 has committed and verified, for `status`.
async fn observe(port: &SettlementPort, l1: &dyn L1) -> Result<(), L1Error> {
    let verified = l1.last_verified_batch().await?;
    let committed = l1.last_committed_batch().await?;
    port.report(|s| {
        s.last_verified_batch = Some(verified);
        s.last_committed_batch = Some(committed);
    });
    metrics::gauge!(names::L1_LAST_VERIFIED_BATCH).set(verified as f64);
    metrics::gauge!(names::L1_LAST_COMMITTED_BATCH).set(committed as f64);
    Ok(())
}

/// Outcome of one attempt to settle `batches[start..start + k]`.
enum Attempt {
    Settled(TxOutcome),
    Rejected(Revert),
}

/// One settlement round; returns the number of batches settled.
pub(super) async fn send_once(
    port: &SettlementPort,
    l1: &dyn L1,
    cfg: &SettlementConfig,
) -> Result<u64, SendError> {
    let verified = l1.last_verified_batch().await?;
    let committed = l1.last_committed_batch().await?;
    port.report(|s| {
        s.last_verified_batch = Some(verified);
        s.last_committed_batch = Some(committed);
    });
    metrics::gauge!(names::L1_LAST_VERIFIED_BATCH).set(verified as f64);
    metrics::gauge!(names::L1_LAST_COMMITTED_BATCH).set(committed as f64);
    recover_records(port, l1, verified).await?;
    let first = verified + 1;
    let last = committed.min(verified.saturating_add(cfg.max_batches_per_tx));
    // proofs of batch first + i, one per configured proof type, in the contract's order.
    let mut batches: Vec<Vec<Vec<u8>>> = Vec::new();
    // When each batch's last required proof was accepted.
    let mut proven_at: Vec<u64> = Vec::new();
    for n in first..=last {
        match load_proofs(port, cfg, n).await? {
            Some((p, at)) => {
                batches.push(p);
                proven_at.push(at);
            }
            None => break, // the first gap ends the range
        }
    }
    let mut start = 0usize;
    // After an unattributed revert: one batch per transaction, to isolate it.
    let mut single = false;
    while start < batches.len() {
        if start > 0 && port.paused(Component::Sender).is_some() {
            // Paused meanwhile: the transactions sent stand, no more goes out.
            break;
        }
        let from = first + start as u64;
        let mut k = if single { 1 } else { batches.len() - start };
        let rejected = loop {
            let proofs = transpose(&batches[start..start + k]);
            let attempt = match l1.estimate_verify_gas(from, &proofs).await? {
                Ok(gas) if gas > cfg.max_gas_per_tx && k > 1 => {
                    k /= 2;
                    continue;
                }
                Ok(_) => {
                    let pending = Change::PendingVerify {
                        first_batch: from,
                        last_batch: from + k as u64 - 1,
                        at: now_ms(),
                    };
                    port.store().apply(&[pending]).await?;
                    // Kept on a transport error: the outcome is unknown until the chain says.
                    let attempt = send(l1, from, &proofs).await?;
                    if matches!(attempt, Attempt::Rejected(_)) {
                        port.store().apply(&[Change::ClearPendingVerify]).await?;
                    }
                    attempt
                }
                Err(r) => Attempt::Rejected(r),
            };
            match attempt {
                Attempt::Settled(out) => {
                    record(port, &out, from, from + k as u64 - 1).await?;
                    count_settled(&out, &proven_at[start..start + k]);
                    metrics::gauge!(names::L1_LAST_VERIFIED_BATCH)
                        .set((from + k as u64 - 1) as f64);
                    port.report(|s| {
                        s.last_verified_batch = Some(from + k as u64 - 1);
                        s.last_error = None;
                    });
                    break None;
                }
                Attempt::Rejected(Revert::InvalidProof { batch, .. })
                    if batch > from && batch < from + k as u64 =>
                {
                    k = (batch - from) as usize; // settle the valid prefix first
                }
                Attempt::Rejected(Revert::Other { .. }) if k > 1 => {
                    tracing::warn!(
                        first = from,
                        batches = k,
                        "unattributed revert; settling one batch per transaction"
                    );
                    single = true;
                    k = 1;
                }
                Attempt::Rejected(r) => break Some(r),
            }
        };
        match rejected {
            None => start += k,
            Some(Revert::InvalidProof { batch, proof_type }) => {
                port.report(|s| {
                    s.last_error = Some(format!("L1 rejected the proof of batch {batch}"))
                });
                invalidate(port, cfg, batch, proof_type).await?;
                break;
            }
            Some(r) => {
                let msg = format!(
                    "L1 rejected verifyBatches({from}..+{k}) from {}: {r}",
                    l1.sender()
                );
                port.report(|s| s.last_error = Some(msg));
                tracing::error!(
                    first = from, batches = k, revert = %r, sender = %l1.sender(),
                    "L1 rejected verifyBatches (not a proof failure): no proof deleted; retrying next tick"
                );
                break;
            }
        }
    }
    Ok(start as u64)
}

async fn send(l1: &dyn L1, first: u64, proofs: &[Vec<Vec<u8>>]) -> Result<Attempt, L1Error> {
    let sent = l1.verify_batches(first, proofs).await;
    if matches!(&sent, Ok(out) if !out.is_success()) || matches!(sent, Err(L1Error::Reverted(_))) {
        metrics::counter!(names::L1_TRANSACTIONS_TOTAL, names::KIND => "verify", names::OUTCOME => "reverted")
            .increment(1);
    }
    match sent {
        Ok(out) => match &out.status {
            TxStatus::Success => Ok(Attempt::Settled(out)),
            TxStatus::Reverted(r) => {
                tracing::warn!(tx = %hex_hash(&out.tx_hash), revert = %r, "verifyBatches mined but reverted");
                Ok(Attempt::Rejected(r.clone()))
            }
        },
        Err(L1Error::Reverted(r)) => Ok(Attempt::Rejected(r)),
        Err(e) => Err(e),
    }
}

/// `proofs[t][i]` from per-batch lists.
fn transpose(batches: &[Vec<Vec<u8>>]) -> Vec<Vec<Vec<u8>>> {
    let types = batches.first().map_or(0, Vec::len);
    (0..types)
        .map(|t| batches.iter().map(|b| b[t].clone()).collect())
        .collect()
}

/// Proof types sent to L1, in the contract's order.
fn l1_types(port: &SettlementPort, cfg: &SettlementConfig) -> Vec<ProofType> {
    cfg.l1_proof_types
        .clone()
        .unwrap_or_else(|| port.required_types())
}

/// Proof bytes of batch `n` per L1 proof type, and when its last required proof was
/// accepted, or `None` unless every required type (sent to L1 or not) is proven.
async fn load_proofs(
    port: &SettlementPort,
    cfg: &SettlementConfig,
    n: u64,
) -> Result<Option<(Vec<Vec<u8>>, u64)>, SendError> {
    let mut proven_at = 0;
    for pt in port.required_types() {
        match port
            .store()
            .job(&JobKey::new(port.chain_id(), n, pt))
            .await?
        {
            Some(j) if j.state == JobState::Proven => proven_at = proven_at.max(j.updated_at),
            _ => return Ok(None),
        }
    }
    let mut out = Vec::new();
    for pt in l1_types(port, cfg) {
        let key = JobKey::new(port.chain_id(), n, pt);
        let Some(rec) = port.store().proof(&key).await? else {
            return Ok(None);
        };
        let bytes = match rec.inline {
            Some(b) => b,
            None => port.blobs().get(&rec.blob_key).await?.to_vec(),
        };
        out.push(bytes);
    }
    Ok(Some((out, proven_at)))
}

/// Metrics of a verify transaction that settled batches proven at `proven_at`.
fn count_settled(out: &TxOutcome, proven_at: &[u64]) {
    metrics::counter!(names::L1_TRANSACTIONS_TOTAL, names::KIND => "verify", names::OUTCOME => "success")
        .increment(1);
    let gas = out.gas_used as f64;
    metrics::histogram!(names::L1_TRANSACTION_GAS, names::KIND => "verify").record(gas);
    let now = now_ms();
    for at in proven_at {
        metrics::histogram!(names::L1_BATCH_GAS, names::KIND => "verify")
            .record(gas / proven_at.len() as f64);
        metrics::histogram!(names::BATCH_PROVEN_TO_VERIFIED_SECONDS)
            .record(proofmill_telemetry::secs(now.saturating_sub(*at)));
    }
}

async fn record(
    port: &SettlementPort,
    out: &TxOutcome,
    first: u64,
    last: u64,
) -> Result<(), StoreError> {
    let rec = VerifyRecord {
        tx_hash: hex_hash(&out.tx_hash),
        first_batch: first,
        last_batch: last,
        gas_used: out.gas_used,
    };
    tracing::info!(first, last, tx = %rec.tx_hash, gas = out.gas_used, "batches verified on L1");
    let at = now_ms();
    port.store()
        .apply(&[
            Change::Verified { record: rec, at },
            Change::ClearPendingVerify,
        ])
        .await
}

/// Batches the chain verified past the last recorded one were settled by a transaction whose
/// receipt this sender never saw (it stopped between send and receipt, or a fee-bumped
/// replacement got mined): record them from the chain's `BatchesVerified` events, so nothing
/// is sent twice and every batch keeps its transaction, gas and range.
async fn recover_records(
    port: &SettlementPort,
    l1: &dyn L1,
    verified: u64,
) -> Result<(), SendError> {
    let recorded = port
        .store()
        .last_verify_record()
        .await?
        .map_or(0, |r| r.last_batch);
    if verified <= recorded {
        return Ok(());
    }
    let pending = port.store().pending_verify().await?;
    let mut changes = Vec::new();
    for r in l1.verified_ranges(recorded + 1).await? {
        let rec = VerifyRecord {
            tx_hash: hex_hash(&r.tx_hash),
            first_batch: r.first,
            last_batch: r.last,
            gas_used: r.gas_used,
        };
        tracing::warn!(
            first = r.first, last = r.last, tx = %rec.tx_hash, pending = ?pending,
            "recorded a settlement found on L1 whose receipt was not seen"
        );
        changes.push(Change::Verified {
            record: rec,
            at: now_ms(),
        });
    }
    changes.push(Change::ClearPendingVerify);
    port.store().apply(&changes).await?;
    Ok(())
}

/// L1 rejected the proof of `(batch, proof type #index)`: delete it and requeue the job
/// through the admin retry path (which resets its attempt counters).
async fn invalidate(
    port: &SettlementPort,
    cfg: &SettlementConfig,
    batch: u64,
    index: u64,
) -> Result<(), SendError> {
    let types = l1_types(port, cfg);
    let Some(pt) = types.get(index as usize).cloned() else {
        tracing::error!(
            batch,
            index,
            "L1 rejected a proof of an unknown proof type index; check the contract's proof types"
        );
        return Ok(());
    };
    let key = JobKey::new(port.chain_id(), batch, pt);
    let reason = format!(
        "L1 rejected the proof (InvalidProof for batch {batch}, proof type {})",
        key.proof_type
    );
    port.reject_proof(key, reason).await?;
    Ok(())
}
