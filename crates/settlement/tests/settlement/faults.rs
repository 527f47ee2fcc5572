//! Fault injection around a real L1: every call goes to the chain, and the fault changes only
//! what the coordinator sees of it.

use async_trait::async_trait;
use proofmill_l1::{Address, CommittedBatch, L1, L1Error, Revert, TxOutcome, VerifiedRange};
use proofmill_types::Digest;
use std::sync::Arc;

pub enum Fault {
    /// `verifyBatches` is sent and mined, but its receipt never reaches the caller (the
    /// coordinator dies, or the connection drops, between send and receipt).
    LoseReceipt,
    /// The same for `commitBatch`.
    LoseCommitReceipt,
    /// A range of more than one batch reverts without naming a batch (as an out-of-gas
    /// verifier would), before anything is sent.
    NoAttribution,
}

pub struct Faulty {
    inner: Arc<dyn L1>,
    fault: Fault,
}

impl Faulty {
    pub fn new(inner: Arc<dyn L1>, fault: Fault) -> Arc<Faulty> {
        Arc::new(Faulty { inner, fault })
    }

    fn unattributed(&self, proofs: &[Vec<Vec<u8>>]) -> Option<Revert> {
        let k = proofs.first().map_or(0, Vec::len);
        (matches!(self.fault, Fault::NoAttribution) && k > 1).then(|| Revert::Other {
            selector: None,
            data: Vec::new(),
        })
    }
}

#[async_trait]
impl L1 for Faulty {
    fn rollup_address(&self) -> Address {
        self.inner.rollup_address()
    }
    fn sender(&self) -> Address {
        self.inner.sender()
    }
    async fn last_committed_batch(&self) -> Result<u64, L1Error> {
        self.inner.last_committed_batch().await
    }
    async fn last_verified_batch(&self) -> Result<u64, L1Error> {
        self.inner.last_verified_batch().await
    }
    async fn state_root(&self, n: u64) -> Result<Digest, L1Error> {
        self.inner.state_root(n).await
    }
    async fn batch_commitment(&self, n: u64) -> Result<Digest, L1Error> {
        self.inner.batch_commitment(n).await
    }
    async fn commit_batch(
        &self,
        n: u64,
        new_root: Digest,
        commitment: Digest,
    ) -> Result<TxOutcome, L1Error> {
        let out = self.inner.commit_batch(n, new_root, commitment).await?;
        if matches!(self.fault, Fault::LoseCommitReceipt) {
            std::future::pending::<()>().await;
        }
        Ok(out)
    }
    async fn estimate_verify_gas(
        &self,
        first: u64,
        proofs: &[Vec<Vec<u8>>],
    ) -> Result<Result<u64, Revert>, L1Error> {
        match self.unattributed(proofs) {
            Some(r) => Ok(Err(r)),
            None => self.inner.estimate_verify_gas(first, proofs).await,
        }
    }
    async fn verify_batches(
        &self,
        first: u64,
        proofs: &[Vec<Vec<u8>>],
    ) -> Result<TxOutcome, L1Error> {
        if let Some(r) = self.unattributed(proofs) {
            return Err(L1Error::Reverted(r));
        }
        let out = self.inner.verify_batches(first, proofs).await?;
        if matches!(self.fault, Fault::LoseReceipt) {
            std::future::pending::<()>().await;
        }
        Ok(out)
    }
    async fn verified_ranges(&self, from_batch: u64) -> Result<Vec<VerifiedRange>, L1Error> {
        self.inner.verified_ranges(from_batch).await
    }
    async fn committed_batches(&self, from_batch: u64) -> Result<Vec<CommittedBatch>, L1Error> {
        self.inner.committed_batches(from_batch).await
    }
}
