// Compiles the .proto files with protox (pure Rust), so no system `protoc` is needed.
use std::path::PathBuf;

/// Admin messages that are answered as JSON too.
const JSON_MESSAGES: [&str; 19] = [
    "HealthCheckResponse",
    "StatusInfoResponse",
    "ConfigValue",
    "SystemStatusResponse",
    "JobCounts",
    "ProverInfo",
    "StatusWarning",
    "VerifyTxInfo",
    "JobsListResponse",
    "JobInfo",
    "JobStatusResponse",
    "AttemptInfo",
    "ProversListResponse",
    "LaunchProofResponse",
    "RetryJobResponse",
    "CancelJobResponse",
    "CordonProverResponse",
    "ReplaceBatchInputResponse",
    "CancelBatchResponse",
];

/// Those of them that carry an `AdminError`.
const WITH_ERROR: [&str; 8] = [
    "JobsListResponse",
    "JobStatusResponse",
    "LaunchProofResponse",
    "RetryJobResponse",
    "CancelJobResponse",
    "CordonProverResponse",
    "ReplaceBatchInputResponse",
    "CancelBatchResponse",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = ["proofmill/v1/prover.proto", "proofmill/v1/admin.proto"];
    let fds = protox::compile(files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("proofmill_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    let mut config = tonic_prost_build::configure();
    // The admin API's answers are also served as JSON (the coordinator's HTTP admin API):
    // their fields are its documented JSON fields. An `error` becomes the HTTP error instead.
    for message in JSON_MESSAGES {
        config = config.type_attribute(
            format!(".proofmill.v1.{message}"),
            "#[derive(serde::Serialize)]",
        );
    }
    for message in WITH_ERROR {
        config = config.field_attribute(format!(".proofmill.v1.{message}.error"), "#[serde(skip)]");
    }
    config
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed={}", root.display());
    Ok(())
}
