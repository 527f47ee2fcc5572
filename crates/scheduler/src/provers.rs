use crate::prove_times::ProveTimes;
use proofmill_types::{JobKey, Millis, ProofType, ProverId};
use std::collections::BTreeSet;

/// What a prover declares when it registers (or reconnects).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProverInfo {
    pub name: String,
    pub proof_types: BTreeSet<ProofType>,
    pub capacity: u32,
    pub version: String,
}

#[derive(Clone, Debug)]
pub(crate) struct ProverEntry {
    pub info: ProverInfo,
    /// False while its stream is down; its leases wait `reconnect_grace_ms` for it (or, for a
    /// prover known only from leases found at a restart, the liveness timeout).
    pub connected: bool,
    /// When its stream closed, if it is down and was connected to this run.
    pub disconnected_at: Option<Millis>,
    pub stats: ProverStats,
    pub last_seen: Millis,
    /// Slots the prover last said it has free (shared with other coordinators), minus what we
    /// sent since. `None` until it tells us: then only `capacity` limits.
    pub advertised_free: Option<u32>,
    pub running: BTreeSet<JobKey>,
    /// Dispatch sequence number of its last assignment (lower = waited longer).
    pub last_assigned: u64,
    /// How long its tasks took, per proof type, from lease to accepted proof.
    pub prove_times: ProveTimes,
}

impl ProverEntry {
    pub fn new(info: ProverInfo, now: Millis) -> Self {
        ProverEntry {
            info,
            connected: true,
            disconnected_at: None,
            stats: ProverStats::default(),
            last_seen: now,
            advertised_free: None,
            running: BTreeSet::new(),
            last_assigned: 0,
            prove_times: ProveTimes::default(),
        }
    }

    /// A placeholder for a prover that held leases before a coordinator restart: it gets one
    /// liveness window to reconnect before its leases are requeued.
    pub fn ghost(now: Millis) -> Self {
        let info = ProverInfo {
            name: String::new(),
            proof_types: BTreeSet::new(),
            capacity: 0,
            version: String::new(),
        };
        ProverEntry {
            info,
            connected: false,
            disconnected_at: None,
            stats: ProverStats::default(),
            last_seen: now,
            advertised_free: Some(0),
            running: BTreeSet::new(),
            last_assigned: 0,
            prove_times: ProveTimes::default(),
        }
    }

    pub fn load(&self) -> ProverLoad {
        ProverLoad {
            running: self.running.len() as u32,
            capacity: self.info.capacity,
            free_slots: self.free_slots(),
            last_assigned: self.last_assigned,
        }
    }

    pub fn free_slots(&self) -> u32 {
        if !self.connected {
            return 0;
        }
        let by_capacity = self.info.capacity.saturating_sub(self.running.len() as u32);
        self.advertised_free
            .map_or(by_capacity, |adv| adv.min(by_capacity))
    }
}

/// How busy a prover is, as an assignment policy sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProverLoad {
    /// Tasks it runs for this coordinator (backup copies included).
    pub running: u32,
    pub capacity: u32,
    /// Tasks it can take now (0 while its stream is down).
    pub free_slots: u32,
    /// Fencing token of its last assignment (lower = waited longer).
    pub last_assigned: u64,
}

impl ProverLoad {
    /// Spreading order: least loaded (running over capacity) first, then the one that waited
    /// longest, so work spreads over the fleet instead of piling on whichever sorts first.
    pub fn spread_rank(&self) -> (u64, u64) {
        let load = self.running as u64 * 1_000_000 / self.capacity.max(1) as u64;
        (load, self.last_assigned)
    }
}

/// What a prover's results came to while this coordinator ran.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProverStats {
    /// Results accepted (verified proofs).
    pub proven: u64,
    /// Results that were errors: the prover could not prove the task.
    pub errors: u64,
    /// Proofs that failed verification.
    pub invalid: u64,
    /// Invalid proofs since its last accepted one.
    pub invalid_in_a_row: u32,
    /// Copies of tasks it ran that were cancelled because the other copy (speculative
    /// execution) finished first.
    pub superseded: u64,
}

/// A prover as reported to operators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProverView {
    pub id: ProverId,
    pub info: ProverInfo,
    pub connected: bool,
    pub last_seen: Millis,
    pub running: Vec<JobKey>,
    /// Why it is out of rotation (an operator's cordon, or one it earned by invalid proofs);
    /// `None`: in rotation.
    pub cordoned: Option<String>,
    pub stats: ProverStats,
}
