//! The readiness checker: a held batch (offered to the market) gets its inputs published to
//! the public blob store, as a [`MarketInputs`] envelope, and then a `ready_to_be_proven`
//! row. Publishing first: a row always names inputs that are there.

use crate::driver::DriverError;
use bytes::Bytes;
use proofmill_coordinator::MarketPort;
use proofmill_market::MarketInputs;
use proofmill_store::{Blobs, ProofRequest, ProofRequests};
use proofmill_types::{BatchNumber, Digest, Millis};
use std::collections::BTreeSet;
use std::sync::Arc;

/// Held batches looked at per round at most: a long backlog is published over several.
const PER_ROUND: u32 = 256;

/// Where the envelope of `batch` goes in the public store: named by its digest too, so a
/// batch whose input an operator replaced is published anew, never over the old one.
pub fn inputs_key(chain: u64, batch: BatchNumber, digest: &[u8; 32]) -> String {
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("market-inputs/chain-{chain}/{batch:012}-{hex}.bin")
}

/// The readiness checker (see the module doc).
pub struct Readiness {
    pub(crate) port: MarketPort,
    pub(crate) table: Arc<dyn ProofRequests>,
    /// Where networks read inputs.
    pub(crate) public: Blobs,
    /// What networks are told: `<public base URL>/<key>`.
    pub(crate) public_url: String,
}

impl Readiness {
    /// Publishes the held batches without a row yet, up to [`PER_ROUND`] of them (`rowed`:
    /// the batches with an open row); returns the new rows, stored.
    pub async fn publish_new(
        &self,
        rowed: &BTreeSet<BatchNumber>,
        now: Millis,
    ) -> Result<Vec<ProofRequest>, DriverError> {
        let mut rows = Vec::new();
        // Batches are published in order and a failure ends the round, so a held batch
        // without a row comes after every open row's.
        let from = rowed.last().map_or(0, |b| b + 1);
        let held = self.port.held_batches(from, PER_ROUND).await?;
        for batch in held {
            if let Some(existing) = self
                .table
                .proof_request(self.port.chain_id(), batch)
                .await?
            {
                if !existing.is_done() {
                    rows.push(existing);
                } else {
                    // Done with the market, yet held: nothing else would free it.
                    tracing::warn!(
                        batch,
                        "held batch whose proof request is done: released to the own provers"
                    );
                    self.port.release(batch).await?;
                }
                continue;
            }
            let Some(row) = self.publish(batch, now).await? else {
                continue;
            };
            self.table.insert_proof_request(&row).await?;
            tracing::info!(batch, url = %row.inputs_url, "batch inputs published: ready to be proven");
            rows.push(row);
        }
        Ok(rows)
    }

    async fn publish(
        &self,
        batch: BatchNumber,
        now: Millis,
    ) -> Result<Option<ProofRequest>, DriverError> {
        let Some((b, input)) = self.port.batch(batch).await? else {
            return Ok(None);
        };
        let envelope = MarketInputs {
            chain_id: b.chain,
            batch,
            program_version: b.version.clone(),
            proof_type: self.port.proof_type().to_string(),
            public_values: b.public_values.as_bytes().to_vec(),
            input: input.to_vec(),
        }
        .encode()
        .map_err(|e| DriverError::Inputs(e.to_string()))?;
        let digest = MarketInputs::digest_of(&envelope);
        let key = inputs_key(b.chain, batch, &digest);
        self.public.put(&key, Bytes::from(envelope)).await?;
        let url = format!("{}/{key}", self.public_url.trim_end_matches('/'));
        Ok(Some(ProofRequest::ready(
            b.chain,
            batch,
            url,
            Digest(digest),
            now,
        )))
    }
}
