// Compiles the .proto files with protox (pure Rust), so no system `protoc` is needed.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "proofmill/v1/prover.proto",
        "proofmill/v1/admin.proto",
        "proofmill/v1/client.proto",
    ];
    let fds = protox::compile(files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("proofmill_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    // The admin API's answers are also served as JSON (the coordinator's HTTP admin API):
    // their fields are its documented JSON fields, so every message of the package can be
    // serialized (a new call's messages too). A response's `AdminError` becomes the HTTP
    // error instead of a field.
    let mut config = tonic_prost_build::configure()
        .type_attribute(".proofmill.v1", "#[derive(serde::Serialize)]");
    for file in &fds.file {
        for message in &file.message_type {
            for field in &message.field {
                let path = format!(".proofmill.v1.{}.{}", message.name(), field.name());
                if field.type_name() == ".proofmill.v1.AdminError" {
                    config = config.field_attribute(path, "#[serde(skip)]");
                } else if let Some(with) = client_json(
                    file.name(),
                    field.r#type.unwrap_or(0),
                    field.type_name(),
                    field.label.unwrap_or(0),
                ) {
                    // The client API's JSON: enums by name, bytes as hex (as the admin
                    // JSON takes inputs), not as numbers.
                    config = config
                        .field_attribute(path, format!("#[serde(serialize_with = \"{with}\")]"));
                }
            }
        }
    }
    config
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed={}", root.display());
    Ok(())
}

/// The serializer of a client API field that JSON should not show as prost stores it:
/// `(file, type, type name, label)` of the field's descriptor.
fn client_json(file: &str, ty: i32, type_name: &str, label: i32) -> Option<&'static str> {
    // descriptor.proto's numbers: TYPE_BYTES, TYPE_ENUM, LABEL_REPEATED.
    const BYTES: i32 = 12;
    const ENUM: i32 = 14;
    const REPEATED: i32 = 3;
    if file != "proofmill/v1/client.proto" || label == REPEATED {
        return None;
    }
    match (ty, type_name) {
        (BYTES, _) => Some("crate::json::hex"),
        (ENUM, ".proofmill.v1.FailureReason") => Some("crate::json::failure_reason"),
        (ENUM, ".proofmill.v1.BatchPhase") => Some("crate::json::batch_phase"),
        _ => None,
    }
}
