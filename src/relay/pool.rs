//! A small pool of idle, authenticated upstream sessions shared by the client sessions of one relay: an app
//! that opens a new SMTP connection per message (Alertmanager, most mailers) then costs the upstream no new
//! connect, TLS handshake and AUTH (nor a token round trip at the identity provider's introspection).
//!
//! Only sessions with no transaction open go in (after a completed DATA, or after RSET), only for the
//! configuration they were opened with (a reload makes older ones unusable), and only for [`IDLE`]: servers
//! close idle sessions (Postfix after 300 s, Exchange Online sooner), and a session that died in the pool is
//! detected at MAIL and replaced once (src/relay/session.rs, `upstream_mail`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::engine::upstream::Upstream;

use super::RelayConfig;

/// Longest time a session waits in the pool.
pub const IDLE: Duration = Duration::from_secs(20);
/// Most idle sessions kept.
pub const MAX_IDLE: usize = 8;

struct Idle {
    upstream: Upstream,
    cfg: Arc<RelayConfig>,
    since: Instant,
}

#[derive(Default)]
pub struct Pool {
    idle: Mutex<Vec<Idle>>,
}

impl Pool {
    /// The most recently used idle session opened for `cfg`, if one is fresh enough.
    pub fn take(&self, cfg: &Arc<RelayConfig>) -> Option<Upstream> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let i = idle.iter().rposition(|s| Arc::ptr_eq(&s.cfg, cfg) && s.since.elapsed() < IDLE)?;
        Some(idle.swap_remove(i).upstream)
    }

    /// Keeps `upstream` (no transaction open) for the next client session; quits it when the pool is full.
    pub fn put(&self, upstream: Upstream, cfg: Arc<RelayConfig>) {
        let full = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < MAX_IDLE {
                idle.push(Idle { upstream, cfg, since: Instant::now() });
                None
            } else {
                Some(upstream)
            }
        };
        if let Some(u) = full {
            tokio::spawn(u.quit());
        }
    }

    /// Quits the sessions that waited too long or belong to a replaced configuration (`current`).
    pub fn reap(&self, current: &Arc<RelayConfig>) {
        let stale: Vec<Upstream> = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let (keep, stale): (Vec<Idle>, Vec<Idle>) = std::mem::take(&mut *idle)
                .into_iter()
                .partition(|s| Arc::ptr_eq(&s.cfg, current) && s.since.elapsed() < IDLE);
            *idle = keep;
            stale.into_iter().map(|s| s.upstream).collect()
        };
        for u in stale {
            tokio::spawn(u.quit());
        }
    }

    /// Quits every idle session (the relay is stopping).
    pub async fn close(&self) {
        let all = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|e| e.into_inner()));
        for s in all {
            s.upstream.quit().await;
        }
    }
}
