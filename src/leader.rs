//! Leader election with a Lease named `smtp-operator` (kube-lease-manager): only the leader runs the
//! controller (checks and writes); a standby waits; a graceful stop releases the lease at once so a standby
//! takes over without waiting for it to expire. Losing the lease while leading ends the process, the usual
//! pattern: the orchestrator restarts it as a fresh standby.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::http::Health;
use crate::metrics::Metrics;

/// Name of the Lease.
pub const LEASE_NAME: &str = "smtp-operator";
/// Seconds a lease stays valid without renewal.
pub const LEASE_DURATION: u64 = 15;
/// Seconds before expiry at which the holder renews.
pub const LEASE_GRACE: u64 = 5;

/// This instance's identity in the Lease: the pod name, else host name and pid.
pub fn identity(pod_name: Option<&str>) -> String {
    pod_name.filter(|s| !s.is_empty()).map(str::to_string).unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
        format!("{}-{}", if host.is_empty() { "smtp-operator" } else { &host }, std::process::id())
    })
}

async fn wait_until(rx: &mut watch::Receiver<bool>, value: bool) -> bool {
    rx.wait_for(|v| *v == value).await.is_ok()
}

/// Runs `work` while this instance holds the lease. Returns when `shutdown` turns true (after `work` has
/// finished gracefully and the lease is released) or with an error when the lease is lost.
pub async fn run_elected<F, Fut>(
    client: Client,
    namespace: &str,
    identity: &str,
    mut shutdown: watch::Receiver<bool>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    work: F,
) -> anyhow::Result<()>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let identity = identity.to_string();
    let manager = LeaseManagerBuilder::new(client, LEASE_NAME)
        .with_namespace(namespace)
        .with_identity(identity.clone())
        .with_duration(LEASE_DURATION)
        .with_grace(LEASE_GRACE)
        .build()
        .await?;
    let (mut leading, task) = manager.watch().await;
    health.role_known.store(true, Ordering::Release);
    info!(%identity, lease = LEASE_NAME, %namespace, "standing by for the leader lease");

    let became_leader = tokio::select! {
        ok = wait_until(&mut leading, true) => ok,
        _ = wait_until(&mut shutdown, true) => false,
    };
    let result = if became_leader {
        info!(%identity, "became leader");
        health.is_leader.store(true, Ordering::Release);
        metrics.leader.set(1);
        let mut lost = leading.clone();
        tokio::select! {
            r = work() => r,
            _ = wait_until(&mut lost, false) => {
                warn!(%identity, "lost the leader lease; exiting so that a fresh instance stands by");
                Err(anyhow::anyhow!("lost the leader lease"))
            }
        }
    } else {
        Ok(())
    };
    metrics.leader.set(0);
    health.is_leader.store(false, Ordering::Release);
    // closing the channel makes the manager task release the lease
    drop(leading);
    match task.await {
        Ok(Ok(_)) => info!("leader lease released"),
        Ok(Err(e)) => warn!(error = %e, "releasing the leader lease failed"),
        Err(e) => warn!(error = %e, "lease task failed"),
    }
    result
}
