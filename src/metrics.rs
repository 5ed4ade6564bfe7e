//! Prometheus metrics (prefix `smtp_operator_`). Counter names are registered without `_total`:
//! prometheus-client appends it (and panics in debug builds when a counter name already ends in `_total`).

use std::collections::HashMap;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub mod objects;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckLabels {
    pub result: String,
    pub reason: String,
    /// `transient` or `permanent` for a failure ([`crate::vocabulary::FailureClass`]), `none` for a success.
    pub class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    pub step: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    pub limit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReadyLabels {
    pub namespace: String,
    pub ready: String,
    /// `Namespaced` (SmtpSettings) or `Cluster` (ClusterSmtpSettings, `namespace=""`).
    pub scope: String,
}

/// All metrics of the operator.
pub struct Metrics {
    registry: Registry,
    pub checks: Family<CheckLabels, Counter>,
    pub step_duration: Family<StepLabels, Histogram>,
    pub check_duration: Histogram,
    pub deferred: Family<LimitLabels, Counter>,
    pub test_emails: Family<ResultLabels, Counter>,
    pub token_requests: Family<ResultLabels, Counter>,
    pub token_cache_hits: Counter,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub resources: Family<ReadyLabels, Gauge>,
    pub leader: Gauge,
    /// Tasks alive in the tokio runtime, read at each scrape (a leak shows as steady growth; `scripts/soak`).
    pub tokio_tasks: Gauge,
    /// Per-object series (`smtp_operator_ready`, `smtp_operator_last_check_timestamp_seconds`).
    pub objects: objects::ObjectMetrics,
    /// Ready status by (scope, namespace, name).
    ready_by_object: Mutex<HashMap<(String, String, String), String>>,
    /// Token-cache totals already added to the counters (successes, failures, hits).
    token_seen: Mutex<(u64, u64, u64)>,
}

fn buckets() -> impl Iterator<Item = f64> {
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0].into_iter()
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("smtp_operator");
        let checks = Family::<CheckLabels, Counter>::default();
        registry.register("checks", "Checks run, by result and reason", checks.clone());
        let step_duration = Family::<StepLabels, Histogram>::new_with_constructor(|| Histogram::new(buckets()));
        registry.register("check_step_duration_seconds", "Duration of each check step", step_duration.clone());
        let check_duration = Histogram::new(buckets());
        registry.register("check_duration_seconds", "Duration of whole checks", check_duration.clone());
        let deferred = Family::<LimitLabels, Counter>::default();
        registry.register("checks_deferred", "Checks deferred by a rate limit, by limit", deferred.clone());
        let test_emails = Family::<ResultLabels, Counter>::default();
        registry.register("test_emails", "Test emails handled, by result", test_emails.clone());
        let token_requests = Family::<ResultLabels, Counter>::default();
        registry.register("token_requests", "OAuth2 token requests sent, by result", token_requests.clone());
        let token_cache_hits = Counter::default();
        registry.register("token_cache_hits", "OAuth2 tokens served from the cache", token_cache_hits.clone());
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        registry.register("reconcile_errors", "Reconcile errors, by kind", reconcile_errors.clone());
        let resources = Family::<ReadyLabels, Gauge>::default();
        registry.register("resources", "Settings objects by scope, namespace and Ready status", resources.clone());
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this instance holds the leader lease (or runs without election)",
            leader.clone(),
        );
        let tokio_tasks = Gauge::default();
        registry.register(
            "tokio_alive_tasks",
            "Tasks alive in the tokio runtime, read at each scrape",
            tokio_tasks.clone(),
        );
        let objects = objects::ObjectMetrics::default();
        objects.register(&mut registry);
        Self {
            registry,
            checks,
            step_duration,
            check_duration,
            deferred,
            test_emails,
            token_requests,
            token_cache_hits,
            reconcile_errors,
            resources,
            leader,
            tokio_tasks,
            objects,
            ready_by_object: Mutex::default(),
            token_seen: Mutex::default(),
        }
    }
}

impl Metrics {
    /// Records a finished check.
    pub fn observe_check(&self, report: &crate::engine::Report, class: Option<crate::vocabulary::FailureClass>) {
        let (result, reason) = match &report.outcome {
            Ok(()) => ("Succeeded", "Succeeded"),
            Err(f) => ("Failed", f.reason.as_str()),
        };
        let class = class.map_or("none", |c| c.as_str()).into();
        self.checks.get_or_create(&CheckLabels { result: result.into(), reason: reason.into(), class }).inc();
        self.check_duration.observe(report.duration.as_secs_f64());
        for (step, d) in &report.step_durations {
            self.step_duration.get_or_create(&StepLabels { step: step.as_str().into() }).observe(d.as_secs_f64());
        }
    }

    /// Brings the token counters up to the token cache's running totals (exact under concurrency: each total
    /// only grows and is counted on completion, so a request still in flight is in neither).
    pub fn sync_token_counters(&self, successes: u64, failures: u64, hits: u64) {
        let mut seen = self.token_seen.lock().expect("metrics lock");
        self.token_requests
            .get_or_create(&ResultLabels { result: "Succeeded".into() })
            .inc_by(successes.saturating_sub(seen.0));
        self.token_requests
            .get_or_create(&ResultLabels { result: "Failed".into() })
            .inc_by(failures.saturating_sub(seen.1));
        self.token_cache_hits.inc_by(hits.saturating_sub(seen.2));
        *seen = (successes.max(seen.0), failures.max(seen.1), hits.max(seen.2));
    }

    /// Sets the Ready status of one object (`None` when it is gone) and refreshes the per-scope,
    /// per-namespace, per-status gauge. `scope` is `Namespaced` or `Cluster` (then `namespace` is empty).
    pub fn set_ready(&self, scope: &str, namespace: &str, name: &str, ready: Option<&str>) {
        let mut map = self.ready_by_object.lock().expect("metrics lock");
        let key = (scope.to_string(), namespace.to_string(), name.to_string());
        match ready {
            Some(r) => {
                map.insert(key, r.to_string());
            }
            None => {
                map.remove(&key);
            }
        }
        for status in ["True", "False", "Unknown"] {
            let n = map.iter().filter(|((s, ns, _), v)| s == scope && ns == namespace && v.as_str() == status).count();
            let labels =
                ReadyLabels { namespace: namespace.to_string(), ready: status.to_lowercase(), scope: scope.into() };
            self.resources.get_or_create(&labels).set(n as i64);
        }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            self.tokio_tasks.set(i64::try_from(runtime.metrics().num_alive_tasks()).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("encoding to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_the_prefixed_names() {
        let m = Metrics::default();
        m.checks
            .get_or_create(&CheckLabels {
                result: "Failed".into(),
                reason: "ConnectionRefused".into(),
                class: "transient".into(),
            })
            .inc();
        m.set_ready("Namespaced", "ns", "a", Some("True"));
        m.set_ready("Namespaced", "ns", "b", Some("False"));
        m.set_ready("Namespaced", "ns", "b", None);
        m.set_ready("Cluster", "", "a", Some("False"));
        let text = m.encode();
        assert!(
            text.contains(
                r#"smtp_operator_checks_total{result="Failed",reason="ConnectionRefused",class="transient"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"smtp_operator_resources{namespace="ns",ready="true",scope="Namespaced"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"smtp_operator_resources{namespace="ns",ready="false",scope="Namespaced"} 0"#),
            "{text}"
        );
        assert!(text.contains(r#"smtp_operator_resources{namespace="",ready="false",scope="Cluster"} 1"#), "{text}");
    }

    #[tokio::test]
    async fn the_tokio_task_count_is_read_at_each_scrape() {
        let m = Metrics::default();
        let count = |text: &str| -> i64 {
            let line = text.lines().find(|l| l.starts_with("smtp_operator_tokio_alive_tasks ")).expect("the gauge");
            line.rsplit(' ').next().unwrap().parse().unwrap()
        };
        let before = count(&m.encode());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = stopped.await;
        });
        assert_eq!(count(&m.encode()), before + 1, "a spawned task is counted");
        let _ = stop.send(());
        task.await.unwrap();
        assert_eq!(count(&m.encode()), before, "and no longer once it ended");
    }
}
