//! The metrics and health endpoint on `--metrics-addr` (docs/api.md, "Metrics"): `/metrics` (OpenMetrics
//! text), `/healthz` (the process answers) and `/readyz` (the resource cache is synced and the leader/standby
//! role is known), served by hyper's HTTP/1 server: GET (and HEAD) only, bounded header read time, one time
//! budget per connection.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tracing::{debug, info};

use crate::metrics::Metrics;

/// One connection may live this long (a scrape takes milliseconds).
const CONNECTION_BUDGET: Duration = Duration::from_secs(10);

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
                let service = service_fn(move |req| {
                    let response = respond(&req, &metrics, &health);
                    async move { Ok::<_, Infallible>(response) }
                });
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(5))
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(stream), service);
                match tokio::time::timeout(CONNECTION_BUDGET, conn).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => debug!(error = %e, "metrics connection failed"),
                    Err(_) => debug!("metrics connection timed out"),
                }
            });
        }
    }))
}

/// The answer to one request (pure apart from reading the metrics and health state).
fn respond(req: &Request<Incoming>, metrics: &Encode, health: &Health) -> Response<Full<Bytes>> {
    let text = "text/plain; charset=utf-8";
    let (status, ctype, body) = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => {
            (StatusCode::OK, "application/openmetrics-text; version=1.0.0; charset=utf-8", metrics())
        }
        (&Method::GET | &Method::HEAD, "/healthz") => (StatusCode::OK, text, "ok\n".to_string()),
        (&Method::GET | &Method::HEAD, "/readyz") if health.ready() => (StatusCode::OK, text, "ready\n".to_string()),
        (&Method::GET | &Method::HEAD, "/readyz") => {
            (StatusCode::SERVICE_UNAVAILABLE, text, "not ready: caches not synced or role unknown\n".to_string())
        }
        (&Method::GET | &Method::HEAD, _) => (StatusCode::NOT_FOUND, text, "not found\n".to_string()),
        _ => (StatusCode::METHOD_NOT_ALLOWED, text, "method not allowed\n".to_string()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    response
}
