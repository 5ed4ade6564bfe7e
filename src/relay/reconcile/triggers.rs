//! What else, besides its own SmtpRelay and Deployment, makes the relay controller look at a relay again at
//! once instead of at the next periodic requeue: for relays that use a ClusterSmtpSettings, a change of that
//! ClusterSmtpSettings (its `allowedNamespaces`, its Ready) and a change of the relay's Namespace (its labels,
//! which `allowedNamespaces` selects on). A namespace that loses its label thus loses the relay's
//! [`super::objects::ClusterAccess`] within a watch event, not a minute later.
//!
//! SmtpSettings (same namespace) are not watched here: the operator's main controller already keeps a cache
//! of every SmtpSettings, and a second watch would read all of them again; a relay follows its SmtpSettings'
//! Ready on the periodic requeue (docs/relay.md).

use std::sync::Arc;

use futures::{Stream, StreamExt};
use kube::Client;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;

use crate::controller::run::WatchBackoff;
use crate::relay::api::{SettingsKind, SmtpRelay};

/// The relays that use the ClusterSmtpSettings `name` (pure).
pub fn using_cluster_settings(relays: &[Arc<SmtpRelay>], name: &str) -> Vec<ObjectRef<SmtpRelay>> {
    cluster_relays(relays, |r| r.spec.settings_ref.name == name)
}

/// The relays of namespace `ns` that use a ClusterSmtpSettings (pure): only those depend on its labels.
pub fn in_namespace_using_cluster_settings(relays: &[Arc<SmtpRelay>], ns: &str) -> Vec<ObjectRef<SmtpRelay>> {
    cluster_relays(relays, |r| r.metadata.namespace.as_deref() == Some(ns))
}

fn cluster_relays(relays: &[Arc<SmtpRelay>], keep: impl Fn(&SmtpRelay) -> bool) -> Vec<ObjectRef<SmtpRelay>> {
    relays
        .iter()
        .filter(|r| r.spec.settings_ref.kind == SettingsKind::ClusterSmtpSettings && keep(r))
        .map(|r| ObjectRef::from_obj(r.as_ref()))
        .collect()
}

/// Every change of an object of kind `K` in the cluster (ClusterSmtpSettings, Namespaces), as metadata only:
/// names and labels are all the mappings above need.
pub fn changes<K>(client: &Client) -> impl Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + Send + 'static
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    watcher(Api::<PartialObjectMeta<K>>::all(client.clone()), watcher::Config::default())
        .backoff(WatchBackoff::default())
        .touched_objects()
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(ns: &str, name: &str, kind: SettingsKind, settings: &str) -> Arc<SmtpRelay> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "apiVersion": "smtp-operator.io/v1alpha1", "kind": "SmtpRelay",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"settingsRef": {"kind": format!("{kind:?}"), "name": settings}},
            }))
            .unwrap(),
        )
    }

    fn names(refs: Vec<ObjectRef<SmtpRelay>>) -> Vec<String> {
        refs.into_iter().map(|r| format!("{}/{}", r.namespace.unwrap_or_default(), r.name)).collect()
    }

    #[test]
    fn only_relays_using_cluster_settings_follow_namespaces_and_cluster_settings() {
        use SettingsKind::*;
        let relays = [
            relay("a", "one", ClusterSmtpSettings, "company"),
            relay("a", "two", SmtpSettings, "company"), // an SmtpSettings of the same name: not concerned
            relay("b", "three", ClusterSmtpSettings, "company"),
            relay("b", "four", ClusterSmtpSettings, "other"),
        ];
        type Case<'a> = (&'a str, Vec<ObjectRef<SmtpRelay>>, &'a [&'a str]);
        #[rustfmt::skip]
        let cases: [Case; 5] = [
            ("ClusterSmtpSettings company", using_cluster_settings(&relays, "company"), &["a/one", "b/three"]),
            ("ClusterSmtpSettings other", using_cluster_settings(&relays, "other"), &["b/four"]),
            ("ClusterSmtpSettings unused", using_cluster_settings(&relays, "unused"), &[]),
            ("Namespace a", in_namespace_using_cluster_settings(&relays, "a"), &["a/one"]),
            ("Namespace b", in_namespace_using_cluster_settings(&relays, "b"), &["b/three", "b/four"]),
        ];
        for (change, got, want) in cases {
            assert_eq!(names(got), want, "{change}");
        }
    }
}
