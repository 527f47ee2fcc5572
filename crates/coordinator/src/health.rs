//! The standard `grpc.health.v1` service (Kubernetes gRPC probes, grpc_health_probe): the
//! whole server ("") and each of our services are SERVING while this coordinator takes
//! work, NOT_SERVING once it drains.

use crate::standing::Standing;
use std::time::Duration;
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, health_reporter};

/// How often the reported status is brought up to date.
const REFRESH: Duration = Duration::from_millis(200);

/// What the coordinator reports: the one place that decides whether it serves.
pub(crate) fn serving_status(standing: &Standing) -> ServingStatus {
    if standing.draining() || standing.deposed().is_some() {
        ServingStatus::NotServing
    } else {
        ServingStatus::Serving
    }
}

pub(crate) fn names() -> [&'static str; 3] {
    [
        "",
        proofmill_proto::v1::prover_service_server::SERVICE_NAME,
        proofmill_proto::v1::admin_service_server::SERVICE_NAME,
    ]
}

async fn report(reporter: &HealthReporter, status: ServingStatus) {
    for name in names() {
        reporter.set_service_status(name, status).await;
    }
}

/// The health service, and the task that keeps it up to date (to abort when serving ends).
pub(crate) async fn service(
    standing: Standing,
) -> (
    HealthServer<impl tonic_health::pb::health_server::Health>,
    tokio::task::JoinHandle<()>,
) {
    let (reporter, server) = health_reporter();
    let mut last = serving_status(&standing);
    report(&reporter, last).await;
    // Aborted when serving ends (the caller holds the handle).
    let refresh = tokio::spawn(async move {
        loop {
            tokio::time::sleep(REFRESH).await;
            let now = serving_status(&standing);
            if now != last {
                report(&reporter, now).await;
                last = now;
            }
        }
    });
    (server, refresh)
}
