//! `proofmill status`: one `AdminService.SystemStatus` call, printed as tables or JSON.

use crate::args::AdminAccess;
use crate::args::StatusArgs;
use anyhow::anyhow;
use proofmill_proto::client::{self, BearerToken};
use proofmill_proto::v1::admin_service_client::AdminServiceClient;
use proofmill_proto::v1::client_service_client::ClientServiceClient;
use proofmill_proto::v1::{JobCounts, ProverInfo, SystemStatusRequest, SystemStatusResponse};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const MAX_RESPONSE_BYTES: usize = 64 << 20;

pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let status = fetch(&args.coordinator, &args.access).await?;
    if args.json {
        println!("{}", serde_json::to_string(&status_json(&status))?);
    } else {
        print!("{}", render(&status));
    }
    Ok(())
}

/// An admin client of a coordinator: every call carries the bearer token.
pub type Admin = AdminServiceClient<InterceptedService<Channel, BearerToken>>;

/// An admin client of the coordinator at `url`, connected (or a clear error): TLS for
/// `https://`, and the token of `access` on every call.
pub async fn connect(url: &str, access: &AdminAccess) -> anyhow::Result<Admin> {
    let (channel, token) = channel(url, access, REQUEST_TIMEOUT).await?;
    Ok(AdminServiceClient::with_interceptor(channel, token)
        .max_decoding_message_size(MAX_RESPONSE_BYTES))
}

/// A client API client, as [`connect`]; each call may take up to `timeout` (a long poll, a
/// large input).
pub async fn connect_client(
    url: &str,
    access: &AdminAccess,
    timeout: Duration,
) -> anyhow::Result<ClientApi> {
    let (channel, token) = channel(url, access, timeout).await?;
    Ok(ClientServiceClient::with_interceptor(channel, token)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX))
}

/// A client of the client API: every call carries the bearer token.
pub type ClientApi = ClientServiceClient<InterceptedService<Channel, BearerToken>>;

async fn channel(
    url: &str,
    access: &AdminAccess,
    timeout: Duration,
) -> anyhow::Result<(Channel, BearerToken)> {
    let tls = access.tls.load()?;
    let endpoint = client::endpoint(url, &tls)
        .map_err(|e| anyhow!("coordinator URL: {e}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(timeout);
    let token = BearerToken::new(access.admin_token.as_deref()).map_err(anyhow::Error::msg)?;
    let cannot_reach = |why: String| anyhow!("cannot reach coordinator at {url}: {why}");
    let channel =
        match tokio::time::timeout(CONNECT_TIMEOUT + Duration::from_secs(1), endpoint.connect())
            .await
        {
            Err(_) => {
                return Err(cannot_reach(format!(
                    "no connection within {} s",
                    CONNECT_TIMEOUT.as_secs()
                )));
            }
            Ok(Err(e)) => return Err(cannot_reach(client::explain(url, &error_chain(&e)).await)),
            Ok(Ok(channel)) => channel,
        };
    Ok((channel, token))
}

/// The typed error an admin call answered with, as the command's error.
pub fn check(error: Option<proofmill_proto::v1::AdminError>) -> anyhow::Result<()> {
    if let Some(e) = error {
        let code =
            proofmill_proto::v1::ErrorCode::try_from(e.code).map_or("UNKNOWN", |c| c.as_str_name());
        anyhow::bail!("{code}: {}", e.message);
    }
    Ok(())
}

pub fn request_failed(call: &str, url: &str, s: tonic::Status) -> anyhow::Error {
    CallFailed {
        call: call.to_string(),
        url: url.to_string(),
        transport: client::is_transport_failure(&s),
        code: s.code(),
        message: s.message().to_string(),
    }
    .into()
}

/// A failed admin request, naming the call and the coordinator.
#[derive(Debug)]
pub struct CallFailed {
    call: String,
    url: String,
    code: tonic::Code,
    message: String,
    /// The connection failed rather than the server refusing: [`explain_failure`] looks.
    transport: bool,
}

impl std::fmt::Display for CallFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} request to coordinator at {} failed: {:?}: {}",
            self.call, self.url, self.code, self.message
        )
    }
}

impl std::error::Error for CallFailed {}

/// `e`, or when it is a request that failed on its connection to a server whose TLS does not
/// match the URL's scheme (a plaintext client of a TLS server connects, and fails only at its
/// first call with an HTTP/2 error), an error saying so.
pub async fn explain_failure(e: anyhow::Error) -> anyhow::Error {
    let Some(f) = e.downcast_ref::<CallFailed>().filter(|f| f.transport) else {
        return e;
    };
    let error = format!("{:?}: {}", f.code, f.message);
    let explained = client::explain(&f.url, &error).await;
    if explained == error {
        return e;
    }
    anyhow!(
        "{} request to coordinator at {} failed: {explained}",
        f.call,
        f.url
    )
}

async fn fetch(url: &str, access: &AdminAccess) -> anyhow::Result<SystemStatusResponse> {
    let response = connect(url, access)
        .await?
        .system_status(SystemStatusRequest {})
        .await
        .map_err(|s| request_failed("SystemStatus", url, s))?;
    Ok(response.into_inner())
}

/// `e: source: source...` (tonic's transport error alone only says "transport error").
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !out.ends_with(&s_text) {
            let _ = write!(out, ": {s_text}");
        }
        source = s.source();
    }
    out
}

/// Provers shown by `status`: the connected ones.
fn connected(status: &SystemStatusResponse) -> impl Iterator<Item = &ProverInfo> {
    status.provers.iter().filter(|p| p.connected)
}

/// Job counts by proof type, including required types that have no jobs yet, sorted.
fn jobs_by_type(status: &SystemStatusResponse) -> BTreeMap<&str, JobCounts> {
    let mut jobs: BTreeMap<&str, JobCounts> =
        status.jobs.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    for t in &status.required_proof_types {
        jobs.entry(t.as_str()).or_default();
    }
    jobs
}

/// The `--json` form of a status response.
pub fn status_json(status: &SystemStatusResponse) -> Value {
    let jobs: serde_json::Map<String, Value> = jobs_by_type(status)
        .into_iter()
        .map(|(t, c)| {
            let counts = json!({
                "queued": c.queued,
                "leased": c.leased,
                "proven": c.proven,
                "failed": c.failed,
                "cancelled": c.cancelled,
                "held": c.held,
            });
            (t.to_string(), counts)
        })
        .collect();
    let provers: Vec<Value> = connected(status)
        .map(|p| {
            json!({
                "id": p.id,
                "name": p.name,
                "proof_types": p.proof_types,
                "capacity": p.capacity,
                "running_tasks": p.running_tasks,
                "cordoned": p.cordoned,
                "cordon_reason": (!p.cordon_reason.is_empty()).then_some(&p.cordon_reason),
                "proofs_accepted": p.proofs_accepted,
                "task_errors": p.task_errors,
                "invalid_proofs": p.invalid_proofs,
                "superseded": p.superseded,
            })
        })
        .collect();
    json!({
        "last_sealed_batch": status.last_sealed_batch,
        "last_proven_batch": status.last_proven_batch,
        "last_committed_batch": status.last_committed_batch,
        "last_verified_batch": status.last_verified_batch,
        "last_verify_tx": status.last_verify_tx.as_ref().map(|t| json!({
            "tx_hash": t.tx_hash,
            "first_batch": t.first_batch,
            "last_batch": t.last_batch,
            "gas_used": t.gas_used,
        })),
        "required_proof_types": status.required_proof_types,
        "draining": status.draining,
        "jobs": jobs,
        "provers": provers,
        "from_memory": status.from_memory,
        "store_error": (!status.store_error.is_empty()).then_some(&status.store_error),
        "as_of_ms": (status.as_of_ms > 0).then_some(status.as_of_ms),
        "warnings": status.warnings.iter().map(|w| json!({
            "kind": w.kind,
            "message": w.message,
            "version": (!w.version.is_empty()).then_some(&w.version),
            "proof_type": (!w.proof_type.is_empty()).then_some(&w.proof_type),
            "first_batch": w.first_batch,
            "last_batch": w.last_batch,
        })).collect::<Vec<_>>(),
        "intake_window": status.intake_window,
        "standby": status.standby,
        "active_url": (!status.active_url.is_empty()).then_some(&status.active_url),
        "lease_epoch": (status.lease_epoch > 0).then_some(status.lease_epoch),
        "paused": status.paused.iter().map(|p| json!({
            "component": p.component,
            "reason": (!p.reason.is_empty()).then_some(&p.reason),
            "since_ms": p.since_ms,
        })).collect::<Vec<_>>(),
        "market": status.market.as_ref().map(|m| json!({
            "mode": m.mode,
            "share_ppm": m.share_ppm,
            "proof_type": m.proof_type,
            "requests": m.requests.iter().collect::<std::collections::BTreeMap<_, _>>(),
            "fell_back": m.fell_back,
            "proven_by_network": m.proven_by_network,
        })),
        "chain_id": status.chain_id,
        "chains": status.chains.iter().map(|c| json!({
            "chain_id": c.chain_id,
            "weight": c.weight,
            "proof_types": c.proof_types,
            "last_sealed_batch": c.last_sealed_batch,
            "last_proven_batch": c.last_proven_batch,
            "jobs": c.jobs.iter().map(|(t, n)| (t.clone(), json!({
                "queued": n.queued, "leased": n.leased, "proven": n.proven,
                "failed": n.failed, "cancelled": n.cancelled, "held": n.held,
            }))).collect::<serde_json::Map<_, _>>(),
        })).collect::<Vec<_>>(),
    })
}

/// The human form of a status response.
pub fn render(status: &SystemStatusResponse) -> String {
    let batch = |b: Option<u64>| b.map_or_else(|| "-".to_string(), |b| b.to_string());
    let mut out = String::new();
    if status.standby {
        let active = match status.active_url.as_str() {
            "" => "none known yet".to_string(),
            url => format!("{url} (lease epoch {})", status.lease_epoch),
        };
        let _ = writeln!(out, "STANDBY: the active coordinator is {active}");
        let _ = writeln!(
            out,
            "figures below: read from the store; provers are at the active one"
        );
        let _ = writeln!(out);
    }
    if status.from_memory {
        let _ = writeln!(out, "STORE NOT ANSWERING: {}", status.store_error);
        let _ = match status.as_of_ms {
            0 => writeln!(out, "figures below: none read from the store since start"),
            at => writeln!(
                out,
                "figures below: from memory, as read from the store {} s ago (provers are live)",
                age_s(at)
            ),
        };
        let _ = writeln!(out);
    }
    for (label, value) in [
        ("last sealed batch", status.last_sealed_batch),
        ("last proven batch", status.last_proven_batch),
        ("last committed batch", status.last_committed_batch),
        ("last verified batch", status.last_verified_batch),
    ] {
        let _ = writeln!(out, "{label:<22}{}", batch(value));
    }
    if let Some(t) = &status.last_verify_tx {
        let _ = writeln!(
            out,
            "{:<22}{} (batches {}..={}, gas {})",
            "last verify tx", t.tx_hash, t.first_batch, t.last_batch, t.gas_used
        );
    }
    if status.draining {
        let _ = writeln!(out, "{:<22}yes", "draining");
    }
    // Several rollups on this cluster: each chain's own progress (the figures above are the
    // own chain's, the one L1 settlement is about).
    if status.chains.len() > 1 {
        let _ = writeln!(out, "\nchains (figures above: chain {}):", status.chain_id);
        let mut rows = vec![row([
            "chain", "weight", "sealed", "proven", "queued", "leased", "done", "failed",
        ])];
        for c in &status.chains {
            let sum = |f: fn(&proofmill_proto::v1::JobCounts) -> u64| {
                c.jobs.values().map(f).sum::<u64>().to_string()
            };
            rows.push(row([
                &c.chain_id.to_string(),
                &c.weight.to_string(),
                &batch(c.last_sealed_batch),
                &batch(c.last_proven_batch),
                &sum(|n| n.queued),
                &sum(|n| n.leased),
                &sum(|n| n.proven),
                &sum(|n| n.failed),
            ]));
        }
        table(
            &mut out,
            &rows,
            &[false, true, true, true, true, true, true, true],
        );
    }
    if let Some(m) = &status.market {
        let share = match m.mode.as_str() {
            "mixed" => format!(", {:.1} % of batches", f64::from(m.share_ppm) / 1e4),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "\nproof market: {}{share}, proof type {}: {} proven by networks, {} fell back to the own provers",
            m.mode, m.proof_type, m.proven_by_network, m.fell_back
        );
        let mut requests: Vec<_> = m.requests.iter().collect();
        requests.sort();
        for (s, n) in requests {
            let _ = writeln!(out, "  {s:<30}{n}");
        }
    }
    if !status.paused.is_empty() {
        let _ = writeln!(out, "\npaused (`proofmill resume --component NAME`):");
        for p in &status.paused {
            let reason = match p.reason.as_str() {
                "" => String::new(),
                r => format!(": {r}"),
            };
            let _ = writeln!(
                out,
                "  {} since {} s ago{reason}",
                p.component,
                age_s(p.since_ms)
            );
        }
    }
    if !status.warnings.is_empty() {
        let _ = writeln!(out, "\nwarnings:");
        for w in &status.warnings {
            let _ = writeln!(out, "  {}: {}", w.kind, w.message);
        }
    }

    let _ = writeln!(out, "\njobs:");
    let jobs = jobs_by_type(status);
    if jobs.is_empty() {
        let _ = writeln!(out, "  (none)");
    } else {
        let mut rows = vec![row([
            "PROOF TYPE",
            "QUEUED",
            "LEASED",
            "PROVEN",
            "FAILED",
            "CANCELLED",
        ])];
        // Only a rollup that offers batches to a proof market has held jobs.
        let held = jobs.iter().any(|(_, c)| c.held > 0);
        if held {
            rows[0].push("HELD".into());
        }
        for (t, c) in &jobs {
            let mut r = vec![
                t.to_string(),
                c.queued.to_string(),
                c.leased.to_string(),
                c.proven.to_string(),
                c.failed.to_string(),
                c.cancelled.to_string(),
            ];
            if held {
                r.push(c.held.to_string());
            }
            rows.push(r);
        }
        table(
            &mut out,
            &rows,
            &[false, true, true, true, true, true, true],
        );
    }

    let provers: Vec<&ProverInfo> = connected(status).collect();
    let _ = writeln!(out, "\nprovers ({} connected):", provers.len());
    if provers.is_empty() {
        let _ = writeln!(out, "  (none)");
    } else {
        let mut rows = vec![row([
            "NAME",
            "ID",
            "PROOF TYPES",
            "CAPACITY",
            "RUNNING TASKS",
            "PROVEN",
            "ERRORS",
            "INVALID",
        ])];
        let mut reasons = Vec::new();
        for p in provers {
            let running = if p.running_tasks.is_empty() {
                "-".to_string()
            } else {
                p.running_tasks.join(",")
            };
            let name = if p.cordoned {
                if !p.cordon_reason.is_empty() {
                    reasons.push(format!("{} {}: {}", p.name, p.id, p.cordon_reason));
                }
                format!("{} (cordoned)", p.name)
            } else {
                p.name.clone()
            };
            rows.push(vec![
                name,
                p.id.clone(),
                p.proof_types.join(","),
                p.capacity.to_string(),
                running,
                p.proofs_accepted.to_string(),
                p.task_errors.to_string(),
                p.invalid_proofs.to_string(),
            ]);
        }
        table(
            &mut out,
            &rows,
            &[false, false, false, true, false, true, true, true],
        );
        for reason in reasons {
            let _ = writeln!(out, "  {reason}");
        }
    }
    out
}

/// Seconds since `at_ms` (Unix ms), 0 if the clock says it is in the future.
pub(super) fn age_s(at_ms: u64) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    now.saturating_sub(at_ms) / 1000
}

fn row<const N: usize>(cells: [&str; N]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

/// Writes `rows` as a table indented by two spaces; `right[i]` right-aligns column `i`.
pub(super) fn table(out: &mut String, rows: &[Vec<String>], right: &[bool]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            let w = widths[i];
            if right.get(i).copied().unwrap_or(false) {
                let _ = write!(line, "  {cell:>w$}");
            } else {
                let _ = write!(line, "  {cell:<w$}");
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proofmill_proto::v1::{StatusWarning, VerifyTxInfo};
    use std::collections::HashMap;

    fn sample() -> SystemStatusResponse {
        let mut jobs = HashMap::new();
        jobs.insert(
            "exec".to_string(),
            JobCounts {
                queued: 2,
                leased: 1,
                proven: 10,
                failed: 0,
                cancelled: 3,
                held: 0,
            },
        );
        SystemStatusResponse {
            last_sealed_batch: Some(13),
            last_proven_batch: Some(10),
            last_committed_batch: None,
            last_verified_batch: Some(0),
            jobs,
            provers: vec![
                ProverInfo {
                    id: "p-1".into(),
                    name: "box-a".into(),
                    proof_types: vec!["exec".into(), "audit".into()],
                    capacity: 2,
                    running_tasks: vec!["11/exec".into()],
                    version: "devnet-v1".into(),
                    connected: true,
                    last_seen_ms: 5,
                    cordoned: true,
                    cordon_reason: "cordoned automatically: 3 invalid proofs in a row".into(),
                    proofs_accepted: 7,
                    task_errors: 1,
                    invalid_proofs: 3,
                    superseded: 0,
                },
                ProverInfo {
                    id: "p-2".into(),
                    name: "gone".into(),
                    proof_types: vec!["exec".into()],
                    capacity: 1,
                    running_tasks: vec![],
                    version: "devnet-v1".into(),
                    connected: false,
                    last_seen_ms: 1,
                    cordoned: false,
                    ..Default::default()
                },
            ],
            required_proof_types: vec!["exec".into(), "audit".into()],
            draining: false,
            last_verify_tx: Some(VerifyTxInfo {
                tx_hash: "0xab".into(),
                first_batch: 1,
                last_batch: 4,
                gas_used: 90_000,
            }),
            warnings: vec![StatusWarning {
                kind: "batch_gap".into(),
                message: "batch 12 is missing: settlement stops before 12 until they are submitted"
                    .into(),
                first_batch: 12,
                last_batch: 12,
                ..Default::default()
            }],
            intake_window: 1024,
            ..Default::default()
        }
    }

    #[test]
    fn json_conversion() {
        let expected = json!({
            "last_sealed_batch": 13,
            "last_proven_batch": 10,
            "last_committed_batch": null,
            "last_verified_batch": 0,
            "last_verify_tx": {"tx_hash": "0xab", "first_batch": 1, "last_batch": 4, "gas_used": 90_000},
            "required_proof_types": ["exec", "audit"],
            "draining": false,
            "jobs": {
                "audit": {"queued": 0, "leased": 0, "proven": 0, "failed": 0, "cancelled": 0, "held": 0},
                "exec": {"queued": 2, "leased": 1, "proven": 10, "failed": 0, "cancelled": 3, "held": 0},
            },
            "provers": [{
                "id": "p-1",
                "name": "box-a",
                "proof_types": ["exec", "audit"],
                "capacity": 2,
                "running_tasks": ["11/exec"],
                "cordoned": true,
                "cordon_reason": "cordoned automatically: 3 invalid proofs in a row",
                "proofs_accepted": 7,
                "task_errors": 1,
                "invalid_proofs": 3,
                "superseded": 0,
            }],
            "from_memory": false,
            "store_error": null,
            "as_of_ms": null,
            "warnings": [{
                "kind": "batch_gap",
                "message": "batch 12 is missing: settlement stops before 12 until they are submitted",
                "version": null,
                "proof_type": null,
                "first_batch": 12,
                "last_batch": 12,
            }],
            "intake_window": 1024,
            "standby": false,
            "active_url": null,
            "lease_epoch": null,
            "paused": [],
            "market": null,
            "chain_id": 0,
            "chains": [],
        });
        assert_eq!(status_json(&sample()), expected);
        // One line, one object.
        let text = serde_json::to_string(&status_json(&sample())).unwrap();
        assert!(!text.contains('\n'));

        let empty = status_json(&SystemStatusResponse::default());
        assert_eq!(
            empty,
            json!({
                "last_sealed_batch": null, "last_proven_batch": null,
                "last_committed_batch": null, "last_verified_batch": null,
                "last_verify_tx": null, "required_proof_types": [], "draining": false,
                "jobs": {}, "provers": [],
                "from_memory": false, "store_error": null, "as_of_ms": null,
                "warnings": [], "intake_window": 0,
                "standby": false, "active_url": null, "lease_epoch": null, "paused": [],
                "market": null, "chain_id": 0, "chains": [],
            })
        );

        let stale = SystemStatusResponse {
            from_memory: true,
            store_error: "postgres://u@db:5432/p: connection refused".into(),
            as_of_ms: 1_700_000_000_000,
            ..sample()
        };
        let v = status_json(&stale);
        assert_eq!(v["from_memory"], true);
        assert_eq!(
            v["store_error"],
            "postgres://u@db:5432/p: connection refused"
        );
        assert_eq!(v["as_of_ms"], 1_700_000_000_000u64);
        assert_eq!(v["last_sealed_batch"], 13);
    }

    #[test]
    fn paused_components_are_shown_with_their_reason() {
        let paused = SystemStatusResponse {
            paused: vec![
                proofmill_proto::v1::PausedComponent {
                    component: "dispatch".into(),
                    reason: String::new(),
                    since_ms: 1,
                },
                proofmill_proto::v1::PausedComponent {
                    component: "sender".into(),
                    reason: "L1 fees too high".into(),
                    since_ms: 1,
                },
            ],
            ..sample()
        };
        let text = render(&paused);
        assert!(
            text.contains("\npaused (`proofmill resume --component NAME`):\n"),
            "{text}"
        );
        assert!(text.contains("  dispatch since "), "{text}");
        assert!(text.contains(" s ago: L1 fees too high\n"), "{text}");
        assert!(!render(&sample()).contains("paused"));
        let json = status_json(&paused);
        assert_eq!(json["paused"][1]["component"], "sender");
        assert_eq!(json["paused"][1]["reason"], "L1 fees too high");
        assert_eq!(json["paused"][0]["reason"], serde_json::Value::Null);
        assert_eq!(json["paused"][0]["since_ms"], 1);
    }

    #[test]
    fn rendering_flags_figures_from_memory() {
        assert!(!render(&sample()).contains("STORE"));
        let stale = SystemStatusResponse {
            from_memory: true,
            store_error: "postgres://u@db:5432/p: connection refused".into(),
            as_of_ms: 1,
            ..sample()
        };
        let text = render(&stale);
        assert!(
            text.starts_with(
                "STORE NOT ANSWERING: postgres://u@db:5432/p: connection refused\n\
                 figures below: from memory, as read from the store "
            ),
            "{text}"
        );
        assert!(text.contains("last sealed batch     13"), "{text}");
        let never = render(&SystemStatusResponse {
            as_of_ms: 0,
            ..stale
        });
        assert!(
            never.contains("figures below: none read from the store since start"),
            "{never}"
        );
    }

    /// With a proof market: its section, and a HELD column in the jobs table.
    #[test]
    fn market_rendering() {
        let mut s = sample();
        s.jobs.get_mut("exec").unwrap().held = 4;
        s.market = Some(proofmill_proto::v1::MarketStatus {
            mode: "mixed".into(),
            share_ppm: 250_000,
            proof_type: "exec".into(),
            requests: [
                ("acknowledged".to_string(), 4),
                ("validation_result_sent_to_l1".to_string(), 7),
            ]
            .into(),
            fell_back: 2,
            proven_by_network: 5,
        });
        let text = render(&s);
        assert!(
            text.contains(
                "proof market: mixed, 25.0 % of batches, proof type exec: 5 proven by networks, 2 fell back to the own provers"
            ),
            "{text}"
        );
        assert!(
            text.contains("  acknowledged                  4\n"),
            "{text}"
        );
        assert!(
            text.contains("  validation_result_sent_to_l1  7\n"),
            "{text}"
        );
        assert!(text.contains("CANCELLED  HELD"), "{text}");
        let json = status_json(&s);
        assert_eq!(json["market"]["share_ppm"], 250_000);
        assert_eq!(json["market"]["requests"]["acknowledged"], 4);
        assert_eq!(json["jobs"]["exec"]["held"], 4);
        assert!(!render(&sample()).contains("HELD"));
    }

    #[test]
    fn human_rendering() {
        let text = render(&sample());
        assert!(text.contains("last sealed batch     13"), "{text}");
        assert!(text.contains("last committed batch  -"), "{text}");
        assert!(text.contains("last verified batch   0"), "{text}");
        assert!(
            text.contains("last verify tx        0xab (batches 1..=4, gas 90000)"),
            "{text}"
        );
        assert!(
            text.contains("PROOF TYPE  QUEUED  LEASED  PROVEN  FAILED  CANCELLED"),
            "{text}"
        );
        assert!(
            text.contains("  exec             2       1      10       0          3\n"),
            "{text}"
        );
        assert!(text.contains("provers (1 connected)"), "{text}");
        assert!(
            text.contains(
                "  box-a (cordoned)  p-1  exec,audit          2  11/exec             7       1        3\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("  box-a p-1: cordoned automatically: 3 invalid proofs in a row\n"),
            "{text}"
        );
        assert!(!text.contains("gone"), "{text}");
        assert!(
            text.contains(
                "\nwarnings:\n  batch_gap: batch 12 is missing: settlement stops before 12 \
                 until they are submitted\n"
            ),
            "{text}"
        );
        let empty = render(&SystemStatusResponse::default());
        assert!(!empty.contains("warnings"), "{empty}");
        assert!(empty.contains("last sealed batch     -"), "{empty}");
        assert!(
            empty.contains("provers (0 connected):\n  (none)"),
            "{empty}"
        );
    }
}
