//! A bare chain for contract tests: deploy, send from any of anvil's dev accounts with a
//! value, call, read balances and move time, on an in-process revm or on anvil (its dev
//! accounts are unlocked, so `eth_sendTransaction` needs no signing). Reverts come back as
//! their raw data, logs as (topics, data), for the caller to decode with its bindings.
#![allow(dead_code)] // each test file uses a subset

use alloy::primitives::{Address, B256, Bytes, TxKind, U256};
use revm::context::{BlockEnv, CfgEnv, TxEnv};
use revm::context_interface::result::ExecutionResult;
use revm::database::{CacheDB, EmptyDB};
use revm::state::AccountInfo;
use revm::{Context, DatabaseCommit, ExecuteEvm, MainBuilder, MainContext};
use serde_json::{Value, json};

/// anvil's first dev accounts (its well-known test mnemonic), each funded with 10,000 ETH.
pub const DEV_ACCOUNTS: [&str; 5] = [
    "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
    "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
    "0x90F79bf6EB2c4f870365E785982E1f87C6aE5Ed8",
    "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65",
];

pub fn account(i: usize) -> Address {
    DEV_ACCOUNTS[i].parse().unwrap()
}

/// One ETH in wei.
pub fn eth(n: u64) -> U256 {
    U256::from(n) * U256::from(10u64).pow(U256::from(18))
}

/// A mined transaction, or the revert of one that was not sent.
#[derive(Debug)]
pub struct Receipt {
    pub revert: Option<Vec<u8>>,
    pub gas_used: u64,
    pub logs: Vec<(Vec<B256>, Vec<u8>)>,
}

pub enum Evm {
    Revm {
        db: CacheDB<EmptyDB>,
        timestamp: u64,
        block: u64,
    },
    Anvil {
        anvil: proofmill_testkit::TestAnvil,
        http: reqwest::Client,
    },
}

const GAS: u64 = 10_000_000;

impl Evm {
    pub fn revm() -> Evm {
        let mut db = CacheDB::<EmptyDB>::default();
        for i in 0..DEV_ACCOUNTS.len() {
            db.insert_account_info(
                account(i),
                AccountInfo {
                    balance: eth(10_000),
                    ..Default::default()
                },
            );
        }
        Evm::Revm {
            db,
            timestamp: 1_700_000_000,
            block: 0,
        }
    }

    /// A fresh anvil node where the dev accounts send unsigned (impersonated) and are funded.
    pub async fn anvil() -> Evm {
        // reqwest is built without a default crypto provider (no aws-lc build).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let evm = Evm::Anvil {
            anvil: proofmill_testkit::TestAnvil::start(),
            http: reqwest::Client::new(),
        };
        for i in 0..DEV_ACCOUNTS.len() {
            evm.rpc("anvil_impersonateAccount", json!([account(i)]))
                .await
                .unwrap();
            let balance = format!("{:#x}", eth(10_000));
            evm.rpc("anvil_setBalance", json!([account(i), balance]))
                .await
                .unwrap();
        }
        evm
    }

    pub fn name(&self) -> &'static str {
        match self {
            Evm::Revm { .. } => "revm",
            Evm::Anvil { .. } => "anvil",
        }
    }

    async fn rpc(&self, method: &str, params: Value) -> Result<Value, Value> {
        let Evm::Anvil { anvil, http } = self else {
            unreachable!("rpc is anvil's")
        };
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let reply: Value = http
            .post(&anvil.url)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        match reply.get("error") {
            Some(e) => Err(e.clone()),
            None => Ok(reply["result"].clone()),
        }
    }

    /// The receipt of a sent transaction, once mined (anvil mines at once, the receipt shows a
    /// moment later).
    async fn receipt(&self, hash: Value) -> Value {
        for _ in 0..1000 {
            let r = self
                .rpc("eth_getTransactionReceipt", json!([hash]))
                .await
                .unwrap();
            if !r.is_null() {
                return r;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("no receipt for {hash}");
    }

    /// Deploys `code` (creation code with constructor arguments) from `from`.
    pub async fn deploy(&mut self, from: Address, code: Vec<u8>) -> Address {
        match self {
            Evm::Revm { .. } => {
                let r = self.revm_tx(from, TxKind::Create, U256::ZERO, code, true);
                let ExecutionResult::Success { output, .. } = r else {
                    panic!("deployment failed: {r:?}")
                };
                output.address().copied().expect("created")
            }
            Evm::Anvil { .. } => {
                let tx =
                    json!({"from": from, "data": Bytes::from(code), "gas": format!("{GAS:#x}")});
                let hash = self.rpc("eth_sendTransaction", json!([tx])).await.unwrap();
                let receipt = self.receipt(hash).await;
                assert_eq!(receipt["status"], "0x1", "deployment failed: {receipt}");
                receipt["contractAddress"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap()
            }
        }
    }

    /// Sends a transaction if a call of it succeeds (as a sender with a pre-flight check
    /// does); otherwise returns the revert and changes nothing.
    pub async fn send(
        &mut self,
        from: Address,
        to: Address,
        value: U256,
        data: Vec<u8>,
    ) -> Receipt {
        if let Err(revert) = self.call_value(from, to, value, data.clone()).await {
            return Receipt {
                revert: Some(revert),
                gas_used: 0,
                logs: Vec::new(),
            };
        }
        match self {
            Evm::Revm { .. } => match self.revm_tx(from, TxKind::Call(to), value, data, true) {
                res @ ExecutionResult::Success { .. } => Receipt {
                    revert: None,
                    gas_used: res.tx_gas_used(),
                    logs: res
                        .logs()
                        .iter()
                        .map(|l| (l.data.topics().to_vec(), l.data.data.to_vec()))
                        .collect(),
                },
                other => panic!("a call succeeded but the transaction did not: {other:?}"),
            },
            Evm::Anvil { .. } => {
                let tx = json!({
                    "from": from, "to": to, "value": format!("{value:#x}"),
                    "data": Bytes::from(data), "gas": format!("{GAS:#x}"),
                });
                let hash = self.rpc("eth_sendTransaction", json!([tx])).await.unwrap();
                let r = self.receipt(hash).await;
                assert_eq!(r["status"], "0x1", "mined but reverted: {r}");
                let logs = r["logs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| {
                        let topics = l["topics"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|t| t.as_str().unwrap().parse().unwrap())
                            .collect();
                        let data: Bytes = l["data"].as_str().unwrap().parse().unwrap();
                        (topics, data.to_vec())
                    })
                    .collect();
                let gas = r["gasUsed"].as_str().unwrap();
                Receipt {
                    revert: None,
                    gas_used: u64::from_str_radix(gas.trim_start_matches("0x"), 16).unwrap(),
                    logs,
                }
            }
        }
    }

    /// `eth_call`: the output, or the revert data.
    pub async fn call(&mut self, to: Address, data: Vec<u8>) -> Result<Vec<u8>, Vec<u8>> {
        self.call_value(account(0), to, U256::ZERO, data).await
    }

    async fn call_value(
        &mut self,
        from: Address,
        to: Address,
        value: U256,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, Vec<u8>> {
        match self {
            Evm::Revm { .. } => match self.revm_tx(from, TxKind::Call(to), value, data, false) {
                ExecutionResult::Success { output, .. } => Ok(output.into_data().to_vec()),
                ExecutionResult::Revert { output, .. } => Err(output.to_vec()),
                ExecutionResult::Halt { reason, .. } => panic!("halted: {reason:?}"),
            },
            Evm::Anvil { .. } => {
                let tx = json!({
                    "from": from, "to": to, "value": format!("{value:#x}"),
                    "data": Bytes::from(data), "gas": format!("{GAS:#x}"),
                });
                match self.rpc("eth_call", json!([tx, "latest"])).await {
                    Ok(out) => {
                        let out: Bytes = out.as_str().unwrap().parse().unwrap();
                        Ok(out.to_vec())
                    }
                    Err(e) => {
                        let data = e["data"]
                            .as_str()
                            .unwrap_or_else(|| panic!("no revert data: {e}"));
                        let data: Bytes = data.parse().unwrap();
                        Err(data.to_vec())
                    }
                }
            }
        }
    }

    pub async fn balance(&self, who: Address) -> U256 {
        match self {
            Evm::Revm { db, .. } => db
                .cache
                .accounts
                .get(&who)
                .map(|a| a.info.balance)
                .unwrap_or_default(),
            Evm::Anvil { .. } => {
                let b = self
                    .rpc("eth_getBalance", json!([who, "latest"]))
                    .await
                    .unwrap();
                b.as_str().unwrap().parse().unwrap()
            }
        }
    }

    /// Moves the chain's clock `secs` ahead (the next block is stamped after it).
    pub async fn advance(&mut self, secs: u64) {
        match self {
            Evm::Revm { timestamp, .. } => *timestamp += secs,
            Evm::Anvil { .. } => {
                self.rpc("evm_increaseTime", json!([secs])).await.unwrap();
                self.rpc("evm_mine", json!([])).await.unwrap();
            }
        }
    }

    fn revm_tx(
        &mut self,
        from: Address,
        kind: TxKind,
        value: U256,
        data: Vec<u8>,
        commit: bool,
    ) -> ExecutionResult {
        let Evm::Revm {
            db,
            timestamp,
            block,
        } = self
        else {
            unreachable!("revm only")
        };
        let nonce = db
            .cache
            .accounts
            .get(&from)
            .map(|a| a.info.nonce)
            .unwrap_or_default();
        let tx = TxEnv::builder()
            .caller(from)
            .kind(kind)
            .value(value)
            .data(Bytes::from(data))
            .gas_limit(GAS)
            .nonce(nonce)
            .chain_id(Some(proofmill_l1::DEV_CHAIN_ID))
            .build()
            .unwrap();
        let mut cfg = CfgEnv::new_with_spec(proofmill_l1::EVM_SPEC);
        cfg.chain_id = proofmill_l1::DEV_CHAIN_ID;
        let blockenv = BlockEnv {
            number: U256::from(*block + 1),
            timestamp: U256::from(*timestamp),
            gas_limit: 36_000_000,
            ..Default::default()
        };
        let mut evm = Context::mainnet()
            .with_db(&mut *db)
            .with_cfg(cfg)
            .with_block(blockenv)
            .build_mainnet();
        let res = evm.transact(tx).unwrap();
        if commit {
            db.commit(res.state);
            *block += 1;
            // A second a block, as anvil's automine stamps blocks with the clock.
            *timestamp += 1;
        }
        res.result
    }
}
