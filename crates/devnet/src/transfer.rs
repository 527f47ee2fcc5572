//! Transfers, their validity rules and the batch commitment.
//!
//! The same rules run in the mempool, in the sequencer and in stateless execution, and the
//! circuit enforces them too, so they live in one place and use only u64 comparisons.

use crate::poseidon::{fr_from_u64, hash};
use crate::tree::{capacity, leaf_hash};
use ark_bn254::Fr;

/// A balance transfer between two accounts (indices into the tree).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Transfer {
    /// Sender index, `< 2^depth`.
    pub from: u32,
    /// Receiver index, `< 2^depth`, `!= from`.
    pub to: u32,
    /// Positive amount moved from sender to receiver.
    pub amount: u64,
    /// Must equal the sender's current nonce (replay protection, total order per sender).
    pub nonce: u64,
}

/// An account's state, the preimage of its leaf.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct Account {
    /// Spendable balance.
    pub balance: u64,
    /// Number of transfers this account has sent.
    pub nonce: u64,
}

impl Account {
    /// Leaf commitment `hash([balance, nonce])`.
    pub fn leaf(&self) -> Fr {
        leaf_hash(self.balance, self.nonce)
    }
}

/// Why a transfer is invalid.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum RejectReason {
    #[error("overdraft: balance {balance} < amount {amount}")]
    Overdraft { balance: u64, amount: u64 },
    #[error("bad nonce: expected {expected}, got {got}")]
    BadNonce { expected: u64, got: u64 },
    #[error("account index outside the tree")]
    UnknownAccount,
    #[error("sender and receiver are the same account")]
    SelfTransfer,
    #[error("amount must be positive")]
    ZeroAmount,
    #[error("receiver balance or sender nonce would overflow u64")]
    Overflow,
}

/// Checks that need no state: indices in range, distinct, positive amount. Run first, since
/// the indices select the Merkle paths everything else is checked against.
pub fn check_stateless(t: &Transfer, depth: u8) -> Result<(), RejectReason> {
    let cap = capacity(depth);
    if u64::from(t.from) >= cap || u64::from(t.to) >= cap {
        return Err(RejectReason::UnknownAccount);
    }
    if t.from == t.to {
        return Err(RejectReason::SelfTransfer);
    }
    if t.amount == 0 {
        return Err(RejectReason::ZeroAmount);
    }
    Ok(())
}

/// Sender side of `t`: nonce must match, no overdraft, nonce must not overflow.
/// Callers run [`check_stateless`] first.
pub fn debit_sender(t: &Transfer, sender: Account) -> Result<Account, RejectReason> {
    if t.nonce != sender.nonce {
        return Err(RejectReason::BadNonce {
            expected: sender.nonce,
            got: t.nonce,
        });
    }
    if t.amount > sender.balance {
        return Err(RejectReason::Overdraft {
            balance: sender.balance,
            amount: t.amount,
        });
    }
    let nonce = sender.nonce.checked_add(1).ok_or(RejectReason::Overflow)?;
    Ok(Account {
        balance: sender.balance - t.amount,
        nonce,
    })
}

/// Receiver side of `t`: the balance must not overflow.
pub fn credit_receiver(t: &Transfer, receiver: Account) -> Result<Account, RejectReason> {
    let balance = receiver
        .balance
        .checked_add(t.amount)
        .ok_or(RejectReason::Overflow)?;
    Ok(Account {
        balance,
        nonce: receiver.nonce,
    })
}

/// Applies `t` to two distinct accounts: [`debit_sender`] then [`credit_receiver`].
pub fn apply_transfer(
    t: &Transfer,
    sender: Account,
    receiver: Account,
) -> Result<(Account, Account), RejectReason> {
    Ok((debit_sender(t, sender)?, credit_receiver(t, receiver)?))
}

/// First link of the batch commitment chain: `c_0 = hash([batch_number])`.
pub fn commitment_start(batch_number: u64) -> Fr {
    hash(&[fr_from_u64(batch_number)])
}

/// Next link: `c_{i+1} = hash([c_i, from, to, amount, nonce])`.
pub fn commitment_step(c: Fr, t: &Transfer) -> Fr {
    hash(&[
        c,
        fr_from_u64(u64::from(t.from)),
        fr_from_u64(u64::from(t.to)),
        fr_from_u64(t.amount),
        fr_from_u64(t.nonce),
    ])
}

/// Commitment of a whole batch: binds its number and every transfer in order.
pub fn batch_commitment(batch_number: u64, transfers: &[Transfer]) -> Fr {
    transfers
        .iter()
        .fold(commitment_start(batch_number), commitment_step)
}
