//! The reconciler: dereference → validate (pure) → decide whether a check is owed → check → status → events.
//! It knows nothing about SMTP wire details: it hands a plan to [`crate::engine::run`] and turns the report
//! into conditions ([`crate::status`]).

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject, PartialObjectMeta};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::api::{
    CHECK_REQUESTED_AT, SmtpSettings, SmtpSettingsStatus, TEST_EMAIL_REQUESTED_AT, TestEmailResult, TestEmailStatus,
};
use crate::cli::RunArgs;
use crate::conditions::{self, Desired, READY, Status};
use crate::engine::token::TokenCache;
use crate::engine::{self, TestMessage};
use crate::http::Health;
use crate::metrics::objects::ObjectKey;
use crate::metrics::{ErrorLabels, LimitLabels, Metrics, ResultLabels};
use crate::policy;
use crate::ratelimit::{CheckLimiter, Limits, Rate};
use crate::status::{self as st, CHECK_DEFERRED, CHECK_PENDING};
use crate::validate::{self, Invalid, Plan, RefKind, RefObject, Referenced, SecurityPolicy};

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
}

/// Shared state of all reconciles.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    /// Per-resource, per-namespace and global check rate limits (checks and test emails alike).
    pub limiter: CheckLimiter,
    /// OAuth2 access tokens shared by all resources (single flight per app and Secret version).
    pub tokens: TokenCache,
    /// Consecutive reconcile errors per object, for per-object backoff.
    failures: Mutex<HashMap<ObjectRef<SmtpSettings>, u32>>,
}

impl Context {
    pub fn new(client: Client, settings: Settings, metrics: Arc<Metrics>) -> Self {
        let reporter = Reporter { controller: "smtp-operator".into(), instance: std::env::var("POD_NAME").ok() };
        // The per-resource interval is enforced from status.lastCheck.time (so it survives restarts); the
        // limiter only adds the namespace and global rates.
        let limiter = CheckLimiter::new(Limits { min_interval: Duration::ZERO, ..settings.limits });
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            settings,
            metrics,
            limiter,
            tokens: TokenCache::new(),
            failures: Mutex::default(),
        }
    }
}

/// Builds the settings from the flags (policy parsing arrives with the security module).
pub fn settings_from_args(args: &RunArgs) -> anyhow::Result<Settings> {
    let ports = |flag: &str, v: &str| {
        policy::parse_port_list(v).map(|l| l.ports()).map_err(|e| anyhow::anyhow!("{flag} {v:?}: {e}"))
    };
    let options = SecurityPolicy {
        allowed_ports: ports("--allowed-ports", &args.allowed_ports)?,
        allowed_token_ports: ports("--allowed-token-ports", &args.allowed_token_ports)?,
        denied: policy::parse_cidr_list(&args.denied_cidrs)
            .map_err(|e| anyhow::anyhow!("--denied-cidrs {:?}: {e}", args.denied_cidrs))?,
        require_secret_binding: args.require_secret_binding,
        helo_name: hostname_for_ehlo(),
    };
    let rate = |flag: &str, v: &str| v.parse::<Rate>().map_err(|e| anyhow::anyhow!("{flag} {v:?}: {e}"));
    let limits = Limits {
        min_interval: args.min_check_interval,
        namespace_rate: rate("--namespace-check-rate", &args.namespace_check_rate)?,
        global_rate: rate("--global-check-rate", &args.global_check_rate)?,
    };
    Ok(Settings { options, limits, cluster_name: args.cluster_name.clone() })
}

fn hostname_for_ehlo() -> String {
    std::env::var("POD_NAME")
        .ok()
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'))
        .unwrap_or_else(|| "smtp-operator.local".into())
}

/// Runs the operator until SIGTERM/SIGINT: the metrics/health endpoint, then the controller, directly or
/// while holding the leader lease.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let client = Client::try_default().await?;
    let version = client.apiserver_version().await?;
    let settings = settings_from_args(&args)?;
    info!(server_version = %version.git_version, watch_namespace = ?args.watch_namespace,
        require_secret_binding = args.require_secret_binding, leader_elect = args.leader_elect, "smtp-operator starting");
    if !args.require_secret_binding {
        warn!(
            "--require-secret-binding=false: Secret values are sent without checking smtp-operator.io/allowed-servers"
        );
    }
    let metrics = Arc::new(Metrics::default());
    metrics.objects.set_enabled(args.per_object_metrics);
    let health = Arc::new(Health::default());
    let _server = crate::http::serve(&args.metrics_addr, metrics.clone(), health.clone()).await?;
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = shutdown_tx.send(true);
    });
    let ctx = Arc::new(Context::new(client.clone(), settings, metrics.clone()));
    // the SmtpRelay controller (src/relay/reconcile.rs) runs beside it, under the same leader election
    let relays = crate::relay::reconcile::run(
        client.clone(),
        crate::relay::reconcile::pod_settings(&args),
        args.watch_namespace.clone(),
        shutdown_rx.clone(),
    );
    let work = {
        let (health, shutdown) = (health.clone(), shutdown_rx.clone());
        move || async move {
            let (settings, relays) =
                tokio::join!(run_controller(ctx, args.watch_namespace.clone(), health, shutdown), relays);
            settings.and(relays)
        }
    };
    if args.leader_elect {
        let ns = args
            .leader_election_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| "default".into());
        crate::leader::run_elected(client, &ns, shutdown_rx, health, metrics, work).await?;
    } else {
        health.role_known.store(true, Ordering::Release);
        health.is_leader.store(true, Ordering::Release);
        metrics.leader.set(1);
        work().await?;
    }
    info!("smtp-operator stopped");
    Ok(())
}

/// Runs the controller until `shutdown` turns true (in-flight reconciles finish first).
async fn run_controller(
    ctx: Arc<Context>,
    watch_namespace: Option<String>,
    health: Arc<Health>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let client = ctx.client.clone();
    // Secrets and ConfigMaps are watched as metadata only: their values are read on demand, per reference.
    // SmtpSettings are watched untyped and converted one by one, so that an object our types cannot read
    // (e.g. written under an older CRD version) is reported and skipped instead of failing the whole list.
    let ar = ApiResource::erase::<SmtpSettings>(&());
    let (smtp_api, secret_api, cm_api): (
        Api<DynamicObject>,
        Api<PartialObjectMeta<Secret>>,
        Api<PartialObjectMeta<ConfigMap>>,
    ) = match &watch_namespace {
        Some(ns) => (
            Api::namespaced_with(client.clone(), ns, &ar),
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all_with(client.clone(), &ar), Api::all(client.clone()), Api::all(client.clone())),
    };

    let (reader, writer) = reflector::store();
    // Status writes change neither generation nor these annotations, so they do not trigger a reconcile.
    let metrics = ctx.metrics.clone();
    let malformed = ctx.clone();
    let main_stream = watcher(smtp_api, watcher::Config::default())
        .default_backoff()
        .filter_map(move |event| {
            let ctx = malformed.clone();
            futures::future::ready(match event {
                Ok(e) => typed_event(e, |obj, error| report_malformed(&ctx, obj, error)).map(Ok),
                Err(e) => Some(Err(e)),
            })
        })
        // a deleted object leaves the metrics at once (a deletion does not pass the trigger filter below)
        .inspect({
            let metrics = ctx.metrics.clone();
            move |event| {
                if let Ok(watcher::Event::Delete(o)) = event {
                    let (ns, name) = (o.namespace(), o.name_any());
                    metrics.set_ready(&format!("{}/{name}", ns.clone().unwrap_or_default()), None);
                    metrics.objects.remove(&ObjectKey::smtp_settings(ns.as_deref(), &name));
                }
            }
        })
        .reflect(writer)
        .touched_objects()
        .predicate_filter(trigger_hash, Default::default());
    let secrets = watcher(secret_api, watcher::Config::default()).default_backoff().touched_objects();
    let config_maps = watcher(cm_api, watcher::Config::default()).default_backoff().touched_objects();

    let synced = reader.clone();
    tokio::spawn(async move {
        // Re-poll: the store's readiness signal wakes only its most recent waiter, which is the controller's
        // own runner, so a single await here could sleep forever.
        loop {
            match tokio::time::timeout(Duration::from_millis(250), synced.wait_until_ready()).await {
                Ok(Ok(())) => {
                    health.caches_synced.store(true, Ordering::Release);
                    info!("resource cache synced");
                    return;
                }
                Ok(Err(_)) => return,
                Err(_) => continue,
            }
        }
    });
    let store_s = reader.clone();
    let store_c = reader.clone();
    let store_m = reader.clone();
    Controller::for_stream(main_stream, reader)
        .with_config(ControllerConfig::default().concurrency(16))
        .watches_stream(secrets, move |s| referencing(&store_s, RefKind::Secret, s.namespace(), s.name_any()))
        .watches_stream(config_maps, move |c| referencing(&store_c, RefKind::ConfigMap, c.namespace(), c.name_any()))
        .graceful_shutdown_on(async move {
            let _ = shutdown.wait_for(|v| *v).await;
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|res| {
            let (metrics, store) = (metrics.clone(), store_m.clone());
            async move {
                match res {
                    Ok((obj, _)) => {
                        // keep the resources-by-Ready gauge in step (gone objects drop out)
                        let key = format!("{}/{}", obj.namespace.clone().unwrap_or_default(), obj.name);
                        let ready = store.get(&obj).map(|o| {
                            o.status
                                .as_ref()
                                .and_then(|s| conditions::find(&s.conditions, READY).map(|c| c.status.clone()))
                                .unwrap_or_else(|| "Unknown".into())
                        });
                        metrics.set_ready(&key, ready.as_deref());
                        if ready.is_none() {
                            metrics.objects.remove(&ObjectKey::smtp_settings(obj.namespace.as_deref(), &obj.name));
                        }
                        debug!(object = %obj, "reconciled");
                    }
                    // a deleted object: drop it from the resources-by-Ready gauge
                    Err(kube::runtime::controller::Error::ObjectNotFound(obj)) => {
                        metrics.set_ready(&format!("{}/{}", obj.namespace.clone().unwrap_or_default(), obj.name), None);
                        metrics.objects.remove(&ObjectKey::smtp_settings(obj.namespace.as_deref(), &obj.name));
                    }
                    Err(e) => debug!(error = %e, "reconcile loop"),
                }
            }
        })
        .await;
    Ok(())
}

/// Converts an untyped watch event to a typed one; an object that does not deserialize is handed to
/// `malformed` and left out (a deletion of it is passed on with what can be read, so the store forgets it).
fn typed_event(
    event: watcher::Event<DynamicObject>,
    mut malformed: impl FnMut(&DynamicObject, &serde_json::Error),
) -> Option<watcher::Event<SmtpSettings>> {
    let mut convert =
        |obj: DynamicObject| match serde_json::to_value(&obj).and_then(serde_json::from_value::<SmtpSettings>) {
            Ok(typed) => Some(typed),
            Err(e) => {
                malformed(&obj, &e);
                None
            }
        };
    match event {
        watcher::Event::Apply(o) => convert(o).map(watcher::Event::Apply),
        watcher::Event::InitApply(o) => convert(o).map(watcher::Event::InitApply),
        watcher::Event::Delete(o) => convert(o).map(watcher::Event::Delete),
        watcher::Event::Init => Some(watcher::Event::Init),
        watcher::Event::InitDone => Some(watcher::Event::InitDone),
    }
}

/// Logs and publishes a Warning event for an SmtpSettings that cannot be read.
fn report_malformed(ctx: &Arc<Context>, obj: &DynamicObject, error: &serde_json::Error) {
    let (ns, name) =
        (obj.metadata.namespace.clone().unwrap_or_default(), obj.metadata.name.clone().unwrap_or_default());
    warn!(namespace = %ns, name = %name, error = %error, "SmtpSettings cannot be read; skipped until it is fixed");
    let reference = obj.object_ref(&ApiResource::erase::<SmtpSettings>(&()));
    let recorder = ctx.recorder.clone();
    let note =
        format!("the object does not match the SmtpSettings schema of this operator ({error}); fix or re-apply it");
    tokio::spawn(async move {
        let ev = Event {
            type_: EventType::Warning,
            reason: "Malformed".into(),
            note: Some(conditions::truncate(note, 1000)),
            action: "Read".into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&ev, &reference).await {
            warn!(error = %e, "could not publish event");
        }
    });
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received, shutting down"),
        _ = tokio::signal::ctrl_c() => info!("SIGINT received, shutting down"),
    }
}

/// What may trigger a reconcile on the resource itself: generation and the two request annotations.
fn trigger_hash(obj: &SmtpSettings) -> Option<u64> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    obj.metadata.generation.hash(&mut h);
    obj.annotations().get(CHECK_REQUESTED_AT).hash(&mut h);
    obj.annotations().get(TEST_EMAIL_REQUESTED_AT).hash(&mut h);
    Some(h.finish())
}

/// The SmtpSettings in `namespace` that reference the Secret/ConfigMap `name`.
fn referencing(
    store: &Store<SmtpSettings>,
    kind: RefKind,
    namespace: Option<String>,
    name: String,
) -> Vec<ObjectRef<SmtpSettings>> {
    store
        .state()
        .into_iter()
        .filter(|o| o.namespace() == namespace)
        .filter(|o| validate::references(&o.spec).iter().any(|r| r.kind == kind && r.name == name))
        .map(|o| ObjectRef::from_obj(&*o))
        .collect()
}

fn error_policy(obj: Arc<SmtpSettings>, err: &Error, ctx: Arc<Context>) -> Action {
    let key = ObjectRef::from_obj(&*obj);
    let n = {
        let mut f = ctx.failures.lock().expect("failures lock");
        let n = f.entry(key).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    ctx.metrics.reconcile_errors.get_or_create(&ErrorLabels { error: err.label().into() }).inc();
    let backoff = Duration::from_secs(5u64.saturating_mul(1 << n.min(6))).min(Duration::from_secs(300));
    warn!(object = %obj.name_any(), namespace = ?obj.namespace(), error = %err, kind = err.label(),
        retry_in_s = backoff.as_secs(), "reconcile failed");
    Action::requeue(backoff)
}

/// Seconds-precision now (status times are RFC 3339 without sub-seconds).
fn now() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second()).expect("now is in range")
}

async fn reconcile(obj: Arc<SmtpSettings>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = obj.namespace().ok_or(Error::NoNamespace)?;
    let span = info_span!("reconcile", namespace = %ns, name = %obj.name_any());
    let res = async {
        // The reflector store can lag behind this operator's own last status write (a trigger that arrived
        // during a check runs right after it). Deciding on that stale status would run the check again and
        // overwrite the newer status with one built from the stale one, so decide on a fresh read.
        let api: Api<SmtpSettings> = Api::namespaced(ctx.client.clone(), &ns);
        let fresh = api.get_opt(&obj.name_any()).await.map_err(|source| Error::Dereference {
            kind: "SmtpSettings",
            name: obj.name_any(),
            source,
        })?;
        match fresh {
            Some(fresh) => reconcile_inner(&fresh, &ctx, &ns).await,
            None => Ok(Action::await_change()),
        }
    }
    .instrument(span)
    .await;
    if res.is_ok() {
        ctx.failures.lock().expect("failures lock").remove(&ObjectRef::from_obj(&*obj));
    }
    res
}

async fn reconcile_inner(obj: &SmtpSettings, ctx: &Context, ns: &str) -> Result<Action, Error> {
    // `obj` is a fresh read (see `reconcile`), never the reflector's possibly stale copy
    ctx.metrics.objects.observe_smtp_settings(obj);
    let refs = validate::references(&obj.spec);
    let referenced = dereference(&ctx.client, ns, &refs).await?;
    let generation = obj.metadata.generation;
    let check_request = obj.annotations().get(CHECK_REQUESTED_AT).cloned();
    let inputs = inputs_digest(generation, &referenced.versions(&refs), check_request.as_deref());
    let current = obj.status.clone().unwrap_or_default();
    let test_request = obj
        .annotations()
        .get(TEST_EMAIL_REQUESTED_AT)
        // answered = a Sent/Failed result for this value; Deferred is still owed
        .filter(|v| {
            !current.test_email.as_ref().is_some_and(|t| &t.request == *v && t.result != TestEmailResult::Deferred)
        })
        .cloned();
    let now = now();

    let plan = match validate::validate(&obj.spec, ns, &referenced, &ctx.settings.options) {
        Ok(plan) => plan,
        Err(invalid) => return on_invalid(obj, ctx, &current, &invalid, test_request, now).await,
    };

    // Is a check owed?
    let last_time = current.last_check.as_ref().and_then(|l| l.time.parse::<Timestamp>().ok());
    let period = plan.interval.map(|i| i.max(ctx.settings.limits.min_interval));
    let due_periodic = match (last_time, period) {
        (Some(t), Some(p)) => t + p <= now,
        _ => false,
    };
    let inputs_changed = current.last_check.as_ref().and_then(|l| l.inputs.as_deref()) != Some(inputs.as_str());
    if !inputs_changed && !due_periodic && test_request.is_none() {
        // the cached result stands: no connection, no write
        let next = match (last_time, period) {
            (Some(t), Some(p)) => Some(t + p),
            _ => None,
        };
        return Ok(requeue_at(next, now));
    }

    // Per-resource minimum interval (stateless: derived from status, so it survives restarts).
    if let Some(t) = last_time {
        let earliest = t + ctx.settings.limits.min_interval;
        if earliest > now {
            return on_deferred(
                obj,
                ctx,
                &current,
                earliest,
                test_request,
                "resource",
                "the per-resource minimum interval (--min-check-interval)",
            )
            .await;
        }
    }

    // Per-namespace and global rates. A deferred check is retried
    // at the time the limiter names; it is never dropped and never spun on.
    let key = format!("{ns}/{}", obj.name_any());
    if let Err(deferral) = ctx.limiter.try_acquire(ns, &key) {
        let secs = deferral.retry_after.as_secs_f64().ceil().max(1.0) as i64;
        let at = Timestamp::from_second(now.as_second() + secs).unwrap_or(now);
        let limit = match deferral.which {
            crate::ratelimit::Limit::Resource => "resource",
            crate::ratelimit::Limit::Namespace => "namespace",
            crate::ratelimit::Limit::Global => "global",
        };
        return on_deferred(obj, ctx, &current, at, test_request, limit, &deferral.which.to_string()).await;
    }

    // A first check or a changed spec: show that a check is pending (kubectl wait, Argo CD Progressing).
    let ready = conditions::find(&current.conditions, READY);
    if ready.is_none() || current.observed_generation != generation {
        let desired =
            vec![Desired::new(READY, Status::Unknown, CHECK_PENDING, "a check of the SMTP server is running")];
        let mut pending = current.clone();
        pending.conditions = conditions::merge(&current.conditions, &desired, generation, now);
        pending.observed_generation = generation;
        write_status(ctx, obj, &current, &pending).await?;
    }

    let report = run_check(obj, ctx, &plan, test_request.as_deref()).await;
    ctx.metrics.observe_check(&report);
    let insecure = plan.request.tls.insecure_skip_verify;
    let desired = st::from_report(&report, &plan.request.credentials, plan.oauth.is_some(), insecure);
    let mut next = current.clone();
    next.conditions = conditions::merge(&current.conditions, &desired, generation, now);
    next.observed_generation = generation;
    next.last_check = Some(st::last_check(&report, now.to_string(), inputs));
    next.next_check_time = period.map(|p| (now + p).to_string());
    if let Some(request) = &test_request {
        let t = test_email_status(request, &report, now);
        ctx.metrics.test_emails.get_or_create(&ResultLabels { result: format!("{:?}", t.result) }).inc();
        next.test_email = Some(t);
    }
    write_status(ctx, obj, &current, &next).await?;
    publish_check_events(ctx, obj, &current, &report, insecure, test_request.is_some()).await;
    info!(
        result = if report.succeeded() { "Succeeded" } else { "Failed" },
        reason = report.outcome.as_ref().err().map(|f| f.reason.as_str()).unwrap_or("Succeeded"),
        duration_ms = report.duration.as_millis() as u64,
        "check finished"
    );
    Ok(requeue_at(period.map(|p| now + p), now))
}

/// Runs the check for a plan (plus a test message when one was requested).
async fn run_check(obj: &SmtpSettings, ctx: &Context, plan: &Plan, test_request: Option<&str>) -> engine::Report {
    let message = match (test_request, &obj.spec.test_email) {
        (Some(value), Some(t)) => Some(test_message(obj, ctx, value, t.to.iter().map(|r| r.0.clone()).collect())),
        _ => None,
    };
    let report = crate::check::run(plan, &ctx.tokens, message).await;
    ctx.metrics.sync_token_counters(ctx.tokens.token_successes(), ctx.tokens.token_failures(), ctx.tokens.cache_hits());
    report
}

fn test_message(obj: &SmtpSettings, ctx: &Context, request: &str, to: Vec<String>) -> TestMessage {
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    TestMessage {
        from: obj.spec.from.clone(),
        to,
        subject: format!("smtp-operator test email for {ns}/{name}"),
        body: format!(
            "This is a test email from smtp-operator.\n\nResource: SmtpSettings {ns}/{name}\nCluster: {}\n\
             Server: {}:{}\nRequested: {} (annotation {TEST_EMAIL_REQUESTED_AT})\nSent at: {}\n\n\
             If you received it, the outgoing-mail settings work.\n",
            ctx.settings.cluster_name,
            obj.spec.server,
            obj.spec.port,
            request,
            now()
        ),
    }
}

fn test_email_status(request: &str, report: &engine::Report, now: Timestamp) -> TestEmailStatus {
    match (&report.outcome, &report.test_email) {
        (Ok(()), Some(Ok(reply))) => TestEmailStatus {
            request: request.into(),
            result: TestEmailResult::Sent,
            time: Some(now.to_string()),
            message: reply.clone(),
        },
        (Ok(()), None) => TestEmailStatus {
            request: request.into(),
            result: TestEmailResult::Failed,
            time: Some(now.to_string()),
            message: "not sent: spec.testEmail.to lists no recipient".into(),
        },
        (Err(f), _) | (Ok(()), Some(Err(f))) => TestEmailStatus {
            request: request.into(),
            result: TestEmailResult::Failed,
            time: Some(now.to_string()),
            message: conditions::truncate(format!("{}: {}", f.reason, st::failure_message(f)), 1024),
        },
    }
}

async fn on_invalid(
    obj: &SmtpSettings,
    ctx: &Context,
    current: &SmtpSettingsStatus,
    invalid: &Invalid,
    test_request: Option<String>,
    now: Timestamp,
) -> Result<Action, Error> {
    let mut next = current.clone();
    next.conditions = conditions::merge(&current.conditions, &st::invalid(invalid), obj.metadata.generation, now);
    next.observed_generation = obj.metadata.generation;
    next.next_check_time = None;
    if let Some(request) = test_request {
        next.test_email = Some(TestEmailStatus {
            request,
            result: TestEmailResult::Failed,
            time: Some(now.to_string()),
            message: format!("not sent: {}: {}", invalid.reason, invalid.message),
        });
    }
    let previous_valid = conditions::find(&current.conditions, conditions::VALID);
    let changed = previous_valid.map(|c| (c.reason.as_str(), c.message.as_str()))
        != Some((invalid.reason.as_str(), invalid.message.as_str()));
    write_status(ctx, obj, current, &next).await?;
    if changed {
        publish(ctx, obj, EventType::Warning, invalid.reason.as_str(), &invalid.message, "Validate").await;
    }
    // a fix comes as a spec change or a Secret/ConfigMap event, both of which trigger a reconcile
    Ok(Action::await_change())
}

async fn on_deferred(
    obj: &SmtpSettings,
    ctx: &Context,
    current: &SmtpSettingsStatus,
    at: Timestamp,
    test_request: Option<String>,
    limit: &str,
    which: &str,
) -> Result<Action, Error> {
    let now = now();
    let message = format!("a check is owed but waits for {which}; it runs at {at}");
    let desired = vec![Desired::new(READY, Status::Unknown, CHECK_DEFERRED, message.clone())];
    let mut next = current.clone();
    next.conditions = conditions::merge(&current.conditions, &desired, obj.metadata.generation, now);
    if let Some(request) = test_request {
        next.test_email = Some(TestEmailStatus {
            request,
            result: TestEmailResult::Deferred,
            time: None,
            message: format!("waits for {which}; it will be sent at {at}"),
        });
    }
    write_status(ctx, obj, current, &next).await?;
    ctx.metrics.deferred.get_or_create(&LimitLabels { limit: limit.into() }).inc();
    debug!(%at, limit, "check deferred");
    Ok(requeue_at(Some(at), now))
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

/// A stable digest of what a check covers: generation, referenced object versions, check request.
fn inputs_digest(generation: Option<i64>, versions: &[String], check_request: Option<&str>) -> String {
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

/// Reads the referenced Secrets and ConfigMaps from the resource's own namespace.
async fn dereference(client: &Client, ns: &str, refs: &[validate::Reference]) -> Result<Referenced, Error> {
    let mut out = Referenced::default();
    let mut seen = std::collections::BTreeSet::new();
    for r in refs {
        if !seen.insert((r.kind, r.name.clone())) {
            continue;
        }
        let obj = match r.kind {
            RefKind::Secret => {
                let api: Api<Secret> = Api::namespaced(client.clone(), ns);
                api.get_opt(&r.name)
                    .await
                    .map_err(|source| Error::Dereference { kind: "Secret", name: r.name.clone(), source })?
                    .map(|s| RefObject {
                        data: s.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect(),
                        annotations: s.metadata.annotations.unwrap_or_default(),
                        resource_version: s.metadata.resource_version.unwrap_or_default(),
                    })
            }
            RefKind::ConfigMap => {
                let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
                api.get_opt(&r.name)
                    .await
                    .map_err(|source| Error::Dereference { kind: "ConfigMap", name: r.name.clone(), source })?
                    .map(|c| {
                        let mut data: BTreeMap<String, Vec<u8>> =
                            c.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
                        data.extend(c.binary_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)));
                        RefObject {
                            data,
                            annotations: c.metadata.annotations.unwrap_or_default(),
                            resource_version: c.metadata.resource_version.unwrap_or_default(),
                        }
                    })
            }
        };
        if let Some(o) = obj {
            out.objects.insert((r.kind, r.name.clone()), o);
        }
    }
    Ok(out)
}

/// Writes the status by server-side apply, only when it differs from what the object has.
async fn write_status(
    ctx: &Context,
    obj: &SmtpSettings,
    current: &SmtpSettingsStatus,
    next: &SmtpSettingsStatus,
) -> Result<(), Error> {
    if current == next && obj.status.is_some() {
        return Ok(());
    }
    let api: Api<SmtpSettings> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": SmtpSettings::api_version(&()),
        "kind": SmtpSettings::kind(&()),
        "status": next,
    });
    api.patch_status(&obj.name_any(), &PatchParams::apply(MANAGER).force(), &Patch::Apply(patch))
        .await
        .map_err(Error::StatusWrite)?;
    ctx.metrics
        .objects
        .observe_status(&ObjectKey::smtp_settings(obj.namespace().as_deref(), &obj.name_any()), Some(next));
    Ok(())
}

async fn publish_check_events(
    ctx: &Context,
    obj: &SmtpSettings,
    previous: &SmtpSettingsStatus,
    report: &engine::Report,
    insecure: bool,
    test_requested: bool,
) {
    if insecure {
        publish(ctx, obj, EventType::Warning, "InsecureSkipVerify",
            "TLS certificate verification is disabled (spec.tls.insecureSkipVerify); the server's identity was not verified", "Check").await;
    }
    match &report.outcome {
        Err(f) if f.reason.condition() != engine::reason::ConditionKind::TestEmail => {
            publish(ctx, obj, EventType::Warning, f.reason.as_str(), &st::failure_message(f), "Check").await;
        }
        _ => {
            let was_ok = previous.last_check.as_ref().map(|l| l.result) == Some(crate::api::CheckResult::Succeeded);
            if !was_ok {
                publish(ctx, obj, EventType::Normal, "CheckSucceeded", "the SMTP server check passed", "Check").await;
            }
        }
    }
    if test_requested {
        match (&report.outcome, &report.test_email) {
            (Ok(()), Some(Ok(reply))) => {
                publish(
                    ctx,
                    obj,
                    EventType::Normal,
                    "TestEmailSent",
                    &format!("test email accepted: {reply}"),
                    "TestEmail",
                )
                .await
            }
            (Err(f), _) | (Ok(()), Some(Err(f))) => {
                publish(
                    ctx,
                    obj,
                    EventType::Warning,
                    "TestEmailFailed",
                    &format!("{}: {}", f.reason, st::failure_message(f)),
                    "TestEmail",
                )
                .await
            }
            _ => {
                publish(
                    ctx,
                    obj,
                    EventType::Warning,
                    "TestEmailFailed",
                    "spec.testEmail.to lists no recipient",
                    "TestEmail",
                )
                .await
            }
        }
    }
}

async fn publish(ctx: &Context, obj: &SmtpSettings, type_: EventType, reason: &str, note: &str, action: &str) {
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(conditions::truncate(note.to_string(), 1000)),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &obj.object_ref(&())).await {
        warn!(error = %e, reason, "could not publish event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_objects_are_reported_and_skipped_not_fatal() {
        let good: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "smtp-operator.io/v1alpha1", "kind": "SmtpSettings",
            "metadata": {"name": "ok", "namespace": "ns"},
            "spec": {"server": "smtp.example.com", "port": 587, "from": "a@example.com"}
        }))
        .unwrap();
        let mut bad = good.clone();
        bad.metadata.name = Some("bad".into());
        bad.data["spec"]["port"] = serde_json::json!("587");
        let mut seen = Vec::new();
        let out = typed_event(watcher::Event::InitApply(bad), |o, _| seen.push(o.metadata.name.clone()));
        assert!(out.is_none());
        assert_eq!(seen, vec![Some("bad".to_string())]);
        match typed_event(watcher::Event::Apply(good), |_, _| panic!("good object reported")) {
            Some(watcher::Event::Apply(o)) => assert_eq!(o.spec.port, 587),
            _ => panic!("good object dropped"),
        }
        assert!(matches!(typed_event(watcher::Event::InitDone, |_, _| ()), Some(watcher::Event::InitDone)));
    }

    #[test]
    fn digest_is_stable_and_sensitive() {
        let a = inputs_digest(Some(1), &["Secret/x@1".into()], None);
        assert_eq!(a, inputs_digest(Some(1), &["Secret/x@1".into()], None));
        assert_ne!(a, inputs_digest(Some(2), &["Secret/x@1".into()], None));
        assert_ne!(a, inputs_digest(Some(1), &["Secret/x@2".into()], None));
        assert_ne!(a, inputs_digest(Some(1), &["Secret/x@1".into()], Some("now")));
    }
}
