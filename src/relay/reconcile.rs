//! The relay controller: for each SmtpRelay, server-side apply of the objects [`super::objects::build`]
//! returns (owner references on every one, so deleting the SmtpRelay lets the garbage collector remove them),
//! the credentials Secret created once (never rotated unless deleted), and the status: `Valid` (the
//! `settingsRef` names usable settings: [`settings::resolve`]), `Ready` when the upstream settings are Ready and
//! the relay pods are available, `endpoint`, `credentialsSecret`. A relay that uses a ClusterSmtpSettings also
//! gets its [`objects::ClusterAccess`], which no owner reference can cover: a finalizer removes it.

pub mod settings;
pub mod triggers;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::{info, warn};

use super::api::{SettingsKind, SettingsRef, SmtpRelay, SmtpRelayStatus, credentials_secret_name};
use super::objects::{self, RelayPodSettings};
use crate::conditions::{self, Desired, Status};
use crate::validate;
use settings::Resolved;

/// The finalizer of an SmtpRelay that has [`objects::ClusterAccess`] objects.
pub const FINALIZER: &str = "smtp-operator.io/relay-cluster-access";

/// Field manager of everything the relay controller writes.
pub const MANAGER: &str = "smtp-operator-relay";

/// The pod settings from `run`'s flags; the image comes from `SMTP_OPERATOR_IMAGE` (set by the chart).
pub fn pod_settings(args: &crate::cli::RunArgs) -> RelayPodSettings {
    RelayPodSettings {
        image: std::env::var("SMTP_OPERATOR_IMAGE")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| format!("smtp-operator:{}", env!("CARGO_PKG_VERSION"))),
        policy: args.policy.clone(),
        network_policy: std::env::var("SMTP_OPERATOR_RELAY_NETWORK_POLICY").is_ok_and(|v| v == "true"),
        cluster_resource_namespace: crate::controller::run::cluster_settings_enabled(args)
            .then(|| crate::controller::run::cluster_resource_namespace(args)),
    }
}

async fn apply<K>(client: &Client, ns: &str, obj: &K) -> kube::Result<K>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope> + Serialize + DeserializeOwned + Clone + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    api.patch(&obj.name_any(), &PatchParams::apply(MANAGER).force(), &Patch::Apply(obj)).await
}

/// A random password (32 characters, URL-safe base64 of 24 bytes from the OS generator).
fn random_password() -> anyhow::Result<String> {
    let mut bytes = [0u8; 24];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| anyhow::anyhow!("no randomness from the OS"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Creates the credentials Secret when it does not exist; an existing one is never changed.
async fn ensure_credentials(
    client: &Client,
    relay: &SmtpRelay,
    ns: &str,
    owner: &ObjectMeta,
) -> anyhow::Result<String> {
    let name = credentials_secret_name(&relay.name_any());
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    if api.get_opt(&name).await?.is_some() {
        return Ok(name);
    }
    let host = format!("{}.{ns}.svc", objects::object_name(&relay.name_any()));
    let data = [
        ("username", relay.name_any()),
        ("password", random_password()?),
        ("host", host),
        ("port", relay.spec.listen.port.to_string()),
    ];
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            owner_references: owner.owner_references.clone(),
            labels: owner.labels.clone(),
            ..Default::default()
        },
        data: Some(data.into_iter().map(|(k, v)| (k.to_owned(), ByteString(v.into_bytes()))).collect()),
        type_: Some("Opaque".into()),
        ..Default::default()
    };
    match api.create(&PostParams { field_manager: Some(MANAGER.into()), ..Default::default() }, &secret).await {
        Ok(_) => info!(namespace = ns, secret = %name, "relay credentials generated"),
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    Ok(name)
}

/// Applies every object of `relay` and returns the status it should have. Re-applying unchanged objects
/// writes nothing (server-side apply of the same content is a no-op).
pub async fn apply_relay(
    client: &Client,
    relay: &SmtpRelay,
    pod: &RelayPodSettings,
) -> anyhow::Result<SmtpRelayStatus> {
    let ns = relay.namespace().ok_or_else(|| anyhow::anyhow!("SmtpRelay without namespace"))?;
    let cluster_ns = pod.cluster_resource_namespace.as_deref();
    let resolved = settings::resolve(client, &ns, &relay.spec.settings_ref, cluster_ns).await?;
    let refs = match &resolved {
        Resolved::Found { spec, .. } => validate::references(spec),
        Resolved::Refused { .. } => Vec::new(),
    };
    sync_cluster_access(client, relay, &resolved, &refs, cluster_ns).await?;
    let o = objects::build(relay, &refs, pod);
    apply(client, &ns, &o.service_account).await?;
    apply(client, &ns, &o.role).await?;
    apply(client, &ns, &o.role_binding).await?;
    let credentials = ensure_credentials(client, relay, &ns, &o.service.metadata).await?;
    let deployment = apply(client, &ns, &o.deployment).await?;
    apply(client, &ns, &o.service).await?;
    let name = objects::object_name(&relay.name_any());
    match &o.pdb {
        Some(pdb) => drop(apply(client, &ns, pdb).await?),
        None => delete_if_present::<PodDisruptionBudget>(client, &ns, &name).await?,
    }
    match &o.network_policy {
        Some(np) => drop(apply(client, &ns, np).await?),
        None => delete_if_present::<NetworkPolicy>(client, &ns, &name).await?,
    }
    let state = match &resolved {
        Resolved::Found { ready, .. } => SettingsState::Found { ready: *ready },
        Resolved::Refused { reason, message } => SettingsState::Refused { reason, message },
    };
    let available = deployment.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0);
    let desired = relay_conditions(&relay.spec.settings_ref, &state, available);
    let existing = relay.status.clone().unwrap_or_default();
    Ok(SmtpRelayStatus {
        observed_generation: relay.metadata.generation,
        conditions: conditions::merge(&existing.conditions, &desired, relay.metadata.generation, Timestamp::now()),
        endpoint: Some(format!("{name}.{ns}.svc:{}", relay.spec.listen.port)),
        credentials_secret: Some(credentials),
    })
}

/// A relay using an allowed ClusterSmtpSettings gets its cluster access (finalizer first, so it is never left
/// behind); any other relay that still carries the finalizer loses that access (e.g. the namespace is no
/// longer allowed, or `settingsRef` changed).
async fn sync_cluster_access(
    client: &Client,
    relay: &SmtpRelay,
    resolved: &Resolved,
    refs: &[validate::Reference],
    cluster_ns: Option<&str>,
) -> anyhow::Result<()> {
    match resolved {
        Resolved::Found { cluster: true, references_namespace, .. } => {
            add_finalizer(client, relay).await?;
            let a = objects::cluster_access(relay, refs, references_namespace);
            let api = |ns: &str| {
                (Api::<Role>::namespaced(client.clone(), ns), Api::<RoleBinding>::namespaced(client.clone(), ns))
            };
            let params = PatchParams::apply(MANAGER).force();
            let name = a.cluster_role.name_any();
            Api::<ClusterRole>::all(client.clone()).patch(&name, &params, &Patch::Apply(&a.cluster_role)).await?;
            Api::<ClusterRoleBinding>::all(client.clone())
                .patch(&name, &params, &Patch::Apply(&a.cluster_role_binding))
                .await?;
            let (roles, bindings) = api(references_namespace);
            roles.patch(&name, &params, &Patch::Apply(&a.role)).await?;
            bindings.patch(&name, &params, &Patch::Apply(&a.role_binding)).await?;
            Ok(())
        }
        _ if has_finalizer(relay) => release_cluster_access(client, relay, cluster_ns).await,
        _ => Ok(()),
    }
}

fn has_finalizer(relay: &SmtpRelay) -> bool {
    relay.metadata.finalizers.iter().flatten().any(|f| f == FINALIZER)
}

async fn add_finalizer(client: &Client, relay: &SmtpRelay) -> anyhow::Result<()> {
    if has_finalizer(relay) {
        return Ok(());
    }
    let mut finalizers = relay.metadata.finalizers.clone().unwrap_or_default();
    finalizers.push(FINALIZER.into());
    set_finalizers(client, relay, finalizers).await
}

/// Sets `metadata.finalizers`, guarded by the resourceVersion read (a concurrent change makes it fail and retry).
async fn set_finalizers(client: &Client, relay: &SmtpRelay, finalizers: Vec<String>) -> anyhow::Result<()> {
    let api: Api<SmtpRelay> = Api::namespaced(client.clone(), &relay.namespace().unwrap_or_default());
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": relay.metadata.resource_version}});
    api.patch(&relay.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

/// Deletes a relay's [`objects::ClusterAccess`] (those present) and removes the finalizer. Also what a deleted
/// SmtpRelay with the finalizer goes through.
pub async fn release_cluster_access(
    client: &Client,
    relay: &SmtpRelay,
    cluster_ns: Option<&str>,
) -> anyhow::Result<()> {
    let name = objects::cluster_access_name(&relay.namespace().unwrap_or_default(), &relay.name_any());
    let gone = |r: kube::Result<_>| match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    };
    let dp = DeleteParams::default();
    gone(Api::<ClusterRoleBinding>::all(client.clone()).delete(&name, &dp).await.map(drop))?;
    gone(Api::<ClusterRole>::all(client.clone()).delete(&name, &dp).await.map(drop))?;
    if let Some(ns) = cluster_ns {
        gone(Api::<RoleBinding>::namespaced(client.clone(), ns).delete(&name, &dp).await.map(drop))?;
        gone(Api::<Role>::namespaced(client.clone(), ns).delete(&name, &dp).await.map(drop))?;
    }
    let rest: Vec<String> = relay.metadata.finalizers.iter().flatten().filter(|f| *f != FINALIZER).cloned().collect();
    set_finalizers(client, relay, rest).await
}

async fn delete_if_present<K>(client: &Client, ns: &str, name: &str) -> anyhow::Result<()>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope> + DeserializeOwned + Clone + std::fmt::Debug,
    K::DynamicType: Default,
{
    match Api::<K>::namespaced(client.clone(), ns).delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// What the relay controller knows of the referenced settings.
#[derive(Clone, Copy, Debug)]
pub enum SettingsState<'a> {
    /// Usable settings, Ready or not.
    Found { ready: bool },
    /// Not usable: `SettingsNotFound` or `NamespaceNotAllowed`, with the message.
    Refused { reason: &'a str, message: &'a str },
}

/// The `Valid` and `Ready` conditions (pure): Valid when the reference resolves to usable settings; Ready when
/// those settings are Ready and at least one relay pod is available.
pub fn relay_conditions(r: &SettingsRef, settings: &SettingsState, available: i32) -> Vec<Desired> {
    let kind = match r.kind {
        SettingsKind::SmtpSettings => "SmtpSettings",
        SettingsKind::ClusterSmtpSettings => "ClusterSmtpSettings",
    };
    let name = &r.name;
    let valid = |status, reason: &str, message: String| Desired::new(conditions::VALID, status, reason, message);
    let ready = |status, reason: &str, message: String| Desired::new(conditions::READY, status, reason, message);
    match (settings, available) {
        (SettingsState::Refused { reason, message }, _) => {
            vec![valid(Status::False, reason, message.to_string()), ready(Status::False, reason, message.to_string())]
        }
        (SettingsState::Found { ready: settings_ready }, available) => {
            let usable = valid(Status::True, "Valid", format!("settingsRef names {kind} {name:?}"));
            let r = match (settings_ready, available) {
                (false, _) => ready(
                    Status::False,
                    "SettingsNotReady",
                    format!("{kind} {name:?} is not Ready; see `kubectl describe {kind} {name}`"),
                ),
                (true, 0) => ready(Status::False, "PodsNotAvailable", "no relay pod is available yet".to_owned()),
                (true, _) => ready(Status::True, "Available", format!("relaying to {kind} {name:?}")),
            };
            vec![usable, r]
        }
    }
}

/// Writes the status when it differs.
pub async fn write_status(client: &Client, relay: &SmtpRelay, status: &SmtpRelayStatus) -> anyhow::Result<()> {
    if relay.status.as_ref() == Some(status) {
        return Ok(());
    }
    let api: Api<SmtpRelay> = Api::namespaced(client.clone(), &relay.namespace().unwrap_or_default());
    let patch = json!({"apiVersion": "smtp-operator.io/v1alpha1", "kind": "SmtpRelay", "status": status});
    api.patch_status(&relay.name_any(), &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch)).await?;
    Ok(())
}

struct Ctx {
    client: Client,
    pod: RelayPodSettings,
}

async fn reconcile(relay: Arc<SmtpRelay>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
    if relay.metadata.deletion_timestamp.is_some() {
        if has_finalizer(&relay)
            && let Err(e) =
                release_cluster_access(&ctx.client, &relay, ctx.pod.cluster_resource_namespace.as_deref()).await
        {
            warn!(relay = %relay.name_any(), error = %format!("{e:#}"), "removing the relay's cluster access failed");
            return Ok(Action::requeue(Duration::from_secs(10)));
        }
        return Ok(Action::await_change());
    }
    match apply_relay(&ctx.client, &relay, &ctx.pod).await {
        Ok(status) => {
            if let Err(e) = write_status(&ctx.client, &relay, &status).await {
                warn!(relay = %relay.name_any(), error = %e, "writing the relay status failed");
            }
            Ok(Action::requeue(Duration::from_secs(60)))
        }
        Err(e) => {
            warn!(relay = %relay.name_any(), error = %format!("{e:#}"), "applying the relay's objects failed");
            Ok(Action::requeue(Duration::from_secs(30)))
        }
    }
}

/// Runs the relay controller until `shutdown` turns true.
pub async fn run(
    client: Client,
    pod: RelayPodSettings,
    watch_namespace: Option<String>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (relays, deployments): (Api<SmtpRelay>, Api<Deployment>) = match &watch_namespace {
        Some(ns) => (Api::namespaced(client.clone(), ns), Api::namespaced(client.clone(), ns)),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let cluster = pod.cluster_resource_namespace.is_some();
    let controller = Controller::new(relays, watcher::Config::default());
    let mut controller =
        controller.owns(deployments, watcher::Config::default().labels("app.kubernetes.io/name=smtp-relay"));
    if cluster {
        let (by_settings, by_namespace) = (controller.store(), controller.store());
        controller = controller
            .watches_stream(triggers::changes::<crate::api::ClusterSmtpSettings>(&client), move |c| {
                triggers::using_cluster_settings(&by_settings.state(), &c.name_any())
            })
            .watches_stream(triggers::changes::<k8s_openapi::api::core::v1::Namespace>(&client), move |n| {
                triggers::in_namespace_using_cluster_settings(&by_namespace.state(), &n.name_any())
            });
    }
    let ctx = Arc::new(Ctx { client, pod });
    controller
        .trigger_backoff(crate::controller::run::WatchBackoff::default())
        .graceful_shutdown_on(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .run(reconcile, |_, _: &kube::Error, _| Action::requeue(Duration::from_secs(30)), ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_need_usable_settings_ready_and_an_available_pod() {
        let r = |kind| SettingsRef { kind, name: "office".into() };
        let refused = SettingsState::Refused { reason: "NamespaceNotAllowed", message: "not this namespace" };
        let missing = SettingsState::Refused { reason: "SettingsNotFound", message: "no such settings" };
        let found = |ready| SettingsState::Found { ready };
        use SettingsKind::*;
        #[rustfmt::skip]
        let cases = [
            (ClusterSmtpSettings, refused, 1, ("False", "NamespaceNotAllowed"), ("False", "NamespaceNotAllowed")),
            (SmtpSettings, missing, 1, ("False", "SettingsNotFound"), ("False", "SettingsNotFound")),
            (SmtpSettings, found(false), 2, ("True", "Valid"), ("False", "SettingsNotReady")),
            (ClusterSmtpSettings, found(true), 0, ("True", "Valid"), ("False", "PodsNotAvailable")),
            (ClusterSmtpSettings, found(true), 1, ("True", "Valid"), ("True", "Available")),
        ];
        for (kind, state, available, valid, ready) in cases {
            let d = relay_conditions(&r(kind), &state, available);
            let got =
                |t: &str| d.iter().find(|c| c.type_ == t).map(|c| (c.status.as_str(), c.reason.as_str())).unwrap();
            assert_eq!((got("Valid"), got("Ready")), (valid, ready), "{kind:?} {state:?} {available}");
        }
        let d = relay_conditions(&r(ClusterSmtpSettings), &refused, 1);
        assert_eq!(d[0].message, "not this namespace");
        let d = relay_conditions(&r(ClusterSmtpSettings), &found(false), 1);
        assert!(d[1].message.contains("ClusterSmtpSettings \"office\""), "{}", d[1].message);
    }

    #[test]
    fn generated_passwords_are_long_and_differ() {
        let (a, b) = (random_password().unwrap(), random_password().unwrap());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
