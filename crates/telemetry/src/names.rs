//! The one list of proofmill's metrics: names, kinds, labels and what they mean. Libraries
//! record through the `metrics` macros with these names; [`ALL`] describes them to the
//! exporter, and the README's Metrics section lists the same.
//!
//! Labels are of bounded cardinality: proof type, job state, outcome, reason, kind, and a
//! prover's name only where the operator asked for it (`--metrics-per-prover`). Never a
//! batch number or a prover id.

/// What a metric is to Prometheus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric: its name, kind, labels and meaning.
#[derive(Clone, Copy, Debug)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

// Label names.
pub const PROOF_TYPE: &str = "proof_type";
pub const STATE: &str = "state";
pub const OUTCOME: &str = "outcome";
pub const REASON: &str = "reason";
pub const KIND: &str = "kind";
pub const SOURCE: &str = "source";
pub const PROVER: &str = "prover";
pub const ENDPOINT: &str = "endpoint";
pub const CHAIN: &str = "chain";

// Coordinator: jobs.
pub const JOBS: &str = "proofmill_jobs";
pub const CHAIN_JOBS: &str = "proofmill_chain_jobs";
pub const CHAIN_TASKS_STARTED_TOTAL: &str = "proofmill_chain_tasks_started_total";
pub const OLDEST_QUEUED_JOB_AGE_SECONDS: &str = "proofmill_oldest_queued_job_age_seconds";
pub const JOBS_CLOSED_TOTAL: &str = "proofmill_jobs_closed_total";
pub const ATTEMPTS_ENDED_TOTAL: &str = "proofmill_attempts_ended_total";
pub const RESULTS_REJECTED_TOTAL: &str = "proofmill_results_rejected_total";
// Coordinator: latencies.
pub const PROVE_DURATION_SECONDS: &str = "proofmill_prove_duration_seconds";
pub const QUEUE_WAIT_SECONDS: &str = "proofmill_queue_wait_seconds";
pub const BATCH_SEALED_TO_PROVEN_SECONDS: &str = "proofmill_batch_sealed_to_proven_seconds";
pub const BATCH_PROVEN_TO_VERIFIED_SECONDS: &str = "proofmill_batch_proven_to_verified_seconds";
pub const DISPATCH_LATENCY_SECONDS: &str = "proofmill_dispatch_latency_seconds";
pub const STORE_COMMIT_SECONDS: &str = "proofmill_store_commit_seconds";
pub const STORE_COMMIT_ERRORS_TOTAL: &str = "proofmill_store_commit_errors_total";
// Coordinator: the fleet.
pub const PROVERS_CONNECTED: &str = "proofmill_provers_connected";
pub const PROVER_CAPACITY_SLOTS: &str = "proofmill_prover_capacity_slots";
pub const PROVER_BUSY_SLOTS: &str = "proofmill_prover_busy_slots";
pub const PROVER_CONNECTS_TOTAL: &str = "proofmill_prover_connects_total";
pub const PROVERS_DECLARED_DEAD_TOTAL: &str = "proofmill_provers_declared_dead_total";
pub const HEARTBEAT_ROUND_TRIP_SECONDS: &str = "proofmill_heartbeat_round_trip_seconds";
// Coordinator: batch sources.
pub const BATCHES_TAKEN_IN_TOTAL: &str = "proofmill_batches_taken_in_total";
pub const INTAKE_ERRORS_TOTAL: &str = "proofmill_intake_errors_total";
// Coordinator: L1 settlement.
pub const L1_LAST_COMMITTED_BATCH: &str = "proofmill_l1_last_committed_batch";
pub const L1_LAST_VERIFIED_BATCH: &str = "proofmill_l1_last_verified_batch";
pub const L1_TRANSACTIONS_TOTAL: &str = "proofmill_l1_transactions_total";
pub const L1_TRANSACTION_GAS: &str = "proofmill_l1_transaction_gas";
pub const L1_BATCH_GAS: &str = "proofmill_l1_batch_gas";
pub const L1_ERRORS_TOTAL: &str = "proofmill_l1_errors_total";
// Coordinator: the HTTP admin API.
pub const ADMIN_HTTP_CONNECTIONS_REFUSED_TOTAL: &str =
    "proofmill_admin_http_connections_refused_total";
// Coordinator: the gateway to a rollup's core API (proofmill-gateway).
pub const GATEWAY_REQUESTS_TOTAL: &str = "proofmill_gateway_requests_total";
pub const GATEWAY_HTTP_ERRORS_TOTAL: &str = "proofmill_gateway_http_errors_total";
pub const GATEWAY_BATCHES_TAKEN_TOTAL: &str = "proofmill_gateway_batches_taken_total";
pub const GATEWAY_BATCHES_REFUSED_TOTAL: &str = "proofmill_gateway_batches_refused_total";
pub const GATEWAY_PROOFS_SUBMITTED_TOTAL: &str = "proofmill_gateway_proofs_submitted_total";
pub const GATEWAY_SUBMIT_LAG_SECONDS: &str = "proofmill_gateway_submit_lag_seconds";
// Coordinator: the proof manager (proof market, rollup side).
pub const MARKET_TRANSACTIONS_TOTAL: &str = "proofmill_market_transactions_total";
pub const MARKET_TRANSACTION_GAS: &str = "proofmill_market_transaction_gas";
pub const MARKET_PROOFS_CHECKED_TOTAL: &str = "proofmill_market_proofs_checked_total";
pub const MARKET_FALLBACKS_TOTAL: &str = "proofmill_market_fallbacks_total";
pub const MARKET_ERRORS_TOTAL: &str = "proofmill_market_errors_total";
// Prover.
pub const PROVER_TASKS_RUNNING: &str = "proofmill_prover_tasks_running";
pub const PROVER_PROVE_DURATION_SECONDS: &str = "proofmill_prover_prove_duration_seconds";
pub const PROVER_RESULT_RESENDS_TOTAL: &str = "proofmill_prover_result_resends_total";
pub const PROVER_RECONNECTS_TOTAL: &str = "proofmill_prover_reconnects_total";
pub const PROVER_HEARTBEAT_GAP_SECONDS: &str = "proofmill_prover_heartbeat_gap_seconds";
pub const PROVER_HEARTBEAT_ROUND_TRIP_SECONDS: &str =
    "proofmill_prover_heartbeat_round_trip_seconds";

use Kind::{Counter, Gauge, Histogram};

/// Every metric proofmill records, coordinator's then prover's.
pub const ALL: &[Metric] = &[
    Metric {
        name: JOBS,
        kind: Gauge,
        labels: &[PROOF_TYPE, STATE],
        help: "Open jobs by proof type and state (queued, leased), from the scheduler's memory.",
    },
    Metric {
        name: CHAIN_JOBS,
        kind: Gauge,
        labels: &[CHAIN, STATE],
        help: "Open jobs by chain (the rollups sharing the cluster) and state (queued, leased).",
    },
    Metric {
        name: CHAIN_TASKS_STARTED_TOTAL,
        kind: Counter,
        labels: &[CHAIN],
        help: "Tasks handed to provers by chain (leases and backup copies): how the fleet is shared between chains (--chains weights).",
    },
    Metric {
        name: OLDEST_QUEUED_JOB_AGE_SECONDS,
        kind: Gauge,
        labels: &[PROOF_TYPE],
        help: "Age of the oldest queued job per proof type, since its batch was sealed (0: none queued); the autoscaling signal.",
    },
    Metric {
        name: JOBS_CLOSED_TOTAL,
        kind: Counter,
        labels: &[PROOF_TYPE, OUTCOME],
        help: "Jobs that reached a final state: proven, failed (out of attempts or failed by several provers), cancelled.",
    },
    Metric {
        name: ATTEMPTS_ENDED_TOTAL,
        kind: Counter,
        labels: &[PROOF_TYPE, OUTCOME],
        help: "Ended attempts (leases) by outcome: proven, failed, invalid_proof, declined, lost (lease lost), cancelled, superseded.",
    },
    Metric {
        name: RESULTS_REJECTED_TOTAL,
        kind: Counter,
        labels: &[PROOF_TYPE, REASON],
        help: "Results refused on arrival by reason: stale (fenced off), invalid_proof, malformed, not_needed, no_batch, unavailable.",
    },
    Metric {
        name: PROVE_DURATION_SECONDS,
        kind: Histogram,
        labels: &[PROOF_TYPE],
        help: "Prove time of accepted proofs as their provers reported it (also by prover with --metrics-per-prover).",
    },
    Metric {
        name: QUEUE_WAIT_SECONDS,
        kind: Histogram,
        labels: &[PROOF_TYPE],
        help: "From a batch's sealing to its job's first lease.",
    },
    Metric {
        name: BATCH_SEALED_TO_PROVEN_SECONDS,
        kind: Histogram,
        labels: &[],
        help: "From a batch's sealing to its last required proof accepted (batches proven without a failed, cancelled or retried job).",
    },
    Metric {
        name: BATCH_PROVEN_TO_VERIFIED_SECONDS,
        kind: Histogram,
        labels: &[],
        help: "From a batch's last proof accepted to the L1 transaction that verified it.",
    },
    Metric {
        name: DISPATCH_LATENCY_SECONDS,
        kind: Histogram,
        labels: &[],
        help: "From a prover's result read off its stream to the next task written to it.",
    },
    Metric {
        name: STORE_COMMIT_SECONDS,
        kind: Histogram,
        labels: &[],
        help: "Group commits of scheduler changes to the store, retries included.",
    },
    Metric {
        name: STORE_COMMIT_ERRORS_TOTAL,
        kind: Counter,
        labels: &[],
        help: "Store writes that failed and are retried.",
    },
    Metric {
        name: PROVERS_CONNECTED,
        kind: Gauge,
        labels: &[PROOF_TYPE],
        help: "Connected provers per proof type they serve (a prover of two types counts in both).",
    },
    Metric {
        name: PROVER_CAPACITY_SLOTS,
        kind: Gauge,
        labels: &[PROOF_TYPE],
        help: "Task slots of the connected provers in rotation (not cordoned) per proof type they serve.",
    },
    Metric {
        name: PROVER_BUSY_SLOTS,
        kind: Gauge,
        labels: &[PROOF_TYPE],
        help: "Tasks running on connected provers per proof type.",
    },
    Metric {
        name: PROVER_CONNECTS_TOTAL,
        kind: Counter,
        labels: &[KIND],
        help: "Prover streams taken: register (a new prover id) or reconnect (a known id).",
    },
    Metric {
        name: PROVERS_DECLARED_DEAD_TOTAL,
        kind: Counter,
        labels: &[REASON],
        help: "Provers declared dead: missed_heartbeats.",
    },
    Metric {
        name: HEARTBEAT_ROUND_TRIP_SECONDS,
        kind: Histogram,
        labels: &[],
        help: "From a heartbeat written to a prover's stream to its answer read (the prover's liveness as the coordinator sees it).",
    },
    Metric {
        name: BATCHES_TAKEN_IN_TOTAL,
        kind: Counter,
        labels: &[SOURCE],
        help: "New batches stored by a batch source (api, or the coordinator's own source, e.g. devnet).",
    },
    Metric {
        name: INTAKE_ERRORS_TOTAL,
        kind: Counter,
        labels: &[SOURCE, KIND],
        help: "Batches a source could not hand in, by kind: invalid_argument, failed_precondition, unavailable, store, other.",
    },
    Metric {
        name: L1_LAST_COMMITTED_BATCH,
        kind: Gauge,
        labels: &[],
        help: "The rollup contract's last committed batch, as last read.",
    },
    Metric {
        name: L1_LAST_VERIFIED_BATCH,
        kind: Gauge,
        labels: &[],
        help: "The rollup contract's last verified batch, as last read.",
    },
    Metric {
        name: L1_TRANSACTIONS_TOTAL,
        kind: Counter,
        labels: &[KIND, OUTCOME],
        help: "Settlement transactions (commit, verify) by outcome: success, reverted (mined or refused by the node).",
    },
    Metric {
        name: L1_TRANSACTION_GAS,
        kind: Histogram,
        labels: &[KIND],
        help: "Gas used per successful settlement transaction (commit, verify).",
    },
    Metric {
        name: L1_BATCH_GAS,
        kind: Histogram,
        labels: &[KIND],
        help: "Gas used per batch: a commit transaction's, or a verify transaction's divided by its batches.",
    },
    Metric {
        name: L1_ERRORS_TOTAL,
        kind: Counter,
        labels: &[KIND],
        help: "Settlement rounds stopped by an L1 error (RPC, transport, timeout, stuck transaction; not a revert), by kind: commit, verify.",
    },
    Metric {
        name: ADMIN_HTTP_CONNECTIONS_REFUSED_TOTAL,
        kind: Counter,
        labels: &[],
        help: "HTTP admin connections closed as soon as accepted because as many as allowed were open.",
    },
    Metric {
        name: GATEWAY_REQUESTS_TOTAL,
        kind: Counter,
        labels: &[ENDPOINT, OUTCOME],
        help: "Core API requests by endpoint (proof_generation_data, submit_proof; push: submit_request_for_proofs, poll_generated_proofs) and outcome (batch, empty, success, error, refused, proof, pending).",
    },
    Metric {
        name: GATEWAY_HTTP_ERRORS_TOTAL,
        kind: Counter,
        labels: &[ENDPOINT, KIND],
        help: "Failed core API requests by kind: connect, timeout, http_status, not_json, too_large, body (closed mid-body), core_error (the core's Error reply).",
    },
    Metric {
        name: GATEWAY_BATCHES_TAKEN_TOTAL,
        kind: Counter,
        labels: &[],
        help: "New batches taken in from a rollup's core API (a batch taken again counts once).",
    },
    Metric {
        name: GATEWAY_BATCHES_REFUSED_TOTAL,
        kind: Counter,
        labels: &[REASON],
        help: "Batches of a core API refused, by reason: other_chain, bad_witness, invalid (incl. a known number with different content).",
    },
    Metric {
        name: GATEWAY_PROOFS_SUBMITTED_TOTAL,
        kind: Counter,
        labels: &[KIND],
        help: "Batches the core confirmed (\"Success\") in pull mode, or polled in push mode, by kind: proof, skipped (cancelled batch).",
    },
    Metric {
        name: GATEWAY_SUBMIT_LAG_SECONDS,
        kind: Histogram,
        labels: &[],
        help: "Pull mode: from a batch's last proof accepted to the core's \"Success\" for it.",
    },
    Metric {
        name: MARKET_TRANSACTIONS_TOTAL,
        kind: Counter,
        labels: &[KIND, OUTCOME],
        help: "Proof market transactions the proof manager sent (request, validation, close) by outcome: success, refused.",
    },
    Metric {
        name: MARKET_TRANSACTION_GAS,
        kind: Histogram,
        labels: &[KIND],
        help: "Gas used per proof market transaction (request, validation, close).",
    },
    Metric {
        name: MARKET_PROOFS_CHECKED_TOTAL,
        kind: Counter,
        labels: &[OUTCOME],
        help: "Proofs posted by proving networks, checked locally: valid or invalid.",
    },
    Metric {
        name: MARKET_FALLBACKS_TOTAL,
        kind: Counter,
        labels: &[REASON],
        help: "Batches handed to the own provers by the proof manager, by reason: not_acknowledged, refused, not_proven, invalid_proof, not_sent.",
    },
    Metric {
        name: MARKET_ERRORS_TOTAL,
        kind: Counter,
        labels: &[],
        help: "Proof manager rounds stopped by an error (RPC, store, coordinator); the next round tries again.",
    },
    Metric {
        name: PROVER_TASKS_RUNNING,
        kind: Gauge,
        labels: &[PROOF_TYPE],
        help: "Prover: tasks being proven now.",
    },
    Metric {
        name: PROVER_PROVE_DURATION_SECONDS,
        kind: Histogram,
        labels: &[PROOF_TYPE, OUTCOME],
        help: "Prover: time to prove a task (reading its input included), by outcome: proof, error.",
    },
    Metric {
        name: PROVER_RESULT_RESENDS_TOTAL,
        kind: Counter,
        labels: &[],
        help: "Prover: results sent again (after a reconnect, or when a coordinator could not take them).",
    },
    Metric {
        name: PROVER_RECONNECTS_TOTAL,
        kind: Counter,
        labels: &[],
        help: "Prover: streams on which it came back as a known prover (Reconnect, with its id) rather than registering anew.",
    },
    Metric {
        name: PROVER_HEARTBEAT_GAP_SECONDS,
        kind: Histogram,
        labels: &[],
        help: "Prover: time between consecutive heartbeats from a coordinator (the interval asked, plus delays on the way).",
    },
    Metric {
        name: PROVER_HEARTBEAT_ROUND_TRIP_SECONDS,
        kind: Histogram,
        labels: &[],
        help: "Prover: from its answer to a coordinator's heartbeat queued to the coordinator's echo of it read (coordinators before the echo send none).",
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        let mut seen = std::collections::HashSet::new();
        for m in ALL {
            assert!(seen.insert(m.name), "{} listed twice", m.name);
            assert!(m.name.starts_with("proofmill_"), "{}", m.name);
            assert!(
                m.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}",
                m.name
            );
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "{}: counters and only counters end in _total",
                m.name
            );
            assert!(!m.help.is_empty());
            for l in m.labels {
                assert!(
                    ["batch", "prover_id", "token"].iter().all(|bad| l != bad),
                    "{}: unbounded label {l}",
                    m.name
                );
            }
        }
    }
}
