//! What `proofmill status` shows: read from the store, or from memory (flagged) when the
//! store does not answer in time.

use crate::core::CoreMsg;
use crate::error::CoordinatorError;
use crate::shared::Shared;
use proofmill_scheduler::ProverView;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long a status request waits for the store before answering from memory.
const STORE_WAIT: Duration = Duration::from_millis(1500);
/// Bound of the probe that says why the store did not answer, and of asking the core.
const PROBE_WAIT: Duration = Duration::from_secs(2);
/// Missing batch ranges shown at most (lowest first).
const MAX_GAP_WARNINGS: u32 = 8;

pub(crate) mod view;

use view::{StatusView, StoreOutage};

/// [`Coordinator::status`] when the store answers within a second or two; otherwise the
/// last status read from it, with live provers, flagged with the store's error. Answers
/// within about 4 s whatever the store does. Also flagged (and not read from the store)
/// while this coordinator's lease is not surely held: another one may be active.
pub(crate) async fn status_or_memory(shared: &Shared) -> Result<StatusView, CoordinatorError> {
    let error = if !shared.holds_lease() {
        // Another coordinator may be active and ahead: what this one holds is not news.
        // Said as the store's error when the store is why.
        match tokio::time::timeout(PROBE_WAIT, shared.store.probe()).await {
            Ok(Err(e)) => e.to_string(),
            _ => "this coordinator's lease on the store is not surely held (not renewed \
                  in time): a standby may be active"
                .to_string(),
        }
    } else {
        match tokio::time::timeout(STORE_WAIT, status(shared)).await {
            Ok(Ok(view)) => {
                shared.last_status.set(&view);
                return Ok(view);
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => store_error(shared).await,
        }
    };
    let (mut view, as_of_ms) = match shared.last_status.get() {
        Some((view, at)) => (view, Some(at)),
        None => (empty_status(shared), None),
    };
    view.provers = tokio::time::timeout(PROBE_WAIT, provers(shared))
        .await
        .map_err(|_| CoordinatorError::Unavailable)??;
    view.draining = shared.draining();
    // The settlement loops' cache is memory too: live.
    let seen = shared.l1_seen.read().expect("l1 cache lock").clone();
    view.last_committed_batch = seen.as_ref().and_then(|s| s.last_committed_batch);
    view.last_verified_batch = seen.as_ref().and_then(|s| s.last_verified_batch);
    view.store_outage = Some(StoreOutage { error, as_of_ms });
    Ok(view)
}

/// Why the store is not answering: its probe's error, naming the endpoint.
async fn store_error(shared: &Shared) -> String {
    let store = &shared.store;
    match tokio::time::timeout(PROBE_WAIT, store.probe()).await {
        Ok(Err(e)) => e.to_string(),
        Ok(Ok(())) => format!(
            "{}: answers, but not within {STORE_WAIT:?} (overloaded?)",
            store.endpoint()
        ),
        Err(_) => format!("{}: no answer within {PROBE_WAIT:?}", store.endpoint()),
    }
}

fn empty_status(shared: &Shared) -> StatusView {
    StatusView {
        last_sealed_batch: None,
        last_proven_batch: None,
        jobs: BTreeMap::new(),
        provers: Vec::new(),
        draining: false,
        last_committed_batch: None,
        last_verified_batch: None,
        last_verify_tx: None,
        store_outage: None,
        warnings: Vec::new(),
        intake_window: shared.config.intake_window,
    }
}

/// Everything read from the store now.
pub(crate) async fn status(shared: &Shared) -> Result<StatusView, CoordinatorError> {
    let store = &shared.store;
    let required = shared.config.proof_types.iter().map(|(t, _)| t.to_string());
    let jobs = view::job_counts(required, store.job_counts().await?);
    let seen = shared.l1_seen.read().expect("l1 cache lock").clone();
    let provers = provers(shared).await?;
    let backlog = shared.ask(|reply| CoreMsg::Backlog { reply }).await?;
    let gaps = store.batch_gaps(0, MAX_GAP_WARNINGS).await?;
    let warnings =
        crate::warnings::warnings(&backlog, &provers, &shared.config.required_types(), &gaps);
    Ok(StatusView {
        last_sealed_batch: store.last_sealed_batch().await?,
        last_proven_batch: store.last_proven_batch().await?,
        jobs,
        provers,
        draining: shared.draining(),
        last_committed_batch: seen.as_ref().and_then(|s| s.last_committed_batch),
        last_verified_batch: seen.as_ref().and_then(|s| s.last_verified_batch),
        last_verify_tx: crate::settled::last_verify_tx(shared.store.as_ref()).await?,
        store_outage: None,
        warnings,
        intake_window: shared.config.intake_window,
    })
}

/// Every prover the core knows, connected or not.
pub(crate) async fn provers(shared: &Shared) -> Result<Vec<ProverView>, CoordinatorError> {
    shared.ask(|reply| CoreMsg::Provers { reply }).await
}
