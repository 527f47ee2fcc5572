// Compiles the .proto files with protox (pure Rust), so no system `protoc` is needed.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = ["proofmill/v1/prover.proto", "proofmill/v1/admin.proto"];
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
                if field.type_name() == ".proofmill.v1.AdminError" {
                    let path = format!(".proofmill.v1.{}.{}", message.name(), field.name());
                    config = config.field_attribute(path, "#[serde(skip)]");
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
