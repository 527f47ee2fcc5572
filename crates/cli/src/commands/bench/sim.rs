//! The simulated provers of `bench dispatch`: M provers of capacity 1 that answer every task
//! with the expected public values, at once or paced to an offered load (`--rate`).
//! `bench dispatch` runs them in a process of their own, as real provers are, so the
//! coordinator's runtime serves only the coordinator.
//! Prints one line: `elapsed_s= round_trip_p50_ms= round_trip_p99_ms=`, where the round trip
//! is from sending a result to receiving the next task, seen by the prover.

use super::percentiles;
use crate::args::BenchSimProversArgs;
use anyhow::{Context as _, bail};
use proofmill_proto::v1::{
    HeartbeatAck, ProverMessage, Register, TaskResult, coordinator_message::Kind as Out,
    prover_message::Kind as In, prover_service_client::ProverServiceClient, task_result::Outcome,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;

pub async fn sim_provers(a: BenchSimProversArgs) -> anyhow::Result<()> {
    let done = Arc::new(AtomicU64::new(0));
    let (done_tx, mut done_rx) = watch::channel(false);
    let start = Instant::now();
    let provers: Vec<_> = (0..a.provers)
        .map(|i| {
            let state = Progress {
                done: done.clone(),
                done_tx: done_tx.clone(),
                total: a.jobs,
            };
            let pace = a.rate.map(|rate| Pace::new(rate, a.provers, i));
            tokio::spawn(sim_prover(a.coordinator.clone(), i, state, pace))
        })
        .collect();
    let wait = tokio::time::timeout(Duration::from_secs(600), done_rx.wait_for(|d| *d)).await;
    let elapsed = start.elapsed();
    if wait.is_err() {
        bail!(
            "timed out: {} of {} jobs completed",
            done.load(Ordering::SeqCst),
            a.jobs
        );
    }
    let mut latencies = Vec::new();
    for p in provers {
        latencies.extend(p.await.context("prover task")??);
    }
    let (p50, p99) = percentiles(&mut latencies);
    println!(
        "elapsed_s={:.6} round_trip_p50_ms={p50:.3} round_trip_p99_ms={p99:.3}",
        elapsed.as_secs_f64()
    );
    Ok(())
}

/// Accepted results across all simulated provers; `done_tx` fires at `total`.
#[derive(Clone)]
struct Progress {
    done: Arc<AtomicU64>,
    done_tx: watch::Sender<bool>,
    total: u64,
}

/// When one prover of a paced run answers: every `period` (M / rate), the provers' first
/// answers spread evenly over one period so that they do not arrive together.
struct Pace {
    period: Duration,
    next: tokio::time::Instant,
}

impl Pace {
    fn new(rate: u32, provers: u32, index: u32) -> Self {
        let period = Duration::from_secs_f64(f64::from(provers) / f64::from(rate));
        let offset = period.mul_f64(f64::from(index) / f64::from(provers));
        Pace {
            period,
            next: tokio::time::Instant::now() + offset,
        }
    }

    /// Waits for this prover's next slot. A prover that fell a period behind (its task came
    /// late) answers at once and starts its schedule again from now, rather than catching up
    /// in a burst the offered load does not have.
    async fn wait(&mut self) {
        let now = tokio::time::Instant::now();
        if self.next + self.period < now {
            self.next = now;
        }
        tokio::time::sleep_until(self.next).await;
        self.next += self.period;
    }
}

/// One prover of capacity 1; returns its round-trip samples in milliseconds.
async fn sim_prover(
    url: String,
    index: u32,
    progress: Progress,
    mut pace: Option<Pace>,
) -> anyhow::Result<Vec<f64>> {
    let mut client = ProverServiceClient::connect(url).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let register = Register {
        name: format!("sim-{index}"),
        proof_types: vec!["exec".into()],
        compute_capacity: 1,
        version: "bench".into(),
        token: None,
        blob_access: false,
        max_message_bytes: 0,
    };
    tx.send(ProverMessage {
        kind: Some(In::Register(register)),
    })
    .await?;
    let mut inbound = client
        .prover_stream(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let mut done_rx = progress.done_tx.subscribe();
    let mut sent_at: Option<Instant> = None;
    let mut latencies = Vec::new();
    loop {
        let msg = tokio::select! {
            m = inbound.message() => m?,
            _ = done_rx.wait_for(|d| *d) => return Ok(latencies),
        };
        let Some(kind) = msg.and_then(|m| m.kind) else {
            return Ok(latencies);
        };
        let reply = match kind {
            Out::ExecuteTask(t) => {
                if let Some(at) = sent_at.take() {
                    latencies.push(at.elapsed().as_secs_f64() * 1e3);
                }
                if let Some(pace) = &mut pace {
                    pace.wait().await;
                }
                sent_at = Some(Instant::now());
                In::TaskResult(TaskResult {
                    task_id: t.task_id,
                    fencing_token: t.fencing_token,
                    outcome: Some(Outcome::Proof(t.public_values)),
                    prove_ms: 0,
                })
            }
            Out::ResultAck(ack) => {
                if !ack.accepted {
                    bail!("result rejected: {}", ack.reason);
                }
                if progress.done.fetch_add(1, Ordering::SeqCst) + 1 == progress.total {
                    let _ = progress.done_tx.send(true);
                }
                continue;
            }
            Out::Heartbeat(h) => In::HeartbeatAck(HeartbeatAck {
                seq: h.seq,
                running: vec![],
            }),
            Out::RegisterResponse(r) if !r.accepted => bail!("registration refused: {}", r.reason),
            _ => continue,
        };
        tx.send(ProverMessage { kind: Some(reply) }).await?;
    }
}
