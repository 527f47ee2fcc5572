//! Which proving backends this binary builds, and their options (shared by `coordinator`,
//! `prover`, `demo` and `bench prove`). The coordinator builds the backends of its required
//! proof types to verify results; a prover builds those it proves with.

use crate::args::ProofTypeSpec;
use anyhow::Context as _;
use clap::Args;
use proofmill_backend::{Backend, Backends, CommandBackend, CommandConfig};
use proofmill_groth16::{Groth16Backend, Shape};
use proofmill_types::ProofType;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Backend names this binary knows.
pub const KNOWN: &[&str] = &["exec", "groth16", "stark", "command"];

#[derive(Debug, Clone, Args)]
pub struct BackendArgs {
    /// groth16: circuit shape `<batch size>x<tree depth>` (e.g. 4x16); default: the devnet's
    /// batch size and tree depth (coordinator with --devnet, demo), else 4x16.
    #[arg(long, env = "PROOFMILL_GROTH16_SHAPE", value_parser = parse_shape)]
    pub groth16_shape: Option<Shape>,
    /// groth16: directory of the proving/verifying keys. Missing keys are generated there with
    /// a DEV-ONLY setup (known toxic waste); put a ceremony's keys there to use them instead.
    /// Default: `keys` in --data-dir (`./proofmill-data/keys` for a subcommand without one).
    #[arg(long, env = "PROOFMILL_GROTH16_KEYS", value_name = "DIR")]
    pub groth16_keys: Option<PathBuf>,
    /// command: prove command template run by `sh -c` per task, with placeholders {input},
    /// {output}, {batch}, {public}, {old_root}, {new_root}, {commitment}, {tmpdir}
    /// (already shell-quoted: do not quote them). Required on provers using it.
    #[arg(long, env = "PROOFMILL_COMMAND_PROVE", value_name = "TEMPLATE")]
    pub command_prove: Option<String>,
    /// command: verify command template ({proof}, {public}, {old_root}, {new_root},
    /// {commitment}, {tmpdir}); exit 0 = valid. Without it the coordinator accepts any
    /// non-empty proof of this backend: configure one in production.
    #[arg(long, env = "PROOFMILL_COMMAND_VERIFY", value_name = "TEMPLATE")]
    pub command_verify: Option<String>,
    /// command: variables for both commands, comma list of KEY=VALUE.
    #[arg(long, env = "PROOFMILL_COMMAND_ENV", value_delimiter = ',', value_parser = parse_env_pair)]
    pub command_env: Vec<(String, String)>,
    /// command: working directory of both commands.
    #[arg(long, env = "PROOFMILL_COMMAND_CWD", value_name = "DIR")]
    pub command_cwd: Option<PathBuf>,
    /// command: prove timeout, ms (the process group is killed).
    #[arg(long, env = "PROOFMILL_COMMAND_TIMEOUT", default_value_t = 3_600_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub command_timeout: u64,
    /// command: verify timeout, ms.
    #[arg(long, env = "PROOFMILL_COMMAND_VERIFY_TIMEOUT", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub command_verify_timeout: u64,
}

/// Facts the caller knows that backends default from.
pub struct BackendContext<'a> {
    /// Shape of the devnet's batches, when the devnet is the batch source.
    pub devnet_shape: Option<Shape>,
    /// Where default key directories go.
    pub data_dir: &'a Path,
}

impl BackendArgs {
    pub fn groth16_shape(&self, ctx: &BackendContext<'_>) -> Shape {
        self.groth16_shape
            .or(ctx.devnet_shape)
            .unwrap_or(proofmill_groth16::DEMO_SHAPE)
    }

    /// Builds the backends named by `specs` (and only those: a Groth16 setup is not free).
    pub fn build(
        &self,
        specs: &[ProofTypeSpec],
        ctx: &BackendContext<'_>,
    ) -> anyhow::Result<Built> {
        let mut built = Built {
            all: builtin(),
            groth16: None,
        };
        for (pt, name) in specs {
            match name.as_str() {
                "exec" => {}
                "groth16" if built.groth16.is_some() => {}
                "groth16" => {
                    let shape = self.groth16_shape(ctx);
                    if let Some(devnet) = ctx.devnet_shape.filter(|d| *d != shape) {
                        anyhow::bail!(
                            "proof type {pt}: --groth16-shape {}x{} does not match the devnet's \
                             batches ({}x{}: --batch-size x --tree-depth)",
                            shape.batch_size,
                            shape.depth,
                            devnet.batch_size,
                            devnet.depth
                        );
                    }
                    let dir = self
                        .groth16_keys
                        .clone()
                        .unwrap_or_else(|| ctx.data_dir.join("keys"));
                    let g = Arc::new(Groth16Backend::new(dir, shape));
                    built.all.insert(g.clone());
                    built.groth16 = Some(g);
                }
                "stark" => built.all.insert(Arc::new(proofmill_stark::StarkBackend)),
                "command" => {
                    built.all.insert(Arc::new(self.command_backend()?));
                }
                other => anyhow::bail!(
                    "proof type {pt}: unknown backend {other:?}; known: {}",
                    KNOWN.join(", ")
                ),
            }
        }
        Ok(built)
    }

    fn command_backend(&self) -> anyhow::Result<CommandBackend> {
        // A coordinator only verifies: without a prove template, proving fails clearly.
        let prove = self.command_prove.clone().unwrap_or_else(|| {
            "echo 'no --command-prove configured on this process' >&2; exit 2".into()
        });
        let cfg = CommandConfig {
            verify: self.command_verify.clone(),
            env: self.command_env.clone(),
            cwd: self.command_cwd.clone(),
            timeout: Duration::from_millis(self.command_timeout),
            verify_timeout: Some(Duration::from_millis(self.command_verify_timeout)),
            ..CommandConfig::new(prove)
        };
        if cfg.verify.is_none() {
            tracing::warn!(
                "backend command has no --command-verify: its proofs are accepted unchecked"
            );
        }
        CommandBackend::new(cfg).context("backend command")
    }
}

/// The backends built from the options, with typed handles where callers need more than the
/// [`proofmill_backend::Backend`] trait (e.g. the Groth16 verifying key for the L1 verifier).
pub struct Built {
    pub all: Backends,
    pub groth16: Option<Arc<Groth16Backend>>,
}

impl Built {
    /// Loads (or, DEV ONLY, generates) every key the backends need, on a blocking thread, so
    /// a slow setup happens once at startup with a log line instead of inside the first task.
    pub async fn warm_up(&self) -> anyhow::Result<()> {
        if let Some(g) = self.groth16.clone() {
            let shape = g.shape();
            let dir = g.key_dir().map(Path::to_path_buf);
            tracing::info!(%shape, ?dir, "groth16: loading keys (generated DEV-ONLY on first use)");
            let started = std::time::Instant::now();
            tokio::task::spawn_blocking(move || g.keys())
                .await
                .context("groth16 key task")?
                .context("groth16 keys")?;
            tracing::info!(%shape, took_ms = started.elapsed().as_millis() as u64, "groth16 keys ready");
        }
        Ok(())
    }

    /// One backend per proof type, for a prover.
    pub fn for_prover(
        &self,
        specs: &[ProofTypeSpec],
    ) -> anyhow::Result<Vec<(ProofType, Arc<dyn Backend>)>> {
        specs
            .iter()
            .map(|(pt, name)| {
                let b = self
                    .all
                    .get(name)
                    .with_context(|| format!("proof type {pt}"))?;
                Ok((pt.clone(), b))
            })
            .collect()
    }
}

/// The devnet's batch shape as a Groth16 shape (`None` when it is not a valid one).
pub fn devnet_shape(batch_size: u32, tree_depth: u8) -> Option<Shape> {
    Shape::new(batch_size as usize, tree_depth).ok()
}

fn parse_env_pair(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
    Ok((k.trim().to_string(), v.to_string()))
}

fn parse_shape(s: &str) -> Result<Shape, String> {
    s.parse()
}

/// The backends that need no configuration: the devnet's `exec`.
pub fn builtin() -> Backends {
    let mut b = Backends::default();
    b.insert(std::sync::Arc::new(proofmill_devnet::ExecBackend));
    b
}
