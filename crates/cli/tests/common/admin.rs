//! A coordinator's status over its admin API, as any client sees it.
#![allow(dead_code)] // not every test binary uses every helper

use proofmill_proto::v1::{
    SystemStatusRequest, SystemStatusResponse, admin_service_client::AdminServiceClient,
};
use std::time::{Duration, Instant};

/// `SystemStatus` of the coordinator at `url`; `None` when it does not answer (within a
/// couple of seconds to connect, five to answer) or refuses.
pub async fn status(url: &str) -> Option<SystemStatusResponse> {
    let connect = tokio::time::timeout(
        Duration::from_secs(2),
        AdminServiceClient::connect(url.to_string()),
    );
    let mut client = connect.await.ok()?.ok()?;
    let call = client.system_status(SystemStatusRequest {});
    Some(
        tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .ok()?
            .ok()?
            .into_inner(),
    )
}

/// Polls [`status`] until `ok` holds; panics with the last status after `within`.
pub async fn wait_status(
    url: &str,
    what: &str,
    within: Duration,
    ok: impl Fn(&SystemStatusResponse) -> bool,
) -> SystemStatusResponse {
    let until = Instant::now() + within;
    let mut last = None;
    while Instant::now() < until {
        if let Some(s) = status(url).await {
            if ok(&s) {
                return s;
            }
            last = Some(s);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what} at {url}; last status: {last:?}");
}
