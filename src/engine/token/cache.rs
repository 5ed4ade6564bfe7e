//! A token cache shared by every caller (clone = same cache).
//!
//! Key: the app identity (token URL, client id, grant kind, scopes as a set, JWT subject, client auth method,
//! a digest of the extra trust anchors) plus a keyed hash of the credential material itself (client secret,
//! refresh token, private key): HMAC-SHA256 with a random key made when the cache is created, so the key
//! identifies the credential without holding it and means nothing outside this process. Hence identical
//! credentials share one token whatever Secret (or namespace) they come from, a rotated value gets its own
//! entry and token, and a wrong secret (its own entry, never filled) never evicts a good one.
//!
//! A token is reused until `expires_in` minus a margin (60 s, or 10 % of lifetimes under 10 minutes), counted
//! from when the request was sent. Answers without `expires_in` are not reused. Failures are not cached, except
//! one that asked to wait (HTTP 429/503 with `Retry-After`, see [`TokenError::retry_after`]): until then every
//! call gets that error again and no request is sent.
//! Entries that nobody uses and whose token can no longer be reused are dropped on the next call.
//! Single flight: concurrent calls for one key wait for one fetch and then share its token.
//! [`TokenCache::invalidate`] drops a token the SMTP server refused (only that token: a newer one stays).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ring::{digest, hmac, rand};
use tokio::time::Instant;

use super::{AccessToken, ClientAuth, Grant, GrantKind, TokenError, TokenRequest, request_token};
use crate::engine::SecretValue;

/// Margin before expiry for lifetimes of at least 10 minutes.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// How long a token with this lifetime may be reused; `None` = not at all.
pub fn reuse_for(expires_in: Option<Duration>) -> Option<Duration> {
    let lifetime = expires_in?;
    let reuse = if lifetime >= Duration::from_secs(600) { lifetime - EXPIRY_MARGIN } else { lifetime - lifetime / 10 };
    (!reuse.is_zero()).then_some(reuse)
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    token_url: String,
    client_id: String,
    grant: GrantKind,
    scopes: Vec<String>,
    subject: String,
    client_auth: ClientAuth,
    /// SHA-256 of the extra trust anchors: a changed CA bundle is checked again by a new request.
    roots: [u8; 32],
    /// HMAC-SHA256 of the credential material under the cache's random key.
    material: [u8; 32],
}

impl Key {
    fn of(req: &TokenRequest, hmac_key: &hmac::Key) -> Self {
        let mut scopes = req.scopes.clone();
        scopes.sort();
        scopes.dedup();
        let mut roots = digest::Context::new(&digest::SHA256);
        for r in &req.extra_roots {
            roots.update(&(r.len() as u64).to_be_bytes());
            roots.update(r);
        }
        let mut material = hmac::Context::with_key(hmac_key);
        let values: Vec<&SecretValue> = match &req.grant {
            Grant::ClientCredentials { client_secret } => vec![client_secret],
            Grant::RefreshToken { client_secret, refresh_token } => vec![client_secret, refresh_token],
            Grant::JwtBearer { private_key, .. } => vec![private_key],
        };
        for v in values {
            // length-prefixed, so no two lists of values hash alike
            material.update(&(v.expose().len() as u64).to_be_bytes());
            material.update(v.expose());
        }
        Self {
            token_url: req.token_url.clone(),
            client_id: req.client_id.clone(),
            grant: req.grant.kind(),
            scopes,
            subject: req.grant.subject().to_string(),
            client_auth: req.client_auth,
            roots: roots.finish().as_ref().try_into().expect("SHA-256 is 32 bytes"),
            material: material.sign().as_ref().try_into().expect("HMAC-SHA256 is 32 bytes"),
        }
    }
}

struct Cached {
    token: AccessToken,
    reuse_until: Instant,
}

/// One entry: the token while it may be reused, or the error of an endpoint that asked to wait.
#[derive(Default)]
struct Slot {
    token: Option<Cached>,
    wait: Option<(Instant, TokenError)>,
}

impl Slot {
    /// True while the entry still decides something.
    fn live(&self, now: Instant) -> bool {
        self.token.as_ref().is_some_and(|c| c.reuse_until > now) || self.wait.as_ref().is_some_and(|w| w.0 > now)
    }
}

type Cell = Arc<tokio::sync::Mutex<Slot>>;

struct Inner {
    hmac_key: hmac::Key,
    slots: Mutex<HashMap<Key, Cell>>,
    requests: AtomicU64,
    hits: AtomicU64,
    failures: AtomicU64,
    successes: AtomicU64,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            hmac_key: hmac::Key::generate(hmac::HMAC_SHA256, &rand::SystemRandom::new())
                .expect("the system random source works"),
            slots: Mutex::default(),
            requests: AtomicU64::default(),
            hits: AtomicU64::default(),
            failures: AtomicU64::default(),
            successes: AtomicU64::default(),
        }
    }
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
    pub async fn get(&self, req: &TokenRequest) -> Result<AccessToken, TokenError> {
        self.get_with(req, || request_token(req)).await
    }

    /// Drops `refused` from the cache (the SMTP server rejected it), so the next call fetches a new token. A
    /// different token cached meanwhile for the same key stays.
    pub fn invalidate(&self, req: &TokenRequest, refused: &SecretValue) {
        let key = Key::of(req, &self.inner.hmac_key);
        let cell = self.slots().get(&key).cloned();
        if let Some(cell) = cell
            && let Ok(mut c) = cell.try_lock()
            && c.token.as_ref().is_some_and(|c| c.token.token.expose() == refused.expose())
        {
            c.token = None;
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
        self.slots().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Cell>> {
        self.inner.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The entry for `key`, created when absent, after dropping the entries nobody uses whose token can no
    /// longer be reused. "Using" includes a caller that has taken a cell but not locked it yet (its entry is
    /// still empty): dropping that entry would let the next caller fetch a second token. Clones are only made
    /// under this lock, so the count cannot grow while we look.
    fn cell(&self, key: Key) -> Cell {
        let mut slots = self.slots();
        let now = Instant::now();
        slots.retain(|_, cell| {
            Arc::strong_count(cell) > 1
                || match cell.try_lock() {
                    Ok(c) => c.live(now),
                    Err(_) => true,
                }
        });
        slots.entry(key).or_default().clone()
    }

    async fn get_with<F, Fut>(&self, req: &TokenRequest, fetch: F) -> Result<AccessToken, TokenError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<AccessToken, TokenError>>,
    {
        let cell = self.cell(Key::of(req, &self.inner.hmac_key));
        let mut guard = cell.lock().await;
        if let Some(c) = guard.token.as_ref()
            && Instant::now() < c.reuse_until
        {
            self.inner.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(c.token.clone());
        }
        if let Some((until, e)) = guard.wait.as_ref()
            && Instant::now() < *until
        {
            return Err(e.clone());
        }
        *guard = Slot::default();
        self.inner.requests.fetch_add(1, Ordering::Relaxed);
        let sent = Instant::now();
        match fetch().await {
            Ok(token) => {
                self.inner.successes.fetch_add(1, Ordering::Relaxed);
                if let Some(reuse) = reuse_for(token.expires_in) {
                    guard.token = Some(Cached { token: token.clone(), reuse_until: sent + reuse });
                }
                Ok(token)
            }
            Err(e) => {
                self.inner.failures.fetch_add(1, Ordering::Relaxed);
                if let Some(wait) = e.retry_after {
                    guard.wait = Some((sent + wait, e.clone()));
                }
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
        with_secret(scopes, "s")
    }

    fn with_secret(scopes: &[&str], secret: &str) -> TokenRequest {
        TokenRequest {
            token_url: "https://auth.example/token".into(),
            client_id: "c".into(),
            grant: Grant::ClientCredentials { client_secret: SecretValue::new(secret) },
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            client_auth: ClientAuth::RequestBody,
            extra_roots: vec![],
            timeout: Duration::from_secs(1),
            policy: DialPolicy::default(),
        }
    }

    fn ok(secs: Option<u64>) -> Result<AccessToken, TokenError> {
        token("t", secs)
    }

    fn token(value: &str, secs: Option<u64>) -> Result<AccessToken, TokenError> {
        Ok(AccessToken {
            token: SecretValue::new(value),
            expires_in: secs.map(Duration::from_secs),
            certificates: vec![],
        })
    }

    fn refused() -> Result<AccessToken, TokenError> {
        Err(TokenError {
            step: Step::Token,
            reason: Reason::TokenRequestFailed,
            message: "invalid_client".into(),
            retry_after: None,
            transient: false,
        })
    }

    #[test]
    fn margins() {
        assert_eq!(reuse_for(Some(Duration::from_secs(3600))), Some(Duration::from_secs(3540)));
        assert_eq!(reuse_for(Some(Duration::from_secs(100))), Some(Duration::from_secs(90)));
        assert_eq!(reuse_for(Some(Duration::ZERO)), None);
        assert_eq!(reuse_for(None), None);
    }

    #[test]
    fn key_covers_identity_and_material_but_holds_no_secret() {
        let cache = TokenCache::new();
        let k = |r: &TokenRequest| Key::of(r, &cache.inner.hmac_key);
        let base = with_secret(&["a", "b"], "secret-1");
        assert_eq!(k(&base), k(&with_secret(&["b", "a", "a"], "secret-1")), "scopes are a set");
        let mut rt = base.clone();
        rt.grant =
            Grant::RefreshToken { client_secret: SecretValue::new("secret-1"), refresh_token: SecretValue::new("") };
        let mut roots = base.clone();
        roots.extra_roots = vec![vec![1, 2, 3]];
        let mut auth = base.clone();
        auth.client_auth = ClientAuth::BasicAuth;
        let mut id = base.clone();
        id.client_id = "other".into();
        for (what, other) in [
            ("secret", with_secret(&["a", "b"], "secret-2")),
            ("grant", rt),
            ("roots", roots),
            ("client auth", auth),
            ("client id", id),
        ] {
            assert_ne!(k(&base), k(&other), "{what} is part of the key");
        }
        assert!(!format!("{:?}", k(&base)).contains("secret-1"));
        // another cache (process) has another key: the hash means nothing outside it
        assert_ne!(k(&base).material, Key::of(&base, &TokenCache::new().inner.hmac_key).material);
    }

    // Pure cache logic with a stand-in fetch; the real endpoint is exercised in tests/token.rs.
    #[tokio::test]
    async fn reuse_failures_and_expiry() {
        let cache = TokenCache::new();
        let r = req(&["b", "a"]);
        cache.get_with(&r, || async { ok(Some(1)) }).await.unwrap();
        cache.get_with(&req(&["a", "b"]), || async { panic!("must be cached") }).await.unwrap();
        assert_eq!((cache.token_requests(), cache.cache_hits()), (1, 1));
        // lifetime 1 s, reused for 0.9 s
        tokio::time::sleep(Duration::from_millis(950)).await;
        cache.get_with(&r, || async { ok(Some(100)) }).await.unwrap();
        assert_eq!(cache.token_requests(), 2, "expired within the margin");

        let other = req(&["x"]);
        assert!(cache.get_with(&other, || async { refused() }).await.is_err());
        cache.get_with(&other, || async { ok(Some(100)) }).await.unwrap();
        assert_eq!((cache.token_requests(), cache.token_failures(), cache.token_successes()), (4, 1, 3));

        cache.get_with(&other, || async { ok(None) }).await.unwrap();
        let before = cache.token_requests();
        cache.invalidate(&other, &SecretValue::new("t"));
        cache.get_with(&other, || async { ok(None) }).await.unwrap();
        cache.get_with(&other, || async { ok(None) }).await.unwrap();
        assert_eq!(cache.token_requests(), before + 2, "no expires_in: not reused");
    }

    #[tokio::test]
    async fn copies_share_rotation_gets_a_new_token_and_a_wrong_secret_evicts_nothing() {
        let cache = TokenCache::new();
        // the same value read from three Secrets: one token
        for _ in 0..3 {
            let t = cache.get_with(&with_secret(&[], "good"), || async { token("t-good", Some(3600)) }).await;
            assert_eq!(t.unwrap().token.expose(), b"t-good");
        }
        assert_eq!(cache.token_requests(), 1);
        // a wrong copy fails, again and again, and the good token stays
        for _ in 0..3 {
            assert!(cache.get_with(&with_secret(&[], "wrong"), || async { refused() }).await.is_err());
            let good = with_secret(&[], "good");
            let t = cache.get_with(&good, || async { panic!("the good token was evicted") }).await;
            assert_eq!(t.unwrap().token.expose(), b"t-good");
        }
        assert_eq!((cache.token_requests(), cache.token_failures()), (4, 3));
        // a rotated value gets its own token; the old one stays for copies not yet rotated
        let t = cache.get_with(&with_secret(&[], "rotated"), || async { token("t-rotated", Some(3600)) }).await;
        assert_eq!(t.unwrap().token.expose(), b"t-rotated");
        let t = cache.get_with(&with_secret(&[], "good"), || async { panic!("still cached") }).await;
        assert_eq!(t.unwrap().token.expose(), b"t-good");
        assert_eq!(cache.len(), 2, "the failed entry is not kept");
    }

    #[tokio::test]
    async fn refused_token_is_dropped_once_and_expired_unused_entries_go() {
        let cache = TokenCache::new();
        let r = with_secret(&[], "good");
        cache.get_with(&r, || async { token("t1", Some(3600)) }).await.unwrap();
        // a refusal of another (older) token leaves the cached one
        cache.invalidate(&r, &SecretValue::new("t0"));
        cache.get_with(&r, || async { panic!("t1 stays") }).await.unwrap();
        cache.invalidate(&r, &SecretValue::new("t1"));
        let t = cache.get_with(&r, || async { token("t2", Some(3600)) }).await.unwrap();
        assert_eq!((t.token.expose(), cache.token_requests()), (&b"t2"[..], 2));

        cache.get_with(&with_secret(&[], "short"), || async { token("s", Some(1)) }).await.unwrap();
        assert_eq!(cache.len(), 2);
        tokio::time::sleep(Duration::from_millis(950)).await;
        cache.get_with(&r, || async { panic!("t2 stays") }).await.unwrap();
        assert_eq!(cache.len(), 1, "the expired, unused entry was dropped");
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
                            .get_with(&req(&[]), || async move {
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
