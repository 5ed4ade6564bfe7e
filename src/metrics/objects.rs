//! Per-object metrics (kube-state-metrics style; README "Metrics"): for each object the operator manages,
//! `smtp_operator_ready{namespace,name,kind,reason}` = 1 for the current `Ready` reason (exactly one series per
//! object: a new reason replaces the old series) and `smtp_operator_last_check_timestamp_seconds{namespace,name,
//! kind}` once a check has run. Both go when the object goes. `run --per-object-metrics=false` turns them off
//! (then nothing is recorded and the families stay empty); the aggregate `smtp_operator_resources` stays.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The `endpoint` labels of `smtp_operator_certificate_expiry_timestamp_seconds`.
pub const ENDPOINT_SMTP: &str = "smtp";
pub const ENDPOINT_TOKEN: &str = "token_endpoint";

/// The `kind` label of namespaced SmtpSettings.
pub const KIND_SMTP_SETTINGS: &str = "SmtpSettings";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectReadyLabels {
    pub namespace: String,
    pub name: String,
    pub kind: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExpiryLabels {
    pub namespace: String,
    pub name: String,
    /// `smtp` (the SMTP server's leaf certificate) or `token_endpoint` (the OAuth2 token endpoint's).
    pub endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectLabels {
    pub namespace: String,
    pub name: String,
    pub kind: String,
}

/// One object: kind, namespace (empty for a cluster-scoped kind) and name.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct ObjectKey {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(kind: &str, namespace: &str, name: &str) -> Self {
        Self { kind: kind.into(), namespace: namespace.into(), name: name.into() }
    }

    fn labels(&self) -> ObjectLabels {
        ObjectLabels { namespace: self.namespace.clone(), name: self.name.clone(), kind: self.kind.clone() }
    }

    fn expiry_labels(&self, endpoint: &str) -> ExpiryLabels {
        ExpiryLabels { namespace: self.namespace.clone(), name: self.name.clone(), endpoint: endpoint.into() }
    }

    fn ready_labels(&self, reason: &str) -> ObjectReadyLabels {
        ObjectReadyLabels {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            kind: self.kind.clone(),
            reason: reason.into(),
        }
    }
}

/// The per-object families and what each object currently shows.
pub struct ObjectMetrics {
    enabled: AtomicBool,
    ready: Family<ObjectReadyLabels, Gauge>,
    last_check: Family<ObjectLabels, Gauge<f64, AtomicU64>>,
    degraded: Family<ObjectLabels, Gauge>,
    cert_expiry: Family<ExpiryLabels, Gauge<f64, AtomicU64>>,
    /// The reason each object's `ready` series carries now, to remove it when the reason changes.
    reasons: Mutex<HashMap<ObjectKey, String>>,
}

impl Default for ObjectMetrics {
    fn default() -> Self {
        Self {
            enabled: AtomicBool::new(true),
            ready: Family::default(),
            last_check: Family::default(),
            degraded: Family::default(),
            cert_expiry: Family::default(),
            reasons: Mutex::default(),
        }
    }
}

impl ObjectMetrics {
    /// Registers both families (names under the registry's `smtp_operator` prefix).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "ready",
            "1 for each object's current Ready reason (one series per object)",
            self.ready.clone(),
        );
        registry.register(
            "last_check_timestamp_seconds",
            "Time of each object's last check (status.lastCheck.time)",
            self.last_check.clone(),
        );
        registry.register(
            "degraded",
            "1 while an object's Degraded condition is True (an early warning; Ready unaffected), else 0",
            self.degraded.clone(),
        );
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "notAfter of the certificate the server presented at the last check (status.lastCheck.certificate)",
            self.cert_expiry.clone(),
        );
    }

    /// Turns per-object series on or off; off also drops every series recorded so far.
    pub fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::Release);
        if !enabled {
            let mut reasons = self.reasons.lock().expect("metrics lock");
            reasons.clear();
            self.ready.clear();
            self.last_check.clear();
            self.degraded.clear();
            self.cert_expiry.clear();
        }
    }

    /// Records an object's current Ready reason and, when a check has run, its time (Unix seconds).
    pub fn set(&self, object: &ObjectKey, ready_reason: &str, last_check: Option<f64>) {
        if !self.enabled.load(Ordering::Acquire) {
            return;
        }
        let mut reasons = self.reasons.lock().expect("metrics lock");
        if let Some(old) = reasons.insert(object.clone(), ready_reason.to_string())
            && old != ready_reason
        {
            self.ready.remove(&object.ready_labels(&old));
        }
        self.ready.get_or_create(&object.ready_labels(ready_reason)).set(1);
        match last_check {
            Some(ts) => {
                self.last_check.get_or_create(&object.labels()).set(ts);
            }
            None => {
                self.last_check.remove(&object.labels());
            }
        }
    }

    /// Records an object's early warnings: whether it is Degraded (`None` before a check said) and the
    /// notAfter (Unix seconds) of the certificates per endpoint (`smtp`, `token_endpoint`).
    pub fn set_warnings(&self, object: &ObjectKey, degraded: Option<bool>, not_after: [(&str, Option<f64>); 2]) {
        if !self.enabled.load(Ordering::Acquire) {
            return;
        }
        match degraded {
            Some(d) => {
                self.degraded.get_or_create(&object.labels()).set(i64::from(d));
            }
            None => {
                self.degraded.remove(&object.labels());
            }
        }
        for (endpoint, at) in not_after {
            match at {
                Some(t) => {
                    self.cert_expiry.get_or_create(&object.expiry_labels(endpoint)).set(t);
                }
                None => {
                    self.cert_expiry.remove(&object.expiry_labels(endpoint));
                }
            }
        }
    }

    /// Removes every series of an object (it was deleted).
    pub fn remove(&self, object: &ObjectKey) {
        let mut reasons = self.reasons.lock().expect("metrics lock");
        if let Some(old) = reasons.remove(object) {
            self.ready.remove(&object.ready_labels(&old));
        }
        self.last_check.remove(&object.labels());
        self.degraded.remove(&object.labels());
        self.cert_expiry.remove(&object.expiry_labels(ENDPOINT_SMTP));
        self.cert_expiry.remove(&object.expiry_labels(ENDPOINT_TOKEN));
    }

    /// Records an object from a status: the Ready condition's reason (`CheckPending` before there is one) and
    /// `status.lastCheck.time`.
    pub fn observe_status(&self, object: &ObjectKey, status: Option<&crate::api::SmtpSettingsStatus>) {
        let reason = status
            .and_then(|s| crate::conditions::find(&s.conditions, crate::conditions::READY))
            .map(|c| c.reason.as_str())
            .unwrap_or("CheckPending");
        let last_check = status.and_then(|s| s.last_check.as_ref()).and_then(|l| unix_seconds(&l.time));
        self.set(object, reason, last_check);
        let degraded = status
            .and_then(|s| crate::conditions::find(&s.conditions, crate::conditions::DEGRADED))
            .filter(|c| c.status != "Unknown")
            .map(|c| c.status == "True");
        let last_check = status.and_then(|s| s.last_check.as_ref());
        let not_after = |c: Option<&crate::api::CertificateStatus>| c.and_then(|c| unix_seconds(&c.not_after));
        let smtp = not_after(last_check.and_then(|l| l.certificate.as_ref()));
        let token = not_after(last_check.and_then(|l| l.token_endpoint_certificate.as_ref()));
        self.set_warnings(object, degraded, [(ENDPOINT_SMTP, smtp), (ENDPOINT_TOKEN, token)]);
    }
}

/// An RFC 3339 time as Unix seconds (`None` when it does not parse).
fn unix_seconds(rfc3339: &str) -> Option<f64> {
    let ts: k8s_openapi::jiff::Timestamp = rfc3339.parse().ok()?;
    Some(ts.as_millisecond() as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(m: &ObjectMetrics) -> String {
        let mut registry = Registry::with_prefix("smtp_operator");
        m.register(&mut registry);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    }

    fn series(text: &str, metric: &str) -> Vec<String> {
        let prefix = format!("{metric}{{");
        let mut found: Vec<String> = text.lines().filter(|l| l.starts_with(&prefix)).map(str::to_string).collect();
        found.sort();
        found
    }

    #[test]
    fn one_ready_series_per_object_following_the_reason() {
        let m = ObjectMetrics::default();
        let a = ObjectKey::new(KIND_SMTP_SETTINGS, "mail", "alerts");
        let b = ObjectKey::new(KIND_SMTP_SETTINGS, "mail", "other");
        m.set(&a, "CheckPending", None);
        m.set(&b, "CheckSucceeded", Some(1700000000.5));
        m.set(&a, "AuthenticationFailed", Some(1700000100.0));
        let text = encoded(&m);
        assert_eq!(
            series(&text, "smtp_operator_ready"),
            [
                r#"smtp_operator_ready{namespace="mail",name="alerts",kind="SmtpSettings",reason="AuthenticationFailed"} 1"#,
                r#"smtp_operator_ready{namespace="mail",name="other",kind="SmtpSettings",reason="CheckSucceeded"} 1"#,
            ],
            "{text}"
        );
        assert!(!text.contains("CheckPending"), "the old reason's series is gone: {text}");
        assert!(
            text.contains(
                r#"smtp_operator_last_check_timestamp_seconds{namespace="mail",name="alerts",kind="SmtpSettings"} 1700000100.0"#
            ),
            "{text}"
        );
    }

    #[test]
    fn remove_drops_every_series_of_the_object() {
        let m = ObjectMetrics::default();
        let a = ObjectKey::new(KIND_SMTP_SETTINGS, "mail", "alerts");
        let b = ObjectKey::new(KIND_SMTP_SETTINGS, "mail", "kept");
        m.set(&a, "ConnectionRefused", Some(10.0));
        m.set(&b, "CheckSucceeded", Some(20.0));
        m.remove(&a);
        m.remove(&a); // twice is harmless
        m.set_warnings(&a, Some(true), [(ENDPOINT_SMTP, Some(30.0)), (ENDPOINT_TOKEN, Some(40.0))]);
        m.remove(&a);
        let text = encoded(&m);
        assert!(!text.contains(r#"name="alerts""#), "{text}");
        assert_eq!(series(&text, "smtp_operator_ready").len(), 1, "{text}");
        assert_eq!(series(&text, "smtp_operator_last_check_timestamp_seconds").len(), 1, "{text}");
    }

    #[test]
    fn disabled_records_nothing_and_drops_what_was_there() {
        let m = ObjectMetrics::default();
        let a = ObjectKey::new(KIND_SMTP_SETTINGS, "mail", "alerts");
        m.set(&a, "ConnectionRefused", Some(10.0));
        m.set_enabled(false);
        m.set(&a, "CheckSucceeded", Some(20.0));
        let text = encoded(&m);
        assert!(series(&text, "smtp_operator_ready").is_empty(), "{text}");
        assert!(series(&text, "smtp_operator_last_check_timestamp_seconds").is_empty(), "{text}");
    }

    #[test]
    fn a_check_time_clears_when_the_status_loses_it() {
        let m = ObjectMetrics::default();
        let a = ObjectKey::new(KIND_SMTP_SETTINGS, "", "cluster-wide");
        m.set(&a, "CheckSucceeded", Some(10.0));
        m.set(&a, "CheckPending", None);
        let text = encoded(&m);
        assert!(series(&text, "smtp_operator_last_check_timestamp_seconds").is_empty(), "{text}");
        assert!(text.contains(r#"namespace="",name="cluster-wide""#), "{text}");
    }

    #[test]
    fn warnings_follow_the_status_and_go_with_the_object() {
        let m = ObjectMetrics::default();
        let a = ObjectKey::new("ClusterSmtpSettings", "", "company");
        m.set_warnings(
            &a,
            Some(true),
            [(ENDPOINT_SMTP, Some(1_796_487_066.0)), (ENDPOINT_TOKEN, Some(1_800_000_000.0))],
        );
        let text = encoded(&m);
        assert!(
            text.contains(r#"smtp_operator_degraded{namespace="",name="company",kind="ClusterSmtpSettings"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"smtp_operator_certificate_expiry_timestamp_seconds{namespace="",name="company",endpoint="smtp"} 1796487066.0"#),
            "{text}"
        );
        assert!(text.contains(r#"endpoint="token_endpoint"} 1800000000.0"#), "{text}");
        m.set_warnings(&a, Some(false), [(ENDPOINT_SMTP, None), (ENDPOINT_TOKEN, None)]);
        let text = encoded(&m);
        assert!(
            text.contains(r#"smtp_operator_degraded{namespace="",name="company",kind="ClusterSmtpSettings"} 0"#),
            "{text}"
        );
        assert!(series(&text, "smtp_operator_certificate_expiry_timestamp_seconds").is_empty(), "{text}");
    }

    #[test]
    fn rfc3339_times_become_unix_seconds() {
        for (input, want) in [
            ("1970-01-01T00:00:10Z", Some(10.0)),
            ("2023-11-14T22:13:20.5Z", Some(1700000000.5)),
            ("2023-11-14T23:13:20+01:00", Some(1700000000.0)),
            ("yesterday", None),
            ("", None),
        ] {
            assert_eq!(unix_seconds(input), want, "{input}");
        }
    }
}
