//! Jobs waiting for a prover, oldest batch first within each chain: scheduling starts from a
//! chain's oldest unverified batch because it gates that chain's settlement. Chains are kept
//! apart (their batch numbers are their own); which chain goes next is the share's choice
//! ([`crate::shares`]).

use proofmill_types::{BatchNumber, ChainId, JobKey, Millis, ProofType};
use std::collections::{BTreeMap, BTreeSet};

/// Ready jobs of one chain, program version and proof type.
type Group = (ChainId, String, ProofType);

#[derive(Default, Debug)]
pub(crate) struct ReadyQueue {
    /// (chain, version, proof type) → batches ready now.
    ready: BTreeMap<Group, BTreeSet<BatchNumber>>,
    /// Jobs in retry backoff, by the time they become ready.
    delayed: BTreeSet<(Millis, JobKey, String)>,
}

impl ReadyQueue {
    pub fn push(&mut self, key: &JobKey, version: &str, not_before: Millis, now: Millis) {
        if not_before > now {
            self.delayed
                .insert((not_before, key.clone(), version.to_string()));
        } else {
            self.ready
                .entry((key.chain, version.to_string(), key.proof_type.clone()))
                .or_default()
                .insert(key.batch);
        }
    }

    pub fn remove(&mut self, key: &JobKey, version: &str, not_before: Millis) {
        // A job is either ready or delayed. Look the ready set up without building an owned
        // key: this runs once per dispatch and the map is small.
        let ready = self
            .ready
            .iter_mut()
            .find(|((c, v, t), _)| *c == key.chain && v == version && *t == key.proof_type);
        if let Some((rk, set)) = ready
            && set.remove(&key.batch)
        {
            if set.is_empty() {
                let rk = rk.clone();
                self.ready.remove(&rk);
            }
            return;
        }
        self.delayed
            .remove(&(not_before, key.clone(), version.to_string()));
    }

    /// Moves jobs whose backoff has passed into the ready sets.
    pub fn promote(&mut self, now: Millis) {
        while let Some(first) = self.delayed.first() {
            if first.0 > now {
                break;
            }
            let (_, key, version) = self.delayed.pop_first().expect("non-empty");
            self.ready
                .entry((key.chain, version, key.proof_type))
                .or_default()
                .insert(key.batch);
        }
    }

    /// Oldest ready batch of `chain` of this version among these proof types.
    pub fn peek_oldest<'a>(
        &self,
        chain: ChainId,
        version: &str,
        proof_types: impl Iterator<Item = &'a ProofType>,
    ) -> Option<JobKey> {
        self.peek_oldest_where(chain, version, proof_types, |_| true)
    }

    /// Like [`Self::peek_oldest`], among the ready jobs that `take` accepts.
    pub fn peek_oldest_where<'a>(
        &self,
        chain: ChainId,
        version: &str,
        proof_types: impl Iterator<Item = &'a ProofType>,
        take: impl Fn(&JobKey) -> bool,
    ) -> Option<JobKey> {
        let mut best: Option<JobKey> = None;
        for pt in proof_types {
            // Looked up without building an owned key: this runs once per lease and the map
            // is small.
            let Some(set) = self
                .ready
                .iter()
                .find(|((c, v, t), _)| *c == chain && v == version && t == pt)
                .map(|(_, set)| set)
            else {
                continue;
            };
            let first = set
                .iter()
                .take_while(|b| best.as_ref().is_none_or(|k| **b < k.batch))
                .map(|b| JobKey::new(chain, *b, pt.clone()))
                .find(&take);
            if first.is_some() {
                best = first;
            }
        }
        best
    }

    /// The one chain with ready jobs of this version among these proof types, when only one
    /// has any (the common case: no fleet to share); `Err(())` when several do.
    pub fn only_chain_ready(
        &self,
        version: &str,
        proof_types: &BTreeSet<ProofType>,
    ) -> Result<Option<ChainId>, ()> {
        let mut found = None;
        for (c, _, _) in self
            .ready
            .keys()
            .filter(|(_, v, t)| v == version && proof_types.contains(t))
        {
            match found {
                None => found = Some(*c),
                Some(f) if f != *c => return Err(()),
                Some(_) => {}
            }
        }
        Ok(found)
    }

    /// Chains with ready jobs of this version among these proof types.
    pub fn chains_ready(
        &self,
        version: &str,
        proof_types: &BTreeSet<ProofType>,
    ) -> BTreeSet<ChainId> {
        self.ready
            .keys()
            .filter(|(_, v, t)| v == version && proof_types.contains(t))
            .map(|(c, _, _)| *c)
            .collect()
    }

    /// The (chain, version, proof type) groups with ready jobs, in that order.
    pub fn ready_groups(&self) -> impl Iterator<Item = (ChainId, &str, &ProofType)> {
        self.ready.keys().map(|(c, v, t)| (*c, v.as_str(), t))
    }

    /// Ready batches of one group, oldest first.
    pub fn ready_batches<'a>(
        &'a self,
        chain: ChainId,
        version: &'a str,
        proof_type: &'a ProofType,
    ) -> impl Iterator<Item = BatchNumber> + 'a {
        self.ready
            .iter()
            .find(move |((c, v, t), _)| *c == chain && v == version && t == proof_type)
            .into_iter()
            .flat_map(|(_, set)| set.iter().copied())
    }

    pub fn next_delayed_at(&self) -> Option<Millis> {
        self.delayed.first().map(|d| d.0)
    }

    pub fn ready_len(&self) -> usize {
        self.ready.values().map(BTreeSet::len).sum()
    }
}
