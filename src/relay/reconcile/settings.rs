//! The settings an SmtpRelay's `settingsRef` names, read the same way by the relay controller (its status and
//! RBAC) and by the relay process (its configuration): an SmtpSettings of the relay's namespace, or a
//! ClusterSmtpSettings whose `spec.allowedNamespaces` selects that namespace, with its references in the cluster
//! resource namespace (docs/relay.md, docs/api.md). A submodule of the controller so that `relay/mod.rs` needs no
//! new declaration; the relay process uses it through `crate::relay::reconcile::settings`.

use k8s_openapi::api::core::v1::Namespace;
use kube::{Api, Client};

use crate::api::{ClusterSmtpSettings, SmtpSettings, SmtpSettingsSpec, SmtpSettingsStatus};
use crate::conditions;
use crate::policy::selector;
use crate::relay::api::{SettingsKind, SettingsRef};

/// Why a reference cannot be used (the SmtpRelay's `Valid=False` and `Ready=False` reason).
pub const SETTINGS_NOT_FOUND: &str = "SettingsNotFound";
pub const NAMESPACE_NOT_ALLOWED: &str = "NamespaceNotAllowed";

/// What `settingsRef` resolves to.
#[derive(Clone, Debug)]
pub enum Resolved {
    Found {
        spec: Box<SmtpSettingsSpec>,
        /// Whether the settings are `Ready=True`.
        ready: bool,
        /// Where its Secret and ConfigMap references live.
        references_namespace: String,
        /// Whether it is a ClusterSmtpSettings (its references then live outside the relay's namespace).
        cluster: bool,
        /// resourceVersions of what was read (the settings, and the namespace for a ClusterSmtpSettings).
        versions: Vec<String>,
    },
    /// Not usable: the reason (`SettingsNotFound`, `NamespaceNotAllowed`) and a message saying what to do.
    Refused { reason: &'static str, message: String },
}

/// Reads the settings `r` names for a relay in `namespace`. `cluster_resource_namespace` is `None` when this
/// operator does not serve ClusterSmtpSettings.
pub async fn resolve(
    client: &Client,
    namespace: &str,
    r: &SettingsRef,
    cluster_resource_namespace: Option<&str>,
) -> kube::Result<Resolved> {
    let refused = |reason, message| Ok(Resolved::Refused { reason, message });
    match r.kind {
        SettingsKind::SmtpSettings => match Api::<SmtpSettings>::namespaced(client.clone(), namespace)
            .get_opt(&r.name)
            .await?
        {
            Some(s) => Ok(Resolved::Found {
                versions: vec![s.metadata.resource_version.unwrap_or_default()],
                spec: Box::new(s.spec),
                ready: is_ready(s.status.as_ref()),
                references_namespace: namespace.to_string(),
                cluster: false,
            }),
            None => refused(SETTINGS_NOT_FOUND, format!("SmtpSettings {:?} does not exist in this namespace", r.name)),
        },
        SettingsKind::ClusterSmtpSettings => {
            let Some(resources) = cluster_resource_namespace else {
                let message = "this operator does not serve ClusterSmtpSettings (it watches one namespace only); \
                               reference an SmtpSettings of this namespace";
                return refused(SETTINGS_NOT_FOUND, message.into());
            };
            let Some(s) = Api::<ClusterSmtpSettings>::all(client.clone()).get_opt(&r.name).await? else {
                return refused(SETTINGS_NOT_FOUND, format!("ClusterSmtpSettings {:?} does not exist", r.name));
            };
            let ns = Api::<Namespace>::all(client.clone()).get(namespace).await?;
            let labels = ns.metadata.labels.clone().unwrap_or_default();
            if !selector::selects(s.spec.allowed_namespaces.as_ref(), &labels) {
                return refused(NAMESPACE_NOT_ALLOWED, selector::namespace_not_allowed_message(&r.name, namespace));
            }
            Ok(Resolved::Found {
                versions: vec![
                    s.metadata.resource_version.unwrap_or_default(),
                    ns.metadata.resource_version.unwrap_or_default(),
                ],
                ready: is_ready(s.status.as_ref()),
                spec: Box::new(s.spec.settings),
                references_namespace: resources.to_string(),
                cluster: true,
            })
        }
    }
}

fn is_ready(status: Option<&SmtpSettingsStatus>) -> bool {
    status.and_then(|st| conditions::find(&st.conditions, conditions::READY)).is_some_and(|c| c.status == "True")
}
