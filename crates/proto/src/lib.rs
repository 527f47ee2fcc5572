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
