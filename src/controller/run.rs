//! Process start-up of `smtp-operator run`: flags to settings, the metrics/health endpoint, signals, the
//! leader election hand-off, and the watches that feed the controllers. The flags are described in
//! docs/api.md.
//!
//! Objects that do not deserialize are filtered out of the untyped watch (`typed_event`) rather than with
//! kube's `DeserializeGuard`: the guard would make the controller's object type `DeserializeGuard<SmtpSettings>`,
//! so the reconcile, the reflector store that maps Secret and ConfigMap changes to objects, and the fresh read
//! would all unwrap it, while the per-object `Malformed` Warning event would still be ours to publish.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use kube::core::{ApiResource, DynamicObject, PartialObjectMeta};
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tracing::{debug, info, warn};

use super::kind::SettingsResource;
use super::{Context, Settings};
use crate::api::{CHECK_REQUESTED_AT, ClusterSmtpSettings, SmtpSettings, TEST_EMAIL_REQUESTED_AT};
use crate::cli::RunArgs;
use crate::conditions;
use crate::http::Health;
use crate::metrics::Metrics;
use crate::metrics::objects::ObjectKey;
use crate::ratelimit::{Limits, Rate};
use crate::validate::{self, RefKind};

/// Where a pod finds its own namespace.
pub const SERVICE_ACCOUNT_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// The namespace of the leader Lease: the flag, else the pod's namespace (`POD_NAMESPACE`), else the
/// ServiceAccount's namespace file, else `default` (outside a cluster). Blank values count as absent.
pub fn lease_namespace(flag: Option<&str>, pod_namespace: Option<&str>, service_account: Option<&str>) -> String {
    [flag, pod_namespace, service_account]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|s| !s.is_empty())
        .unwrap_or("default")
        .to_string()
}

/// Builds the settings from the flags; a flag that does not parse is an error naming it.
pub fn settings_from_args(args: &RunArgs) -> anyhow::Result<Settings> {
    let options = args.policy.security_policy(
        hostname_for_ehlo(args.pod_name.as_deref()),
        cluster_settings_enabled(args).then(|| cluster_resource_namespace(args)),
    )?;
    let rate = |flag: &str, v: &str| v.parse::<Rate>().map_err(|e| anyhow::anyhow!("{flag} {v:?}: {e}"));
    let limits = Limits {
        min_interval: args.min_check_interval,
        namespace_rate: rate("--namespace-check-rate", &args.namespace_check_rate)?,
        global_rate: rate("--global-check-rate", &args.global_check_rate)?,
    };
    let warning_window = crate::warnings::parse_window(&args.certificate_warning_window)
        .map_err(|e| anyhow::anyhow!("--certificate-warning-window: {e}"))?;
    Ok(Settings {
        options,
        limits,
        cluster_name: args.cluster_name.clone(),
        pod_name: args.pod_name.clone(),
        cluster_resource_namespace: cluster_resource_namespace(args),
        warning_window,
        warning_window_text: args.certificate_warning_window.trim().to_string(),
        concurrency: args.concurrency,
    })
}

/// `--cluster-resource-namespace`, else the operator's own namespace (as for the Lease: `POD_NAMESPACE`, the
/// ServiceAccount's namespace file, `default`).
pub fn cluster_resource_namespace(args: &RunArgs) -> String {
    let sa_namespace = std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE).ok();
    lease_namespace(args.cluster_resource_namespace.as_deref(), args.pod_namespace.as_deref(), sa_namespace.as_deref())
}

/// Whether this operator serves ClusterSmtpSettings: `--cluster-settings`, by default only when it watches
/// every namespace (the namespaced install has no cluster-wide RBAC).
pub fn cluster_settings_enabled(args: &RunArgs) -> bool {
    args.cluster_settings.unwrap_or(args.watch_namespace.is_none())
}

fn hostname_for_ehlo(pod_name: Option<&str>) -> String {
    pod_name
        .map(str::to_string)
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'))
        .unwrap_or_else(|| "smtp-operator.local".into())
}

/// Runs the operator until SIGTERM/SIGINT: the metrics/health endpoint, then the controllers, directly or
/// while holding the leader lease.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let client = Client::try_default().await?;
    let version = client.apiserver_version().await?;
    let settings = settings_from_args(&args)?;
    let cluster_settings = cluster_settings_enabled(&args);
    info!(server_version = %version.git_version, watch_namespace = ?args.watch_namespace,
        require_secret_binding = args.policy.require_secret_binding, leader_elect = args.leader_elect,
        cluster_settings, cluster_resource_namespace = %settings.cluster_resource_namespace, "smtp-operator starting");
    if !args.policy.require_secret_binding {
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
        let watch = Watch { namespace: args.watch_namespace.clone(), cluster_settings };
        move || run_controllers(ctx, watch, health, shutdown, relays.boxed())
    };
    if args.leader_elect {
        let sa_namespace = std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE).ok();
        let ns = lease_namespace(
            args.leader_election_namespace.as_deref(),
            args.pod_namespace.as_deref(),
            sa_namespace.as_deref(),
        );
        let identity = crate::leader::identity(args.pod_name.as_deref());
        crate::leader::run_elected(client, &ns, &identity, shutdown_rx, health, metrics, work).await?;
    } else {
        health.role_known.store(true, Ordering::Release);
        health.is_leader.store(true, Ordering::Release);
        metrics.leader.set(1);
        work().await?;
    }
    info!("smtp-operator stopped");
    Ok(())
}

/// What the settings controllers watch: SmtpSettings in one namespace or all, and whether ClusterSmtpSettings.
#[derive(Clone, Debug)]
struct Watch {
    namespace: Option<String>,
    cluster_settings: bool,
}

/// Runs every controller of the operator under the same leadership until `shutdown` turns true (each
/// finishes gracefully); the first error is returned. A new controller is one more entry in this list.
async fn run_controllers(
    ctx: Arc<Context>,
    watch: Watch,
    health: Arc<Health>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    relays: BoxFuture<'static, anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let refs = watch.namespace.clone();
    let mut controllers: Vec<BoxFuture<'static, anyhow::Result<()>>> = vec![
        settings_controller::<SmtpSettings>(ctx.clone(), watch.namespace.clone(), refs, Some(health), shutdown.clone())
            .boxed(),
        relays,
    ];
    if watch.cluster_settings {
        let refs = Some(ctx.settings.cluster_resource_namespace.clone());
        controllers.push(settings_controller::<ClusterSmtpSettings>(ctx, None, refs, None, shutdown).boxed());
    }
    futures::future::join_all(controllers).await.into_iter().collect()
}

/// Runs the controller of one settings kind until `shutdown` turns true (in-flight reconciles finish first):
/// the objects in `namespace` (or all), the Secrets and ConfigMaps in `references` (or all). `health` is
/// told when the first list is in (`/readyz`).
async fn settings_controller<K: SettingsResource>(
    ctx: Arc<Context>,
    namespace: Option<String>,
    references: Option<String>,
    health: Option<Arc<Health>>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let client = ctx.client.clone();
    // Secrets and ConfigMaps are watched as metadata only: their values are read on demand, per reference.
    // The settings are watched untyped and converted one by one, so that an object our types cannot read
    // (e.g. written under an older CRD version) is reported and skipped instead of failing the whole list.
    let (smtp_api, secret_api, cm_api) = watched_apis::<K>(&client, namespace.as_deref(), references.as_deref());

    let (reader, writer) = reflector::store();
    // Status writes change neither generation nor these annotations, so they do not trigger a reconcile.
    let metrics = ctx.metrics.clone();
    let malformed = ctx.clone();
    let main_stream = watcher(smtp_api, watcher::Config::default())
        .backoff(WatchBackoff::default())
        .filter_map(move |event| {
            let ctx = malformed.clone();
            futures::future::ready(match event {
                Ok(e) => typed_event::<K>(e, |obj, error| report_malformed::<K>(&ctx, obj, error)).map(Ok),
                Err(e) => Some(Err(e)),
            })
        })
        // a deleted object leaves the metrics at once (a deletion does not pass the trigger filter below)
        .inspect({
            let metrics = ctx.metrics.clone();
            move |event| {
                if let Ok(watcher::Event::Delete(o)) = event {
                    forget::<K>(&metrics, o.namespace().as_deref(), &o.name_any());
                }
            }
        })
        .reflect(writer)
        .touched_objects()
        .predicate_filter(trigger_hash::<K>, Default::default());
    let secrets = watcher(secret_api, watcher::Config::default()).backoff(WatchBackoff::default()).touched_objects();
    let config_maps = watcher(cm_api, watcher::Config::default()).backoff(WatchBackoff::default()).touched_objects();

    if let Some(health) = health {
        report_synced(reader.clone(), health);
    }
    let cluster_ns = ctx.settings.cluster_resource_namespace.clone();
    let (store_s, store_c, store_m) = (reader.clone(), reader.clone(), reader.clone());
    let ns_c = cluster_ns.clone();
    let (ctx_s, ctx_c) = (ctx.clone(), ctx.clone());
    Controller::for_stream(main_stream, reader)
        .with_config(ControllerConfig::default().concurrency(ctx.settings.concurrency))
        .trigger_backoff(WatchBackoff::default())
        .watches_stream(secrets, move |s| {
            // a changed (or deleted) Secret's cached value is read again by the reconciles this triggers
            ctx_s.refs.invalidate(RefKind::Secret, s.namespace().as_deref().unwrap_or_default(), &s.name_any());
            referencing(&store_s, RefKind::Secret, s.namespace(), s.name_any(), &cluster_ns)
        })
        .watches_stream(config_maps, move |c| {
            ctx_c.refs.invalidate(RefKind::ConfigMap, c.namespace().as_deref().unwrap_or_default(), &c.name_any());
            referencing(&store_c, RefKind::ConfigMap, c.namespace(), c.name_any(), &ns_c)
        })
        .graceful_shutdown_on(async move {
            let _ = shutdown.wait_for(|v| *v).await;
        })
        .run(super::reconcile::<K>, super::error_policy::<K>, ctx)
        .for_each(|res| {
            reconciled::<K>(res, &metrics, &store_m);
            futures::future::ready(())
        })
        .await;
    Ok(())
}

/// The backoff of every watch after a failed request: 0.8 s, doubling up to 5 s, back to 0.8 s after a success.
/// kube-runtime's default waits up to 30 s plus as much jitter, and after an API-server outage a resumed watch is
/// answered `410 Gone` and waits once more before it lists anew: minutes before a change is seen again. At most one
/// replica watches (the leader), so there is no herd of clients for jitter to spread.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WatchBackoff {
    next: Duration,
}

impl WatchBackoff {
    pub(crate) const FIRST: Duration = Duration::from_millis(800);
    pub(crate) const MAX: Duration = Duration::from_secs(5);
}

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff { next: Self::FIRST }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let wait = self.next;
        self.next = (wait * 2).min(Self::MAX);
        Some(wait)
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

type Reconciled<K> = Result<
    (ObjectRef<K>, kube::runtime::controller::Action),
    kube::runtime::controller::Error<super::Error, kube::runtime::watcher::Error>,
>;

/// After each reconcile: objects that are gone leave the resources-by-Ready gauge (the reconcile keeps it in
/// step for the others).
fn reconciled<K: SettingsResource>(res: Reconciled<K>, metrics: &Metrics, store: &Store<K>) {
    match res {
        Ok((obj, _)) => {
            if store.get(&obj).is_none() {
                forget::<K>(metrics, obj.namespace.as_deref(), &obj.name);
            }
            debug!(object = %obj, "reconciled");
        }
        Err(kube::runtime::controller::Error::ObjectNotFound(obj)) => {
            forget::<K>(metrics, obj.namespace.as_deref(), &obj.name);
        }
        Err(e) => debug!(error = %e, "reconcile loop"),
    }
}

/// The APIs a settings controller watches: the settings (untyped) in `namespace` or all, Secrets and
/// ConfigMaps (metadata only) in `references` or all.
fn watched_apis<K: SettingsResource>(
    client: &Client,
    namespace: Option<&str>,
    references: Option<&str>,
) -> (Api<DynamicObject>, Api<PartialObjectMeta<Secret>>, Api<PartialObjectMeta<ConfigMap>>) {
    let ar = ApiResource::erase::<K>(&());
    let objects = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    match references {
        Some(ns) => (objects, Api::namespaced(client.clone(), ns), Api::namespaced(client.clone(), ns)),
        None => (objects, Api::all(client.clone()), Api::all(client.clone())),
    }
}

/// Drops a gone settings object from the resources-by-Ready gauge and from the per-object series.
fn forget<K: SettingsResource>(metrics: &Metrics, namespace: Option<&str>, name: &str) {
    let ns = namespace.unwrap_or_default();
    metrics.set_ready(K::SCOPE.as_str(), ns, name, None);
    metrics.objects.remove(&ObjectKey::new(K::KIND, ns, name));
}

/// Marks the caches synced (`/readyz`) once the store has its first list. Re-polls: the store's readiness
/// signal wakes only its most recent waiter, which is the controller's own runner, so a single await here
/// could sleep forever.
fn report_synced<K: SettingsResource>(synced: Store<K>, health: Arc<Health>) {
    tokio::spawn(async move {
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
}

/// Converts an untyped watch event to a typed one; an object that does not deserialize is handed to
/// `malformed` and left out (a deletion of it is passed on with what can be read, so the store forgets it).
fn typed_event<K: SettingsResource>(
    event: watcher::Event<DynamicObject>,
    mut malformed: impl FnMut(&DynamicObject, &serde_json::Error),
) -> Option<watcher::Event<K>> {
    let mut convert = |mut obj: DynamicObject| {
        slim(&mut obj.metadata);
        match serde_json::to_value(&obj).and_then(serde_json::from_value::<K>) {
            Ok(typed) => Some(typed),
            Err(e) => {
                malformed(&obj, &e);
                None
            }
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

/// Drops what the operator never reads from an object it keeps in its cache: `managedFields` (a JSON tree per
/// field manager, the larger part of an object with a status) and kubectl's last-applied copy of the object.
/// Status writes are patches, so no copy of these is needed to write.
fn slim(meta: &mut kube::core::ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// kubectl's annotation holding the last applied object (a second copy of the spec).
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Logs and publishes a Warning event for a settings object that cannot be read.
fn report_malformed<K: SettingsResource>(ctx: &Arc<Context>, obj: &DynamicObject, error: &serde_json::Error) {
    let (ns, name) =
        (obj.metadata.namespace.clone().unwrap_or_default(), obj.metadata.name.clone().unwrap_or_default());
    warn!(kind = K::KIND, namespace = %ns, name = %name, error = %error, "object cannot be read; skipped until it is fixed");
    let reference = obj.object_ref(&ApiResource::erase::<K>(&()));
    let recorder = ctx.recorder.clone();
    let note =
        format!("the object does not match the {} schema of this operator ({error}); fix or re-apply it", K::KIND);
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
fn trigger_hash<K: SettingsResource>(obj: &K) -> Option<u64> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    obj.meta().generation.hash(&mut h);
    obj.annotations().get(CHECK_REQUESTED_AT).hash(&mut h);
    obj.annotations().get(TEST_EMAIL_REQUESTED_AT).hash(&mut h);
    Some(h.finish())
}

/// The settings objects whose references resolve in `namespace` and name the Secret/ConfigMap `name`.
fn referencing<K: SettingsResource>(
    store: &Store<K>,
    kind: RefKind,
    namespace: Option<String>,
    name: String,
    cluster_resource_namespace: &str,
) -> Vec<ObjectRef<K>> {
    store
        .state()
        .into_iter()
        .filter(|o| o.reference_namespace(cluster_resource_namespace) == namespace)
        .filter(|o| validate::references(o.settings_spec()).iter().any(|r| r.kind == kind && r.name == name))
        .map(|o| ObjectRef::from_obj(&*o))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_backoff_doubles_to_five_seconds_and_resets() {
        use kube::runtime::utils::Backoff;
        let mut b = WatchBackoff::default();
        let waits: Vec<u64> = b.by_ref().take(5).map(|d| d.as_millis() as u64).collect();
        assert_eq!(waits, [800, 1600, 3200, 5000, 5000]);
        b.reset();
        assert_eq!(b.next(), Some(Duration::from_millis(800)));
    }

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
        let out =
            typed_event::<SmtpSettings>(watcher::Event::InitApply(bad), |o, _| seen.push(o.metadata.name.clone()));
        assert!(out.is_none());
        assert_eq!(seen, vec![Some("bad".to_string())]);
        let mut cached = good;
        cached.metadata.managed_fields = Some(vec![Default::default()]);
        cached.metadata.annotations = Some(
            [(LAST_APPLIED.to_string(), "{}".to_string()), (CHECK_REQUESTED_AT.to_string(), "now".to_string())].into(),
        );
        match typed_event::<SmtpSettings>(watcher::Event::Apply(cached), |_, _| panic!("good object reported")) {
            Some(watcher::Event::Apply(o)) => {
                assert_eq!(o.spec.port, 587);
                assert_eq!(o.metadata.managed_fields, None, "managedFields are not cached");
                assert_eq!(o.annotations().keys().collect::<Vec<_>>(), [CHECK_REQUESTED_AT], "nor kubectl's copy");
            }
            _ => panic!("good object dropped"),
        }
        assert!(matches!(
            typed_event::<SmtpSettings>(watcher::Event::InitDone, |_, _| ()),
            Some(watcher::Event::InitDone)
        ));
    }

    #[test]
    fn lease_namespace_falls_back_flag_pod_service_account_default() {
        let cases = [
            ((Some("ops"), Some("pod-ns"), Some("sa-ns\n")), "ops"),
            ((None, Some("pod-ns"), Some("sa-ns\n")), "pod-ns"),
            ((None, None, Some("sa-ns\n")), "sa-ns"),
            ((Some(""), Some(" "), Some("sa-ns")), "sa-ns"),
            ((None, None, None), "default"),
            ((None, None, Some("")), "default"),
        ];
        for ((flag, pod, sa), want) in cases {
            assert_eq!(lease_namespace(flag, pod, sa), want, "{flag:?} {pod:?} {sa:?}");
        }
    }
}
