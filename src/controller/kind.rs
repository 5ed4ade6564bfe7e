//! The two settings kinds one reconcile pipeline serves: the namespaced `SmtpSettings` and the cluster-scoped
//! `ClusterSmtpSettings`. They share spec and status; they differ only in where their Secret and ConfigMap
//! references resolve ([`SettingsResource::reference_namespace`]) and how their API is addressed.

use std::fmt::Debug;

use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::{ClusterSmtpSettings, SmtpSettings, SmtpSettingsSpec, SmtpSettingsStatus};

/// Whether a kind lives in a namespace or in the cluster (the `scope` metric label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    Namespaced,
    Cluster,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Namespaced => "Namespaced",
            Scope::Cluster => "Cluster",
        }
    }
}

/// A settings kind the reconcile pipeline runs for.
pub trait SettingsResource:
    Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
    const SCOPE: Scope;
    /// The kind's name (`SmtpSettings`, `ClusterSmtpSettings`), for metrics, logs and messages.
    const KIND: &'static str;

    fn settings_spec(&self) -> &SmtpSettingsSpec;
    fn settings_status(&self) -> Option<&SmtpSettingsStatus>;

    /// The API of the kind: in `namespace` for a namespaced kind, the cluster's for a cluster-scoped one.
    fn api(client: &Client, namespace: &str) -> Api<Self>;

    /// Where the object's Secret and ConfigMap references resolve: its own namespace, or the cluster
    /// resource namespace for a cluster-scoped kind.
    fn reference_namespace(&self, cluster_resource_namespace: &str) -> Option<String>;

    /// `namespace/name`, or `name` for a cluster-scoped object (logs, test-email bodies).
    fn display_name(&self) -> String {
        match self.namespace() {
            Some(ns) => format!("{ns}/{}", self.name_any()),
            None => self.name_any(),
        }
    }
}

impl SettingsResource for SmtpSettings {
    const SCOPE: Scope = Scope::Namespaced;
    const KIND: &'static str = "SmtpSettings";

    fn settings_spec(&self) -> &SmtpSettingsSpec {
        &self.spec
    }
    fn settings_status(&self) -> Option<&SmtpSettingsStatus> {
        self.status.as_ref()
    }
    fn api(client: &Client, namespace: &str) -> Api<Self> {
        Api::namespaced(client.clone(), namespace)
    }
    fn reference_namespace(&self, _: &str) -> Option<String> {
        self.namespace()
    }
}

impl SettingsResource for ClusterSmtpSettings {
    const SCOPE: Scope = Scope::Cluster;
    const KIND: &'static str = "ClusterSmtpSettings";

    fn settings_spec(&self) -> &SmtpSettingsSpec {
        &self.spec.settings
    }
    fn settings_status(&self) -> Option<&SmtpSettingsStatus> {
        self.status.as_ref()
    }
    fn api(client: &Client, _: &str) -> Api<Self> {
        Api::all(client.clone())
    }
    fn reference_namespace(&self, cluster_resource_namespace: &str) -> Option<String> {
        Some(cluster_resource_namespace.to_string())
    }
}
