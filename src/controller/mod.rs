//! The reconciler of both settings kinds ([`kind::SettingsResource`]: SmtpSettings and ClusterSmtpSettings, one
//! pipeline generic over the kind), one step after the other (docs/api.md describes what each step shows):
//! [`dereference`] reads the object and what it references → `validate` builds the check plan (pure) →
//! [`decide`] says whether a check is owed (pure) → the engine checks → [`crate::status::next`] gives the new
//! status, written in one place ([`write_status`]) → [`events`] says what to publish. Start-up, watches and
//! leader election are in [`run`].

pub mod decide;
pub mod dereference;
pub mod events;
pub mod kind;
pub mod refcache;
pub mod run;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::{Client, ResourceExt};
use serde_json::json;
use tracing::{Instrument, info, info_span, warn};

use crate::api::{CHECK_REQUESTED_AT, SmtpSettingsStatus, TEST_EMAIL_REQUESTED_AT};
use crate::conditions;
use crate::engine::token::TokenCache;
use crate::engine::{self, TestMessage};
use crate::metrics::objects::ObjectKey;
use crate::metrics::{ErrorLabels, LimitLabels, Metrics, ResultLabels};
use crate::ratelimit::{CheckLimiter, Limits};
use crate::status::{self, Checked, Outcome};
use crate::validate::{self, Plan, SecurityPolicy};
use decide::{Decision, Facts, TestEmail};
use kind::SettingsResource;
pub use run::{run, shutdown_signal};

/// How long a check may run before the status says `CheckPending` (a fast check writes its result only).
pub const PENDING_AFTER: Duration = Duration::from_secs(1);

/// Field manager of the status writes.
pub const MANAGER: &str = "smtp-operator";

/// Errors of one reconcile; each carries the label used in metrics.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {kind} {name:?}: {source}")]
    Dereference { kind: &'static str, name: String, source: kube::Error },
    #[error("writing status: {0}")]
    StatusWrite(#[source] kube::Error),
    #[error("object has no namespace")]
    NoNamespace,
}

impl Error {
    /// Short label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Error::Dereference { .. } => "dereference",
            Error::StatusWrite(_) => "status_write",
            Error::NoNamespace => "no_namespace",
        }
    }
}

/// Operator-wide settings derived from the `run` flags.
#[derive(Clone, Debug)]
pub struct Settings {
    pub options: SecurityPolicy,
    pub limits: Limits,
    pub cluster_name: String,
    /// This pod's name (`POD_NAME`), the event reporter's instance.
    pub pod_name: Option<String>,
    /// Where the references of ClusterSmtpSettings resolve (`--cluster-resource-namespace`).
    pub cluster_resource_namespace: String,
    /// `--certificate-warning-window`, and as written (for messages).
    pub warning_window: Duration,
    pub warning_window_text: String,
    /// `--concurrency`: reconciles at the same time, per kind.
    pub concurrency: u16,
}

/// Shared state of all reconciles.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    /// Per-namespace and global check rates (the per-resource interval is kept in the status).
    pub limiter: CheckLimiter,
    /// OAuth2 access tokens shared by all resources (single flight per app and Secret version).
    pub tokens: TokenCache,
    /// Values of referenced Secrets and ConfigMaps, shared by the objects that reference them.
    pub refs: refcache::RefCache,
    /// The resourceVersion each object got from this operator's last status write to it (`kind/ns/name`).
    written: Mutex<HashMap<String, String>>,
    /// Consecutive reconcile errors per object (`kind/namespace/name`), for per-object backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// Objects (`kind/namespace/name`) whose last check failed transiently: when to retry
    /// ([`decide::next_retry`]). In memory: after a restart the first retry comes at the interval, or at once
    /// when the check was unfinished.
    retries: Mutex<HashMap<String, decide::Retry>>,
}

impl Context {
    pub fn new(client: Client, settings: Settings, metrics: Arc<Metrics>) -> Self {
        let reporter = Reporter { controller: events::CONTROLLER.into(), instance: settings.pod_name.clone() };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            limiter: CheckLimiter::new(settings.limits),
            client,
            settings,
            metrics,
            tokens: TokenCache::new(),
            refs: refcache::RefCache::default(),
            written: Mutex::default(),
            failures: Mutex::default(),
            retries: Mutex::default(),
        }
    }
}

fn failure_key<K: SettingsResource>(obj: &K) -> String {
    format!("{}/{}", K::KIND, obj.display_name())
}

pub(crate) async fn reconcile<K: SettingsResource>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = obj.reference_namespace(&ctx.settings.cluster_resource_namespace).ok_or(Error::NoNamespace)?;
    let span = info_span!("reconcile", kind = K::KIND, object = %obj.display_name());
    let res = async {
        let Some(obj) = current(&ctx, obj.clone()).await? else {
            return Ok(Action::await_change());
        };
        ctx.metrics.objects.observe_status(&object_key(&obj), obj.settings_status());
        let refs = validate::references(obj.settings_spec());
        let referenced = dereference::referenced(&ctx.client, &ctx.refs, &ns, &refs).await?;
        let (current, now, generation) =
            (obj.settings_status().cloned().unwrap_or_default(), now(), obj.meta().generation);
        let test_request = match decide::test_email(annotation(&obj, TEST_EMAIL_REQUESTED_AT), &current) {
            TestEmail::Interrupted(request) => {
                settle(&ctx, &obj, &current, &current, &Outcome::Interrupted { request: &request }, None, now).await?;
                return Ok(Action::requeue(Duration::from_secs(1)));
            }
            TestEmail::Owed(request) => Some(request),
            TestEmail::None => None,
        };
        let plan = match validate::validate(obj.settings_spec(), &ns, &referenced, &ctx.settings.options) {
            Ok(plan) => plan,
            Err(invalid) => {
                let outcome = Outcome::Invalid { invalid: &invalid, test_request: test_request.as_deref() };
                settle(&ctx, &obj, &current, &current, &outcome, None, now).await?;
                // a fix comes as a spec change or a Secret/ConfigMap event, both of which trigger a reconcile
                return Ok(Action::await_change());
            }
        };
        let check_request = annotation(&obj, CHECK_REQUESTED_AT);
        let inputs = decide::inputs_digest(generation, &referenced.versions(&refs), check_request);
        let facts = Facts {
            status: &current,
            inputs: &inputs,
            interval: plan.interval,
            min_interval: ctx.settings.limits.min_interval,
            test_request: test_request.as_deref(),
            retry_at: ctx.retries.lock().expect("retries lock").get(&failure_key(&obj)).map(|r| r.at),
        };
        match decide::decide(&facts, now, || ctx.limiter.try_acquire(&ns)) {
            Decision::Idle { until } => {
                observe_ready(&ctx, &obj, &current);
                Ok(requeue_at(until, now))
            }
            Decision::Deferred { until, limit } => {
                let outcome = Outcome::Deferred { until, limit, test_request: test_request.as_deref() };
                settle(&ctx, &obj, &current, &current, &outcome, None, now).await?;
                ctx.metrics.deferred.get_or_create(&LimitLabels { limit: limit.label().into() }).inc();
                Ok(requeue_at(Some(until), now))
            }
            // the decision carries the same request as `facts`
            Decision::Check { .. } => check(&ctx, &obj, &plan, &facts, now).await,
        }
    }
    .instrument(span)
    .await;
    if res.is_ok() {
        ctx.failures.lock().expect("failures lock").remove(&failure_key(&*obj));
    }
    res
}

/// The object to decide on: the reflector store's copy, unless it is older than this operator's last status
/// write to the object (the store can lag behind it: deciding on the status from before a check would run the
/// check again); then a fresh read. `None`: it is gone.
async fn current<K: SettingsResource>(ctx: &Context, obj: Arc<K>) -> Result<Option<K>, Error> {
    let key = failure_key(&*obj);
    let written = ctx.written.lock().expect("written lock").get(&key).cloned();
    if written.is_none_or(|w| decide::not_older(obj.meta().resource_version.as_deref(), &w)) {
        return Ok(Some(Arc::unwrap_or_clone(obj)));
    }
    let fresh = dereference::fresh::<K>(&ctx.client, obj.namespace().as_deref(), &obj.name_any()).await?;
    if fresh.is_none() {
        ctx.written.lock().expect("written lock").remove(&key);
    }
    Ok(fresh)
}

/// The per-object metrics key of an object.
pub fn object_key<K: SettingsResource>(obj: &K) -> ObjectKey {
    ObjectKey::new(K::KIND, obj.namespace().as_deref().unwrap_or_default(), &obj.name_any())
}

/// Runs the check and settles its outcome. Before a test email can leave, `testEmail.result: Sending` is
/// recorded (so it is never sent twice); `CheckPending` is written only when the check takes longer than
/// [`PENDING_AFTER`], so a fast check writes its result once.
async fn check<K: SettingsResource>(
    ctx: &Context,
    obj: &K,
    plan: &Plan,
    facts: &Facts<'_>,
    now: Timestamp,
) -> Result<Action, Error> {
    let (current, test_request, period) = (facts.status, facts.test_request, facts.period());
    let generation = obj.meta().generation;
    let mut shown = current.clone();
    if let Some(request) = test_request {
        let sending = status::next(&shown, &Outcome::Pending { sending: Some(request) }, generation, now);
        write_status(ctx, obj, &shown, &sending).await?;
        shown = sending;
    }
    let run = run_check(obj, ctx, plan, test_request);
    tokio::pin!(run);
    let (report, class) = tokio::select! {
        report = &mut run => report,
        _ = tokio::time::sleep(PENDING_AFTER) => {
            let pending = status::next(&shown, &Outcome::Pending { sending: test_request }, generation, now);
            match write_status(ctx, obj, &shown, &pending).await {
                Ok(()) => shown = pending,
                Err(e) => warn!(error = %e, "could not show CheckPending; the check goes on"),
            }
            run.await
        }
    };
    ctx.metrics.observe_check(&report, class);
    let retry = schedule_retry(ctx, obj, class, period, now);
    let insecure = plan.request.tls.insecure_skip_verify;
    let warning_facts = crate::warnings::Facts {
        spec: obj.settings_spec(),
        window: ctx.settings.warning_window,
        window_text: &ctx.settings.warning_window_text,
        now: now.as_second(),
    };
    let findings = crate::warnings::findings(&report, &warning_facts);
    let checked = Checked {
        report: &report,
        credentials: &plan.request.credentials,
        oauth: plan.oauth.is_some(),
        insecure,
        inputs: facts.inputs.to_string(),
        period,
        test_request,
        findings: &findings,
    };
    let ran = events::Ran { report: &report, insecure, findings: &findings };
    let next = settle(ctx, obj, current, &shown, &Outcome::Checked(checked), Some(&ran), now).await?;
    if let Some(t) = next.test_email.as_ref().filter(|_| test_request.is_some()) {
        ctx.metrics.test_emails.get_or_create(&ResultLabels { result: format!("{:?}", t.result) }).inc();
    }
    info!(
        result = if report.succeeded() { "Succeeded" } else { "Failed" },
        reason = report.outcome.as_ref().err().map(|f| f.reason.as_str()).unwrap_or("Succeeded"),
        duration_ms = report.duration.as_millis() as u64,
        "check finished"
    );
    let periodic = period.map(|p| now + p);
    Ok(requeue_at(retry.map(|r| periodic.map_or(r.at, |p| p.min(r.at))).or(periodic), now))
}

/// Records (or clears) the retry of a transient failure; returns it.
fn schedule_retry<K: SettingsResource>(
    ctx: &Context,
    obj: &K,
    class: Option<engine::FailureClass>,
    period: Option<Duration>,
    now: Timestamp,
) -> Option<decide::Retry> {
    let key = failure_key(obj);
    let mut retries = ctx.retries.lock().expect("retries lock");
    let previous = retries.get(&key).map_or(0, |r| r.failures);
    let retry = decide::next_retry(class, previous, ctx.settings.limits.min_interval, period, now);
    match retry {
        Some(r) => retries.insert(key, r),
        None => retries.remove(&key),
    };
    retry
}

/// The status and events step: `status::next` from `shown` (what the object has now), one write, then the
/// events for the step from `old` (the status this reconcile started from). Returns the new status.
async fn settle<K: SettingsResource>(
    ctx: &Context,
    obj: &K,
    old: &SmtpSettingsStatus,
    shown: &SmtpSettingsStatus,
    outcome: &Outcome<'_>,
    ran: Option<&events::Ran<'_>>,
    now: Timestamp,
) -> Result<SmtpSettingsStatus, Error> {
    let next = status::next(shown, outcome, obj.meta().generation, now);
    write_status(ctx, obj, shown, &next).await?;
    observe_ready(ctx, obj, &next);
    events::publish(ctx, obj, events::to_publish(old, &next, ran)).await;
    Ok(next)
}

/// Keeps `smtp_operator_resources` in step with the status this reconcile leaves.
fn observe_ready<K: SettingsResource>(ctx: &Context, obj: &K, status: &SmtpSettingsStatus) {
    let ready = conditions::find(&status.conditions, conditions::READY).map_or("Unknown", |c| c.status.as_str());
    let ns = obj.namespace().unwrap_or_default();
    ctx.metrics.set_ready(K::SCOPE.as_str(), &ns, &obj.name_any(), Some(ready));
}

/// Writes the status by server-side apply, only when it differs from what the object has. The only place
/// that writes status.
async fn write_status<K: SettingsResource>(
    ctx: &Context,
    obj: &K,
    current: &SmtpSettingsStatus,
    next: &SmtpSettingsStatus,
) -> Result<(), Error> {
    if current == next && obj.settings_status().is_some() {
        return Ok(());
    }
    let api: Api<K> = K::api(&ctx.client, &obj.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": next,
    });
    let written = api
        .patch_status(&obj.name_any(), &PatchParams::apply(MANAGER).force(), &Patch::Apply(patch))
        .await
        .map_err(Error::StatusWrite)?;
    if let Some(rv) = written.meta().resource_version.clone() {
        ctx.written.lock().expect("written lock").insert(failure_key(obj), rv);
    }
    ctx.metrics.objects.observe_status(&object_key(obj), Some(next));
    Ok(())
}

fn annotation<'a, K: SettingsResource>(obj: &'a K, key: &str) -> Option<&'a str> {
    obj.annotations().get(key).map(String::as_str)
}

fn requeue_at(at: Option<Timestamp>, now: Timestamp) -> Action {
    match at {
        Some(at) => {
            let secs = (at.as_second() - now.as_second()).max(1) as u64;
            Action::requeue(Duration::from_secs(secs))
        }
        None => Action::await_change(),
    }
}

pub(crate) fn error_policy<K: SettingsResource>(obj: Arc<K>, err: &Error, ctx: Arc<Context>) -> Action {
    let key = failure_key(&*obj);
    let n = {
        let mut f = ctx.failures.lock().expect("failures lock");
        let n = f.entry(key).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    ctx.metrics.reconcile_errors.get_or_create(&ErrorLabels { error: err.label().into() }).inc();
    let backoff = Duration::from_secs(5u64.saturating_mul(1 << n.min(6))).min(Duration::from_secs(300));
    warn!(kind = K::KIND, object = %obj.display_name(), error = %err, error_kind = err.label(),
        retry_in_s = backoff.as_secs(), "reconcile failed");
    Action::requeue(backoff)
}

/// Seconds-precision now (status times are RFC 3339 without sub-seconds).
fn now() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second()).expect("now is in range")
}

/// Runs the check for a plan (plus a test message when one was requested).
async fn run_check<K: SettingsResource>(
    obj: &K,
    ctx: &Context,
    plan: &Plan,
    test_request: Option<&str>,
) -> (engine::Report, Option<engine::FailureClass>) {
    let message = match (test_request, &obj.settings_spec().test_email) {
        (Some(value), Some(t)) => Some(test_message(obj, ctx, value, t.to.iter().map(|r| r.0.clone()).collect())),
        _ => None,
    };
    let report = crate::check::run_classified(plan, &ctx.tokens, message).await;
    ctx.metrics.sync_token_counters(ctx.tokens.token_successes(), ctx.tokens.token_failures(), ctx.tokens.cache_hits());
    report
}

fn test_message<K: SettingsResource>(obj: &K, ctx: &Context, request: &str, to: Vec<String>) -> TestMessage {
    let (kind, object, spec) = (K::KIND, obj.display_name(), obj.settings_spec());
    TestMessage {
        from: spec.from.clone(),
        to,
        subject: format!("smtp-operator test email for {object}"),
        body: format!(
            "This is a test email from smtp-operator.\n\nResource: {kind} {object}\nCluster: {}\n\
             Server: {}:{}\nRequested: {} (annotation {TEST_EMAIL_REQUESTED_AT})\nSent at: {}\n\n\
             If you received it, the outgoing-mail settings work.\n",
            ctx.settings.cluster_name,
            spec.server,
            spec.port,
            request,
            now()
        ),
    }
}
