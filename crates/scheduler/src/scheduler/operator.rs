//! What operators see of the provers and how they steer them.

use super::{Effect, Scheduler, SchedulerError};
use crate::provers::ProverView;
use proofmill_types::{Millis, ProofType, ProverId};
use std::collections::BTreeMap;

/// What [`Scheduler::fleet_by_type`] counts for one proof type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FleetFigures {
    /// Connected provers that serve the type.
    pub connected: u64,
    /// Their task slots, cordoned provers left out.
    pub capacity: u64,
    /// Tasks of the type running on them.
    pub busy: u64,
}

impl Scheduler {
    pub fn provers(&self) -> Vec<ProverView> {
        self.provers
            .iter()
            .map(|(id, p)| ProverView {
                id: id.clone(),
                info: p.info.clone(),
                connected: p.connected,
                last_seen: p.last_seen,
                running: p.running.iter().cloned().collect(),
                cordoned: self.cordoned.get(id).cloned(),
                stats: p.stats,
            })
            .collect()
    }

    /// Connected provers, their slots in rotation and their running tasks, per proof type
    /// they serve: one pass over the fleet, no copies (for metrics, refreshed periodically).
    pub fn fleet_by_type(&self) -> BTreeMap<ProofType, FleetFigures> {
        let mut out: BTreeMap<ProofType, FleetFigures> = BTreeMap::new();
        for (id, p) in self.provers.iter().filter(|(_, p)| p.connected) {
            let in_rotation = !self.cordoned.contains_key(id);
            for t in &p.info.proof_types {
                let f = match out.get_mut(t) {
                    Some(f) => f,
                    None => out.entry(t.clone()).or_default(),
                };
                f.connected += 1;
                if in_rotation {
                    f.capacity += u64::from(p.info.capacity);
                }
            }
            for key in &p.running {
                let f = match out.get_mut(&key.proof_type) {
                    Some(f) => f,
                    None => out.entry(key.proof_type.clone()).or_default(),
                };
                f.busy += 1;
            }
        }
        out
    }

    /// The name a known prover registered with.
    pub fn prover_name(&self, id: &ProverId) -> Option<&str> {
        self.provers.get(id).map(|p| p.info.name.as_str())
    }

    /// Cordons (with their reasons) read back from the store at start, before their provers
    /// reconnect.
    pub fn restore_cordons(&mut self, cordons: impl IntoIterator<Item = (ProverId, String)>) {
        self.cordoned.extend(cordons);
    }

    /// Takes a known prover out of rotation (`on`) or puts it back. A cordoned prover keeps
    /// its stream and its leases, and its results count as ever; it only gets no new tasks,
    /// so it can be drained for maintenance without losing the work it runs. The cordon
    /// holds across the prover's reconnects (with its id; the service keeps it in the store
    /// so it also holds across restarts); a prover that registers anew gets a new id,
    /// uncordoned. Setting or lifting the cordon of an id cordoned earlier always works,
    /// even while the prover is gone. Lifting a cordon also forgets the prover's run of
    /// invalid proofs, so one it earned by itself is not earned again by the next one.
    pub fn cordon(
        &mut self,
        id: &ProverId,
        on: bool,
        reason: &str,
        now: Millis,
    ) -> Result<Vec<Effect>, SchedulerError> {
        if !self.provers.contains_key(id) && !self.cordoned.contains_key(id) {
            return Err(SchedulerError::UnknownProver(id.clone()));
        }
        if on {
            self.cordoned.insert(id.clone(), reason.to_string());
            Ok(Vec::new())
        } else {
            self.cordoned.remove(id);
            if let Some(p) = self.provers.get_mut(id) {
                p.stats.invalid_in_a_row = 0;
            }
            Ok(self.dispatch(now))
        }
    }
}
