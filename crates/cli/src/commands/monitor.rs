//! `proofmill monitor`: the terminal and the coordinator connection around
//! `proofmill_monitor`'s model. Status snapshots (at start, every `--refresh-ms`, after a
//! missed event or an action), watch events, keys and action results all arrive as messages
//! on one bounded channel; the loop applies them to the model and redraws.

use super::status::{Admin, check, connect, request_failed};
use crate::args::MonitorArgs;
use proofmill_monitor::{Action, Key, KeyOutcome, Model, Snapshot};
use proofmill_proto::v1::{
    CancelJobRequest, CordonProverRequest, JobsListRequest, PauseComponentRequest,
    ResumeComponentRequest, RetryJobRequest, SystemStatusRequest, WatchEvent, WatchRequest,
};
use ratatui::crossterm::event::{self, KeyCode, KeyEventKind, KeyModifiers};
use std::io::IsTerminal as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// Batches below the sealed tip whose jobs a snapshot reads for the batches table.
const JOB_WINDOW_BATCHES: u64 = 100;
/// Wait before watching again after the stream failed or ended.
const REWATCH_DELAY: Duration = Duration::from_secs(2);
/// Messages queued for the loop; a full queue holds the watch back, and a coordinator drops
/// events for a slow watcher and says `missed` (then the monitor reads status again).
const QUEUE: usize = 1024;

enum Msg {
    Key(Key),
    Redraw,
    /// Read status again (unless a read is running).
    Refresh,
    Snapshot(Result<Box<Snapshot>, String>),
    Event(WatchEvent),
    Feed(String),
    Done(Action, Result<String, String>),
}

pub async fn run(args: MonitorArgs) -> anyhow::Result<()> {
    if !std::io::stdout().is_terminal() {
        anyhow::bail!(
            "proofmill monitor draws on a terminal and stdout is not one; scripts read \
             `proofmill status --json` or `proofmill watch --json`"
        );
    }
    let url = args.coordinator.clone();
    let admin = connect(&url, &args.access).await?;
    // The first read fails the command (wrong token, wrong URL) before the terminal is taken.
    let first = snapshot(admin.clone(), &url).await?;
    let mut model = Model::new(url.clone());
    model.tick(now_ms());
    model.apply_snapshot(first);

    let (tx, mut rx) = mpsc::channel::<Msg>(QUEUE);
    let watcher = tokio::spawn(watch(admin.clone(), url.clone(), tx.clone()));
    let stop_keys = Arc::new(AtomicBool::new(false));
    let keys = {
        let (tx, stop) = (tx.clone(), stop_keys.clone());
        std::thread::spawn(move || read_keys(&tx, &stop))
    };

    let mut terminal = ratatui::try_init()?;
    let result = async {
        let mut refresh = tokio::time::interval(Duration::from_millis(args.refresh_ms));
        let mut clock = tokio::time::interval(Duration::from_secs(1));
        let mut refreshing = false;
        // SIGTERM (or SIGINT from outside: in raw mode Ctrl-C is a key) quits cleanly too.
        let mut stop = std::pin::pin!(super::shutdown_signal());
        loop {
            model.tick(now_ms());
            terminal.draw(|frame| proofmill_monitor::render(&model, frame))?;
            let first = tokio::select! {
                Some(msg) = rx.recv() => msg,
                _ = refresh.tick() => Msg::Refresh,
                _ = clock.tick() => Msg::Redraw,
                _ = &mut stop => return Ok(()),
            };
            // Everything queued already is applied before drawing once.
            let mut batch = vec![first];
            while batch.len() < QUEUE
                && let Ok(msg) = rx.try_recv()
            {
                batch.push(msg);
            }
            for msg in batch {
                match msg {
                    Msg::Key(key) => match model.on_key(key) {
                        KeyOutcome::Quit => return Ok(()),
                        KeyOutcome::Nothing => {}
                        KeyOutcome::Run(action) => {
                            tokio::spawn(act(admin.clone(), action, tx.clone()));
                        }
                    },
                    Msg::Redraw => {}
                    Msg::Refresh => {
                        if !refreshing {
                            refreshing = true;
                            tokio::spawn(refresh_to(admin.clone(), url.clone(), tx.clone()));
                        }
                    }
                    Msg::Snapshot(result) => {
                        refreshing = false;
                        match result {
                            Ok(s) => model.apply_snapshot(*s),
                            Err(e) => model.feed_error(e),
                        }
                    }
                    Msg::Event(event) => model.apply_event(&event),
                    Msg::Feed(feed) => model.set_feed(feed),
                    Msg::Done(action, result) => model.action_done(&action, result),
                }
            }
            if model.needs_refresh() && !refreshing {
                refreshing = true;
                tokio::spawn(refresh_to(admin.clone(), url.clone(), tx.clone()));
            }
        }
    }
    .await;
    ratatui::restore();
    stop_keys.store(true, Ordering::Relaxed);
    watcher.abort();
    let _ = keys.join();
    result
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Status, the jobs of the newest batches, and each proof type's oldest queued job.
async fn snapshot(mut admin: Admin, url: &str) -> anyhow::Result<Snapshot> {
    let status = admin
        .system_status(SystemStatusRequest {})
        .await
        .map_err(|s| request_failed("SystemStatus", url, s))?
        .into_inner();
    let types = status.required_proof_types.len().max(1) as u64;
    let from_batch = status
        .last_sealed_batch
        .unwrap_or(0)
        .saturating_sub(JOB_WINDOW_BATCHES - 1)
        .max(1);
    let jobs = admin
        .jobs_list(JobsListRequest {
            from_batch,
            limit: (JOB_WINDOW_BATCHES * types).min(10_000) as u32,
            ..Default::default()
        })
        .await
        .map_err(|s| request_failed("JobsList", url, s))?
        .into_inner();
    check(jobs.error)?;
    let mut oldest_queued_ms = std::collections::BTreeMap::new();
    for (proof_type, counts) in &status.jobs {
        if counts.queued == 0 {
            continue;
        }
        let queued = admin
            .jobs_list(JobsListRequest {
                proof_type: proof_type.clone(),
                state: "queued".into(),
                limit: 1,
                ..Default::default()
            })
            .await
            .map_err(|s| request_failed("JobsList", url, s))?
            .into_inner();
        check(queued.error)?;
        if let Some(job) = queued.jobs.first() {
            oldest_queued_ms.insert(proof_type.clone(), job.updated_at_ms);
        }
    }
    Ok(Snapshot {
        status,
        jobs: jobs.jobs,
        oldest_queued_ms,
    })
}

async fn refresh_to(admin: Admin, url: String, tx: mpsc::Sender<Msg>) {
    let result = snapshot(admin, &url)
        .await
        .map(Box::new)
        .map_err(|e| format!("{e:#}"));
    let _ = tx.send(Msg::Snapshot(result)).await;
}

/// Forwards watch events until the loop ends; watches again when the stream fails or ends
/// (a restarted coordinator), and asks for a snapshot then (events in between are lost).
async fn watch(admin: Admin, url: String, tx: mpsc::Sender<Msg>) {
    loop {
        let started = admin.clone().watch(WatchRequest {}).await;
        let why = match started {
            Err(s) => format!("{:#}", request_failed("Watch", &url, s)),
            Ok(stream) => {
                let mut stream = stream.into_inner();
                if tx.send(Msg::Feed("watching".into())).await.is_err() {
                    return;
                }
                loop {
                    match stream.message().await {
                        Ok(Some(event)) => {
                            if tx.send(Msg::Event(event)).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => break "the coordinator ended the watch".to_string(),
                        Err(s) => break format!("{:#}", request_failed("Watch", &url, s)),
                    }
                }
            }
        };
        let feed = format!(
            "NOT WATCHING: {why}; again in {} s",
            REWATCH_DELAY.as_secs()
        );
        if tx.send(Msg::Feed(feed)).await.is_err() {
            return;
        }
        tokio::time::sleep(REWATCH_DELAY).await;
        // What happened while not watching shows in a snapshot, as after `missed`.
        if tx.send(Msg::Refresh).await.is_err() {
            return;
        }
    }
}

/// A call a key ran failed: its gRPC code as the protocol names it, and the server's reason
/// (the status line already says which action, on which coordinator).
fn refused(s: tonic::Status) -> anyhow::Error {
    let mut code = String::new();
    for (i, c) in format!("{:?}", s.code()).chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            code.push('_');
        }
        code.push(c.to_ascii_uppercase());
    }
    anyhow::anyhow!("{code}: {}", s.message())
}

/// Runs one admin call a key asked for and reports its result.
async fn act(mut admin: Admin, action: Action, tx: mpsc::Sender<Msg>) {
    let result: anyhow::Result<String> = async {
        Ok(match &action {
            Action::Cordon {
                prover, cordoned, ..
            } => {
                let r = admin
                    .cordon_prover(CordonProverRequest {
                        prover_id: prover.clone(),
                        cordoned: *cordoned,
                    })
                    .await
                    .map_err(refused)?
                    .into_inner();
                check(r.error)?;
                "done".to_string()
            }
            Action::Retry { batch, proof_type } => {
                let r = admin
                    .retry_job(RetryJobRequest {
                        // The monitor shows the coordinator's own chain.
                        chain_id: 0,
                        batch: *batch,
                        proof_type: proof_type.clone(),
                    })
                    .await
                    .map_err(refused)?
                    .into_inner();
                check(r.error)?;
                format!("{} job(s) queued again", r.retried)
            }
            Action::Cancel { batch, proof_type } => {
                let r = admin
                    .cancel_job(CancelJobRequest {
                        chain_id: 0,
                        batch: *batch,
                        proof_type: proof_type.clone(),
                        reason: "cancelled from proofmill monitor".into(),
                    })
                    .await
                    .map_err(refused)?
                    .into_inner();
                check(r.error)?;
                if r.cancelled {
                    "cancelled (r queues it again)".into()
                } else {
                    "it was cancelled already".into()
                }
            }
            Action::Pause { component } => {
                let r = admin
                    .pause_component(PauseComponentRequest {
                        component: component.clone(),
                        reason: "paused from proofmill monitor".into(),
                    })
                    .await
                    .map_err(refused)?
                    .into_inner();
                check(r.error)?;
                if r.changed {
                    "paused".into()
                } else {
                    "it was paused already".into()
                }
            }
            Action::Resume { component } => {
                let r = admin
                    .resume_component(ResumeComponentRequest {
                        component: component.clone(),
                    })
                    .await
                    .map_err(refused)?
                    .into_inner();
                check(r.error)?;
                if r.changed {
                    "resumed".into()
                } else {
                    "it was not paused".into()
                }
            }
        })
    }
    .await;
    let _ = tx
        .send(Msg::Done(action, result.map_err(|e| format!("{e:#}"))))
        .await;
}

/// The terminal's key presses (and resizes, as redraws), until `stop`; on its own thread
/// because crossterm's reads block.
fn read_keys(tx: &mpsc::Sender<Msg>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match event::poll(Duration::from_millis(100)) {
            Ok(false) => continue,
            Ok(true) => {}
            Err(_) => return,
        }
        let msg = match event::read() {
            Ok(event::Event::Key(k)) if k.kind != KeyEventKind::Release => {
                let ctrl_c =
                    k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char('c');
                match k.code {
                    _ if ctrl_c => Msg::Key(Key::Char('q')),
                    KeyCode::Char(c) => Msg::Key(Key::Char(c)),
                    KeyCode::Tab | KeyCode::BackTab => Msg::Key(Key::Tab),
                    KeyCode::Up => Msg::Key(Key::Up),
                    KeyCode::Down => Msg::Key(Key::Down),
                    KeyCode::PageUp => Msg::Key(Key::PageUp),
                    KeyCode::PageDown => Msg::Key(Key::PageDown),
                    KeyCode::Home => Msg::Key(Key::Home),
                    KeyCode::End => Msg::Key(Key::End),
                    KeyCode::Esc => Msg::Key(Key::Esc),
                    _ => continue,
                }
            }
            Ok(event::Event::Resize(..)) => Msg::Redraw,
            Ok(_) => continue,
            Err(_) => return,
        };
        if tx.blocking_send(msg).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_refusal_names_its_grpc_code_as_the_protocol_does() {
        let e = super::refused(tonic::Status::permission_denied("read-only token"));
        assert_eq!(e.to_string(), "PERMISSION_DENIED: read-only token");
        let e = super::refused(tonic::Status::unavailable("tcp connect error"));
        assert_eq!(e.to_string(), "UNAVAILABLE: tcp connect error");
    }
}
