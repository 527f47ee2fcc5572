//! The core API's JSON, as zkSync's and Via's `prover_interface` has it (serde's external
//! tagging: `{"Success": …}`, `{"Error": "…"}`, `"SkippedProofGeneration"`), and proofmill's
//! own forms of the two fields the core leaves to its prover: `witness_input_data` and the
//! proof. `docs/core-api.md` shows every message in full.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

/// `POST {url}/proof_generation_data`: the body is always `{}`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProofGenerationDataRequest {}

/// The core's reply to [`ProofGenerationDataRequest`]: `{"Success": null}` when it has
/// nothing to prove.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum ProofGenerationDataResponse {
    Success(Option<Box<ProofGenerationData>>),
    Error(String),
}

/// A batch to prove. `witness_input_data` is kept as raw JSON here so that a shape other
/// than proofmill's ([`WitnessInput`]) is refused with its own reason, not as "not JSON".
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ProofGenerationData {
    pub l1_batch_number: u64,
    pub chain_id: u64,
    /// RFC 3339, as zkSync's `DateTime<Utc>`; kept as text (proofmill seals at intake).
    pub batch_sealed_at: String,
    pub witness_input_data: serde_json::Value,
    /// zkSync's semantic version (`"0.28.0"`): the batch's version, which provers must match.
    pub protocol_version: String,
    /// Opaque to proofmill (zkSync: the SNARK wrapper's verification key hashes).
    #[serde(default)]
    pub l1_verifier_config: serde_json::Value,
}

/// `POST {url}/submit_proof/{l1_batch_number}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum SubmitProofRequest {
    Proof(Box<BatchProof>),
    /// The batch was cancelled by an operator: there will be no proof.
    SkippedProofGeneration,
}

/// The core's reply to [`SubmitProofRequest`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum SubmitProofResponse {
    Success,
    Error(String),
}

/// Push mode: `POST /poll_generated_proofs`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PollGeneratedProofsRequest {
    pub l1_batch_id: u64,
}

/// Push mode: the reply to [`PollGeneratedProofsRequest`] once the batch is proven
/// (`null` before).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PollGeneratedProofsResponse {
    pub l1_batch_id: u64,
    pub proof: BatchProof,
}

/// proofmill's `witness_input_data`: the batch input (opaque to proofmill, read by the
/// chain's backends), its public values, and optionally the proof types wanted (default: the
/// coordinator's).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WitnessInput {
    /// Standard base64 with padding.
    pub input: String,
    /// `0x`-prefixed hex.
    pub public_values: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proof_types: Vec<String>,
}

/// [`WitnessInput`] decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedWitness {
    pub input: Vec<u8>,
    pub public_values: Vec<u8>,
    pub proof_types: Vec<String>,
}

impl WitnessInput {
    pub fn new(input: &[u8], public_values: &[u8], proof_types: Vec<String>) -> WitnessInput {
        WitnessInput {
            input: BASE64.encode(input),
            public_values: to_hex(public_values),
            proof_types,
        }
    }

    /// From the JSON of `witness_input_data`; the error says what is wrong with it.
    pub fn from_json(value: &serde_json::Value) -> Result<DecodedWitness, String> {
        let w: WitnessInput = serde_json::from_value(value.clone()).map_err(|e| {
            format!(
                "witness_input_data is not proofmill's form \
                 {{\"input\": \"<base64>\", \"public_values\": \"0x<hex>\", \"proof_types\": [..]}}: {e}"
            )
        })?;
        let input = BASE64
            .decode(w.input.as_bytes())
            .map_err(|e| format!("witness_input_data.input is not base64: {e}"))?;
        let public_values = from_hex(&w.public_values)
            .map_err(|e| format!("witness_input_data.public_values: {e}"))?;
        Ok(DecodedWitness {
            input,
            public_values,
            proof_types: w.proof_types,
        })
    }
}

/// proofmill's proof of a batch: one entry per proof type the batch needed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BatchProof {
    pub proofs: Vec<TypedProof>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TypedProof {
    pub proof_type: String,
    /// Standard base64 with padding.
    pub proof: String,
    /// `0x`-prefixed hex: the batch's public values the proof is of.
    pub public_values: String,
}

impl TypedProof {
    pub fn new(proof_type: &str, proof: &[u8], public_values: &[u8]) -> TypedProof {
        TypedProof {
            proof_type: proof_type.to_string(),
            proof: BASE64.encode(proof),
            public_values: to_hex(public_values),
        }
    }

    /// The proof bytes.
    pub fn proof_bytes(&self) -> Result<Vec<u8>, String> {
        BASE64
            .decode(self.proof.as_bytes())
            .map_err(|e| format!("proof is not base64: {e}"))
    }
}

/// `unix_ms` as RFC 3339 in UTC with milliseconds (`2026-12-05T15:04:05.123Z`), the form
/// of `batch_sealed_at`.
pub fn rfc3339_utc(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        unix_ms % 1000
    )
}

pub fn to_hex(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

pub fn from_hex(s: &str) -> Result<Vec<u8>, String> {
    let digits = s
        .strip_prefix("0x")
        .ok_or_else(|| "expected 0x-prefixed hex".to_string())?;
    hex::decode(digits).map_err(|e| format!("not hex: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_core_api_json_is_zksyncs() {
        let none: ProofGenerationDataResponse =
            serde_json::from_value(json!({"Success": null})).unwrap();
        assert_eq!(none, ProofGenerationDataResponse::Success(None));
        let err: ProofGenerationDataResponse =
            serde_json::from_value(json!({"Error": "db down"})).unwrap();
        assert_eq!(err, ProofGenerationDataResponse::Error("db down".into()));
        assert_eq!(
            serde_json::to_value(SubmitProofRequest::SkippedProofGeneration).unwrap(),
            json!("SkippedProofGeneration")
        );
        let ok: SubmitProofResponse = serde_json::from_value(json!("Success")).unwrap();
        assert_eq!(ok, SubmitProofResponse::Success);
        let proof = BatchProof {
            proofs: vec![TypedProof::new("exec", b"p", b"\x01")],
        };
        assert_eq!(
            serde_json::to_value(SubmitProofRequest::Proof(Box::new(proof))).unwrap(),
            json!({"Proof": {"proofs": [{"proof_type": "exec", "proof": "cA==", "public_values": "0x01"}]}})
        );
    }

    #[test]
    fn sealed_at_is_rfc3339() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_utc(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339_utc(1_796_483_045_000), "2026-12-05T15:04:05.000Z");
    }

    #[test]
    fn witness_input_of_another_shape_is_refused_with_a_reason() {
        let w = WitnessInput::new(b"abc", b"\x02\x03", vec![]);
        let d = WitnessInput::from_json(&serde_json::to_value(&w).unwrap()).unwrap();
        assert_eq!((d.input, d.public_values), (b"abc".to_vec(), vec![2, 3]));
        let zksync = json!({"vm_run_data": {}, "merkle_paths": {}});
        let e = WitnessInput::from_json(&zksync).unwrap_err();
        assert!(e.contains("not proofmill's form"), "{e}");
        let e =
            WitnessInput::from_json(&json!({"input": "!!", "public_values": "0x"})).unwrap_err();
        assert!(e.contains("not base64"), "{e}");
        let e = WitnessInput::from_json(&json!({"input": "", "public_values": "12"})).unwrap_err();
        assert!(e.contains("0x-prefixed"), "{e}");
    }
}
