//! The metrics and health endpoint on `--metrics-addr`: `/metrics` (OpenMetrics text), `/healthz` (the process
//! answers) and `/readyz` (the resource cache is synced and the leader/standby role is known). A deliberately
//! tiny HTTP/1.1 responder: GET only, one request per connection, bounded reads and time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info};

use crate::metrics::Metrics;

/// What `/readyz` reports.
#[derive(Default)]
pub struct Health {
    /// The SmtpSettings cache has its first full list (leader only: a standby runs no controller).
    pub caches_synced: AtomicBool,
    /// Leader or standby is known (immediately true without leader election).
    pub role_known: AtomicBool,
    pub is_leader: AtomicBool,
}

impl Health {
    /// Ready: a known standby, or a leader whose caches are synced.
    pub fn ready(&self) -> bool {
        self.role_known.load(Ordering::Acquire)
            && (!self.is_leader.load(Ordering::Acquire) || self.caches_synced.load(Ordering::Acquire))
    }
}

/// Binds the address and serves until the task is dropped.
pub async fn serve(
    addr: &str,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    serve_with(addr, Arc::new(move || metrics.encode()), health).await
}

/// Text of `/metrics`.
pub type Encode = Arc<dyn Fn() -> String + Send + Sync>;

/// [`serve`] with any exposition (the relay has its own registry).
pub async fn serve_with(
    addr: &str,
    metrics: Encode,
    health: Arc<Health>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("binding --metrics-addr {addr}: {e}"))?;
    info!(addr = %listener.local_addr()?, "serving /metrics, /healthz, /readyz");
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let (metrics, health) = (metrics.clone(), health.clone());
            tokio::spawn(async move {
                if let Err(e) = tokio::time::timeout(Duration::from_secs(10), handle(stream, &metrics, &health)).await {
                    debug!(error = %e, "metrics connection timed out");
                }
            });
        }
    }))
}

async fn handle(mut stream: TcpStream, metrics: &Encode, health: &Health) -> std::io::Result<()> {
    let mut buf = vec![0u8; 8192];
    let mut len = 0;
    while len < buf.len() {
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            break;
        }
        len += n;
        if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let mut parts = head.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, ctype, body) = match (method, path) {
        ("GET", "/metrics") => ("200 OK", "application/openmetrics-text; version=1.0.0; charset=utf-8", metrics()),
        ("GET", "/healthz") => ("200 OK", "text/plain", "ok\n".to_string()),
        ("GET", "/readyz") if health.ready() => ("200 OK", "text/plain", "ready\n".to_string()),
        ("GET", "/readyz") => {
            ("503 Service Unavailable", "text/plain", "not ready: caches not synced or role unknown\n".to_string())
        }
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_string()),
        _ => ("405 Method Not Allowed", "text/plain", "method not allowed\n".to_string()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
