//! The relay controller: for each SmtpRelay, server-side apply of the objects [`super::objects::build`]
//! returns (owner references on every one, so deleting the SmtpRelay lets the garbage collector remove them),
//! the credentials Secret created once (never rotated unless deleted), and the status: `Ready` when the
//! upstream SmtpSettings is Ready and the relay pods are available, `endpoint`, `credentialsSecret`.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::{info, warn};

use super::api::{SmtpRelay, SmtpRelayStatus, credentials_secret_name};
use super::objects::{self, RelayPodSettings};
use crate::api::SmtpSettings;
use crate::conditions::{self, Desired, Status};
use crate::validate;

/// Field manager of everything the relay controller writes.
pub const MANAGER: &str = "smtp-operator-relay";

/// The pod settings from `run`'s flags; the image comes from `SMTP_OPERATOR_IMAGE` (set by the chart).
pub fn pod_settings(args: &crate::cli::RunArgs) -> RelayPodSettings {
    RelayPodSettings {
        image: std::env::var("SMTP_OPERATOR_IMAGE")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| format!("smtp-operator:{}", env!("CARGO_PKG_VERSION"))),
        allowed_ports: args.allowed_ports.clone(),
        allowed_token_ports: args.allowed_token_ports.clone(),
        denied_cidrs: args.denied_cidrs.clone(),
        require_secret_binding: args.require_secret_binding,
        network_policy: std::env::var("SMTP_OPERATOR_RELAY_NETWORK_POLICY").is_ok_and(|v| v == "true"),
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
    let settings = Api::<SmtpSettings>::namespaced(client.clone(), &ns).get_opt(&relay.spec.settings_ref.name).await?;
    let refs = settings.as_ref().map(|s| validate::references(&s.spec)).unwrap_or_default();
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
    let settings_ready = settings.as_ref().map(|s| {
        s.status
            .as_ref()
            .and_then(|st| conditions::find(&st.conditions, conditions::READY))
            .is_some_and(|c| c.status == "True")
    });
    let available = deployment.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0);
    let desired = ready_condition(&relay.spec.settings_ref.name, settings_ready, available);
    let existing = relay.status.clone().unwrap_or_default();
    Ok(SmtpRelayStatus {
        observed_generation: relay.metadata.generation,
        conditions: conditions::merge(&existing.conditions, &[desired], relay.metadata.generation, Timestamp::now()),
        endpoint: Some(format!("{name}.{ns}.svc:{}", relay.spec.listen.port)),
        credentials_secret: Some(credentials),
    })
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

/// The Ready condition (pure): the upstream settings Ready and at least one relay pod available.
pub fn ready_condition(settings: &str, settings_ready: Option<bool>, available: i32) -> Desired {
    let (status, reason, message) = match (settings_ready, available) {
        (None, _) => {
            (Status::False, "SettingsNotFound", format!("SmtpSettings {settings:?} does not exist in this namespace"))
        }
        (Some(false), _) => (
            Status::False,
            "SettingsNotReady",
            format!("SmtpSettings {settings:?} is not Ready; see `kubectl describe smtp {settings}`"),
        ),
        (Some(true), 0) => (Status::False, "PodsNotAvailable", "no relay pod is available yet".to_owned()),
        (Some(true), _) => (Status::True, "Available", format!("relaying to SmtpSettings {settings:?}")),
    };
    Desired::new(conditions::READY, status, reason, message)
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
    let ctx = Arc::new(Ctx { client, pod });
    Controller::new(relays, watcher::Config::default())
        .owns(deployments, watcher::Config::default().labels("app.kubernetes.io/name=smtp-relay"))
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
    fn ready_needs_settings_ready_and_an_available_pod() {
        for (settings, available, status, reason) in [
            (None, 1, Status::False, "SettingsNotFound"),
            (Some(false), 2, Status::False, "SettingsNotReady"),
            (Some(true), 0, Status::False, "PodsNotAvailable"),
            (Some(true), 1, Status::True, "Available"),
        ] {
            let d = ready_condition("office", settings, available);
            assert_eq!((d.status, d.reason.as_str()), (status, reason), "{settings:?} {available}");
        }
    }

    #[test]
    fn generated_passwords_are_long_and_differ() {
        let (a, b) = (random_password().unwrap(), random_password().unwrap());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
