//! The coordinator's gateway to a rollup's core API (`--core-api-url`, `--core-api-listen`):
//! started with each turn as the active coordinator, on its intake.

use super::coordinator::Security;
use crate::args::CoordinatorArgs;
use anyhow::Context as _;
use proofmill_coordinator::{AdminApi, Coordinator};
use proofmill_gateway::{ClientConfig, Gateway, Pull, PullConfig, PushConfig, PushServing};
use std::sync::Arc;
use std::time::Duration;

/// The gateway of a turn: pull mode's tasks and push mode's server, as configured.
pub struct Running {
    gateway: Arc<Gateway>,
    pull: Option<Pull>,
    push: Option<PushServing>,
}

/// Starts the gateway if `--core-api-url` or `--core-api-listen` is set.
pub async fn start(
    args: &CoordinatorArgs,
    coord: &Coordinator,
    security: &Security,
) -> anyhow::Result<Option<Running>> {
    if args.core_api_url.is_empty() && args.core_api_listen.is_none() {
        return Ok(None);
    }
    let gateway = Gateway::open(coord.intake())
        .await
        .context("reading the core API gateway's progress")?;
    let pull = match args.core_api_url.is_empty() {
        true => None,
        false => Some(Pull::start(
            gateway.clone(),
            PullConfig {
                client: ClientConfig {
                    urls: args.core_api_url.clone(),
                    timeout: Duration::from_millis(args.core_api_timeout),
                    max_body_bytes: args.core_api_max_body_bytes as u64,
                    token: None,
                },
                poll_interval: Duration::from_millis(args.core_api_poll_interval),
                max_backoff: Duration::from_millis(args.core_api_max_backoff),
            },
        )?),
    };
    let push = match args.core_api_listen {
        None => None,
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (--core-api-listen)"))?;
            tracing::info!(addr = %listener.local_addr()?, "core API push listening");
            Some(proofmill_gateway::push::serve(
                gateway.clone(),
                listener,
                PushConfig {
                    max_body_bytes: args.core_api_max_body_bytes,
                    auth: security.admin_auth.clone(),
                },
            ))
        }
    };
    Ok(Some(Running {
        gateway,
        pull,
        push,
    }))
}

impl Running {
    /// Readiness lists the gateway (not required: a core that is down must not take the
    /// coordinator out of its provers' reach), with its last error.
    pub fn readiness(&self, api: AdminApi) -> AdminApi {
        let gateway = self.gateway.clone();
        api.with_component("core-api", false, move || {
            let gateway = gateway.clone();
            async move {
                let sent = gateway.sent_through().await;
                match gateway.last_error() {
                    None => Ok(format!("proofs sent through batch {sent}")),
                    Some((at, e)) => {
                        Err(format!("{e} (at {at} Unix ms; sent through batch {sent})"))
                    }
                }
            }
        })
    }

    pub async fn stop(self) {
        if let Some(pull) = self.pull {
            pull.stop().await;
        }
        if let Some(push) = self.push
            && let Err(e) = push.stop().await
        {
            tracing::warn!(error = %e, "core API push listener");
        }
    }
}
