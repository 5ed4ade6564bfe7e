//! Relay metrics (prefix `smtp_relay_`): `smtp_relay_messages_total{result,class}`,
//! `smtp_relay_upstream_duration_seconds`, `smtp_relay_auth_failures_total{reason}`,
//! `smtp_relay_upstream_sessions_total{source}` (`opened` = connect + TLS + AUTH, `pooled` = an idle session reused),
//! `smtp_relay_token_requests_total{result}` (`Succeeded`, `Failed`: OAuth2 token requests the relay sent). Counters are registered without `_total` (the client adds it).

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MessageLabels {
    pub result: String,
    /// Reply class the client got: `2xx`, `4xx`, `5xx`.
    pub class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

pub struct RelayMetrics {
    sessions: Family<SourceLabels, Counter>,
    tokens: Family<ResultLabels, Counter>,
    /// The token cache's counters at the last sync (successes, failures).
    tokens_seen: Mutex<(u64, u64)>,
    messages: Family<MessageLabels, Counter>,
    upstream: Histogram,
    auth_failures: Family<ReasonLabels, Counter>,
    registry: Mutex<Registry>,
}

impl Default for RelayMetrics {
    fn default() -> Self {
        let messages = Family::<MessageLabels, Counter>::default();
        let upstream = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        let auth_failures = Family::<ReasonLabels, Counter>::default();
        let sessions = Family::<SourceLabels, Counter>::default();
        let tokens = Family::<ResultLabels, Counter>::default();
        let mut registry = Registry::with_prefix("smtp_relay");
        registry.register("messages", "Messages by result and the reply class the client got", messages.clone());
        registry.register(
            "upstream_duration_seconds",
            "Time from DATA to the upstream's final reply",
            upstream.clone(),
        );
        registry.register("auth_failures", "Failed client logins, by reason", auth_failures.clone());
        registry.register(
            "upstream_sessions",
            "Upstream sessions a transaction started on: opened (connect, TLS, AUTH) or pooled (reused)",
            sessions.clone(),
        );
        registry.register("token_requests", "OAuth2 token requests sent, by result", tokens.clone());
        Self {
            sessions,
            tokens,
            tokens_seen: Mutex::new((0, 0)),
            messages,
            upstream,
            auth_failures,
            registry: Mutex::new(registry),
        }
    }
}

impl RelayMetrics {
    pub fn message(&self, result: &str, class: u16) {
        let labels = MessageLabels { result: result.into(), class: format!("{}xx", class.clamp(2, 5)) };
        self.messages.get_or_create(&labels).inc();
    }

    pub fn upstream_duration(&self, seconds: f64) {
        self.upstream.observe(seconds);
    }

    pub fn upstream_session(&self, source: &str) {
        self.sessions.get_or_create(&SourceLabels { source: source.into() }).inc();
    }

    pub fn auth_failure(&self, reason: &str) {
        self.auth_failures.get_or_create(&ReasonLabels { reason: reason.into() }).inc();
    }

    /// Brings the token counters up to the token cache's own (which counts every request it sends).
    pub fn sync_tokens(&self, successes: u64, failures: u64) {
        let mut seen = self.tokens_seen.lock().unwrap_or_else(|e| e.into_inner());
        let inc = |result: &str, by: u64| self.tokens.get_or_create(&ResultLabels { result: result.into() }).inc_by(by);
        inc("Succeeded", successes.saturating_sub(seen.0));
        inc("Failed", failures.saturating_sub(seen.1));
        *seen = (successes.max(seen.0), failures.max(seen.1));
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}
