//! The network's durable state: the last processed block of the market's events and, per
//! request assigned to it, how far it went. One small JSON file in the state directory,
//! written whole on every change (temp file, fsync, rename, fsync of the directory), so a
//! crash leaves the old file or the new one, never a mix. Finished requests beyond
//! [`KEEP_FINISHED`] are pruned, oldest first.
//!
//! ```json
//! {"format":1,"market":"0x…","network":"0x…","cursor":118,"prove_secs":[41,39],
//!  "requests":[{"chain_id":7,"batch":3,"status":"proof_posted", …}]}
//! ```

use proofmill_market::{Address, RequestId, U256};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The state file's name in the state directory.
pub const STATE_FILE: &str = "network-state.json";
const FORMAT: u32 = 1;
/// Finished requests kept (for the operator to look at); older ones are pruned.
pub const KEEP_FINISHED: usize = 1_000;
/// The reason kept with a reward earned because the rollup did not answer the proof in time.
pub const EARNED_BY_DEFAULT: &str = "not validated in time: earned by default";

/// Where a request is, from this network's side. Every status after `Seen` was reached on L1
/// (or, for `Proving`, at the network's coordinator) before it was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Its `ProofRequestSubmitted` event was read; nothing decided yet.
    Seen,
    /// Refused on L1 (finished).
    Refused,
    /// Accepted on L1; not handed to the coordinator yet.
    Accepted,
    /// Handed to the network's coordinator.
    Proving,
    /// The proof is posted on L1; waiting for the rollup's validation (or for its window to
    /// pass: then the network closes the request and earns the reward by default).
    ProofPosted,
    /// Validated, or left unanswered past the market's validation timeout: the reward is
    /// earned, not claimed yet.
    Validated,
    /// Validated and the reward claimed (finished).
    Claimed,
    /// The rollup found the proof invalid (finished).
    Invalid,
    /// Accepted but not proven in time, or its inputs were bad (finished; never posted late).
    GivenUp,
    /// Closed without this network: the acknowledgement window passed, or the request timed
    /// out on L1, or it is not assigned to this network (finished).
    Closed,
}

impl Status {
    /// Nothing more happens to the request.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            Status::Refused | Status::Claimed | Status::Invalid | Status::GivenUp | Status::Closed
        )
    }

    /// It holds one of the network's `max_in_flight` places (accepted, not yet posted).
    pub fn holds_capacity(self) -> bool {
        matches!(self, Status::Accepted | Status::Proving)
    }
}

/// One request assigned to this network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub chain_id: u64,
    pub batch: u64,
    pub status: Status,
    pub protocol_version: String,
    pub inputs_url: String,
    /// Hex SHA-256 of the inputs, as the request says.
    pub inputs_digest: String,
    /// Chain time by which the proof must be posted.
    pub deadline: u64,
    /// Wei, decimal.
    pub max_reward: String,
    /// Chain time of the submission, once read from L1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_at: Option<u64>,
    /// The proof type the inputs ask, once fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof_type: Option<String>,
    /// Hex hashes of this network's transactions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_tx: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof_tx: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_tx: Option<String>,
    /// What the network asked when it posted the proof, wei.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_reward: Option<String>,
    /// Chain time by which the rollup must answer the posted proof, once read from L1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_deadline: Option<u64>,
    /// What the validation earned, wei.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earned: Option<String>,
    /// Why it was refused, given up or closed, or earned without a validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Wall clock of the last change, ms since the epoch (pruning order).
    pub updated_at_ms: u64,
}

impl Entry {
    pub fn id(&self) -> RequestId {
        RequestId::new(self.chain_id, self.batch)
    }

    pub fn max_reward(&self) -> U256 {
        self.max_reward.parse().unwrap_or(U256::ZERO)
    }

    pub fn digest(&self) -> Option<[u8; 32]> {
        hex::decode(&self.inputs_digest).ok()?.try_into().ok()
    }
}

/// Everything the state file holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkState {
    pub format: u32,
    /// The market contract this state belongs to.
    pub market: String,
    /// The network's own address.
    pub network: String,
    /// The last block whose events were handled.
    pub cursor: u64,
    /// Recent measured prove times, seconds, oldest first (the admission's estimate).
    #[serde(default)]
    pub prove_secs: Vec<u64>,
    /// By request id.
    #[serde(with = "by_id")]
    pub requests: BTreeMap<RequestId, Entry>,
}

mod by_id {
    use super::Entry;
    use proofmill_market::RequestId;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<S: Serializer>(
        m: &BTreeMap<RequestId, Entry>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        m.values().collect::<Vec<_>>().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<RequestId, Entry>, D::Error> {
        let list = Vec::<Entry>::deserialize(d)?;
        Ok(list.into_iter().map(|e| (e.id(), e)).collect())
    }
}

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state file {path} is not a network state: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "state directory {path} belongs to {what} {found}, not {expected}: give this one its own --state-dir"
    )]
    Mismatch {
        path: PathBuf,
        what: &'static str,
        found: String,
        expected: String,
    },
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl NetworkState {
    /// A fresh state starting after block `cursor`.
    pub fn new(market: Address, network: Address, cursor: u64) -> NetworkState {
        NetworkState {
            format: FORMAT,
            market: market.to_string(),
            network: network.to_string(),
            cursor,
            prove_secs: Vec::new(),
            requests: BTreeMap::new(),
        }
    }

    /// The state in `dir`, `None` when there is none yet. One of another market or network
    /// is refused.
    pub fn load(
        dir: &Path,
        market: Address,
        network: Address,
    ) -> Result<Option<NetworkState>, StateError> {
        let path = dir.join(STATE_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError::Io { path, source }),
        };
        let state: NetworkState = serde_json::from_str(&text).map_err(|e| StateError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if state.format != FORMAT {
            return Err(StateError::Corrupt {
                path,
                reason: format!("format {} (this build reads {FORMAT})", state.format),
            });
        }
        let same = |a: &str, b: Address| a.parse::<Address>().ok() == Some(b);
        if !same(&state.market, market) {
            return Err(StateError::Mismatch {
                path,
                what: "market",
                found: state.market,
                expected: market.to_string(),
            });
        }
        if !same(&state.network, network) {
            return Err(StateError::Mismatch {
                path,
                what: "network",
                found: state.network,
                expected: network.to_string(),
            });
        }
        Ok(Some(state))
    }

    /// Writes the whole state atomically into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), StateError> {
        let path = dir.join(STATE_FILE);
        let io = |source| StateError::Io {
            path: path.clone(),
            source,
        };
        let bytes = serde_json::to_vec(self).expect("the state serializes");
        let tmp = dir.join(format!("{STATE_FILE}.tmp"));
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(io)?;
        // The rename itself is durable once the directory is.
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        Ok(())
    }

    /// Requests holding a place of the network's capacity.
    pub fn in_flight(&self) -> usize {
        self.requests
            .values()
            .filter(|e| e.status.holds_capacity())
            .count()
    }

    /// This network's proofs for `chain_id` waiting for the rollup's validation.
    pub fn awaiting_validation(&self, chain_id: u64) -> usize {
        self.requests
            .values()
            .filter(|e| e.chain_id == chain_id && e.status == Status::ProofPosted)
            .count()
    }

    /// Drops the oldest finished requests beyond `keep`.
    pub fn prune(&mut self, keep: usize) {
        let mut finished: Vec<(u64, RequestId)> = self
            .requests
            .values()
            .filter(|e| e.status.is_finished())
            .map(|e| (e.updated_at_ms, e.id()))
            .collect();
        if finished.len() <= keep {
            return;
        }
        finished.sort_unstable();
        let excess = finished.len() - keep;
        for (_, id) in finished.into_iter().take(excess) {
            self.requests.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(batch: u64, status: Status, at: u64) -> Entry {
        Entry {
            chain_id: 7,
            batch,
            status,
            protocol_version: "v1".into(),
            inputs_url: "https://x/y".into(),
            inputs_digest: hex::encode([1u8; 32]),
            deadline: 100,
            max_reward: "1000".into(),
            submitted_at: Some(10),
            proof_type: None,
            ack_tx: None,
            proof_tx: None,
            claim_tx: None,
            requested_reward: None,
            validation_deadline: None,
            earned: None,
            reason: None,
            updated_at_ms: at,
        }
    }

    #[test]
    fn saves_atomically_loads_back_and_refuses_another_market() {
        let dir = tempfile::tempdir().unwrap();
        let (market, me) = (Address::repeat_byte(1), Address::repeat_byte(2));
        assert_eq!(NetworkState::load(dir.path(), market, me).unwrap(), None);
        let mut s = NetworkState::new(market, me, 41);
        s.prove_secs = vec![3, 4];
        for (b, st) in [(1, Status::Proving), (2, Status::Claimed)] {
            let e = entry(b, st, b);
            s.requests.insert(e.id(), e);
        }
        s.save(dir.path()).unwrap();
        assert!(!dir.path().join(format!("{STATE_FILE}.tmp")).exists());
        let back = NetworkState::load(dir.path(), market, me).unwrap().unwrap();
        assert_eq!(back, s);
        assert_eq!(back.in_flight(), 1);
        assert_eq!(back.requests[&RequestId::new(7, 1)].digest(), Some([1; 32]));
        assert!(matches!(
            NetworkState::load(dir.path(), Address::repeat_byte(9), me),
            Err(StateError::Mismatch { what: "market", .. })
        ));
        assert!(matches!(
            NetworkState::load(dir.path(), market, Address::repeat_byte(9)),
            Err(StateError::Mismatch {
                what: "network",
                ..
            })
        ));
        std::fs::write(dir.path().join(STATE_FILE), b"{not json").unwrap();
        assert!(matches!(
            NetworkState::load(dir.path(), market, me),
            Err(StateError::Corrupt { .. })
        ));
    }

    #[test]
    fn prunes_only_finished_entries_oldest_first() {
        let mut s = NetworkState::new(Address::ZERO, Address::ZERO, 0);
        for b in 1..=6 {
            let st = if b % 2 == 0 {
                Status::Refused
            } else {
                Status::ProofPosted
            };
            let e = entry(b, st, b);
            s.requests.insert(e.id(), e);
        }
        s.prune(1);
        let left: Vec<u64> = s.requests.keys().map(|id| id.batch).collect();
        assert_eq!(left, vec![1, 3, 5, 6]);
    }
}
