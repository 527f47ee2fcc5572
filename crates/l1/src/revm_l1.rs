//! Embedded L1: the rollup contracts on an in-process revm, one block per transaction.

use crate::contracts::{self, View};
use crate::txlog::{LogRecord, TxLog};
use crate::{
    CommittedBatch, DEV_CHAIN_ID, DEV_SEQUENCER_KEY, L1, L1Error, Result, Revert, TxOutcome,
    TxStatus, VerifiedRange, VerifierKind,
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
use revm::{Context, Database, DatabaseCommit, ExecuteEvm, MainBuilder, MainContext, MainnetEvm};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Hard fork of the embedded EVM; tests run anvil with the same (`--hardfork osaka`).
pub const SPEC: SpecId = SpecId::OSAKA;
/// Gas limit of every embedded transaction (under Osaka's 2^24 per-transaction cap).
const TX_GAS_LIMIT: u64 = 16_000_000;
const BLOCK_GAS_LIMIT: u64 = 36_000_000;
const GENESIS_TIMESTAMP: u64 = 1_700_000_000;
const BLOCK_TIME: u64 = 12;

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
        };

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
            let out = inner.execute(deployer, None, code, None)?;
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
        let mut inner = self.lock();
        if self.preflight
            && let Err(revert) = inner.call(self.sender, self.rollup, data.clone())?
        {
            return Err(L1Error::Reverted(revert));
        }
        inner.execute(self.sender, Some(self.rollup), data, None)
    }
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
            timestamp: U256::from(GENESIS_TIMESTAMP + BLOCK_TIME * number),
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
        data: Vec<u8>,
        nonce: u64,
    ) -> Result<TxEnv> {
        TxEnv::builder()
            .caller(caller)
            .kind(match to {
                Some(to) => TxKind::Call(to),
                None => TxKind::Create,
            })
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
        Ok(self.simulate(caller, to, data)?.map(|(out, _gas)| out))
    }

    /// Executes without committing: (output, gas used) or the revert.
    fn simulate(
        &mut self,
        caller: Address,
        to: Address,
        data: Vec<u8>,
    ) -> Result<Result<(Vec<u8>, u64), Revert>> {
        let nonce = self.nonce(caller);
        let tx = self.tx_env(caller, Some(to), data, nonce)?;
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
        data: Vec<u8>,
        expect: Option<&LogRecord>,
    ) -> Result<TxOutcome> {
        let block = self.block + 1;
        let nonce = self.nonce(caller);
        let tx = self.tx_env(caller, to, data.clone(), nonce)?;
        let res = self.evm(block).transact(tx).map_err(evm_err)?;
        let gas_used = res.result.tx_gas_used();
        let revert = revert_of(&res.result);
        let rec = LogRecord {
            block,
            caller,
            nonce,
            gas_limit: TX_GAS_LIMIT,
            to,
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
        for log in res.result.logs() {
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
        self.execute(rec.caller, rec.to, rec.data.clone(), Some(&rec))
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
        let res = self.lock().simulate(self.sender, self.rollup, data)?;
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
