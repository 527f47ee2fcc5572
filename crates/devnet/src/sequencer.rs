//! The devnet sequencer: genesis, mempool, deterministic random traffic and batch sealing.

use crate::exec::ExecError;
use crate::input::{BatchInput, TransferWitness};
use crate::poseidon::fr_to_digest;
use crate::transfer::{
    Account, RejectReason, Transfer, batch_commitment, check_stateless, credit_receiver,
    debit_sender,
};
use crate::transition::StateTransition;
use crate::tree::{MAX_DEPTH, MIN_DEPTH, SparseMerkleTree, capacity};
use ark_bn254::Fr;
use proofmill_types::BatchNumber;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use std::collections::{BTreeMap, VecDeque};

/// Parameters of a devnet; together with the batch number they fix every batch's content.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DevnetConfig {
    /// Seed of the random traffic.
    pub seed: u64,
    /// Tree depth, 1..=32: `2^depth` accounts.
    pub depth: u8,
    /// Accounts `0..accounts` funded at genesis.
    pub accounts: u32,
    /// Genesis balance of each funded account.
    pub initial_balance: u64,
    /// Transfers per batch (the size trigger of [`Devnet::produce_batch`]).
    pub batch_size: u32,
}

impl Default for DevnetConfig {
    fn default() -> Self {
        DevnetConfig {
            seed: 0,
            depth: 16,
            accounts: 64,
            initial_balance: 1_000_000,
            batch_size: 16,
        }
    }
}

/// Why a [`DevnetConfig`] is unusable.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("tree depth {0} outside {MIN_DEPTH}..={MAX_DEPTH}")]
    BadDepth(u8),
    #[error("{accounts} genesis accounts do not fit in a tree of {capacity} leaves")]
    TooManyAccounts { accounts: u32, capacity: u64 },
    #[error("genesis must fund at least one account with a positive balance")]
    NoFunds,
    #[error("total supply {accounts} x {initial_balance} overflows u64")]
    SupplyOverflow { accounts: u32, initial_balance: u64 },
    #[error("batch size must be at least 1")]
    ZeroBatchSize,
}

impl DevnetConfig {
    /// Checks the config. Besides the obvious bounds it requires a positive total supply that
    /// fits in u64: supply is conserved, so random traffic then always has a funded sender and
    /// no receiver balance can ever overflow.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(MIN_DEPTH..=MAX_DEPTH).contains(&self.depth) {
            return Err(ConfigError::BadDepth(self.depth));
        }
        if u64::from(self.accounts) > capacity(self.depth) {
            return Err(ConfigError::TooManyAccounts {
                accounts: self.accounts,
                capacity: capacity(self.depth),
            });
        }
        if self.accounts == 0 || self.initial_balance == 0 {
            return Err(ConfigError::NoFunds);
        }
        if u64::from(self.accounts)
            .checked_mul(self.initial_balance)
            .is_none()
        {
            return Err(ConfigError::SupplyOverflow {
                accounts: self.accounts,
                initial_balance: self.initial_balance,
            });
        }
        if self.batch_size == 0 {
            return Err(ConfigError::ZeroBatchSize);
        }
        Ok(())
    }
}

/// A sealed batch: its number, encoded [`BatchInput`] and public values.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SealedBatch {
    /// Batch number (1, 2, ...).
    pub number: BatchNumber,
    /// [`BatchInput::encode`] of the batch; what provers receive.
    pub input: Vec<u8>,
    /// What a proof of this batch attests (`transition.to_public_values()` for the
    /// coordinator).
    pub transition: StateTransition,
    /// Number of transfers in the batch.
    pub transfers: usize,
}

/// Sequencer state: the committed accounts and tree, the mempool and the next batch number.
///
/// Batches are sealed on size by [`Devnet::produce_batch`]; sealing on a time interval is the
/// caller's job (call [`Devnet::seal`] when its timer fires), which keeps this type free of
/// clocks and fully deterministic.
#[derive(Clone, Debug)]
pub struct Devnet {
    pub(crate) config: DevnetConfig,
    pub(crate) tree: SparseMerkleTree,
    /// Committed state of every account ever touched (absent = `(0, 0)`).
    pub(crate) accounts: BTreeMap<u32, Account>,
    /// Accepted transfers not yet sealed, in submission order.
    pub(crate) pending: VecDeque<Transfer>,
    /// State after all pending transfers, for accounts they touch; the mempool validates here.
    pub(crate) overlay: BTreeMap<u32, Account>,
    pub(crate) next_batch: BatchNumber,
}

impl Devnet {
    /// Genesis: accounts `0..accounts` hold `initial_balance` with nonce 0; next batch is 1.
    pub fn new(config: DevnetConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let genesis = Account {
            balance: config.initial_balance,
            nonce: 0,
        };
        let tree =
            SparseMerkleTree::with_uniform_prefix(config.depth, config.accounts, genesis.leaf())
                .ok_or(ConfigError::BadDepth(config.depth))?;
        let accounts = (0..config.accounts).map(|i| (i, genesis)).collect();
        Ok(Devnet {
            config,
            tree,
            accounts,
            pending: VecDeque::new(),
            overlay: BTreeMap::new(),
            next_batch: 1,
        })
    }

    /// The config this devnet was built with.
    pub fn config(&self) -> &DevnetConfig {
        &self.config
    }

    /// Root of the committed state (after the last sealed or replayed batch).
    pub fn state_root(&self) -> Fr {
        self.tree.root()
    }

    /// Committed `(balance, nonce)` of account `idx` (`(0, 0)` if never touched).
    pub fn account(&self, idx: u32) -> (u64, u64) {
        let a = self.committed(idx);
        (a.balance, a.nonce)
    }

    /// `(balance, nonce)` of `idx` after all pending transfers: what `submit` validates against.
    pub fn pending_account(&self, idx: u32) -> (u64, u64) {
        let a = self.pending_state(idx);
        (a.balance, a.nonce)
    }

    /// Number the next sealed (or replayed) batch gets; starts at 1.
    pub fn next_batch_number(&self) -> BatchNumber {
        self.next_batch
    }

    /// Transfers accepted but not yet sealed.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Test hook: overwrite a committed account (e.g. a near-`u64::MAX` balance that a valid
    /// config can never reach) to exercise the overflow rules.
    #[cfg(test)]
    pub(crate) fn force_account(&mut self, idx: u32, account: Account) {
        self.tree.set_leaf(idx, account.leaf());
        self.accounts.insert(idx, account);
    }

    fn committed(&self, idx: u32) -> Account {
        self.accounts.get(&idx).copied().unwrap_or_default()
    }

    fn pending_state(&self, idx: u32) -> Account {
        self.overlay
            .get(&idx)
            .copied()
            .unwrap_or_else(|| self.committed(idx))
    }

    /// Accepts `t` into the mempool if it is valid against the pending state, so an invalid
    /// transfer never reaches a batch. A rejected transfer changes nothing.
    pub fn submit(&mut self, t: Transfer) -> Result<(), RejectReason> {
        check_stateless(&t, self.config.depth)?;
        let sender = debit_sender(&t, self.pending_state(t.from))?;
        let receiver = credit_receiver(&t, self.pending_state(t.to))?;
        self.overlay.insert(t.from, sender);
        self.overlay.insert(t.to, receiver);
        self.pending.push_back(t);
        Ok(())
    }

    /// Seals up to `batch_size` pending transfers, in submission order, into batch
    /// [`Devnet::next_batch_number`]. `None` if the mempool is empty.
    pub fn seal(&mut self) -> Option<SealedBatch> {
        if self.pending.is_empty() {
            return None;
        }
        let n = self.pending.len().min(self.config.batch_size as usize);
        let transfers: Vec<Transfer> = self.pending.drain(..n).collect();
        if self.pending.is_empty() {
            // The overlay now equals the committed state; drop it to stay small.
            self.overlay.clear();
        }
        Some(self.seal_transfers(transfers))
    }

    fn seal_transfers(&mut self, transfers: Vec<Transfer>) -> SealedBatch {
        let number = self.next_batch;
        let old_root = self.tree.root();
        let mut witnesses = Vec::with_capacity(transfers.len());
        for t in &transfers {
            match self.apply_committed(t) {
                Ok(w) => witnesses.push(w),
                // Unreachable: the mempool validated these against exactly this state.
                // Dropping beats sealing a batch that cannot be proven.
                Err(_) => debug_assert!(false, "sealed transfer {t:?} became invalid"),
            }
        }
        let sealed: Vec<Transfer> = witnesses.iter().map(|w| w.transfer).collect();
        let input = BatchInput {
            number,
            depth: self.config.depth,
            old_root,
            transfers: witnesses,
        };
        let transition = StateTransition {
            old_state_root: fr_to_digest(old_root),
            new_state_root: fr_to_digest(self.tree.root()),
            batch_commitment: fr_to_digest(batch_commitment(number, &sealed)),
        };
        self.next_batch += 1;
        SealedBatch {
            number,
            input: input.encode(),
            transition,
            transfers: sealed.len(),
        }
    }

    /// Applies `t` to the committed state and returns its witness; changes nothing on error.
    fn apply_committed(&mut self, t: &Transfer) -> Result<TransferWitness, RejectReason> {
        check_stateless(t, self.config.depth)?;
        let sender = self.committed(t.from);
        let new_sender = debit_sender(t, sender)?;
        let receiver = self.committed(t.to);
        let new_receiver = credit_receiver(t, receiver)?;
        let sender_path = self.tree.path(t.from);
        self.tree.set_leaf(t.from, new_sender.leaf());
        let receiver_path = self.tree.path(t.to);
        self.tree.set_leaf(t.to, new_receiver.leaf());
        self.accounts.insert(t.from, new_sender);
        self.accounts.insert(t.to, new_receiver);
        Ok(TransferWitness {
            transfer: *t,
            sender,
            sender_path,
            receiver,
            receiver_path,
        })
    }

    /// Submits random valid transfers until the mempool holds `batch_size`.
    ///
    /// The RNG is ChaCha8 seeded from `(seed, next_batch_number)`, so batch N depends only on
    /// the seed, N and the state: a devnet restarted by replaying batches `1..N` makes the
    /// same batch N. Senders are drawn from funded accounts (ascending index order), amounts
    /// from `1..=max(1, balance / 8)`, receivers mostly among the genesis accounts and
    /// sometimes anywhere in the tree. The number of attempts is bounded, so this returns
    /// even if nothing can be sent.
    pub fn fill_random(&mut self) {
        let target = self.config.batch_size as usize;
        if self.pending.len() >= target {
            return;
        }
        let mut rng = ChaCha8Rng::from_seed(rng_seed(self.config.seed, self.next_batch));
        let mut funded: Vec<u32> = self.funded_accounts();
        let mut attempts = 4 * target + 16;
        while self.pending.len() < target && !funded.is_empty() && attempts > 0 {
            attempts -= 1;
            let i = below(&mut rng, funded.len() as u64) as usize;
            let from = funded[i];
            let sender = self.pending_state(from);
            if sender.balance == 0 {
                funded.swap_remove(i);
                continue;
            }
            let to = self.random_receiver(&mut rng, from);
            let amount = 1 + below(&mut rng, (sender.balance / 8).max(1));
            let receiver_was_empty = self.pending_state(to).balance == 0;
            if self
                .submit(Transfer {
                    from,
                    to,
                    amount,
                    nonce: sender.nonce,
                })
                .is_ok()
                && receiver_was_empty
            {
                funded.push(to);
            }
        }
    }

    /// Accounts with a positive pending balance, in ascending index order (deterministic).
    fn funded_accounts(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .accounts
            .keys()
            .chain(self.overlay.keys())
            .copied()
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids.retain(|&i| self.pending_state(i).balance > 0);
        ids
    }

    fn random_receiver(&self, rng: &mut ChaCha8Rng, from: u32) -> u32 {
        let cap = capacity(self.config.depth);
        let range = if self.config.accounts < 2 || below(rng, 8) == 0 {
            cap
        } else {
            u64::from(self.config.accounts)
        };
        let to = below(rng, range);
        let to = if to == u64::from(from) {
            (to + 1) % cap
        } else {
            to
        };
        to as u32
    }

    /// Seals an empty batch (roots unchanged) with the next number, leaving the mempool
    /// alone. A valid batch like any other; tools use it to make long chains cheaply.
    pub fn seal_empty(&mut self) -> SealedBatch {
        self.seal_transfers(Vec::new())
    }

    /// [`Devnet::fill_random`] then [`Devnet::seal`]: one full batch of random traffic.
    /// With a validated config there is always a funded sender, so the batch is non-empty;
    /// should that ever fail, an empty batch (roots unchanged) is sealed rather than panicking.
    pub fn produce_batch(&mut self) -> SealedBatch {
        self.fill_random();
        match self.seal() {
            Some(batch) => batch,
            None => self.seal_transfers(Vec::new()),
        }
    }

    /// Applies an already-sealed batch (restart: rebuild state from stored inputs). It must
    /// be batch [`Devnet::next_batch_number`] at this depth, start from [`Devnet::state_root`],
    /// and the mempool must be empty. The batch is fully re-executed before the state changes.
    pub fn replay(&mut self, input: &[u8]) -> Result<StateTransition, ExecError> {
        if !self.pending.is_empty() {
            return Err(ExecError::PendingNotEmpty(self.pending.len()));
        }
        let batch = BatchInput::decode(input)?;
        if batch.number != self.next_batch {
            return Err(ExecError::WrongBatch {
                expected: self.next_batch,
                got: batch.number,
            });
        }
        if batch.depth != self.config.depth {
            return Err(ExecError::WrongDepth {
                expected: self.config.depth,
                got: batch.depth,
            });
        }
        if batch.old_root != self.tree.root() {
            return Err(ExecError::OldRootMismatch {
                expected: fr_to_digest(self.tree.root()),
                got: fr_to_digest(batch.old_root),
            });
        }
        let out = batch.execute()?;
        for (i, w) in batch.transfers.iter().enumerate() {
            // Execution proved every witness against this very state, so this cannot fail.
            self.apply_committed(&w.transfer)
                .map_err(|reason| ExecError::Rejected {
                    transfer: i,
                    reason,
                })?;
        }
        debug_assert_eq!(self.tree.root(), out.new_root);
        self.next_batch += 1;
        Ok(out.transition())
    }
}

/// ChaCha8 seed for batch `number`: seed and number little-endian, then a fixed tag.
fn rng_seed(seed: u64, number: BatchNumber) -> [u8; 32] {
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&seed.to_le_bytes());
    s[8..16].copy_from_slice(&number.to_le_bytes());
    s[16..].copy_from_slice(b"proofmill-devnet");
    s
}

/// Uniform-enough draw in `0..n` (`n > 0`). Plain modulo on purpose: the traffic needs to be
/// reproducible across `rand` versions, not unbiased.
fn below(rng: &mut ChaCha8Rng, n: u64) -> u64 {
    rng.next_u64() % n.max(1)
}

/// The state root before batch 1 of a devnet with `config` (what its L1 rollup contract is
/// deployed with).
pub fn genesis_root(config: DevnetConfig) -> Result<proofmill_types::Digest, ConfigError> {
    Ok(fr_to_digest(Devnet::new(config)?.state_root()))
}
