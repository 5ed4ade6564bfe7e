//! The relay's configuration, read from the API: its SmtpRelay, the SmtpSettings or ClusterSmtpSettings it sends
//! through (resolved by [`super::reconcile::settings`]; turned
//! into a check plan by [`crate::validate::validate`], exactly as the controller does), the client accounts
//! and the listener certificate.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};

use super::api::{ListenTlsMode, SmtpRelay, credentials_secret_name};
use super::auth::Account;
use super::reconcile::settings::{self, Resolved};
use crate::cli::RelayArgs;
use crate::engine::SecretValue;
use crate::validate::{self, Plan, RefKind, RefObject, Referenced, SecurityPolicy};

/// Everything a session needs, replaced as a whole when something changes.
pub struct RelayConfig {
    pub plan: Plan,
    pub senders: Vec<String>,
    pub max_message_bytes: usize,
    pub max_recipients: u32,
    pub messages_per_minute: u32,
    pub accounts: Vec<Account>,
    /// Set with `listen.tls.mode: StartTLS`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub hostname: String,
    pub port: u16,
}

/// The policy part of the flags (the same flags and meaning as `run`).
pub fn options(args: &RelayArgs) -> anyhow::Result<SecurityPolicy> {
    let cluster_resource_namespace = args.cluster_resource_namespace.clone().filter(|s| !s.trim().is_empty());
    args.policy.security_policy(hostname(), cluster_resource_namespace)
}

fn hostname() -> String {
    std::env::var("POD_NAME")
        .ok()
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'))
        .unwrap_or_else(|| "smtp-relay.local".into())
}

async fn secret(client: &Client, ns: &str, name: &str) -> anyhow::Result<Option<Secret>> {
    Ok(Api::<Secret>::namespaced(client.clone(), ns).get_opt(name).await?)
}

fn to_ref(data: BTreeMap<String, Vec<u8>>, meta: &kube::api::ObjectMeta) -> RefObject {
    RefObject {
        data,
        annotations: meta.annotations.clone().unwrap_or_default(),
        resource_version: meta.resource_version.clone().unwrap_or_default(),
    }
}

/// Reads what the settings reference (Secrets, ConfigMaps of the namespace).
async fn referenced(client: &Client, ns: &str, refs: &[validate::Reference]) -> anyhow::Result<Referenced> {
    let mut out = Referenced::default();
    for r in refs {
        let key = (r.kind, r.name.clone());
        if out.objects.contains_key(&key) {
            continue;
        }
        let obj = match r.kind {
            RefKind::Secret => secret(client, ns, &r.name)
                .await?
                .map(|s| to_ref(s.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect(), &s.metadata)),
            RefKind::ConfigMap => Api::<ConfigMap>::namespaced(client.clone(), ns).get_opt(&r.name).await?.map(|c| {
                let mut data: BTreeMap<String, Vec<u8>> =
                    c.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
                data.extend(c.binary_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)));
                to_ref(data, &c.metadata)
            }),
        };
        if let Some(o) = obj {
            out.objects.insert(key, o);
        }
    }
    Ok(out)
}

fn key(s: &Secret, k: &str) -> Option<Vec<u8>> {
    s.data.as_ref()?.get(k).map(|v| v.0.clone()).filter(|v| !v.is_empty())
}

/// Loads the configuration; the second value changes whenever anything read changed.
pub async fn load(
    client: &Client,
    ns: &str,
    name: &str,
    options: &SecurityPolicy,
) -> anyhow::Result<(RelayConfig, String)> {
    let relay = Api::<SmtpRelay>::namespaced(client.clone(), ns).get(name).await?;
    let spec = &relay.spec;
    let cluster_ns = options.cluster_resource_namespace.as_deref();
    let (settings, refs_ns, settings_versions) =
        match settings::resolve(client, ns, &spec.settings_ref, cluster_ns).await? {
            Resolved::Found { spec, references_namespace, versions, .. } => (spec, references_namespace, versions),
            // a namespace the ClusterSmtpSettings does not allow: nothing is read from it, nothing is sent
            Resolved::Refused { reason, message } => anyhow::bail!("{reason}: {message}"),
        };
    let settings = *settings;
    let refs = validate::references(&settings);
    let objects = referenced(client, &refs_ns, &refs).await?;
    let plan = validate::validate(&settings, &refs_ns, &objects, options).map_err(|e| {
        anyhow::anyhow!("settings {:?} are not usable: {:?}: {}", spec.settings_ref.name, e.reason, e.message)
    })?;
    let mut versions = vec![relay.metadata.resource_version.clone().unwrap_or_default()];
    versions.extend(settings_versions);
    versions.extend(objects.versions(&refs));

    let mut accounts = Vec::new();
    if let Some(s) = secret(client, ns, &credentials_secret_name(name)).await? {
        versions.push(s.metadata.resource_version.clone().unwrap_or_default());
        if let (Some(u), Some(p)) = (key(&s, "username"), key(&s, "password")) {
            accounts
                .push(Account { username: String::from_utf8_lossy(&u).into_owned(), password: SecretValue::new(p) });
        }
    }
    for c in &spec.clients {
        let r = &c.password_secret_ref;
        let s = secret(client, ns, &r.name)
            .await?
            .ok_or_else(|| anyhow::anyhow!("client Secret {:?} not found", r.name))?;
        versions.push(s.metadata.resource_version.clone().unwrap_or_default());
        let p = key(&s, &r.key).ok_or_else(|| anyhow::anyhow!("client Secret {:?} has no key {:?}", r.name, r.key))?;
        accounts.push(Account { username: c.username.clone(), password: SecretValue::new(p) });
    }
    if accounts.is_empty() {
        anyhow::bail!("no client account yet: Secret {:?} and spec.clients give none", credentials_secret_name(name));
    }
    let tls = match (spec.listen.tls.mode, &spec.listen.tls.certificate_secret_ref) {
        (ListenTlsMode::None, _) => None,
        (ListenTlsMode::StartTLS, None) => anyhow::bail!("listen.tls.mode StartTLS needs certificateSecretRef"),
        (ListenTlsMode::StartTLS, Some(r)) => {
            let s = secret(client, ns, &r.name)
                .await?
                .ok_or_else(|| anyhow::anyhow!("TLS Secret {:?} not found", r.name))?;
            versions.push(s.metadata.resource_version.clone().unwrap_or_default());
            Some(server_tls(&key(&s, "tls.crt").unwrap_or_default(), &key(&s, "tls.key").unwrap_or_default())?)
        }
    };
    let senders = if spec.senders.is_empty() {
        vec![plan.from_address.clone()]
    } else {
        spec.senders.iter().map(|s| s.0.clone()).collect()
    };
    let cfg = RelayConfig {
        senders,
        max_message_bytes: usize::try_from(spec.limits.max_message_bytes).unwrap_or(usize::MAX),
        max_recipients: u32::try_from(spec.limits.max_recipients).unwrap_or(1),
        messages_per_minute: u32::try_from(spec.limits.messages_per_minute).unwrap_or(1),
        accounts,
        tls,
        hostname: options.helo_name.clone(),
        port: u16::try_from(spec.listen.port).unwrap_or(587),
        plan,
    };
    Ok((cfg, versions.join(",")))
}

/// The listener's TLS configuration from a `kubernetes.io/tls` Secret's PEM.
pub fn server_tls(cert_pem: &[u8], key_pem: &[u8]) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut &cert_pem[..]).collect::<Result<_, _>>()?;
    if certs.is_empty() {
        anyhow::bail!("tls.crt holds no PEM certificate");
    }
    let key =
        rustls_pemfile::private_key(&mut &key_pem[..])?.ok_or_else(|| anyhow::anyhow!("tls.key holds no PEM key"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Arc::new(config))
}
