//! Generated code for the `proofmill.v1` protocol (see `proto/` at the repository root).

#[allow(clippy::all)]
pub mod v1 {
    tonic::include_proto!("proofmill.v1");
}

/// Encoded `FileDescriptorSet` of the protocol, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/proofmill_descriptor.bin"));

/// Response header by which a standby coordinator names the active one (its URL) when it
/// refuses a call.
pub const ACTIVE_URL_HEADER: &str = "proofmill-active-url";

pub mod client;

/// How the client API's JSON (the HTTP mirror of `ClientService`) shows what prost stores
/// as numbers and byte vectors: enums by name, bytes as hex.
pub mod json {
    use serde::Serializer;

    pub fn hex<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        s.serialize_str(&text)
    }

    pub fn failure_reason<S: Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
        let name = crate::v1::FailureReason::try_from(*v)
            .map(|r| r.as_str_name())
            .unwrap_or("FAILURE_REASON_UNSPECIFIED");
        s.serialize_str(name)
    }

    pub fn batch_phase<S: Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
        let name = crate::v1::BatchPhase::try_from(*v)
            .map(|r| r.as_str_name())
            .unwrap_or("BATCH_PHASE_UNSPECIFIED");
        s.serialize_str(name)
    }
}
