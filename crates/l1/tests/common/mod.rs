//! Helpers shared by the L1 test files: outcome checks, the anvil sending policy, and rollup
//! deployments on the embedded revm L1 or on anvil.
#![allow(dead_code)] // each test file uses a subset

use proofmill_l1::{
    DEV_SEQUENCER_KEY, L1, L1Error, Revert, RevmConfig, RevmL1, RpcConfig, RpcL1, TxOutcome,
    TxStatus, VerifierKind, deploy_rollup_with, dev_sequencer,
};
use proofmill_types::{Digest, ProofType};
use std::time::Duration;

pub mod evm;

pub use proofmill_testkit::TestAnvil as Anvil;

/// The revert of a call rejected before sending or of a mined transaction; panics otherwise.
pub fn expect_revert(res: Result<TxOutcome, L1Error>) -> Revert {
    match res {
        Err(L1Error::Reverted(r)) => r,
        Ok(TxOutcome {
            status: TxStatus::Reverted(r),
            ..
        }) => r,
        other => panic!("expected a revert, got {other:?}"),
    }
}

/// The outcome of a successful transaction; panics otherwise.
pub fn ok(res: Result<TxOutcome, L1Error>) -> TxOutcome {
    let out = res.unwrap();
    assert_eq!(out.status, TxStatus::Success, "{out:?}");
    assert!(out.gas_used > 21_000);
    out
}

/// The default sending policy with fast receipt polling (anvil mines instantly).
pub fn fast_cfg() -> RpcConfig {
    RpcConfig {
        poll_interval: Duration::from_millis(10),
        ..RpcConfig::default()
    }
}

/// Deploys a rollup on the node at `url` (sequencer: [`DEV_SEQUENCER_KEY`]) and returns a
/// client for it.
pub async fn deploy_rpc(
    url: &str,
    genesis: Digest,
    proof_types: &[ProofType],
    verifier_kinds: &[VerifierKind],
) -> RpcL1 {
    let rollup = deploy_rollup_with(
        fast_cfg(),
        url,
        DEV_SEQUENCER_KEY,
        dev_sequencer(),
        genesis,
        proof_types,
        verifier_kinds,
    )
    .await
    .unwrap();
    RpcL1::new(url, DEV_SEQUENCER_KEY, rollup, fast_cfg())
        .await
        .unwrap()
}

/// Where test rollups run: the embedded revm L1 (a new chain per deployment) or one anvil node
/// (several deployments side by side).
pub enum Chain {
    Revm,
    Anvil(Anvil),
}

impl Chain {
    pub fn anvil() -> Chain {
        Chain::Anvil(Anvil::start())
    }

    pub fn name(&self) -> &'static str {
        match self {
            Chain::Revm => "revm",
            Chain::Anvil(_) => "anvil",
        }
    }

    /// A fresh rollup sequenced by [`DEV_SEQUENCER_KEY`].
    pub async fn deploy(
        &self,
        genesis: Digest,
        proof_types: &[ProofType],
        verifier_kinds: &[VerifierKind],
    ) -> Box<dyn L1> {
        match self {
            Chain::Revm => {
                let cfg = RevmConfig {
                    proof_types: proof_types.to_vec(),
                    verifier_kinds: verifier_kinds.to_vec(),
                    ..RevmConfig::dev(genesis)
                };
                Box::new(RevmL1::open(None, cfg).unwrap())
            }
            Chain::Anvil(anvil) => {
                Box::new(deploy_rpc(&anvil.url, genesis, proof_types, verifier_kinds).await)
            }
        }
    }
}
