//! `proofmill prover`: proves tasks for one or more coordinators.

use crate::args::ProverArgs;
use anyhow::anyhow;
use proofmill_prover::{Prover, ProverConfig};

pub fn prover_config(a: &ProverArgs) -> anyhow::Result<ProverConfig> {
    let mut backends = Vec::new();
    for (pt, name) in &a.backend {
        let b = proofmill_backend::backend_by_name(name).ok_or_else(|| {
            anyhow!(
                "unknown backend {name:?} for proof type {pt}; known: {}",
                proofmill_backend::BACKENDS.join(", ")
            )
        })?;
        backends.push((pt.clone(), b));
    }
    Ok(ProverConfig {
        coordinators: a.coordinators.clone(),
        name: a.name.clone(),
        capacity: a.capacity,
        version: a.version_tag.clone(),
        token: a.prover_token.clone(),
        backends,
        max_message_bytes: a.max_message_bytes,
        ..ProverConfig::default()
    })
}

pub async fn run(args: ProverArgs) -> anyhow::Result<()> {
    let prover = Prover::new(prover_config(&args)?);
    prover
        .run(async {
            let signal = super::shutdown_signal().await;
            tracing::info!(%signal, "prover stopping");
        })
        .await
}
