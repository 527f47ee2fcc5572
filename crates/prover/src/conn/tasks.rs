//! The task lifecycle of one connection: an ExecuteTask arrives (inline or in chunks), takes a
//! slot, is proven on a blocking thread, and its result waits in the outbox until acked.

use super::*;

impl Finished {
    pub(crate) fn new(outcome: Outcome, prove_ms: u64) -> Self {
        Finished {
            outcome,
            prove_ms,
            resend: None,
        }
    }
}

/// A result the coordinator could not take: when to send it again (`None` once sent, until
/// the next answer), and the last wait, which doubles up to [`RESEND_MAX`] on each refusal.
#[derive(Clone, Copy)]
pub(super) struct Resend {
    due: Option<Instant>,
    wait: Duration,
}

const RESEND_FIRST: Duration = Duration::from_millis(500);
const RESEND_MAX: Duration = Duration::from_secs(30);

impl Conn {
    pub(super) fn decline(&self, s: &Session, key: &Key, reason: &str) {
        info!(task = %key.0, token = key.1, reason, "task declined");
        StatsInner::inc(&self.shared.stats.declined);
        s.send(prover_message::Kind::TaskDeclined(TaskDeclined {
            task_id: key.0.clone(),
            fencing_token: key.1,
            reason: reason.to_string(),
        }));
    }

    /// Keeps a finished result until it is acknowledged: in memory, and in the state dir
    /// when there is one, so that a restarted prover still offers it.
    fn keep(&mut self, key: Key, finished: Finished) {
        if let Some(state) = &self.state {
            state.save_result(&key, &finished);
        }
        self.outbox.insert(key, finished);
    }

    /// Records an error result (no proving happened) and sends it.
    pub(super) fn fail(&mut self, s: &Session, key: Key, error: String) {
        warn!(task = %key.0, token = key.1, error = %error, "task failed");
        StatsInner::inc(&self.shared.stats.failed);
        let f = Finished::new(Outcome::Error(error), 0);
        s.send_result(&key, &f);
        self.keep(key, f);
    }

    pub(super) fn on_execute(&mut self, s: &mut Session, t: ExecuteTask) {
        let key: Key = (t.task_id.clone(), t.fencing_token);
        if self.tasks.contains_key(&key) {
            debug!(task = %t.task_id, "duplicate ExecuteTask for a running task; ignoring");
            return;
        }
        if let Some(f) = self.outbox.get(&key) {
            debug!(task = %t.task_id, "ExecuteTask for a finished task; resending its result");
            s.send_result(&key, f);
            return;
        }
        if s.draining.is_some() {
            return self.decline(s, &key, "prover is shutting down");
        }
        let Some(backend) = self.shared.backends.get(&t.proof_type).cloned() else {
            return self.decline(
                s,
                &key,
                &format!("proof type {:?} not served", t.proof_type),
            );
        };
        if !t.version.is_empty() && t.version != self.shared.version {
            let reason = format!(
                "version {:?} differs from the prover's {:?}",
                t.version, self.shared.version
            );
            return self.decline(s, &key, &reason);
        }
        if t.deadline_ms != 0 && now_ms() >= t.deadline_ms {
            return self.decline(s, &key, "deadline already passed");
        }
        // Opaque here: only the backend reads them (and refuses what it cannot prove).
        let expected = PublicValues::new(t.public_values.clone());
        let Some(input_digest) = Digest::from_slice(&t.input_digest) else {
            let e = format!(
                "input_digest must be 32 bytes, got {}",
                t.input_digest.len()
            );
            return self.fail(s, key, e);
        };
        let prepared = Prepared {
            task_id: t.task_id.clone(),
            token: t.fencing_token,
            batch: t.batch,
            deadline_ms: t.deadline_ms,
            backend,
            expected,
            input_digest,
        };
        match t.input {
            None => self.fail(s, key, "task has no input".to_string()),
            Some(execute_task::Input::BlobUrl(url)) => {
                let Some(reader) = self.shared.blob_reader.clone() else {
                    let e = format!("blob_url input, but this prover has no blob access: {url}");
                    return self.fail(s, key, e);
                };
                let Some(slot) = self.shared.try_acquire() else {
                    return self.decline(s, &key, "no free slot");
                };
                self.start(prepared, Input::Url(reader, url), slot);
            }
            Some(execute_task::Input::Inline(bytes)) => {
                if t.input_size != 0 && t.input_size != bytes.len() as u64 {
                    let e = format!(
                        "inline input is {} bytes, input_size says {}",
                        bytes.len(),
                        t.input_size
                    );
                    return self.fail(s, key, e);
                }
                let Some(slot) = self.shared.try_acquire() else {
                    return self.decline(s, &key, "no free slot");
                };
                self.start(prepared, Input::Bytes(bytes), slot);
            }
            Some(execute_task::Input::Chunked(_)) => {
                if t.input_size > MAX_CHUNKED_INPUT_BYTES {
                    let e = format!(
                        "input_size {} exceeds the limit {MAX_CHUNKED_INPUT_BYTES}",
                        t.input_size
                    );
                    return self.fail(s, key, e);
                }
                let Some(slot) = self.shared.try_acquire() else {
                    return self.decline(s, &key, "no free slot");
                };
                info!(task = %t.task_id, token = t.fencing_token, size = t.input_size, "receiving chunked input");
                let input = ChunkAssembler::new(t.input_size);
                self.tasks.insert(
                    key,
                    TaskState::Collecting {
                        prepared,
                        input,
                        slot,
                    },
                );
            }
        }
    }

    pub(super) fn on_chunk(&mut self, s: &mut Session, c: DataChunk) {
        let key: Key = (c.task_id.clone(), c.fencing_token);
        let Some(TaskState::Collecting { input, .. }) = self.tasks.get_mut(&key) else {
            debug!(task = %c.task_id, token = c.fencing_token, "input chunk for no pending input; ignoring");
            return;
        };
        match input.push(c.offset, c.data, c.last) {
            Ok(false) => {}
            Ok(true) => {
                let Some(TaskState::Collecting {
                    prepared,
                    input,
                    slot,
                }) = self.tasks.remove(&key)
                else {
                    unreachable!("checked above")
                };
                if prepared.deadline_ms != 0 && now_ms() >= prepared.deadline_ms {
                    drop(slot);
                    return self.decline(s, &key, "deadline passed while receiving the input");
                }
                self.start(prepared, Input::Bytes(input.into_bytes()), slot);
            }
            Err(e) => {
                self.tasks.remove(&key);
                self.fail(s, key, format!("bad input chunk: {e}"));
            }
        }
    }

    /// Drops inputs still incomplete at their deadline; reports an error result for them.
    /// (A proof past its deadline is stopped by the coordinator's TaskCancelled, not here:
    /// the coordinator may have extended the lease, e.g. when it adopted it after a restart,
    /// and the two clocks differ.)
    pub(super) fn expire_inputs(&mut self, s: &Session) {
        let now = now_ms();
        let expired: Vec<Key> = self
            .tasks
            .iter()
            .filter(|(_, t)| {
                matches!(t, TaskState::Collecting { prepared, .. }
                    if prepared.deadline_ms != 0 && now >= prepared.deadline_ms)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            let received = match self.tasks.remove(&key) {
                Some(TaskState::Collecting { input, .. }) => input.received(),
                _ => 0,
            };
            self.fail(
                s,
                key,
                format!("input incomplete at the deadline ({received} bytes received)"),
            );
        }
    }

    /// Runs the task on a blocking thread, which verifies the input digest, proves, hashes
    /// the proof and reports back through `done_tx`, handing the slot back with the result.
    pub(super) fn start(&mut self, p: Prepared, input: Input, slot: SlotGuard) {
        let key: Key = (p.task_id.clone(), p.token);
        info!(
            task = %p.task_id,
            token = p.token,
            backend = p.backend.name(),
            input = %input,
            "task started"
        );
        let cancel = Cancel::default();
        self.tasks.insert(
            key.clone(),
            TaskState::Proving {
                cancelled: false,
                cancel: cancel.clone(),
            },
        );
        let done_tx = self.done_tx.clone();
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let input = match input {
                Input::Bytes(b) => Ok(b),
                // This is a blocking-pool thread: waiting on the runtime here is allowed.
                Input::Url(reader, url) => runtime
                    .block_on(reader.read(&url))
                    .map_err(|e| format!("reading the input from {url}: {e}")),
            };
            let outcome = match &input {
                Ok(input) => prove(&p, input, &cancel),
                Err(e) => Outcome::Error(e.clone()),
            };
            let prove_ms = started.elapsed().as_millis() as u64;
            drop(input);
            // A connection that is gone drops the message, and with it the slot.
            let _ = done_tx.send(Done {
                key,
                finished: Finished::new(outcome, prove_ms),
                slot,
            });
        });
    }

    /// A proving thread finished. Returns the key when a result went into the outbox, with
    /// the task's slot for the caller to release once the result is sent.
    pub(super) fn on_done(&mut self, done: Done) -> Option<(Key, SlotGuard)> {
        let Done {
            key,
            finished,
            slot,
        } = done;
        match self.tasks.get(&key) {
            Some(TaskState::Proving {
                cancelled: false, ..
            }) => {
                self.tasks.remove(&key);
            }
            Some(TaskState::Proving {
                cancelled: true, ..
            }) => {
                self.tasks.remove(&key);
                info!(task = %key.0, token = key.1, "cancelled task finished; result discarded");
                return None;
            }
            _ => {
                debug!(task = %key.0, token = key.1, "result for a task no longer tracked; discarded");
                return None;
            }
        }
        match &finished.outcome {
            Outcome::Proof { bytes, .. } => {
                StatsInner::inc(&self.shared.stats.completed);
                info!(task = %key.0, token = key.1, prove_ms = finished.prove_ms, proof_bytes = bytes.len(), "task proven");
            }
            Outcome::Error(e) => {
                StatsInner::inc(&self.shared.stats.failed);
                warn!(task = %key.0, token = key.1, prove_ms = finished.prove_ms, error = %e, "task failed");
            }
        }
        self.keep(key.clone(), finished);
        Some((key, slot))
    }

    pub(super) fn on_ack(&mut self, a: ResultAck) {
        let key: Key = (a.task_id, a.fencing_token);
        let Some(finished) = self.outbox.get_mut(&key) else {
            debug!(task = %key.0, token = key.1, "ack for no pending result");
            return;
        };
        let passing = matches!(
            ErrorCode::try_from(a.code),
            Ok(ErrorCode::SystemUnavailable | ErrorCode::Internal)
        );
        if !a.accepted && passing {
            // The coordinator could not take it now (a store or blob write failed): keep the
            // proof and offer it again; only a final answer lets it go.
            let wait = finished
                .resend
                .map_or(RESEND_FIRST, |r| (r.wait * 2).min(RESEND_MAX));
            finished.resend = Some(Resend {
                due: Some(Instant::now() + wait),
                wait,
            });
            warn!(task = %key.0, token = key.1, code = code_name(a.code), reason = %a.reason, ?wait, "coordinator could not take the result; will resend");
            return;
        }
        let Some(finished) = self.outbox.remove(&key) else {
            return;
        };
        if let Some(state) = &self.state {
            state.remove_result(&key);
        }
        if a.accepted {
            let proof = matches!(finished.outcome, Outcome::Proof { .. });
            StatsInner::inc(&self.shared.stats.acked);
            if proof {
                StatsInner::inc(&self.shared.stats.proofs_acked);
            }
            info!(task = %key.0, token = key.1, proof, "result acknowledged");
        } else {
            StatsInner::inc(&self.shared.stats.rejected);
            warn!(
                task = %key.0,
                token = key.1,
                code = code_name(a.code),
                reason = %a.reason,
                "result rejected by the coordinator; dropped"
            );
        }
    }

    /// Sends again the results whose resend time has come.
    pub(super) fn resend_due(&mut self, s: &Session) {
        let now = Instant::now();
        for (key, f) in &mut self.outbox {
            if let Some(r) = &mut f.resend
                && r.due.is_some_and(|due| due <= now)
            {
                r.due = None;
                s.send_result(key, f);
            }
        }
    }

    pub(super) fn on_cancel(&mut self, c: TaskCancelled) {
        let key: Key = (c.task_id, c.fencing_token);
        let known = match self.tasks.get_mut(&key) {
            Some(TaskState::Collecting { .. }) => {
                self.tasks.remove(&key);
                true
            }
            Some(TaskState::Proving {
                cancelled, cancel, ..
            }) => {
                let first = !*cancelled;
                *cancelled = true;
                cancel.cancel();
                first
            }
            // A finished result stays until its ResultAck: the coordinator may hold it as
            // accepted already (a lost ack, then a Reconnect listing the task), or not yet
            // durably; only the ack to the result it resends says which.
            None => {
                if self.outbox.contains_key(&key) {
                    debug!(task = %key.0, token = key.1, "cancel for a finished result; keeping it until acknowledged");
                }
                false
            }
        };
        if known {
            StatsInner::inc(&self.shared.stats.cancelled);
            info!(task = %key.0, token = key.1, reason = %c.reason, "task cancelled");
        } else {
            debug!(task = %key.0, token = key.1, "cancel for an unknown task");
        }
    }
}

impl Conn {
    /// The coordinator refused this connection's prover id: whatever runs or waits under it
    /// can never be accepted (results are fenced by prover as well as token), so stop it
    /// and free the slots for the work the new id will get.
    pub(super) fn abandon_all(&mut self, why: &str) {
        let (mut stopped, dropped) = (0usize, self.outbox.len());
        for (_, task) in self.tasks.iter_mut() {
            match task {
                TaskState::Collecting { .. } => stopped += 1,
                TaskState::Proving { cancelled, cancel } => {
                    if !*cancelled {
                        *cancelled = true;
                        stopped += 1;
                    }
                    cancel.cancel();
                }
            }
        }
        // Collecting tasks hold their slots: dropping them frees the slots now. Proving ones
        // free theirs when their thread reports back (at once if the backend can stop).
        self.tasks
            .retain(|_, t| matches!(t, TaskState::Proving { .. }));
        self.outbox.clear();
        if let Some(state) = &self.state {
            state.remove_all_results();
        }
        for _ in 0..stopped {
            StatsInner::inc(&self.shared.stats.cancelled);
        }
        if stopped + dropped > 0 {
            warn!(
                stopped,
                results_dropped = dropped,
                reason = why,
                "work of the old prover id abandoned"
            );
        }
    }
}

/// Blocking: digest check, prove, proof digest.
fn prove(p: &Prepared, input: &[u8], cancel: &Cancel) -> Outcome {
    let actual = Digest::sha256(input);
    if actual != p.input_digest {
        return Outcome::Error(format!(
            "input digest mismatch: expected {}, got {actual} ({} bytes)",
            p.input_digest,
            input.len()
        ));
    }
    let req = ProveRequest {
        batch: p.batch,
        input,
        expected: &p.expected,
    };
    let backend = p.backend.clone();
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        backend.prove_cancellable(&req, cancel)
    })) {
        Ok(Ok(bytes)) => {
            let digest = Digest::sha256(&bytes);
            Outcome::Proof { bytes, digest }
        }
        Ok(Err(e)) => Outcome::Error(e.to_string()),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            Outcome::Error(format!("backend panicked: {msg}"))
        }
    }
}

/// Where a task's input comes from.
pub(super) enum Input {
    Bytes(Vec<u8>),
    /// Read from the coordinator's blob store by this prover (`--blob-access`).
    Url(Arc<dyn BlobReader>, String),
}

impl std::fmt::Display for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Input::Bytes(b) => write!(f, "{} bytes", b.len()),
            Input::Url(_, url) => write!(f, "{url}"),
        }
    }
}
