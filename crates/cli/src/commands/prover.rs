//! `proofmill prover`: proves tasks for one or more coordinators.

use crate::args::ProverArgs;
use crate::backends::{BackendContext, Built};
use proofmill_prover::{BlobReader, BoxFuture, Prover, ProverConfig};
use std::sync::Arc;

pub fn prover_config(a: &ProverArgs) -> anyhow::Result<(ProverConfig, Built)> {
    let built = a.backends.build(
        &a.backend,
        &BackendContext {
            devnet_shape: None,
            data_dir: &a.data_dir,
        },
    )?;
    let backends = built.for_prover(&a.backend)?;
    let tls = a.tls.load()?;
    // A scheme that does not fit the TLS options is an error now, not at every reconnect.
    for url in &a.coordinators {
        proofmill_proto::client::endpoint(url, &tls).map_err(anyhow::Error::msg)?;
    }
    Ok((
        ProverConfig {
            coordinators: a.coordinators.clone(),
            name: a.name.clone(),
            capacity: a.capacity,
            version: a.version_tag.clone(),
            token: a.prover_token.clone(),
            tls,
            backends,
            max_message_bytes: a.max_message_bytes,
            blob_reader: a
                .blob_access
                .then(|| Arc::new(StoreBlobReader) as Arc<dyn BlobReader>),
            exit_on_shutdown: a.exit_on_shutdown,
            state_dir: a.state_dir.clone(),
            ..ProverConfig::default()
        },
        built,
    ))
}

pub async fn run(args: ProverArgs) -> anyhow::Result<()> {
    let (config, built) = prover_config(&args)?;
    built.warm_up().await?;
    let _metrics = crate::telemetry::start(args.metrics_listen).await?;
    let prover = Prover::new(config);
    prover
        .run(async {
            let signal = super::shutdown_signal().await;
            tracing::info!(%signal, "prover stopping");
        })
        .await
}

/// Reads inputs through the same object-store client as the coordinator.
struct StoreBlobReader;

impl BlobReader for StoreBlobReader {
    fn read(&self, url: &str) -> BoxFuture<Result<Vec<u8>, String>> {
        let url = url.to_string();
        Box::pin(async move {
            proofmill_store::get_url(&url)
                .await
                .map(|b| b.to_vec())
                .map_err(|e| e.to_string())
        })
    }
}
