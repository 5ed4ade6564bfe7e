//! Whether a check is owed now (pure): from the current status, the plan's interval, the limits and the
//! request annotations to [`Decision`]. The rules are described in docs/api.md ("When checks run").

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::api::{SmtpSettingsStatus, TestEmailResult};
use crate::conditions::{self, READY};
use crate::ratelimit::{Deferral, Limit};
use crate::status::{CHECK_DEFERRED, CHECK_PENDING};
use crate::vocabulary::FailureClass;

/// What the reconcile does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The cached result stands: nothing is dialled and nothing written; look again at `until`, if any.
    Idle { until: Option<Timestamp> },
    /// A check is owed but a limit holds it back until `until`.
    Deferred { until: Timestamp, limit: Limit },
    /// Run the check now (with the test email for `test_request`, when given).
    Check { test_request: Option<String> },
}

/// The state of the `test-email-requested-at` annotation against `status.testEmail`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TestEmail {
    /// No annotation, or its value is answered (Sent, Failed or Unknown).
    None,
    /// A value not answered yet (new, or Deferred): the next check sends it.
    Owed(String),
    /// `status.testEmail` says Sending for this value: an operator stopped while sending it. Never sent again.
    Interrupted(String),
}

/// Reads the test-email request from the annotation value and the current status.
pub fn test_email(annotation: Option<&str>, current: &SmtpSettingsStatus) -> TestEmail {
    let Some(value) = annotation else { return TestEmail::None };
    match current.test_email.as_ref().filter(|t| t.request == value).map(|t| t.result) {
        None | Some(TestEmailResult::Deferred) => TestEmail::Owed(value.into()),
        Some(TestEmailResult::Sending) => TestEmail::Interrupted(value.into()),
        Some(TestEmailResult::Sent | TestEmailResult::Failed | TestEmailResult::Unknown) => TestEmail::None,
    }
}

/// What [`decide`] looks at besides the time.
#[derive(Clone, Debug)]
pub struct Facts<'a> {
    pub status: &'a SmtpSettingsStatus,
    /// Digest of what a check now would cover (generation, referenced versions, check request).
    pub inputs: &'a str,
    /// The periodic re-check interval of the spec (`None` for `0s`).
    pub interval: Option<Duration>,
    /// `--min-check-interval`: no two checks of one resource closer than this (from `status.lastCheck.time`,
    /// so it holds across restarts).
    pub min_interval: Duration,
    /// The owed test-email request, if any.
    pub test_request: Option<&'a str>,
    /// When the last check failed transiently: the time its retry is due ([`next_retry`]).
    pub retry_at: Option<Timestamp>,
}

impl Facts<'_> {
    /// The periodic interval in force: the spec's, but never below the minimum interval.
    pub fn period(&self) -> Option<Duration> {
        self.interval.map(|i| i.max(self.min_interval))
    }
}

/// Decides. `acquire` asks the namespace and global rate limits for a check (charged only when granted); it is
/// called only when a check is owed and the per-resource interval allows it.
pub fn decide(f: &Facts, now: Timestamp, acquire: impl FnOnce() -> Result<(), Deferral>) -> Decision {
    let last = f.status.last_check.as_ref().and_then(|l| l.time.parse::<Timestamp>().ok());
    let next_periodic = last.zip(f.period()).map(|(t, p)| t + p);
    let inputs_changed = f.status.last_check.as_ref().and_then(|l| l.inputs.as_deref()) != Some(f.inputs);
    let due = next_periodic.is_some_and(|t| t <= now) || f.retry_at.is_some_and(|t| t <= now);
    // Ready=Unknown CheckPending/CheckDeferred says a check is owed: one that an operator stopped before it
    // finished (restart, crash, leader change) runs again.
    let unsettled = conditions::find(&f.status.conditions, READY)
        .is_some_and(|c| c.status == "Unknown" && (c.reason == CHECK_PENDING || c.reason == CHECK_DEFERRED));
    if !inputs_changed && !due && !unsettled && f.test_request.is_none() {
        let until = match (next_periodic, f.retry_at) {
            (Some(p), Some(r)) => Some(p.min(r)),
            (p, r) => p.or(r),
        };
        return Decision::Idle { until };
    }
    if let Some(earliest) = last.map(|t| t + f.min_interval).filter(|e| *e > now) {
        return Decision::Deferred { until: earliest, limit: Limit::Resource };
    }
    match acquire() {
        Ok(()) => Decision::Check { test_request: f.test_request.map(str::to_string) },
        Err(d) => {
            let secs = d.retry_after.as_secs_f64().ceil().max(1.0) as i64;
            Decision::Deferred { until: Timestamp::from_second(now.as_second() + secs).unwrap_or(now), limit: d.which }
        }
    }
}

/// The longest wait between two retries of a transient failure (a longer periodic interval still applies).
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// The retry of a resource whose checks fail transiently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Transient failures in a row.
    pub failures: u32,
    pub at: Timestamp,
}

/// After a check: when to retry it before its interval. A transient failure is retried after the minimum interval,
/// doubling with every transient failure in a row (`previous` counts those before this one), at most
/// [`MAX_BACKOFF`] and never later than the periodic check would run anyway (`period`); the rate limits still apply
/// when it is due. A permanent failure or a success: no retry (the interval or a change triggers the next check).
pub fn next_retry(
    class: Option<FailureClass>,
    previous: u32,
    min_interval: Duration,
    period: Option<Duration>,
    now: Timestamp,
) -> Option<Retry> {
    if class != Some(FailureClass::Transient) {
        return None;
    }
    let failures = previous.saturating_add(1);
    let base = min_interval.max(Duration::from_secs(1));
    let wait = base.saturating_mul(1u32 << (failures - 1).min(20)).min(MAX_BACKOFF);
    let wait = period.map_or(wait, |p| wait.min(p)).max(base);
    let at = Timestamp::from_second(now.as_second().saturating_add(wait.as_secs() as i64)).unwrap_or(now);
    Some(Retry { failures, at })
}

/// A stable digest of what a check covers: generation, referenced object versions, check request.
pub fn inputs_digest(generation: Option<i64>, versions: &[String], check_request: Option<&str>) -> String {
    // FNV-1a, stable across builds and restarts (std's hasher is not guaranteed to be)
    let mut h: u64 = 0xcbf29ce484222325;
    let mut feed = |s: &str| {
        for b in s.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100000001b3);
        }
    };
    feed(&generation.unwrap_or(0).to_string());
    for v in versions {
        feed(v);
    }
    feed(check_request.unwrap_or("\u{1}none"));
    format!("{h:016x}")
}

/// Whether resourceVersion `copy` is at least `written` (equal, or a larger number: the API server's versions
/// are etcd revisions). Anything else, including a version that is not a number, counts as older, so the
/// caller reads the object afresh rather than deciding on a copy from before its own write.
pub fn not_older(copy: Option<&str>, written: &str) -> bool {
    let Some(copy) = copy else { return false };
    copy == written || matches!((copy.parse::<u64>(), written.parse::<u64>()), (Ok(c), Ok(w)) if c > w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{LastCheck, TestEmailStatus};

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }
    const T0: &str = "2026-12-01T10:00:00Z";

    fn checked(at: &str, inputs: &str) -> SmtpSettingsStatus {
        SmtpSettingsStatus {
            last_check: Some(LastCheck { time: at.into(), inputs: Some(inputs.into()), ..Default::default() }),
            ..Default::default()
        }
    }
    fn with_test(mut s: SmtpSettingsStatus, request: &str, result: TestEmailResult) -> SmtpSettingsStatus {
        s.test_email = Some(TestEmailStatus { request: request.into(), result, time: None, message: String::new() });
        s
    }
    fn granted() -> Result<(), Deferral> {
        Ok(())
    }
    fn refused() -> Result<(), Deferral> {
        Err(Deferral { retry_after: Duration::from_millis(5500), which: Limit::Namespace })
    }

    #[test]
    fn decision_table() {
        let empty = SmtpSettingsStatus::default();
        let fresh = checked(T0, "in1");
        let mut stopped = fresh.clone();
        stopped.conditions = conditions::merge(
            &[],
            &[conditions::Desired::new(READY, conditions::Status::Unknown, CHECK_DEFERRED, "waits")],
            None,
            ts(T0),
        );
        let min = Duration::from_secs(60);
        let hour = Some(Duration::from_secs(3600));
        let check = |t: Option<&str>| Decision::Check { test_request: t.map(str::to_string) };
        let deferred = |at: &str, limit| Decision::Deferred { until: ts(at), limit };
        let idle = |at: Option<&str>| Decision::Idle { until: at.map(ts) };
        let (ns, res) = (Limit::Namespace, Limit::Resource);
        // (case, status, inputs, interval, test request, now, limiter, decision)
        #[allow(clippy::type_complexity)]
        #[rustfmt::skip]
        let cases: Vec<(&str, &SmtpSettingsStatus, &str, Option<Duration>, Option<&str>, &str, fn() -> Result<(), Deferral>, Decision)> = vec![
            ("first check", &empty, "in1", hour, None, T0, granted, check(None)),
            ("first check, rate-limited", &empty, "in1", hour, None, T0, refused, deferred("2026-12-01T10:00:06Z", ns)),
            ("unchanged inputs", &fresh, "in1", hour, None, "2026-12-01T10:10:00Z", granted, idle(Some("2026-12-01T11:00:00Z"))),
            ("restart with status present: nothing owed", &fresh, "in1", None, None, "2026-12-02T10:00:00Z", granted, idle(None)),
            ("restart after an unfinished check: Ready still says CheckDeferred", &stopped, "in1", hour, None, "2026-12-01T10:05:00Z", granted, check(None)),
            ("periodic due", &fresh, "in1", hour, None, "2026-12-01T11:00:00Z", granted, check(None)),
            ("periodic due, rate-limited", &fresh, "in1", hour, None, "2026-12-01T11:00:00Z", refused, deferred("2026-12-01T11:00:06Z", ns)),
            ("annotation re-check (inputs changed)", &fresh, "in2", hour, None, "2026-12-01T10:05:00Z", granted, check(None)),
            ("re-check within the minimum interval", &fresh, "in2", hour, None, "2026-12-01T10:00:30Z", granted, deferred("2026-12-01T10:01:00Z", res)),
            ("test email requested", &fresh, "in1", hour, Some("v1"), "2026-12-01T10:05:00Z", granted, check(Some("v1"))),
            ("test email requested, deferred", &fresh, "in1", hour, Some("v1"), "2026-12-01T10:00:10Z", granted, deferred("2026-12-01T10:01:00Z", res)),
        ];
        for (name, status, inputs, interval, test_request, now, acquire, want) in cases {
            let f = Facts { status, inputs, interval, min_interval: min, test_request, retry_at: None };
            assert_eq!(decide(&f, ts(now), acquire), want, "{name}");
        }
    }

    #[test]
    fn the_limiter_is_asked_only_when_a_check_is_owed_and_the_interval_allows() {
        let fresh = checked(T0, "in1");
        let f = Facts {
            status: &fresh,
            inputs: "in1",
            interval: None,
            min_interval: Duration::from_secs(60),
            test_request: None,
            retry_at: None,
        };
        decide(&f, ts("2026-12-01T12:00:00Z"), || panic!("asked while idle"));
        let f = Facts { inputs: "in2", ..f };
        decide(&f, ts("2026-12-01T10:00:01Z"), || panic!("asked within the minimum interval"));
        // a periodic interval below the minimum is raised to it
        let f = Facts { inputs: "in1", interval: Some(Duration::from_secs(10)), ..f };
        assert_eq!(f.period(), Some(Duration::from_secs(60)));
    }

    #[test]
    fn transient_failures_back_off_permanent_ones_wait() {
        use FailureClass::{Permanent, Transient};
        let min = Duration::from_secs(60);
        let hour = Some(Duration::from_secs(3600));
        let day = Some(Duration::from_secs(86_400));
        let at = |s: &str, failures| Some(Retry { failures, at: ts(s) });
        // (case, class, transient failures before, period, retry)
        #[allow(clippy::type_complexity)]
        #[rustfmt::skip]
        let cases: Vec<(&str, Option<FailureClass>, u32, Option<Duration>, Option<Retry>)> = vec![
            ("success: no retry", None, 3, hour, None),
            ("permanent: the interval or a change", Some(Permanent), 0, hour, None),
            ("permanent after transient ones: still none", Some(Permanent), 4, hour, None),
            ("first transient: after the minimum interval", Some(Transient), 0, hour, at("2026-12-01T10:01:00Z", 1)),
            ("second: doubled", Some(Transient), 1, hour, at("2026-12-01T10:02:00Z", 2)),
            ("fifth: 16 minutes", Some(Transient), 4, hour, at("2026-12-01T10:16:00Z", 5)),
            ("capped by the period", Some(Transient), 6, hour, at("2026-12-01T11:00:00Z", 7)),
            ("capped at MAX_BACKOFF", Some(Transient), 9, day, at("2026-12-01T11:00:00Z", 10)),
            ("no periodic check: capped at MAX_BACKOFF", Some(Transient), 30, None, at("2026-12-01T11:00:00Z", 31)),
        ];
        for (name, class, previous, period, want) in cases {
            assert_eq!(next_retry(class, previous, min, period, ts(T0)), want, "{name}");
        }
        // a period below the minimum interval never makes the retry come sooner than the minimum interval
        let r = next_retry(Some(Transient), 0, min, Some(Duration::from_secs(5)), ts(T0)).unwrap();
        assert_eq!(r.at, ts("2026-12-01T10:01:00Z"));
    }

    #[test]
    fn a_due_retry_is_a_check_and_an_idle_resource_wakes_up_for_it() {
        let fresh = checked(T0, "in1");
        let f = Facts {
            status: &fresh,
            inputs: "in1",
            interval: Some(Duration::from_secs(3600)),
            min_interval: Duration::from_secs(60),
            test_request: None,
            retry_at: Some(ts("2026-12-01T10:02:00Z")),
        };
        assert_eq!(
            decide(&f, ts("2026-12-01T10:01:00Z"), granted),
            Decision::Idle { until: Some(ts("2026-12-01T10:02:00Z")) }
        );
        assert_eq!(decide(&f, ts("2026-12-01T10:02:00Z"), granted), Decision::Check { test_request: None });
        // bounded by the rate limits like any other check
        let d = decide(&f, ts("2026-12-01T10:02:00Z"), refused);
        assert_eq!(d, Decision::Deferred { until: ts("2026-12-01T10:02:06Z"), limit: Limit::Namespace });
    }

    #[test]
    fn test_email_requests_new_answered_deferred_and_interrupted() {
        let s = checked(T0, "in1");
        let cases = [
            (None, s.clone(), TestEmail::None),
            (Some("v1"), s.clone(), TestEmail::Owed("v1".into())),
            (Some("v2"), with_test(s.clone(), "v1", TestEmailResult::Sent), TestEmail::Owed("v2".into())),
            (Some("v1"), with_test(s.clone(), "v1", TestEmailResult::Sent), TestEmail::None),
            (Some("v1"), with_test(s.clone(), "v1", TestEmailResult::Failed), TestEmail::None),
            (Some("v1"), with_test(s.clone(), "v1", TestEmailResult::Unknown), TestEmail::None),
            (Some("v1"), with_test(s.clone(), "v1", TestEmailResult::Deferred), TestEmail::Owed("v1".into())),
            (Some("v1"), with_test(s.clone(), "v1", TestEmailResult::Sending), TestEmail::Interrupted("v1".into())),
            (Some("v2"), with_test(s.clone(), "v1", TestEmailResult::Sending), TestEmail::Owed("v2".into())),
        ];
        for (annotation, status, want) in cases {
            assert_eq!(test_email(annotation, &status), want, "{annotation:?} with {:?}", status.test_email);
        }
    }

    #[test]
    fn digest_is_stable_and_sensitive() {
        let a = inputs_digest(Some(1), &["Secret/x@1".into()], None);
        assert_eq!(a, inputs_digest(Some(1), &["Secret/x@1".into()], None));
        assert_ne!(a, inputs_digest(Some(2), &["Secret/x@1".into()], None));
        assert_ne!(a, inputs_digest(Some(1), &["Secret/x@2".into()], None));
        assert_ne!(a, inputs_digest(Some(1), &["Secret/x@1".into()], Some("now")));
    }

    #[test]
    fn a_store_copy_is_used_only_when_it_is_not_older_than_our_write() {
        for (copy, written, used) in [
            (Some("120"), "120", true),  // the copy is our write
            (Some("121"), "120", true),  // a later change
            (Some("119"), "120", false), // the store still shows the object from before our write
            (Some("abc"), "120", false), // not a number: read afresh
            (Some("abc"), "abc", true),
            (None, "120", false),
        ] {
            assert_eq!(not_older(copy, written), used, "{copy:?} vs {written}");
        }
    }
}
