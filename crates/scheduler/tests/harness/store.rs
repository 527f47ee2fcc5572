//! A model of the coordinator's store and persister: `Persist` rows of one scheduler call
//! form one group, groups are committed later, in order, and a crash loses a suffix of them.

use proofmill_types::{FencingToken, Job, JobKey, JobState, ProverId};
use std::collections::{BTreeMap, VecDeque};

/// Fencing epoch of the coordinator (`server.rs`, `TOKEN_EPOCH`).
pub const TOKEN_EPOCH: u64 = 1 << 32;

/// What one scheduler call handed to the persister.
#[derive(Default, Debug)]
pub struct Group {
    /// Job rows in the order the scheduler produced them, each with its sequence number.
    pub rows: Vec<(u64, Job)>,
    /// Cancels to provers whose stream was open: sent once the group is durable.
    pub cancels: Vec<(ProverId, JobKey, FencingToken)>,
    /// Accepted results, acknowledged once the group is durable; until then the prover
    /// keeps the finished task and reports it again if the coordinator goes away.
    pub acks: Vec<(ProverId, JobKey, FencingToken)>,
}

impl Group {
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.cancels.is_empty() && self.acks.is_empty()
    }
}

#[derive(Default)]
pub struct StoreModel {
    /// Committed job rows.
    pub rows: BTreeMap<JobKey, Job>,
    /// Highest fencing token of any committed row, replaced ones included.
    pub token_high: u64,
    /// The `token_floor` meta row.
    pub floor: Option<u64>,
    /// Every committed row of each job: (sequence number, lease token).
    pub history: BTreeMap<JobKey, Vec<(u64, Option<FencingToken>)>>,
    /// Handed to the persister, not yet committed, oldest first.
    pub pending: VecDeque<Group>,
}

impl StoreModel {
    /// A new batch's jobs: the coordinator inserts them before the scheduler sees them.
    pub fn insert(&mut self, seq: u64, job: Job) {
        self.history
            .entry(job.key.clone())
            .or_default()
            .push((seq, None));
        self.rows.insert(job.key.clone(), job);
    }

    /// The row the scheduler last wrote for `key`, committed or not.
    pub fn view(&self, key: &JobKey) -> Option<&Job> {
        self.pending
            .iter()
            .rev()
            .flat_map(|g| g.rows.iter().rev())
            .find(|(_, j)| j.key == *key)
            .map(|(_, j)| j)
            .or_else(|| self.rows.get(key))
    }

    /// Every job as the scheduler last wrote it.
    pub fn views(&self) -> BTreeMap<JobKey, Job> {
        let mut all = self.rows.clone();
        for (_, job) in self.pending.iter().flat_map(|g| g.rows.iter()) {
            all.insert(job.key.clone(), job.clone());
        }
        all
    }

    /// Commits the `n` oldest groups; returns them so their messages can be delivered.
    pub fn commit(&mut self, n: usize) -> Vec<Group> {
        let n = n.min(self.pending.len());
        let groups: Vec<Group> = self.pending.drain(..n).collect();
        for (seq, job) in groups.iter().flat_map(|g| g.rows.iter()) {
            let token = job.lease.as_ref().map(|l| l.token);
            self.token_high = self.token_high.max(token.map_or(0, |t| t.0));
            self.history
                .entry(job.key.clone())
                .or_default()
                .push((*seq, token));
            self.rows.insert(job.key.clone(), job.clone());
        }
        groups
    }

    /// Lease tokens of every row of `key` in the lineage (committed, then pending), in order.
    fn lineage(&self, key: &JobKey) -> Vec<Option<FencingToken>> {
        let committed = self.history.get(key).into_iter().flatten().map(|(_, t)| *t);
        let pending = self
            .pending
            .iter()
            .flat_map(|g| g.rows.iter())
            .filter(|(_, j)| j.key == *key)
            .map(|(_, j)| j.lease.as_ref().map(|l| l.token));
        committed.chain(pending).collect()
    }

    /// Why `token` is no longer a lease of `key` in the lineage, if it is not: a higher
    /// token leased the job, or a later row ended that lease. Every row before a result's
    /// acknowledgement is committed before it, so this is the committed view at ack time.
    pub fn superseded(&self, key: &JobKey, token: FencingToken) -> Option<&'static str> {
        let lineage = self.lineage(key);
        if lineage.iter().flatten().any(|t| *t > token) {
            return Some("a higher token leased the job");
        }
        let first = lineage.iter().position(|t| *t == Some(token))?;
        lineage[first..]
            .iter()
            .any(|t| *t != Some(token))
            .then_some("a later row ended the lease")
    }

    /// Whether a committed row ever held `token` as the lease of `key`.
    pub fn ever_durable(&self, key: &JobKey, token: FencingToken) -> bool {
        self.history
            .get(key)
            .is_some_and(|h| h.iter().any(|(_, t)| *t == Some(token)))
    }

    /// What the coordinator computes at start (`token_epoch`): the durable high-water mark
    /// (or, as a mutation check, the highest token still in job rows), the previous floor,
    /// the new floor, recorded. Returns (known, floor).
    pub fn token_epoch(&mut self, known_from_rows: bool) -> (u64, u64) {
        let durable = if known_from_rows {
            self.rows
                .values()
                .filter_map(|j| j.lease.as_ref().map(|l| l.token.0))
                .max()
                .unwrap_or(0)
        } else {
            self.token_high
        };
        let known = durable.max(self.floor.unwrap_or(0));
        let floor = (known / TOKEN_EPOCH + 1) * TOKEN_EPOCH;
        self.floor = Some(floor);
        (known, floor)
    }

    /// Open jobs, as the coordinator loads them after a restart.
    pub fn open_jobs(&self) -> Vec<Job> {
        self.rows
            .values()
            .filter(|j| !j.state.is_terminal())
            .cloned()
            .collect()
    }

    pub fn all_proven(&self) -> bool {
        self.pending.is_empty() && self.rows.values().all(|j| j.state == JobState::Proven)
    }
}
