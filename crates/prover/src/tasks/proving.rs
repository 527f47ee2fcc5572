//! Proving one task on a blocking thread: read its input if it is a URL, check the input's
//! digest, prove, hash the proof, and report back with the task's slot.

use super::Assignment;
use crate::BlobReader;
use crate::capacity::ProvingSlot;
use proofmill_backend::{Backend, Cancel, ProveRequest};
use proofmill_telemetry::names;
use proofmill_types::{Digest, PublicValues};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// What proving a task needs besides its input.
pub(crate) struct ProvingJob {
    pub batch: u64,
    pub backend: Arc<dyn Backend>,
    pub expected: PublicValues,
    pub input_digest: Digest,
}

/// Where a task's input comes from.
pub(crate) enum InputSource {
    Bytes(Vec<u8>),
    /// Read from the coordinator's blob store by this prover (`--blob-access`).
    Url(Arc<dyn BlobReader>, String),
}

impl std::fmt::Display for InputSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InputSource::Bytes(b) => write!(f, "{} bytes", b.len()),
            InputSource::Url(_, url) => write!(f, "{url}"),
        }
    }
}

/// What a task produced: a proof, or the error that stopped it.
pub(crate) enum TaskOutput {
    Proof { bytes: Vec<u8>, digest: Digest },
    Error(String),
}

/// A task's output and how long producing it took: what its `TaskResult` carries.
pub(crate) struct FinishedTask {
    pub output: TaskOutput,
    pub prove_ms: u64,
}

/// Sent by a proving thread when it finishes.
pub(crate) struct Proved {
    pub task: Assignment,
    pub finished: FinishedTask,
    /// Released by the link right after it sends the result: a coordinator that answers the
    /// result with a new task then always finds the slot free, and the Availability the
    /// release triggers still follows the result.
    pub slot: ProvingSlot,
}

/// Proves on a blocking thread, which reports through `report`. A link that is gone drops
/// the report, and with it the slot.
pub(crate) fn spawn(
    task: Assignment,
    job: ProvingJob,
    input: InputSource,
    slot: ProvingSlot,
    cancel: Cancel,
    report: mpsc::Sender<Proved>,
) {
    let runtime = tokio::runtime::Handle::current();
    let proof_type = proofmill_types::TaskId::parse(&task.task_id)
        .map_or_else(|_| "unknown".to_string(), |k| k.proof_type.to_string());
    tokio::task::spawn_blocking(move || {
        let running =
            metrics::gauge!(names::PROVER_TASKS_RUNNING, names::PROOF_TYPE => proof_type.clone());
        running.increment(1.0);
        let started = Instant::now();
        let input = match input {
            InputSource::Bytes(b) => Ok(b),
            // This is a blocking-pool thread: waiting on the runtime here is allowed.
            InputSource::Url(reader, url) => runtime
                .block_on(reader.read(&url))
                .map_err(|e| format!("reading the input from {url}: {e}")),
        };
        let output = match &input {
            Ok(input) => prove(&job, input, &cancel),
            Err(e) => TaskOutput::Error(e.clone()),
        };
        let elapsed = started.elapsed();
        let prove_ms = elapsed.as_millis() as u64;
        running.decrement(1.0);
        let outcome = match output {
            TaskOutput::Proof { .. } => "proof",
            TaskOutput::Error(_) => "error",
        };
        metrics::histogram!(
            names::PROVER_PROVE_DURATION_SECONDS,
            names::PROOF_TYPE => proof_type,
            names::OUTCOME => outcome
        )
        .record(elapsed.as_secs_f64());
        drop(input);
        // The report channel has room for one report per slot, and this one holds a slot:
        // the send never waits.
        let _ = report.blocking_send(Proved {
            task,
            finished: FinishedTask { output, prove_ms },
            slot,
        });
    });
}

/// Blocking: digest check, prove, proof digest.
fn prove(job: &ProvingJob, input: &[u8], cancel: &Cancel) -> TaskOutput {
    let actual = Digest::sha256(input);
    if actual != job.input_digest {
        return TaskOutput::Error(format!(
            "input digest mismatch: expected {}, got {actual} ({} bytes)",
            job.input_digest,
            input.len()
        ));
    }
    let req = ProveRequest {
        batch: job.batch,
        input,
        expected: &job.expected,
    };
    let backend = job.backend.clone();
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        backend.prove_cancellable(&req, cancel)
    })) {
        Ok(Ok(bytes)) => {
            let digest = Digest::sha256(&bytes);
            TaskOutput::Proof { bytes, digest }
        }
        Ok(Err(e)) => TaskOutput::Error(e.to_string()),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            TaskOutput::Error(format!("backend panicked: {msg}"))
        }
    }
}
