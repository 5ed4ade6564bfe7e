//! The SMTP relay (`smtp-operator relay`): serves SMTP submission for one `SmtpRelay` and passes every
//! transaction synchronously to the upstream of its SmtpSettings through the check engine (same destination
//! policy, TLS and AUTH, shared OAuth2 token cache). No queue: the client gets the upstream's own reply.
//! Reference: docs/relay.md.

pub mod api;
mod auth;
mod config;
mod io;
mod message;
mod metrics;
pub mod objects;
mod pool;
pub mod reconcile;
mod session;

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use governor::clock::DefaultClock;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};
use kube::Client;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::cli::RelayArgs;
use crate::engine::token::TokenCache;
use crate::engine::upstream::{self, Upstream};
use crate::engine::{Credentials, Reason};
use crate::http::Health;
use crate::validate::SecurityPolicy;
pub use config::RelayConfig;

/// Idle time allowed between client reads and writes.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the relay re-reads its SmtpRelay, SmtpSettings and Secrets.
const RELOAD_EVERY: Duration = Duration::from_secs(15);
/// How long a stopping relay waits for sessions in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(25);

type Limiter = RateLimiter<IpAddr, HashMapStateStore<IpAddr>, DefaultClock>;

/// State shared by all sessions.
pub struct Relay {
    config: RwLock<Arc<RelayConfig>>,
    tokens: TokenCache,
    lockout: auth::Lockout,
    rate: RwLock<(u32, Arc<Limiter>)>,
    metrics: metrics::RelayMetrics,
    pool: pool::Pool,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

fn limiter(per_minute: u32) -> Arc<Limiter> {
    let n = NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
    Arc::new(RateLimiter::hashmap(Quota::per_minute(n)))
}

impl Relay {
    fn config(&self) -> Arc<RelayConfig> {
        self.config.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_config(&self, cfg: RelayConfig) {
        let per_minute = cfg.messages_per_minute;
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(cfg);
        let mut rate = self.rate.write().unwrap_or_else(|e| e.into_inner());
        if rate.0 != per_minute {
            *rate = (per_minute, limiter(per_minute));
        }
    }

    /// One message more from `ip` within its per-minute budget?
    fn rate_ok(&self, ip: IpAddr) -> bool {
        let rate = self.rate.read().unwrap_or_else(|e| e.into_inner()).1.clone();
        if rate.len() > 10_000 {
            rate.retain_recent();
        }
        rate.check_key(&ip).is_ok()
    }

    /// Opens an authenticated upstream session; an OAuth2 token the server refuses is dropped and fetched
    /// again once. The error is for the log (no credential in it).
    async fn open_upstream(&self, cfg: &RelayConfig) -> Result<Upstream, String> {
        let mut request = cfg.plan.request.clone();
        let Some(oauth) = &cfg.plan.oauth else {
            return upstream::open(&request).await.map_err(|f| f.message);
        };
        for attempt in 0..2 {
            let token = self.tokens.get(&oauth.request).await.map_err(|e| e.message)?.token;
            request.credentials = Credentials::XOAuth2 { username: oauth.username.clone(), token: token.clone() };
            match upstream::open(&request).await {
                Ok(u) => return Ok(u),
                Err(f) if f.reason == Reason::AuthenticationFailed => {
                    // a refused token is dropped; the first time a fresh one is fetched and tried once
                    self.tokens.invalidate(&oauth.request, &token);
                    if attempt > 0 {
                        return Err(f.message);
                    }
                    warn!("the upstream refused the OAuth2 token; fetching a new one");
                }
                Err(f) => return Err(f.message),
            }
        }
        Err("the upstream refused a fresh OAuth2 token".into())
    }
}

/// The first configuration, retried every 5 s until it loads (e.g. the Secret is not created yet); `None` when
/// the relay is told to stop first.
async fn first_config(
    client: &Client,
    args: &RelayArgs,
    options: &SecurityPolicy,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Option<(RelayConfig, String)> {
    loop {
        match config::load(client, &args.namespace, &args.name, options).await {
            Ok(loaded) => return Some(loaded),
            Err(e) => warn!(error = %e, "relay configuration not usable yet; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = stop.changed() => return None,
        }
    }
}

/// Lets the sessions in flight finish, at most [`DRAIN_TIMEOUT`]; then closes the rest.
async fn drain(mut sessions: tokio::task::JoinSet<()>) {
    info!(sessions = sessions.len(), "relay stopping: no new connections, finishing sessions in flight");
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while !sessions.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, sessions.join_next()).await.is_err() {
            warn!(sessions = sessions.len(), "sessions still open at the drain deadline; closing them");
            sessions.abort_all();
            break;
        }
    }
}

/// Runs the relay until SIGTERM/SIGINT; sessions in flight finish (bounded by [`DRAIN_TIMEOUT`]).
pub async fn run(args: RelayArgs) -> anyhow::Result<()> {
    let client = Client::try_default().await?;
    let options = config::options(&args)?;
    let health = Arc::new(Health::default());
    health.role_known.store(true, Ordering::Release);
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        crate::controller::shutdown_signal().await;
        let _ = shutdown_tx.send(true);
    });
    let Some((cfg, mut fingerprint)) = first_config(&client, &args, &options, shutdown_rx.clone()).await else {
        return Ok(());
    };
    let addr = args.listen_addr.clone().unwrap_or_else(|| format!("0.0.0.0:{}", cfg.port));
    let per_minute = cfg.messages_per_minute;
    let relay = Arc::new(Relay {
        config: RwLock::new(Arc::new(cfg)),
        tokens: TokenCache::new(),
        lockout: auth::Lockout::new(5, Duration::from_secs(600), Duration::from_secs(300)),
        rate: RwLock::new((per_minute, limiter(per_minute))),
        metrics: metrics::RelayMetrics::default(),
        pool: pool::Pool::default(),
        shutdown: shutdown_rx.clone(),
    });
    let encode = {
        let relay = relay.clone();
        Arc::new(move || {
            relay.metrics.sync_tokens(relay.tokens.token_successes(), relay.tokens.token_failures());
            relay.metrics.encode()
        })
    };
    let _http = crate::http::serve_with(&args.metrics_addr, encode, health.clone()).await?;
    let listener = TcpListener::bind(&addr).await.map_err(|e| anyhow::anyhow!("binding {addr}: {e}"))?;
    info!(addr = %listener.local_addr()?, namespace = %args.namespace, name = %args.name, "relay listening");
    health.is_leader.store(true, Ordering::Release);
    health.caches_synced.store(true, Ordering::Release);

    let mut sessions = tokio::task::JoinSet::new();
    let mut reload = tokio::time::interval(RELOAD_EVERY);
    let mut stop = shutdown_rx.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, peer)) = accepted else { continue };
                let _ = tcp.set_nodelay(true);
                let relay = relay.clone();
                sessions.spawn(async move {
                    session::Session::new(relay, io::Client::new(tcp, CLIENT_TIMEOUT), peer.ip()).run().await
                });
            }
            _ = reload.tick() => {
                relay.pool.reap(&relay.config());
                match config::load(&client, &args.namespace, &args.name, &options).await {
                    Ok((cfg, fp)) if fp != fingerprint => {
                        info!("relay configuration changed; new sessions use it");
                        relay.set_config(cfg);
                        fingerprint = fp;
                    }
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "reloading the relay configuration failed; keeping the last one"),
                }
            }
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    health.caches_synced.store(false, Ordering::Release);
    drain(sessions).await;
    relay.pool.close().await;
    info!("relay stopped");
    Ok(())
}
