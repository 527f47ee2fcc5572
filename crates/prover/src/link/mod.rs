//! The prover's link to one coordinator, or to one store's group of active and standby
//! coordinators ([`groups`]): opens a stream, registers ([`handshake`]), serves it
//! ([`session`]) and, when it ends, reconnects with backoff or fails over to another URL of
//! the group, keeping its identity and its [`Tasks`] from one stream to the next.

mod groups;
mod handshake;
mod outgoing;
mod session;

pub(crate) use groups::Groups;

use crate::Settings;
use crate::backoff::Backoff;
use crate::capacity::Capacity;
use crate::state::CoordinatorState;
use crate::stats::Counters;
use crate::tasks::Tasks;
use groups::same_url;
use handshake::{Identity, NotRegistered};
use session::{Session, SessionEnd};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

/// Delay before asking again after a standby's refusal, or before trying the next URL of a
/// group: a takeover takes a few seconds, and provers should find the new active one soon.
const FAILOVER_RETRY: Duration = Duration::from_millis(250);
/// Longest delay between two attempts while a link has several URLs.
const FAILOVER_MAX_DELAY: Duration = Duration::from_secs(1);
/// A session that stayed registered this long resets the reconnect backoff.
const HEALTHY_SESSION: Duration = Duration::from_secs(1);

/// How one stream ended, or why it never got registered.
enum StreamEnd {
    /// Stream closed, failed, or never opened: reconnect after backoff.
    Lost { registered_for: Option<Duration> },
    /// Registration refused; `operator` means only an operator can fix it (the long,
    /// growing backoff of refusals).
    Rejected { operator: bool },
    /// The coordinator refused the prover's credentials: the refusals' backoff, said plainly.
    CredentialsRefused { reason: String },
    /// Refused by a standby coordinator, which named the active one's URL.
    Standby { active: String },
    /// The prover is stopping (or was told to stop serving this coordinator): do not
    /// reconnect.
    Stopped,
    /// The coordinator shut down and we drained: come back when it is up again.
    Drained,
}

pub(crate) struct CoordinatorLink {
    /// The URLs of one coordinator group: the first one it was given, and those handed over
    /// by links to its standbys.
    urls: Vec<String>,
    /// Which of `urls` it connects to.
    at: usize,
    groups: Arc<Groups>,
    handed_over: mpsc::Receiver<String>,
    settings: Arc<Settings>,
    capacity: Arc<Capacity>,
    counters: Arc<Counters>,
    stop: watch::Receiver<bool>,
    identity: Option<Identity>,
    /// Where the identity and unacknowledged results are kept across restarts, if anywhere.
    state: Option<CoordinatorState>,
    tasks: Tasks,
    backoff: Backoff,
}

impl CoordinatorLink {
    /// A link to `url`; with `state`, it comes back as the prover the last process was, with
    /// the results that process finished and never had acknowledged.
    pub fn new(
        url: String,
        groups: Arc<Groups>,
        (settings, capacity, counters): (Arc<Settings>, Arc<Capacity>, Arc<Counters>),
        stop: watch::Receiver<bool>,
        state: Option<CoordinatorState>,
    ) -> Self {
        let backoff = Backoff::new(settings.reconnect_min, settings.reconnect_max)
            .with_refused_max(settings.refused_max);
        let identity = state
            .as_ref()
            .and_then(|s| s.identity())
            .map(|(prover_id, secret)| Identity { prover_id, secret });
        let tasks = Tasks::new(
            settings.clone(),
            capacity.clone(),
            counters.clone(),
            state.clone(),
        );
        if identity.is_some() || tasks.unacked_len() > 0 {
            info!(
                prover_id = identity.as_ref().map_or("", |i| i.prover_id.as_str()),
                results = tasks.unacked_len(),
                "resuming from the state dir"
            );
        }
        let handed_over = groups.join(&url);
        CoordinatorLink {
            urls: vec![url],
            at: 0,
            groups,
            handed_over,
            settings,
            capacity,
            counters,
            stop,
            identity,
            state,
            tasks,
            backoff,
        }
    }

    pub async fn run(mut self) {
        let mut stop = self.stop.clone();
        loop {
            if *stop.borrow() || stop.has_changed().is_err() {
                break;
            }
            let delay = match self.serve_one_stream().await {
                StreamEnd::Stopped => break,
                StreamEnd::Standby { active } => match self.follow(&active) {
                    Some(delay) => delay,
                    None => {
                        self.groups.leave(&self.urls[0]);
                        return;
                    }
                },
                StreamEnd::Drained => {
                    self.backoff.reset();
                    self.backoff.next_delay()
                }
                StreamEnd::Rejected { operator: true } => self.backoff.refused_delay(),
                StreamEnd::CredentialsRefused { reason } => {
                    let delay = self.backoff.refused_delay();
                    error!(
                        coordinator = %self.url(),
                        reason = %reason.escape_debug(),
                        retry_in = %format_args!("{:.1} s", delay.as_secs_f64()),
                        "the coordinator refused this prover's credentials: check its prover \
                         token; trying again later, less often each time"
                    );
                    delay
                }
                StreamEnd::Rejected { operator: false } => self.backoff.next_delay(),
                StreamEnd::Lost { registered_for } => {
                    if registered_for.is_some_and(|d| d >= HEALTHY_SESSION) {
                        self.backoff.reset();
                    }
                    self.take_handed_over();
                    if self.urls.len() > 1 {
                        // The coordinator may have died: its standby takes over soon.
                        self.at = (self.at + 1) % self.urls.len();
                        self.backoff.next_delay().min(FAILOVER_MAX_DELAY)
                    } else {
                        self.backoff.next_delay()
                    }
                }
            };
            self.tasks.drop_incomplete_inputs();
            debug!(?delay, "reconnecting after backoff");
            let sleep = tokio::time::sleep(delay);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    _ = wait_stop(&mut stop) => {
                        self.tasks.abandon("prover stopping");
                        return;
                    }
                    // Results finished meanwhile are kept for the next stream; their slots
                    // go back now.
                    proved = self.tasks.next_proved() => drop(self.tasks.proved(proved)),
                }
            }
        }
        self.groups.leave(&self.urls[0]);
        self.tasks.abandon("connection closed");
    }

    fn url(&self) -> &str {
        &self.urls[self.at]
    }

    /// One stream: register, then serve it until it ends.
    async fn serve_one_stream(&mut self) -> StreamEnd {
        Counters::bump(&self.counters.connect_attempts);
        while let Some(proved) = self.tasks.try_next_proved() {
            drop(self.tasks.proved(proved));
        }
        let (out, requests) = outgoing::queue(outgoing::limit(self.tasks.result_room()));
        let hello = handshake::hello(&self.settings, self.identity.as_ref(), self.tasks.running());
        out.send(hello)
            .expect("an empty queue has room for the hello");
        let mut stop = self.stop.clone();
        let registered = tokio::select! {
            r = handshake::register(&self.settings, self.url(), requests) => r,
            _ = wait_stop(&mut stop) => return StreamEnd::Stopped,
        };
        let registered = match registered {
            Ok(registered) => registered,
            Err(NotRegistered::Unreachable) => {
                return StreamEnd::Lost {
                    registered_for: None,
                };
            }
            Err(NotRegistered::Standby { active }) => return StreamEnd::Standby { active },
            Err(NotRegistered::Rejected { operator }) => return StreamEnd::Rejected { operator },
            Err(NotRegistered::CredentialsRefused { reason }) => {
                return StreamEnd::CredentialsRefused { reason };
            }
            Err(NotRegistered::ReconnectRefused { reason }) => {
                // The coordinator does not know this id (another store) or its secret:
                // become a new prover, without the old id's work, which it would refuse.
                warn!(%reason, "reconnect refused; registering anew");
                self.tasks.abandon_identity("reconnect refused");
                self.identity = None;
                if let Some(state) = &self.state {
                    state.forget_identity();
                }
                return StreamEnd::Rejected { operator: false };
            }
        };
        let reconnect = self.identity.is_some();
        if reconnect {
            metrics::counter!(proofmill_telemetry::names::PROVER_RECONNECTS_TOTAL).increment(1);
        }
        if let Some(given) = &registered.identity {
            if let Some(state) = &self.state
                && self.identity.as_ref() != Some(given)
            {
                state.save_identity(&given.prover_id, &given.secret);
            }
            self.identity = Some(given.clone());
        }
        info!(
            prover_id = registered
                .identity
                .as_ref()
                .map_or("", |i| i.prover_id.as_str()),
            reconnect,
            resending = self.tasks.unacked_len(),
            heartbeat_ms = registered
                .heartbeat_interval
                .map_or(0, |d| d.as_millis() as u64),
            "registered with coordinator"
        );
        let session = Session::new(
            &mut self.tasks,
            self.capacity.clone(),
            out,
            &registered,
            self.settings.max_message_bytes,
            self.settings.exit_on_shutdown,
        );
        match session
            .run(registered.inbound, stop, self.counters.clone())
            .await
        {
            SessionEnd::Lost { registered_for } => StreamEnd::Lost {
                registered_for: Some(registered_for),
            },
            SessionEnd::Stopped => StreamEnd::Stopped,
            SessionEnd::Drained => StreamEnd::Drained,
        }
    }

    fn take_handed_over(&mut self) {
        while let Ok(url) = self.handed_over.try_recv() {
            if !self.urls.iter().any(|u| same_url(u, &url)) {
                info!(%url, "standby of this coordinator: failing over there when it takes over");
                self.urls.push(url);
            }
        }
    }

    /// After a standby named `active`: the delay before connecting again (to `active` when
    /// it is one of this link's URLs), or `None` when this link, holding nothing, handed its
    /// URLs to the link to `active` and ends.
    fn follow(&mut self, active: &str) -> Option<Duration> {
        self.take_handed_over();
        if let Some(i) = self.urls.iter().position(|u| same_url(u, active)) {
            if i != self.at {
                info!(standby = %self.url(), %active, "following the active coordinator");
                self.at = i;
            }
            return Some(FAILOVER_RETRY);
        }
        if self.tasks.holds_nothing() && self.groups.hand_over(active, &self.urls) {
            info!(standby = %self.url(), %active, "a standby of another coordinator given: its connection takes this URL over");
            return None;
        }
        Some(FAILOVER_RETRY.max(self.backoff.next_delay().min(FAILOVER_MAX_DELAY)))
    }
}

/// Resolves once the prover stops.
pub(super) async fn wait_stop(stop: &mut watch::Receiver<bool>) {
    // A dropped sender (the `run` future was dropped) also means stop.
    let _ = stop.wait_for(|s| *s).await;
}
