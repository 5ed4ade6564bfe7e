//! The operator-wide check rate limits (docs/api.md, flags): a GCRA rate per namespace
//! (`--namespace-check-rate`, keyed) and one for the whole operator (`--global-check-rate`, direct), both from
//! the `governor` crate. The per-resource minimum interval (`--min-check-interval`) is not kept here: it is
//! derived from `status.lastCheck.time` (see `controller::decide`), so it survives restarts.
//!
//! [`CheckLimiter::try_acquire`] grants a check only when both allow it, and a refused request consumes
//! nothing: the namespace bucket is not charged when the global one refuses and vice versa. governor has no
//! "peek" operation, so the buckets use a small state store of ours ([`TwoPhaseStore`]) that governor's GCRA
//! drives as usual but that, in a dry-run phase, computes the decision without storing it. Under one mutex,
//! `try_acquire` asks both in dry-run and commits only when both agreed; so the decision is atomic.
//!
//! Deferred requests are spread: each refusal gets its own retry slot, one replenish interval of the binding
//! limit after the previous slot handed out for the same bucket, so the deferred resources of one namespace
//! wake one after the other as capacity comes back instead of all at the same instant.
//!
//! Fairness: a namespace can never take more than its own rate, so one namespace flooding leaves the rest of
//! the global rate to others. Memory is bounded: namespace buckets that are back to full and retry slots in
//! the past are dropped periodically (and by [`CheckLimiter::housekeeping`]).
//!
//! Time comes from a [`governor::clock::Clock`]; tests use [`governor::clock::FakeRelativeClock`].

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, MonotonicClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::{NotKeyed, StateStore};
use governor::{NotUntil, Quota, RateLimiter};

/// A rate: `count` checks per `per`, with a burst of `count`. Written `10/m`, `5/s`, `100/h` (also `/sec`,
/// `/second`, `/min`, `/minute`, `/hour`; case-insensitive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    count: NonZeroU32,
    per: Duration,
}

impl Rate {
    /// `None` when `per` is zero or the rate is so high that one check would take less than a nanosecond.
    pub fn new(count: NonZeroU32, per: Duration) -> Option<Rate> {
        let r = Rate { count, per };
        r.replenish_interval().map(|_| r)
    }
    pub fn count(&self) -> NonZeroU32 {
        self.count
    }
    pub fn per(&self) -> Duration {
        self.per
    }
    fn replenish_interval(&self) -> Option<Duration> {
        self.per.checked_div(self.count.get()).filter(|d| !d.is_zero())
    }
    /// The governor quota: burst `count`, one check back every `per / count`.
    pub fn quota(&self) -> Quota {
        Quota::with_period(self.replenish_interval().expect("validated in Rate::new"))
            .expect("non-zero period")
            .allow_burst(self.count)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s".to_string(),
            60 => "m".to_string(),
            3600 => "h".to_string(),
            _ => crate::duration::format(self.per),
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// Why a rate did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a rate: {reason} (expected COUNT/UNIT such as 10/m, 5/s or 100/h)")]
pub struct RateError {
    pub input: String,
    pub reason: &'static str,
}

impl FromStr for Rate {
    type Err = RateError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let e = |reason| RateError { input: s.chars().take(64).collect(), reason };
        let (count, unit) = s.trim().split_once('/').ok_or_else(|| e("missing '/'"))?;
        let count = count.trim();
        if count.is_empty() || count.len() > 10 || !count.bytes().all(|b| b.is_ascii_digit()) {
            return Err(e("the count must be a positive whole number"));
        }
        let count: u32 = count.parse().map_err(|_| e("the count is too large"))?;
        let count = NonZeroU32::new(count).ok_or_else(|| e("the count must be at least 1"))?;
        let per = match unit.trim().to_ascii_lowercase().as_str() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(e("the unit must be s, m or h")),
        };
        Rate::new(count, per).ok_or_else(|| e("the rate is too high"))
    }
}

/// The three limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Per resource: no two checks closer than this (`--min-check-interval`), enforced from the status.
    pub min_interval: Duration,
    /// Per namespace (`--namespace-check-rate`).
    pub namespace_rate: Rate,
    /// The whole operator (`--global-check-rate`).
    pub global_rate: Rate,
}

impl Default for Limits {
    /// The contract's defaults: 60 s, 10/m, 60/m.
    fn default() -> Self {
        Limits {
            min_interval: Duration::from_secs(60),
            namespace_rate: "10/m".parse().expect("valid"),
            global_rate: "60/m".parse().expect("valid"),
        }
    }
}

/// Which limit deferred a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Limit {
    /// The per-resource minimum interval.
    Resource,
    /// The per-namespace rate.
    Namespace,
    /// The global rate.
    Global,
}

impl Limit {
    /// The flag that sets this limit.
    pub fn flag(self) -> &'static str {
        match self {
            Limit::Resource => "--min-check-interval",
            Limit::Namespace => "--namespace-check-rate",
            Limit::Global => "--global-check-rate",
        }
    }
}

impl Limit {
    /// The metric label (`smtp_operator_checks_deferred_total{limit}`).
    pub fn label(self) -> &'static str {
        match self {
            Limit::Resource => "resource",
            Limit::Namespace => "namespace",
            Limit::Global => "global",
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            Limit::Resource => "the minimum interval between checks of one resource",
            Limit::Namespace => "the per-namespace check rate",
            Limit::Global => "the operator-wide check rate",
        };
        write!(f, "{what} ({})", self.flag())
    }
}

/// A refused check: when to retry and which limit is the reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deferral {
    /// From the time of the request to this request's retry slot: no earlier than the moment both limits
    /// would allow it, and one replenish interval after the slot handed to the previous refusal.
    pub retry_after: Duration,
    /// The limit that allows it last (the binding one); on a tie the most specific one.
    pub which: Limit,
}

impl fmt::Display for Deferral {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "check deferred by {}", self.which)
    }
}

/// A governor state store that can evaluate a decision without storing it (see the module docs). Keys map
/// to GCRA "theoretical arrival times", like governor's own stores. Only ever used under the limiter's mutex.
#[derive(Debug)]
pub struct TwoPhaseStore<K> {
    cells: RefCell<HashMap<K, Nanos>>,
    dry_run: Arc<AtomicBool>,
}

impl StateStore for TwoPhaseStore<String> {
    type Key = String;
    fn measure_and_replace<T, F, E>(&self, key: &String, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let current = self.cells.borrow().get(key).copied();
        let (out, next) = f(current)?;
        if !self.dry_run.load(Ordering::Relaxed) {
            self.cells.borrow_mut().insert(key.clone(), next);
        }
        Ok(out)
    }
}

impl ShrinkableKeyedStateStore<String> for TwoPhaseStore<String> {
    fn retain_recent(&self, drop_below: Nanos) {
        self.cells.borrow_mut().retain(|_, tat| *tat > drop_below);
    }
    fn shrink_to_fit(&self) {
        self.cells.borrow_mut().shrink_to_fit();
    }
    fn len(&self) -> usize {
        self.cells.borrow().len()
    }
    fn is_empty(&self) -> bool {
        self.cells.borrow().is_empty()
    }
}

/// The single-cell (direct) variant of [`TwoPhaseStore`], for the global limit.
#[derive(Debug)]
pub struct TwoPhaseCell {
    cell: Cell<Option<Nanos>>,
    dry_run: Arc<AtomicBool>,
}

impl StateStore for TwoPhaseCell {
    type Key = NotKeyed;
    fn measure_and_replace<T, F, E>(&self, _key: &NotKeyed, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let (out, next) = f(self.cell.get())?;
        if !self.dry_run.load(Ordering::Relaxed) {
            self.cell.set(Some(next));
        }
        Ok(out)
    }
}

/// How often (in clock time) stale entries are dropped during `try_acquire`.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(60);

struct Inner<C: Clock> {
    dry_run: Arc<AtomicBool>,
    namespaces: RateLimiter<String, TwoPhaseStore<String>, C, NoOpMiddleware<C::Instant>>,
    global: RateLimiter<NotKeyed, TwoPhaseCell, C, NoOpMiddleware<C::Instant>>,
    /// (binding limit, namespace or "" for the global one) → the last retry slot handed out.
    slots: HashMap<(Limit, String), C::Instant>,
    last_housekeeping: C::Instant,
}

/// The rate limiter for checks. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct CheckLimiter<C: Clock = MonotonicClock> {
    limits: Limits,
    clock: C,
    inner: Mutex<Inner<C>>,
}

impl<C: Clock> fmt::Debug for CheckLimiter<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckLimiter").field("limits", &self.limits).finish_non_exhaustive()
    }
}

impl CheckLimiter<MonotonicClock> {
    /// A limiter on the monotonic system clock.
    pub fn new(limits: Limits) -> Self {
        Self::with_clock(limits, MonotonicClock)
    }
}

impl<C: Clock + Clone> CheckLimiter<C> {
    /// A limiter on the given clock (tests: `FakeRelativeClock`).
    pub fn with_clock(limits: Limits, clock: C) -> Self {
        let dry_run = Arc::new(AtomicBool::new(false));
        let store = TwoPhaseStore { cells: RefCell::new(HashMap::new()), dry_run: dry_run.clone() };
        let namespaces = RateLimiter::new(limits.namespace_rate.quota(), store, clock.clone());
        let cell = TwoPhaseCell { cell: Cell::new(None), dry_run: dry_run.clone() };
        let global = RateLimiter::new(limits.global_rate.quota(), cell, clock.clone());
        let now = clock.now();
        CheckLimiter {
            limits,
            clock,
            inner: Mutex::new(Inner { dry_run, namespaces, global, slots: HashMap::new(), last_housekeeping: now }),
        }
    }
}

impl<C: Clock> CheckLimiter<C> {
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<C>> {
        // A panic elsewhere while holding the lock cannot leave the state inconsistent in a harmful way.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks for one check in `namespace`. `Ok` = go ahead (both limits are charged); `Err` = not now, nothing
    /// was charged, retry after the deferral's own slot.
    pub fn try_acquire(&self, namespace: &str) -> Result<(), Deferral> {
        let inner = &mut *self.lock();
        let now = self.clock.now();
        if now.duration_since(inner.last_housekeeping) >= Nanos::from(HOUSEKEEPING_EVERY) {
            Self::housekeep(inner, now);
        }
        let ns = namespace.to_string();

        // Phase 1: ask both, change nothing.
        inner.dry_run.store(true, Ordering::Relaxed);
        let wait = |r: Result<(), NotUntil<C::Instant>>| r.err().map(|n| n.wait_time_from(now));
        let ns_wait = wait(inner.namespaces.check_key(&ns));
        let global_wait = wait(inner.global.check());
        inner.dry_run.store(false, Ordering::Relaxed);
        let refusal = match (ns_wait, global_wait) {
            (None, None) => None,
            (Some(n), Some(g)) if g > n => Some((g, Limit::Global)),
            (Some(n), _) => Some((n, Limit::Namespace)),
            (None, Some(g)) => Some((g, Limit::Global)),
        };
        if let Some((wait, which)) = refusal {
            let (rate, key) = match which {
                Limit::Global => (self.limits.global_rate, String::new()),
                _ => (self.limits.namespace_rate, ns),
            };
            let step = Nanos::from(rate.replenish_interval().unwrap_or_default());
            let earliest = now + Nanos::from(wait);
            let slot = match inner.slots.get(&(which, key.clone())) {
                Some(last) if *last + step > earliest => *last + step,
                _ => earliest,
            };
            inner.slots.insert((which, key), slot);
            return Err(Deferral { retry_after: slot.duration_since(now).into(), which });
        }

        // Phase 2: commit. Nothing changed since phase 1 (we hold the lock; time only moves forward, which
        // only makes GCRA more permissive), so these succeed.
        let _ = inner.namespaces.check_key(&ns);
        let _ = inner.global.check();
        Ok(())
    }

    /// Drops state that no longer influences any decision: namespace buckets that are full again and retry
    /// slots in the past. Runs by itself every minute of clock time inside `try_acquire`; may also be called
    /// from a timer.
    pub fn housekeeping(&self) {
        let inner = &mut *self.lock();
        let now = self.clock.now();
        Self::housekeep(inner, now);
    }

    fn housekeep(inner: &mut Inner<C>, now: C::Instant) {
        inner.slots.retain(|_, slot| *slot > now);
        inner.slots.shrink_to_fit();
        inner.namespaces.retain_recent();
        inner.namespaces.shrink_to_fit();
        inner.last_housekeeping = now;
    }

    /// Number of (retry slots, namespace buckets) currently held; for metrics and tests.
    pub fn tracked(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.slots.len(), inner.namespaces.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn limits(min: u64, ns: &str, global: &str) -> Limits {
        Limits {
            min_interval: Duration::from_secs(min),
            namespace_rate: ns.parse().unwrap(),
            global_rate: global.parse().unwrap(),
        }
    }
    fn limiter(l: Limits) -> (CheckLimiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (CheckLimiter::with_clock(l, clock.clone()), clock)
    }
    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn rate_parsing() {
        assert_eq!("10/m".parse::<Rate>().unwrap(), Rate::new(NonZeroU32::new(10).unwrap(), secs(60)).unwrap());
        assert_eq!(" 5 / S ".parse::<Rate>().unwrap().per(), secs(1));
        assert_eq!("100/h".parse::<Rate>().unwrap().count().get(), 100);
        assert_eq!("60/minute".parse::<Rate>().unwrap().to_string(), "60/m");
        assert_eq!("1/hour".parse::<Rate>().unwrap().to_string(), "1/h");
        assert_eq!("7/sec".parse::<Rate>().unwrap().to_string(), "7/s");
        for bad in [
            "",
            "10",
            "0/m",
            "-1/m",
            "+1/m",
            "10/d",
            "10/",
            "/m",
            "ten/m",
            "1.5/m",
            "10/m/s",
            "99999999999/s",
            "4294967295/s",
            "１０/m",
        ] {
            assert!(bad.parse::<Rate>().is_err(), "{bad:?} must be rejected");
        }
        let e = "0/m".parse::<Rate>().unwrap_err().to_string();
        assert!(e.contains("at least 1") && e.contains("10/m"), "{e}");
        assert!(Rate::new(NonZeroU32::new(1).unwrap(), Duration::ZERO).is_none());
        let d = Limits::default();
        assert_eq!(
            (d.min_interval, d.namespace_rate.to_string(), d.global_rate.to_string()),
            (secs(60), "10/m".into(), "60/m".into())
        );
    }

    #[test]
    fn namespace_rate_with_burst_and_refill() {
        let (l, clock) = limiter(limits(60, "10/m", "1000/m"));
        for _ in 0..10 {
            assert_eq!(l.try_acquire("ns"), Ok(()), "burst of 10");
        }
        let d = l.try_acquire("ns").unwrap_err();
        assert_eq!(d, Deferral { retry_after: secs(6), which: Limit::Namespace });
        clock.advance(secs(6));
        assert_eq!(l.try_acquire("ns"), Ok(()), "one token back every 6 s");
        assert_eq!(l.try_acquire("ns").unwrap_err().which, Limit::Namespace);
    }

    #[test]
    fn flooding_namespace_cannot_starve_others() {
        let (l, _clock) = limiter(limits(60, "10/m", "60/m"));
        let granted_a = (0..1000).filter(|_| l.try_acquire("a").is_ok()).count();
        assert_eq!(granted_a, 10, "a namespace takes at most its own rate");
        for ns in ["b", "c", "d", "e", "f"] {
            let granted = (0..50).filter(|_| l.try_acquire(ns).is_ok()).count();
            assert_eq!(granted, 10, "namespace {ns} keeps its share");
        }
        // 60 granted in total: now the global bucket is empty for everybody
        let d = l.try_acquire("g").unwrap_err();
        assert_eq!(d, Deferral { retry_after: secs(1), which: Limit::Global });
    }

    #[test]
    fn global_refusal_does_not_charge_the_namespace() {
        let (l, clock) = limiter(limits(0, "2/m", "1/m"));
        assert_eq!(l.try_acquire("a"), Ok(()));
        // global empty; namespace "b" untouched and must stay so however often it is refused
        for _ in 0..20 {
            assert_eq!(l.try_acquire("b").unwrap_err().which, Limit::Global);
        }
        clock.advance(secs(60));
        assert_eq!(l.try_acquire("b"), Ok(()));
        clock.advance(secs(60));
        assert_eq!(l.try_acquire("b"), Ok(()), "b still had its second token: refusals charged nothing");
    }

    #[test]
    fn namespace_refusal_does_not_charge_global() {
        let (l, _clock) = limiter(limits(0, "1/m", "3/m"));
        assert_eq!(l.try_acquire("a"), Ok(()));
        for _ in 0..20 {
            assert_eq!(l.try_acquire("a").unwrap_err().which, Limit::Namespace);
        }
        assert_eq!(l.try_acquire("b"), Ok(()));
        assert_eq!(l.try_acquire("c"), Ok(()), "global still had 2 tokens after a's refusals");
        assert_eq!(l.try_acquire("d").unwrap_err().which, Limit::Global);
    }

    #[test]
    fn deferred_requests_get_spread_slots_that_then_succeed() {
        let (l, clock) = limiter(limits(60, "10/m", "1000/m"));
        for _ in 0..10 {
            l.try_acquire("ns").unwrap();
        }
        // five resources deferred at the same instant wake 6 s apart, not all at once
        let waits: Vec<u64> = (0..5).map(|_| l.try_acquire("ns").unwrap_err().retry_after.as_secs()).collect();
        assert_eq!(waits, vec![6, 12, 18, 24, 30]);
        // each slot really has a token for its owner
        for _ in 0..5 {
            clock.advance(secs(6));
            assert_eq!(l.try_acquire("ns"), Ok(()));
        }
        // another namespace has its own slots
        let (l, _c) = limiter(limits(60, "1/m", "1000/m"));
        l.try_acquire("a").unwrap();
        l.try_acquire("b").unwrap();
        assert_eq!(l.try_acquire("a").unwrap_err().retry_after, secs(60));
        assert_eq!(l.try_acquire("b").unwrap_err().retry_after, secs(60));
        assert_eq!(l.try_acquire("a").unwrap_err().retry_after, secs(120));
    }

    #[test]
    fn memory_is_bounded_by_housekeeping() {
        let (l, clock) = limiter(limits(60, "10/m", "1000/s"));
        for ns in 0..50 {
            for _ in 0..5 {
                l.try_acquire(&format!("ns{ns}")).unwrap();
            }
        }
        assert_eq!(l.tracked(), (0, 50));
        for _ in 0..10 {
            let _ = l.try_acquire("ns0");
        }
        assert_eq!(l.tracked(), (1, 50), "one slot per refused bucket");
        clock.advance(secs(20));
        l.housekeeping();
        assert_eq!(l.tracked(), (1, 50), "nothing is stale yet");
        clock.advance(secs(60));
        // automatic housekeeping runs inside try_acquire a minute (of clock time) after the last one
        l.try_acquire("fresh").unwrap();
        assert_eq!(l.tracked(), (0, 1), "old entries dropped, only the fresh one remains");
    }

    #[test]
    fn usable_from_many_threads() {
        let l = Arc::new(CheckLimiter::new(limits(60, "5/m", "20/m")));
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let l = l.clone();
                std::thread::spawn(move || (0..20).filter(|_| l.try_acquire(&format!("ns{}", t % 2)).is_ok()).count())
            })
            .collect();
        let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(total, 10, "two namespaces × 5");
    }

    #[test]
    fn deferral_display_names_the_flag() {
        let d = Deferral { retry_after: secs(6), which: Limit::Namespace };
        assert_eq!(d.to_string(), "check deferred by the per-namespace check rate (--namespace-check-rate)");
        assert_eq!(Limit::Resource.flag(), "--min-check-interval");
        assert_eq!(Limit::Global.flag(), "--global-check-rate");
    }
}
