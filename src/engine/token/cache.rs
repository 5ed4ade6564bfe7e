//! A token cache shared by every caller (clone = same cache).
//!
//! Key: token URL, client id, grant kind, scopes (as a set), JWT subject, client auth method, extra trust
//! anchors, and a caller-supplied `secret_version` (e.g. the Secrets' resourceVersions): a token is reused only
//! for the credentials it was obtained with. A new version for the same identity replaces (drops) the old entry.
//!
//! A token is reused until `expires_in` minus a margin (60 s, or 10 % of lifetimes under 10 minutes), counted
//! from when the request was sent. Answers without `expires_in` are not reused. Failures are not cached.
//! Single flight: concurrent calls for one key wait for one fetch and then share its token.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::{AccessToken, ClientAuth, GrantKind, TokenError, TokenRequest, request_token};

/// Margin before expiry for lifetimes of at least 10 minutes.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// How long a token with this lifetime may be reused; `None` = not at all.
pub fn reuse_for(expires_in: Option<Duration>) -> Option<Duration> {
    let lifetime = expires_in?;
    let reuse = if lifetime >= Duration::from_secs(600) { lifetime - EXPIRY_MARGIN } else { lifetime - lifetime / 10 };
    (!reuse.is_zero()).then_some(reuse)
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Identity {
    token_url: String,
    client_id: String,
    grant: GrantKind,
    scopes: Vec<String>,
    subject: String,
    client_auth: ClientAuth,
    /// Hash of the extra trust anchors: a changed CA bundle is checked again by a new request.
    roots: u64,
}

impl Identity {
    fn of(req: &TokenRequest) -> Self {
        let mut scopes = req.scopes.clone();
        scopes.sort();
        scopes.dedup();
        Self {
            token_url: req.token_url.clone(),
            client_id: req.client_id.clone(),
            grant: req.grant.kind(),
            scopes,
            subject: req.grant.subject().to_string(),
            client_auth: req.client_auth,
            roots: {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                req.extra_roots.hash(&mut h);
                h.finish()
            },
        }
    }
}

struct Cached {
    token: AccessToken,
    reuse_until: Instant,
}

type Cell = Arc<tokio::sync::Mutex<Option<Cached>>>;

struct Slot {
    version: String,
    cell: Cell,
}

#[derive(Default)]
struct Inner {
    slots: Mutex<HashMap<Identity, Slot>>,
    requests: AtomicU64,
    hits: AtomicU64,
    failures: AtomicU64,
    successes: AtomicU64,
}

/// The shared token cache. Cheap to clone; all clones share entries and counters.
#[derive(Clone, Default)]
pub struct TokenCache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("entries", &self.len())
            .field("token_requests", &self.token_requests())
            .field("cache_hits", &self.cache_hits())
            .finish()
    }
}

impl TokenCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// A token for `req`: the cached one while it may be reused, else a new one from the endpoint.
    pub async fn get(&self, req: &TokenRequest, secret_version: &str) -> Result<AccessToken, TokenError> {
        self.get_with(req, secret_version, || request_token(req)).await
    }

    /// Drops the cached token for `req` (e.g. after the SMTP server rejected it).
    pub fn invalidate(&self, req: &TokenRequest, secret_version: &str) {
        let id = Identity::of(req);
        let mut slots = self.inner.slots.lock().unwrap_or_else(|p| p.into_inner());
        if slots.get(&id).is_some_and(|s| s.version == secret_version) {
            slots.remove(&id);
        }
    }

    /// Token requests sent (successful or not) since the cache was created.
    pub fn token_requests(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// Token requests that failed.
    pub fn token_failures(&self) -> u64 {
        self.inner.failures.load(Ordering::Relaxed)
    }

    /// Token requests that returned a token. Counted on completion, like failures, so a reader never takes a
    /// request still in flight for a success (`token_requests() - token_failures()` would).
    pub fn token_successes(&self) -> u64 {
        self.inner.successes.load(Ordering::Relaxed)
    }

    /// Calls answered from the cache.
    pub fn cache_hits(&self) -> u64 {
        self.inner.hits.load(Ordering::Relaxed)
    }

    /// Entries currently held.
    pub fn len(&self) -> usize {
        self.inner.slots.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    async fn get_with<F, Fut>(&self, req: &TokenRequest, version: &str, fetch: F) -> Result<AccessToken, TokenError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<AccessToken, TokenError>>,
    {
        let id = Identity::of(req);
        let cell = {
            let mut slots = self.inner.slots.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            // drop entries nobody is using whose token can no longer be reused. "Using" includes a caller that
            // has taken the cell but not locked it yet (its entry is still empty): dropping that entry would
            // let the next caller fetch a second token. Clones are only made under this lock, so the count
            // cannot grow while we look.
            slots.retain(|_, s| {
                Arc::strong_count(&s.cell) > 1
                    || match s.cell.try_lock() {
                        Ok(c) => c.as_ref().is_some_and(|c| c.reuse_until > now),
                        Err(_) => true,
                    }
            });
            match slots.get(&id) {
                Some(s) if s.version == version => s.cell.clone(),
                _ => {
                    let cell: Cell = Arc::default();
                    slots.insert(id, Slot { version: version.to_string(), cell: cell.clone() });
                    cell
                }
            }
        };

        let mut guard = cell.lock().await;
        if let Some(c) = guard.as_ref()
            && Instant::now() < c.reuse_until
        {
            self.inner.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(c.token.clone());
        }
        *guard = None;
        self.inner.requests.fetch_add(1, Ordering::Relaxed);
        let sent = Instant::now();
        match fetch().await {
            Ok(token) => {
                self.inner.successes.fetch_add(1, Ordering::Relaxed);
                if let Some(reuse) = reuse_for(token.expires_in) {
                    *guard = Some(Cached { token: token.clone(), reuse_until: sent + reuse });
                }
                Ok(token)
            }
            Err(e) => {
                self.inner.failures.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::token::Grant;
    use crate::engine::{DialPolicy, Reason, SecretValue, Step};

    fn req(scopes: &[&str]) -> TokenRequest {
        TokenRequest {
            token_url: "https://auth.example/token".into(),
            client_id: "c".into(),
            grant: Grant::ClientCredentials { client_secret: SecretValue::new("s") },
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            client_auth: ClientAuth::RequestBody,
            extra_roots: vec![],
            timeout: Duration::from_secs(1),
            policy: DialPolicy::default(),
        }
    }

    fn ok(secs: Option<u64>) -> Result<AccessToken, TokenError> {
        Ok(AccessToken { token: SecretValue::new("t"), expires_in: secs.map(Duration::from_secs) })
    }

    #[test]
    fn margins() {
        assert_eq!(reuse_for(Some(Duration::from_secs(3600))), Some(Duration::from_secs(3540)));
        assert_eq!(reuse_for(Some(Duration::from_secs(100))), Some(Duration::from_secs(90)));
        assert_eq!(reuse_for(Some(Duration::ZERO)), None);
        assert_eq!(reuse_for(None), None);
    }

    // Pure cache logic with a stand-in fetch; the real endpoint is exercised in tests/token.rs.
    #[tokio::test]
    async fn reuse_versions_failures_and_expiry() {
        let cache = TokenCache::new();
        let r = req(&["b", "a"]);
        cache.get_with(&r, "v1", || async { ok(Some(100)) }).await.unwrap();
        cache.get_with(&req(&["a", "b"]), "v1", || async { panic!("must be cached") }).await.unwrap();
        assert_eq!((cache.token_requests(), cache.cache_hits()), (1, 1));

        cache.get_with(&r, "v2", || async { ok(Some(1)) }).await.unwrap();
        assert_eq!((cache.token_requests(), cache.len()), (2, 1), "old version dropped");

        // lifetime 1 s, reused for 0.9 s
        tokio::time::sleep(Duration::from_millis(950)).await;
        cache.get_with(&r, "v2", || async { ok(Some(100)) }).await.unwrap();
        assert_eq!(cache.token_requests(), 3, "expired within the margin");

        let other = req(&["x"]);
        let fail = || async {
            Err(TokenError { step: Step::Token, reason: Reason::TokenRequestFailed, message: "no".into() })
        };
        assert!(cache.get_with(&other, "v1", fail).await.is_err());
        cache.get_with(&other, "v1", || async { ok(Some(100)) }).await.unwrap();
        assert_eq!((cache.token_requests(), cache.token_failures()), (5, 1), "failures are not cached");
        assert_eq!(cache.token_successes(), 4);

        cache.invalidate(&other, "v1");
        cache.get_with(&other, "v1", || async { ok(None) }).await.unwrap();
        cache.get_with(&other, "v1", || async { ok(None) }).await.unwrap();
        assert_eq!(cache.token_requests(), 7, "no expires_in: not reused");
    }

    /// Single flight holds on the multi-threaded runtime too: a caller that has just created an entry (and not
    /// yet locked it) must not see it dropped by another caller's clean-up, which would mean two fetches.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_first_calls_share_one_fetch() {
        for _ in 0..300 {
            let cache = TokenCache::new();
            let fetches = Arc::new(AtomicU64::new(0));
            let tasks: Vec<_> = (0..4)
                .map(|_| {
                    let (cache, fetches) = (cache.clone(), fetches.clone());
                    tokio::spawn(async move {
                        cache
                            .get_with(&req(&[]), "v1", || async move {
                                fetches.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(2)).await;
                                ok(Some(100))
                            })
                            .await
                            .unwrap();
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
            assert_eq!(fetches.load(Ordering::Relaxed), 1, "one fetch for concurrent first calls");
        }
    }
}
