//! Client authentication: the accounts (generated credentials Secret and `spec.clients`), constant-time
//! comparison, and per-address delay and lockout after failed logins.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use subtle::ConstantTimeEq;

use crate::engine::SecretValue;

/// One client account.
#[derive(Clone, Debug)]
pub struct Account {
    pub username: String,
    pub password: SecretValue,
}

/// True when `username`/`password` match one account. Every account is compared (no early exit), each in
/// constant time, so the time taken does not tell which part was wrong.
pub fn verify(accounts: &[Account], username: &[u8], password: &[u8]) -> bool {
    let mut ok = subtle::Choice::from(0);
    for a in accounts {
        let user = a.username.as_bytes().ct_eq(username);
        let pass = a.password.expose().ct_eq(password);
        ok |= user & pass;
    }
    bool::from(ok) && !accounts.is_empty()
}

/// Decodes an AUTH PLAIN response (`authzid \0 authcid \0 password`, base64). The authorization identity
/// must be empty or equal the login name.
pub fn decode_plain(b64: &str) -> Option<(Vec<u8>, SecretValue)> {
    let raw = SecretValue::new(B64.decode(b64.trim()).ok()?);
    let mut parts = raw.expose().splitn(3, |&b| b == 0);
    let (authz, user, pass) = (parts.next()?, parts.next()?, parts.next()?);
    if !authz.is_empty() && authz != user {
        return None;
    }
    Some((user.to_vec(), SecretValue::new(pass.to_vec())))
}

/// Failed-login bookkeeping per client address: each failure is answered after a growing delay; after
/// `max_failures` within `window` the address is locked out for `lockout`.
pub struct Lockout {
    max_failures: u32,
    window: Duration,
    lockout: Duration,
    entries: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Lockout {
    pub fn new(max_failures: u32, window: Duration, lockout: Duration) -> Self {
        Self { max_failures, window, lockout, entries: Mutex::default() }
    }

    /// True while `ip` is locked out.
    pub fn locked(&self, ip: IpAddr, now: Instant) -> bool {
        let e = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        matches!(e.get(&ip), Some((n, at)) if *n >= self.max_failures && now.duration_since(*at) < self.lockout)
    }

    /// Records a failure; returns the delay before answering it.
    pub fn failed(&self, ip: IpAddr, now: Instant) -> Duration {
        let mut e = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        // bounded memory: forget stale entries when the table grows
        if e.len() > 10_000 {
            let keep = self.window.max(self.lockout);
            e.retain(|_, (_, at)| now.duration_since(*at) < keep);
        }
        let entry = e.entry(ip).or_insert((0, now));
        if now.duration_since(entry.1) >= self.window.max(self.lockout) {
            *entry = (0, now);
        }
        entry.0 += 1;
        entry.1 = now;
        Duration::from_millis(250 * u64::from(entry.0.min(8)))
    }

    /// Forgets the failures of `ip` after a successful login.
    pub fn succeeded(&self, ip: IpAddr) {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts() -> Vec<Account> {
        vec![
            Account { username: "app".into(), password: SecretValue::new("s3cret") },
            Account { username: "other".into(), password: SecretValue::new("pw2") },
        ]
    }

    #[test]
    fn verify_table() {
        let a = accounts();
        for (user, pass, want) in [
            ("app", "s3cret", true),
            ("other", "pw2", true),
            ("app", "pw2", false),
            ("app", "s3cre", false),
            ("app", "s3cret ", false),
            ("ap", "s3cret", false),
            ("", "", false),
        ] {
            assert_eq!(verify(&a, user.as_bytes(), pass.as_bytes()), want, "{user}/{pass}");
        }
        assert!(!verify(&[], b"", b""));
    }

    #[test]
    fn plain_decoding() {
        let (u, p) = decode_plain(&B64.encode(b"\0app\0s3cret")).unwrap();
        assert_eq!((u.as_slice(), p.expose()), (&b"app"[..], &b"s3cret"[..]));
        assert!(decode_plain(&B64.encode(b"app\0app\0x")).is_some());
        assert!(decode_plain(&B64.encode(b"admin\0app\0x")).is_none(), "authzid of someone else");
        assert!(decode_plain("not base64!").is_none());
        assert!(decode_plain(&B64.encode(b"no-nuls")).is_none());
    }

    #[test]
    fn lockout_after_repeated_failures_and_reset_on_success() {
        let l = Lockout::new(3, Duration::from_secs(60), Duration::from_secs(300));
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        let t0 = Instant::now();
        let d1 = l.failed(ip, t0);
        let d2 = l.failed(ip, t0);
        assert!(d2 > d1, "delay grows");
        assert!(!l.locked(ip, t0));
        l.failed(ip, t0);
        assert!(l.locked(ip, t0));
        assert!(!l.locked(other, t0), "per address");
        assert!(!l.locked(ip, t0 + Duration::from_secs(301)), "lockout ends");
        l.succeeded(ip);
        assert!(!l.locked(ip, t0));
    }
}
