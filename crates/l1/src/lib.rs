//! L1 settlement for proofmill.
//!
//! The `Rollup` contract (`contracts/Rollup.sol`, compiled artifacts in `contracts/out/`) takes
//! batch commitments from the sequencer and settles ranges of committed batches with one proof
//! per required proof type per batch. Two implementations of [`L1`] run the same bytecode:
//!
//! * [`RevmL1`]: an embedded, in-process EVM (revm) with real gas accounting and a durable
//!   append-only transaction log. The default: no external process.
//! * [`RpcL1`]: any Ethereum JSON-RPC node through alloy, with EIP-1559 fees, fee bumps,
//!   timeouts and receipt status checks.
//!
//! Reverts are attributed by custom-error selector ([`Revert`]), never by message strings.

mod contracts;
mod revm_l1;
mod rpc_l1;
mod txlog;

use async_trait::async_trait;
use proofmill_devnet::StateTransition;
use proofmill_types::Digest;
use std::fmt;
use std::time::Duration;

pub use alloy::primitives::{Address, B256, U256};
pub use contracts::{DevExecVerifier, Groth16BatchVerifier, Rollup};
pub use revm_l1::{
    BLOCK_TIME as EMBEDDED_BLOCK_TIME, RevmConfig, RevmL1, SPEC as EVM_SPEC, dev_sequencer,
};
pub use rpc_l1::{RpcConfig, RpcL1, deploy_rollup, deploy_rollup_with};

/// Chain id of the embedded L1 (the same as anvil's default, so addresses and hashes line up).
pub const DEV_CHAIN_ID: u64 = 31337;

/// Anvil's well-known first dev key (`test test ... junk`, index 0). DEV ONLY.
pub const DEV_SEQUENCER_KEY: &str =
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

/// Anvil's first ten dev accounts (the `test test ... junk` mnemonic); the embedded L1 funds
/// each with 10,000 ETH at genesis, as anvil does. DEV ONLY.
pub const DEV_ACCOUNTS: [&str; 10] = [
    "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
    "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
    "0x90F79bf6EB2c4f870365E785982E1f101E93b906",
    "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65",
    "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc",
    "0x976EA74026E726554dB657fA54763abd0C3a0aa9",
    "0x14dC79964da2C08b23698B3D3cc7Ca32193d9955",
    "0x23618e81E3f5cdF7f54C3d65f7FBc0aBf5B21E8f",
    "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720",
];

/// Number of verifying-key words of a Groth16 circuit with 3 public inputs (what
/// `proofmill_groth16::vk_words` returns): alpha 2, beta/gamma/delta 4 each, IC 4 x 2.
pub const GROTH16_VK_WORDS: usize = 22;

/// Which on-chain verifier to deploy for a proof type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifierKind {
    /// `DevExecVerifier`: DEV ONLY, checks that the proof restates the public values
    /// (proofmill's `exec` proof format, `StateTransition::encode()`); no cryptography.
    DevExec,
    /// `Groth16BatchVerifier` for this verifying key: the [`GROTH16_VK_WORDS`] big-endian words
    /// of `proofmill_groth16::vk_words`. Proofs are `proofmill_groth16::encode_proof`'s 256 bytes.
    Groth16(Vec<[u8; 32]>),
}

impl VerifierKind {
    /// Deploy code of the verifier contract, constructor arguments included. Fails for a
    /// Groth16 key that does not have [`GROTH16_VK_WORDS`] words.
    pub fn deploy_code(&self) -> Result<Vec<u8>> {
        match self {
            VerifierKind::DevExec => Ok(DevExecVerifier::BYTECODE.to_vec()),
            VerifierKind::Groth16(vk) => contracts::groth16_deploy_code(vk),
        }
    }
}

/// Why the rollup contract rejected a call, decoded from revert data by error selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Revert {
    /// The proof of type `proof_type` (index into the deployed proof types) for `batch` is
    /// invalid. `batch` is exactly the first failing batch of the range.
    InvalidProof {
        batch: u64,
        proof_type: u64,
    },
    NotSequencer {
        sender: Address,
    },
    WrongBatchNumber {
        expected: u64,
        got: u64,
    },
    /// This batch (the first uncommitted one asked for) is not committed.
    BatchNotCommitted(u64),
    /// Any other revert: another custom error (its selector), `Error(string)`, a panic, or
    /// no data at all (out of gas, invalid opcode).
    Other {
        selector: Option<[u8; 4]>,
        data: Vec<u8>,
    },
}

impl Revert {
    /// Decodes revert data returned by the rollup contract (or bubbled up from a verifier).
    pub fn decode(data: &[u8]) -> Revert {
        contracts::decode_revert(data)
    }
}

impl fmt::Display for Revert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Revert::InvalidProof { batch, proof_type } => {
                write!(f, "InvalidProof(batch {batch}, proof type #{proof_type})")
            }
            Revert::NotSequencer { sender } => write!(f, "NotSequencer({sender})"),
            Revert::WrongBatchNumber { expected, got } => {
                write!(f, "WrongBatchNumber(expected {expected}, got {got})")
            }
            Revert::BatchNotCommitted(n) => write!(f, "BatchNotCommitted({n})"),
            Revert::Other {
                selector: Some(s),
                data,
            } => {
                write!(f, "revert 0x{} ({} bytes)", hex4(s), data.len())
            }
            Revert::Other {
                selector: None,
                data,
            } => {
                write!(f, "revert without selector ({} bytes)", data.len())
            }
        }
    }
}

fn hex4(s: &[u8; 4]) -> String {
    s.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxStatus {
    Success,
    /// Mined (it cost gas, the nonce moved) but reverted.
    Reverted(Revert),
}

/// A transaction included in an L1 block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxOutcome {
    pub tx_hash: [u8; 32],
    pub gas_used: u64,
    pub block: u64,
    pub status: TxStatus,
}

impl TxOutcome {
    pub fn is_success(&self) -> bool {
        self.status == TxStatus::Success
    }
}

/// Errors talking to L1. A transaction that the contract rejects before it is sent (the
/// pre-flight call or gas estimate reverts) is [`L1Error::Reverted`]; one that was mined and
/// reverted is an `Ok(TxOutcome)` with [`TxStatus::Reverted`].
#[derive(Debug, thiserror::Error)]
pub enum L1Error {
    /// The call would revert (nothing was sent, nothing changed).
    #[error("L1 call reverted: {0}")]
    Reverted(Revert),
    /// A transport or node error worth retrying (connection refused, 429/5xx, rate limits).
    #[error("transient L1 RPC error: {0}")]
    Transient(String),
    /// A node error that a retry will not fix (bad request, wrong chain, insufficient funds).
    #[error("L1 RPC error: {0}")]
    Rpc(String),
    #[error("L1 call {what} timed out after {after:?}")]
    Timeout { what: &'static str, after: Duration },
    /// A sent transaction was not mined after every allowed fee bump.
    #[error("transaction with nonce {nonce} not mined after {bumps} fee bumps (last tx {last_tx})")]
    Stuck {
        nonce: u64,
        bumps: u32,
        last_tx: String,
    },
    /// The embedded EVM rejected a transaction or failed internally.
    #[error("embedded EVM: {0}")]
    Evm(String),
    /// The embedded L1's transaction log is unreadable or does not replay.
    #[error("L1 state log {path}: {msg}")]
    Log { path: String, msg: String },
    #[error("L1 configuration: {0}")]
    Config(String),
}

impl L1Error {
    /// Whether the same request may succeed if retried later.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            L1Error::Transient(_) | L1Error::Timeout { .. } | L1Error::Stuck { .. }
        )
    }

    /// The contract's rejection, if this is one.
    pub fn revert(&self) -> Option<&Revert> {
        match self {
            L1Error::Reverted(r) => Some(r),
            _ => None,
        }
    }
}

pub type Result<T, E = L1Error> = std::result::Result<T, E>;

/// Settlement layer seen by the coordinator. `proofs[t][i]` is the proof of the `t`-th
/// deployed proof type for batch `first + i`.
#[async_trait]
pub trait L1: Send + Sync {
    /// Address of the rollup contract.
    fn rollup_address(&self) -> Address;
    /// Address transactions are sent from.
    fn sender(&self) -> Address;
    async fn last_committed_batch(&self) -> Result<u64>;
    async fn last_verified_batch(&self) -> Result<u64>;
    /// State root after batch `n` (`n = 0`: genesis). Uncommitted → `Reverted(BatchNotCommitted)`.
    async fn state_root(&self, n: u64) -> Result<Digest>;
    /// Commitment of batch `n`.
    async fn batch_commitment(&self, n: u64) -> Result<Digest>;
    async fn commit_batch(&self, n: u64, new_root: Digest, commitment: Digest)
    -> Result<TxOutcome>;
    /// Gas `verify_batches` would use, or why it would revert (e.g. which proof is invalid).
    async fn estimate_verify_gas(
        &self,
        first: u64,
        proofs: &[Vec<Vec<u8>>],
    ) -> Result<std::result::Result<u64, Revert>>;
    async fn verify_batches(&self, first: u64, proofs: &[Vec<Vec<u8>>]) -> Result<TxOutcome>;
    /// The settled ranges (`BatchesVerified` events) whose last batch is at least
    /// `from_batch`, oldest first: how a restarted sender learns what a transaction it sent
    /// but never saw mined (or saw only as a fee-bumped replacement) settled.
    async fn verified_ranges(&self, from_batch: u64) -> Result<Vec<VerifiedRange>>;
    /// The commits (`BatchCommitted` events) of batches `from_batch` and above, oldest first:
    /// how a restarted committer learns the transaction of a commit whose receipt it never
    /// saw. A node searches back a bounded number of blocks: older commits are left out.
    async fn committed_batches(&self, from_batch: u64) -> Result<Vec<CommittedBatch>>;
}

/// The latest block of a chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockHead {
    pub number: u64,
    /// Seconds since the Unix epoch, as the block is stamped (the chain's clock, which a dev
    /// chain can move ahead of the wall clock).
    pub timestamp: u64,
}

/// One log (event) a contract emitted, as the chain recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// The emitting contract.
    pub address: Address,
    pub topics: Vec<B256>,
    pub data: Vec<u8>,
    pub block: u64,
    pub tx_hash: [u8; 32],
    /// Position of the log in its block.
    pub log_index: u64,
}

/// One batch's commit transaction, as the chain recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedBatch {
    pub batch: u64,
    pub tx_hash: [u8; 32],
    pub gas_used: u64,
    pub block: u64,
}

/// One settling transaction, as the chain recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedRange {
    pub first: u64,
    pub last: u64,
    pub tx_hash: [u8; 32],
    pub gas_used: u64,
}

/// Benchmark helper (`proofmill bench settle`): commits `batches_per_tx` new batches with
/// synthetic roots, settles them in one `verifyBatches` with dev `exec` proofs, and returns the
/// verify gas per batch. The rollup must have been deployed with the single proof type `exec`
/// ([`VerifierKind::DevExec`]), and everything committed so far must be verified.
pub async fn settle_gas(l1: &dyn L1, batches_per_tx: u64) -> Result<u64> {
    if batches_per_tx == 0 {
        return Err(L1Error::Config("batches_per_tx must be at least 1".into()));
    }
    let first = l1.last_committed_batch().await? + 1;
    let mut prev = l1.state_root(first - 1).await?;
    let mut batches = Vec::new();
    for n in first..first + batches_per_tx {
        let public = StateTransition {
            old_state_root: prev,
            new_state_root: synthetic_digest(b"root", n),
            batch_commitment: synthetic_digest(b"commitment", n),
        };
        batches.push((public, public.encode().to_vec()));
        prev = public.new_state_root;
    }
    settle_proofs_gas(l1, &batches).await
}

/// Benchmark helper: commits `batches` (their new roots and commitments) as the next batches,
/// settles them in one `verifyBatches` with the given proofs, and returns the verify gas per
/// batch. The rollup must have a single proof type whose verifier takes these proofs, and
/// everything committed so far must be verified. The batches must chain from the rollup's
/// current state root (checked before anything is committed); a proof the contract rejects
/// is `Err(Reverted(InvalidProof))`, with the batches left committed.
pub async fn settle_proofs_gas(l1: &dyn L1, batches: &[(StateTransition, Vec<u8>)]) -> Result<u64> {
    if batches.is_empty() {
        return Err(L1Error::Config("need at least one batch to settle".into()));
    }
    let first = l1.last_committed_batch().await? + 1;
    if l1.last_verified_batch().await? + 1 != first {
        return Err(L1Error::Config(
            "settling needs every committed batch verified".into(),
        ));
    }
    let mut prev = l1.state_root(first - 1).await?;
    for (i, (public, _)) in batches.iter().enumerate() {
        if public.old_state_root != prev {
            return Err(L1Error::Config(format!(
                "batch {} does not start from the state root before it",
                first + i as u64
            )));
        }
        prev = public.new_state_root;
    }
    for (n, (public, _)) in (first..).zip(batches) {
        expect_success(
            l1.commit_batch(n, public.new_state_root, public.batch_commitment)
                .await?,
        )?;
    }
    let proofs = vec![batches.iter().map(|(_, proof)| proof.clone()).collect()];
    let out = expect_success(l1.verify_batches(first, &proofs).await?)?;
    Ok(out.gas_used / batches.len() as u64)
}

fn expect_success(out: TxOutcome) -> Result<TxOutcome> {
    match &out.status {
        TxStatus::Success => Ok(out),
        TxStatus::Reverted(r) => Err(L1Error::Reverted(r.clone())),
    }
}

/// A deterministic, non-zero 32-byte value for tests and benchmarks.
pub fn synthetic_digest(tag: &[u8], n: u64) -> Digest {
    let mut buf = tag.to_vec();
    buf.extend_from_slice(&n.to_be_bytes());
    Digest(alloy::primitives::keccak256(&buf).0)
}

/// The `exec` proof of a transition: `StateTransition::encode()` of (old, new, commitment).
pub fn exec_proof(old_root: Digest, new_root: Digest, commitment: Digest) -> Vec<u8> {
    StateTransition {
        old_state_root: old_root,
        new_state_root: new_root,
        batch_commitment: commitment,
    }
    .encode()
    .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_accounts_are_checksummed_addresses() {
        // A typo in a checksummed address breaks its checksum.
        for a in DEV_ACCOUNTS {
            Address::parse_checksummed(a, None).unwrap_or_else(|e| panic!("{a}: {e}"));
        }
        assert_eq!(DEV_ACCOUNTS[0].parse::<Address>().unwrap(), dev_sequencer());
    }
}
