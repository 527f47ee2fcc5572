//! Embedded L1: the rollup contracts on an in-process revm, one block per transaction.

use crate::contracts::{self, View};
use crate::txlog::{LogRecord, TxLog};
use crate::{
    BlockHead, CommittedBatch, DEV_ACCOUNTS, DEV_CHAIN_ID, DEV_SEQUENCER_KEY, L1, L1Error,
    LogEntry, Result, Revert, TxOutcome, TxStatus, VerifiedRange, VerifierKind,
};
use alloy::primitives::{Address, Bytes, TxKind, keccak256};
use alloy::signers::local::PrivateKeySigner;
use async_trait::async_trait;
use proofmill_types::{Digest, ProofType};
use revm::context::{BlockEnv, CfgEnv, TxEnv};
use revm::context_interface::result::{EVMError, ExecutionResult};
use revm::database::{CacheDB, EmptyDB};
use revm::handler::MainnetContext;
use revm::primitives::U256;
use revm::primitives::hardfork::SpecId;
use revm::state::AccountInfo;
use revm::{Context, Database, DatabaseCommit, ExecuteEvm, MainBuilder, MainContext, MainnetEvm};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Hard fork of the embedded EVM; tests run anvil with the same (`--hardfork osaka`).
pub const SPEC: SpecId = SpecId::OSAKA;
/// Gas limit of every embedded transaction (under Osaka's 2^24 per-transaction cap).
const TX_GAS_LIMIT: u64 = 16_000_000;
const BLOCK_GAS_LIMIT: u64 = 36_000_000;
const GENESIS_TIMESTAMP: u64 = 1_700_000_000;
/// Seconds between blocks: block `n` is stamped `GENESIS_TIMESTAMP + BLOCK_TIME * n`.
pub const BLOCK_TIME: u64 = 12;
/// Genesis balance of each of [`DEV_ACCOUNTS`] (10,000 ETH, as anvil funds them).
const DEV_BALANCE_ETH: u64 = 10_000;

type Db = CacheDB<EmptyDB>;
/// The EVM borrows the state for one operation (revm's EVM itself is not `Send`).
type Evm<'a> = MainnetEvm<MainnetContext<&'a mut Db>>;

/// What to deploy on first open.
#[derive(Clone, Debug)]
pub struct RevmConfig {
    /// Sequencer (and deployer) address.
    pub sequencer: Address,
    pub genesis_root: Digest,
    pub proof_types: Vec<ProofType>,
    pub verifier_kinds: Vec<VerifierKind>,
}

impl RevmConfig {
    /// The dev setup: anvil's first account as sequencer, one proof type `exec` checked by the
    /// DEV ONLY `DevExecVerifier`.
    pub fn dev(genesis_root: Digest) -> Self {
        RevmConfig {
            sequencer: dev_sequencer(),
            genesis_root,
            proof_types: vec![ProofType::new("exec").expect("valid")],
            verifier_kinds: vec![VerifierKind::DevExec],
        }
    }
}

/// Address of [`DEV_SEQUENCER_KEY`].
pub fn dev_sequencer() -> Address {
    DEV_SEQUENCER_KEY
        .parse::<PrivateKeySigner>()
        .expect("valid dev key")
        .address()
}

struct Inner {
    db: Db,
    /// Number of the last block (= number of executed transactions).
    block: u64,
    log: Option<TxLog>,
    /// Every `BatchesVerified` event so far (rebuilt by the replay on open).
    verified: Vec<VerifiedRange>,
    /// Every `BatchCommitted` event so far (rebuilt by the replay on open): a devnet's
    /// chain, as long as its transaction log.
    committed: Vec<CommittedBatch>,
    /// Every log of every contract, oldest first (rebuilt by the replay on open).
    logs: Vec<LogEntry>,
}

/// In-process L1. Clones made with [`RevmL1::with_sender`] share the chain.
pub struct RevmL1 {
    inner: Arc<Mutex<Inner>>,
    sender: Address,
    rollup: Address,
    verifiers: Vec<Address>,
    preflight: bool,
}

impl std::fmt::Debug for RevmL1 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevmL1")
            .field("sender", &self.sender)
            .field("rollup", &self.rollup)
            .finish_non_exhaustive()
    }
}

impl RevmL1 {
    /// Opens the embedded L1. With a `log` path, the transactions in it are replayed (the
    /// contracts were deployed by its first records); a new or empty log gets the deployment.
    /// `None` keeps everything in memory. Contract addresses are deterministic:
    /// `CREATE(sequencer, i)` for the `i`-th verifier, then the rollup.
    pub fn open(log: Option<&Path>, cfg: RevmConfig) -> Result<RevmL1> {
        let mut deploys = contracts::check_deploy_args(&cfg.proof_types, &cfg.verifier_kinds)?;
        let log_path = log.map(|p| p.display().to_string());
        let (log, records) = match log {
            Some(path) => {
                let (log, recs) = TxLog::open(path)?;
                (Some(log), recs)
            }
            None => (None, Vec::new()),
        };
        let mut inner = Inner {
            db: Db::default(),
            block: 0,
            log,
            verified: Vec::new(),
            committed: Vec::new(),
            logs: Vec::new(),
        };
        // Genesis: anvil's dev accounts are funded, so transactions can carry ETH (gas is free
        // here: the gas price is 0, so balances change nothing the rollup does).
        let dev_balance = U256::from(DEV_BALANCE_ETH) * U256::from(10u64).pow(U256::from(18));
        for who in DEV_ACCOUNTS {
            inner.db.insert_account_info(
                who.parse().expect("valid dev address"),
                AccountInfo {
                    balance: dev_balance,
                    ..Default::default()
                },
            );
        }

        // The deployment this configuration asks for.
        let deployer = cfg.sequencer;
        let verifiers: Vec<Address> = (0..cfg.verifier_kinds.len() as u64)
            .map(|i| deployer.create(i))
            .collect();
        let rollup = deployer.create(verifiers.len() as u64);
        deploys.push(contracts::rollup_deploy_code(
            cfg.sequencer,
            cfg.genesis_root,
            &cfg.proof_types,
            &verifiers,
        ));

        // The log starts with the deployment transactions (all of them, or a prefix if the
        // process died during the first open); anything else is another chain.
        let n_deployed = records.len().min(deploys.len());
        let same_deployment = records.iter().zip(&deploys).all(|(r, code)| {
            r.caller == deployer && r.to.is_none() && &r.data == code && r.success
        });
        if !same_deployment {
            return Err(L1Error::Config(format!(
                "the L1 log {} holds another deployment (sequencer, genesis root, proof \
                 types or contract code differ); use a new log file",
                log_path.unwrap_or_default()
            )));
        }
        for rec in records {
            inner.replay(rec)?;
        }
        for code in deploys.into_iter().skip(n_deployed) {
            let out = inner.execute(deployer, None, U256::ZERO, code, None)?;
            if !out.is_success() {
                return Err(L1Error::Evm(format!(
                    "deployment reverted: {:?}",
                    out.status
                )));
            }
        }
        Ok(RevmL1 {
            inner: Arc::new(Mutex::new(inner)),
            sender: cfg.sequencer,
            rollup,
            verifiers,
            preflight: true,
        })
    }

    /// A handle on the same chain that sends from `sender` (no signatures in the embedded L1).
    pub fn with_sender(&self, sender: Address) -> RevmL1 {
        RevmL1 {
            inner: self.inner.clone(),
            sender,
            rollup: self.rollup,
            verifiers: self.verifiers.clone(),
            preflight: self.preflight,
        }
    }

    /// With `false`, transactions are executed even when they revert (mined, gas spent), as a
    /// sender without a pre-flight check would. Default `true`: a transaction that would revert
    /// returns `Err(L1Error::Reverted)` and changes nothing.
    pub fn with_preflight(mut self, preflight: bool) -> RevmL1 {
        self.preflight = preflight;
        self
    }

    pub fn verifier_addresses(&self) -> &[Address] {
        &self.verifiers
    }

    /// Number of the last block.
    pub fn block_number(&self) -> u64 {
        self.lock().block
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn view(&self, v: View) -> Result<[u8; 32]> {
        let out = self.lock().call(self.sender, self.rollup, v.calldata())?;
        match out {
            Ok(bytes) => View::word(&bytes),
            Err(revert) => Err(L1Error::Reverted(revert)),
        }
    }

    fn send(&self, data: Vec<u8>) -> Result<TxOutcome> {
        self.transact(self.rollup, data, U256::ZERO)
    }

    /// Sends a transaction from this handle's sender to any contract, with `value` wei, in a
    /// new block (pre-flight checked unless [`RevmL1::with_preflight`] turned it off).
    pub fn transact(&self, to: Address, data: Vec<u8>, value: U256) -> Result<TxOutcome> {
        let mut inner = self.lock();
        if self.preflight
            && let Err(revert) = inner.call_value(self.sender, to, value, data.clone())?
        {
            return Err(L1Error::Reverted(revert));
        }
        inner.execute(self.sender, Some(to), value, data, None)
    }

    /// Deploys `code` (creation code, constructor arguments appended) from this handle's
    /// sender; returns the new contract's address. A deployment that reverts is
    /// `Err(Reverted)` and is not recorded.
    pub fn deploy(&self, code: Vec<u8>) -> Result<Address> {
        let mut inner = self.lock();
        let address = self.sender.create(inner.nonce(self.sender));
        let out = inner.execute_if_success(self.sender, None, code)?;
        debug_assert!(out.is_success());
        Ok(address)
    }

    /// `eth_call` of any contract against the next block: its output, or
    /// `Err(Reverted)`. Changes nothing.
    pub fn call(&self, to: Address, data: Vec<u8>) -> Result<Vec<u8>> {
        match self.lock().call(self.sender, to, data)? {
            Ok(out) => Ok(out),
            Err(revert) => Err(L1Error::Reverted(revert)),
        }
    }

    /// The logs `address` emitted in blocks `from..=to`, oldest first.
    pub fn logs(&self, address: Address, from: u64, to: u64) -> Vec<LogEntry> {
        let inner = self.lock();
        let start = inner.logs.partition_point(|l| l.block < from);
        inner.logs[start..]
            .iter()
            .take_while(|l| l.block <= to)
            .filter(|l| l.address == address)
            .cloned()
            .collect()
    }

    /// Balance of `who` in wei.
    pub fn balance(&self, who: Address) -> U256 {
        match self.lock().db.basic(who) {
            Ok(Some(info)) => info.balance,
            _ => U256::ZERO,
        }
    }

    /// Number and timestamp of the last block (the next one is [`BLOCK_TIME`] later).
    pub fn head(&self) -> BlockHead {
        let number = self.lock().block;
        BlockHead {
            number,
            timestamp: block_timestamp(number),
        }
    }

    /// Number and timestamp of block `number`, if the chain has it.
    pub fn block(&self, number: u64) -> Option<BlockHead> {
        (number <= self.lock().block).then(|| BlockHead {
            number,
            timestamp: block_timestamp(number),
        })
    }

    /// Moves the chain's clock at least `secs` ahead by skipping empty blocks
    /// (`ceil(secs / BLOCK_TIME)` of them), as a chain does while nobody sends anything.
    /// The skip is durable once a later transaction is logged (its block number carries it);
    /// returns the new last block.
    pub fn advance_time(&self, secs: u64) -> u64 {
        let mut inner = self.lock();
        inner.block += secs.div_ceil(BLOCK_TIME);
        inner.block
    }
}

fn block_timestamp(number: u64) -> u64 {
    GENESIS_TIMESTAMP + BLOCK_TIME * number
}

fn evm_err<E: std::fmt::Debug>(e: EVMError<E>) -> L1Error {
    L1Error::Evm(format!("{e:?}"))
}

fn revert_of(result: &ExecutionResult) -> Option<Revert> {
    match result {
        ExecutionResult::Success { .. } => None,
        ExecutionResult::Revert { output, .. } => Some(Revert::decode(output)),
        ExecutionResult::Halt { .. } => Some(Revert::Other {
            selector: None,
            data: Vec::new(),
        }),
    }
}

impl Inner {
    /// An EVM on the current state, executing in block `number`.
    fn evm(&mut self, number: u64) -> Evm<'_> {
        let block = BlockEnv {
            number: U256::from(number),
            timestamp: U256::from(block_timestamp(number)),
            gas_limit: BLOCK_GAS_LIMIT,
            ..Default::default()
        };
        let mut cfg = CfgEnv::new_with_spec(SPEC);
        cfg.chain_id = DEV_CHAIN_ID;
        Context::mainnet()
            .with_db(&mut self.db)
            .with_cfg(cfg)
            .with_block(block)
            .build_mainnet()
    }

    fn nonce(&mut self, who: Address) -> u64 {
        match self.db.basic(who) {
            Ok(Some(info)) => info.nonce,
            _ => 0,
        }
    }

    fn tx_env(
        &self,
        caller: Address,
        to: Option<Address>,
        value: U256,
        data: Vec<u8>,
        nonce: u64,
    ) -> Result<TxEnv> {
        TxEnv::builder()
            .caller(caller)
            .kind(match to {
                Some(to) => TxKind::Call(to),
                None => TxKind::Create,
            })
            .value(value)
            .data(Bytes::from(data))
            .gas_limit(TX_GAS_LIMIT)
            .nonce(nonce)
            .chain_id(Some(DEV_CHAIN_ID))
            .build()
            .map_err(|e| L1Error::Evm(format!("building tx: {e:?}")))
    }

    /// `eth_call` against the next block: output, or the revert. Changes nothing.
    fn call(
        &mut self,
        caller: Address,
        to: Address,
        data: Vec<u8>,
    ) -> Result<Result<Vec<u8>, Revert>> {
        self.call_value(caller, to, U256::ZERO, data)
    }

    fn call_value(
        &mut self,
        caller: Address,
        to: Address,
        value: U256,
        data: Vec<u8>,
    ) -> Result<Result<Vec<u8>, Revert>> {
        Ok(self
            .simulate(caller, Some(to), value, data)?
            .map(|(out, _gas)| out))
    }

    /// Executes (a deployment when `to` is `None`) only if a simulation of it succeeds.
    fn execute_if_success(
        &mut self,
        caller: Address,
        to: Option<Address>,
        data: Vec<u8>,
    ) -> Result<TxOutcome> {
        if let Err(revert) = self.simulate(caller, to, U256::ZERO, data.clone())? {
            return Err(L1Error::Reverted(revert));
        }
        self.execute(caller, to, U256::ZERO, data, None)
    }

    /// Executes without committing: (output, gas used) or the revert.
    fn simulate(
        &mut self,
        caller: Address,
        to: Option<Address>,
        value: U256,
        data: Vec<u8>,
    ) -> Result<Result<(Vec<u8>, u64), Revert>> {
        let nonce = self.nonce(caller);
        let tx = self.tx_env(caller, to, value, data, nonce)?;
        let res = self.evm(self.block + 1).transact(tx).map_err(evm_err)?;
        let gas = res.result.tx_gas_used();
        Ok(match revert_of(&res.result) {
            None => Ok((
                res.result.output().map(|o| o.to_vec()).unwrap_or_default(),
                gas,
            )),
            Some(r) => Err(r),
        })
    }

    /// Executes a transaction in a new block, logs it durably, then commits its state.
    /// `expect` (replay): the recorded outcome, which must be reproduced exactly.
    fn execute(
        &mut self,
        caller: Address,
        to: Option<Address>,
        value: U256,
        data: Vec<u8>,
        expect: Option<&LogRecord>,
    ) -> Result<TxOutcome> {
        // Blocks skipped by `advance_time` before this transaction: the logged block number
        // says how many.
        if let Some(rec) = expect
            && rec.block > self.block + 1
        {
            self.block = rec.block - 1;
        }
        let block = self.block + 1;
        let nonce = self.nonce(caller);
        let tx = self.tx_env(caller, to, value, data.clone(), nonce)?;
        let res = self.evm(block).transact(tx).map_err(evm_err)?;
        let gas_used = res.result.tx_gas_used();
        let revert = revert_of(&res.result);
        let rec = LogRecord {
            block,
            caller,
            nonce,
            gas_limit: TX_GAS_LIMIT,
            to,
            value,
            data,
            success: revert.is_none(),
            gas_used,
        };
        match expect {
            Some(expected) => {
                if &rec != expected {
                    return Err(L1Error::Log {
                        path: "replay".into(),
                        msg: format!(
                            "block {block} does not replay: logged success={} gas={} nonce={}, \
                             got success={} gas={} nonce={}",
                            expected.success,
                            expected.gas_used,
                            expected.nonce,
                            rec.success,
                            rec.gas_used,
                            rec.nonce
                        ),
                    });
                }
            }
            None => {
                if let Some(log) = &mut self.log {
                    log.append(&rec)?;
                }
            }
        }
        self.db.commit(res.state);
        self.block = block;
        let hash = tx_hash(&rec);
        for (index, log) in res.result.logs().iter().enumerate() {
            self.logs.push(LogEntry {
                address: log.address,
                topics: log.topics().to_vec(),
                data: log.data.data.to_vec(),
                block,
                tx_hash: hash,
                log_index: index as u64,
            });
            if let Some((first, last)) = contracts::batches_verified(log.topics()) {
                self.verified.push(VerifiedRange {
                    first,
                    last,
                    tx_hash: hash,
                    gas_used,
                });
            }
            if let Some(batch) = contracts::batch_committed(log.topics()) {
                self.committed.push(CommittedBatch {
                    batch,
                    tx_hash: hash,
                    gas_used,
                    block,
                });
            }
        }
        Ok(TxOutcome {
            tx_hash: hash,
            gas_used,
            block,
            status: match revert {
                None => TxStatus::Success,
                Some(r) => TxStatus::Reverted(r),
            },
        })
    }

    fn replay(&mut self, rec: LogRecord) -> Result<()> {
        self.execute(rec.caller, rec.to, rec.value, rec.data.clone(), Some(&rec))
            .map(|_| ())
    }
}

/// Deterministic transaction hash of the embedded L1.
fn tx_hash(rec: &LogRecord) -> [u8; 32] {
    let mut buf = b"proofmill-revm-tx".to_vec();
    buf.extend_from_slice(&DEV_CHAIN_ID.to_be_bytes());
    buf.extend_from_slice(&rec.block.to_be_bytes());
    buf.extend_from_slice(rec.caller.as_slice());
    buf.extend_from_slice(&rec.nonce.to_be_bytes());
    buf.extend_from_slice(rec.to.unwrap_or_default().as_slice());
    buf.extend_from_slice(&rec.gas_limit.to_be_bytes());
    buf.extend_from_slice(&rec.data);
    // Appended only when ETH moves, so the hashes of value-less transactions stay as they were.
    if !rec.value.is_zero() {
        buf.extend_from_slice(&rec.value.to_be_bytes::<32>());
    }
    keccak256(&buf).0
}

#[async_trait]
impl L1 for RevmL1 {
    fn rollup_address(&self) -> Address {
        self.rollup
    }

    fn sender(&self) -> Address {
        self.sender
    }

    async fn last_committed_batch(&self) -> Result<u64> {
        self.view(View::LastCommitted).map(contracts::word_u64)
    }

    async fn last_verified_batch(&self) -> Result<u64> {
        self.view(View::LastVerified).map(contracts::word_u64)
    }

    async fn state_root(&self, n: u64) -> Result<Digest> {
        self.view(View::StateRoot(n)).map(Digest)
    }

    async fn batch_commitment(&self, n: u64) -> Result<Digest> {
        self.view(View::Commitment(n)).map(Digest)
    }

    async fn commit_batch(
        &self,
        n: u64,
        new_root: Digest,
        commitment: Digest,
    ) -> Result<TxOutcome> {
        self.send(contracts::commit_calldata(n, new_root, commitment))
    }

    async fn estimate_verify_gas(
        &self,
        first: u64,
        proofs: &[Vec<Vec<u8>>],
    ) -> Result<Result<u64, Revert>> {
        let data = contracts::verify_calldata(first, proofs);
        let res = self
            .lock()
            .simulate(self.sender, Some(self.rollup), U256::ZERO, data)?;
        Ok(res.map(|(_, gas)| gas))
    }

    async fn verify_batches(&self, first: u64, proofs: &[Vec<Vec<u8>>]) -> Result<TxOutcome> {
        self.send(contracts::verify_calldata(first, proofs))
    }

    async fn verified_ranges(&self, from_batch: u64) -> Result<Vec<VerifiedRange>> {
        let inner = self.lock();
        Ok(inner
            .verified
            .iter()
            .filter(|r| r.last >= from_batch)
            .cloned()
            .collect())
    }

    async fn committed_batches(&self, from_batch: u64) -> Result<Vec<CommittedBatch>> {
        let inner = self.lock();
        Ok(inner
            .committed
            .iter()
            .filter(|c| c.batch >= from_batch)
            .cloned()
            .collect())
    }
}
