//! Reading what a reconcile works on: a fresh copy of the settings object and the Secrets and ConfigMaps it
//! references, from its own namespace (a ClusterSmtpSettings: the cluster resource namespace). The reference types (`Reference`, `RefKind`, `RefObject`, `Referenced`,
//! `references`) live in `crate::validate`, not here: validate is pure and is also used by the `check` command
//! and the relay, so taking them from this module would make it depend on the Kubernetes-bound controller.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};

use super::Error;
use super::kind::SettingsResource;
use super::refcache::RefCache;
use crate::validate::{RefKind, RefObject, Reference, Referenced};

/// A fresh read of the object. The reflector store can lag behind this operator's own last status write (a
/// trigger that arrived during a check runs right after it); deciding on that stale status would run the
/// check again, so every reconcile decides on what the API server has now. `None`: it is gone.
pub async fn fresh<K: SettingsResource>(client: &Client, ns: Option<&str>, name: &str) -> Result<Option<K>, Error> {
    let api: Api<K> = K::api(client, ns.unwrap_or_default());
    api.get_opt(name).await.map_err(|source| Error::Dereference { kind: K::KIND, name: name.into(), source })
}

/// The referenced Secrets and ConfigMaps (each once): from `cache` when it holds them, else read (once for
/// all reconciles asking at the same time) and kept there; missing ones are simply absent (and read again).
pub async fn referenced(client: &Client, cache: &RefCache, ns: &str, refs: &[Reference]) -> Result<Referenced, Error> {
    let mut out = Referenced::default();
    let mut seen = BTreeSet::new();
    for r in refs {
        if !seen.insert((r.kind, r.name.clone())) {
            continue;
        }
        let obj = cache
            .get_or_read(r.kind, ns, &r.name, || async {
                match r.kind {
                    RefKind::Secret => secret(client, ns, &r.name).await,
                    RefKind::ConfigMap => config_map(client, ns, &r.name).await,
                }
            })
            .await?;
        if let Some(o) = obj {
            out.objects.insert((r.kind, r.name.clone()), o);
        }
    }
    Ok(out)
}

async fn secret(client: &Client, ns: &str, name: &str) -> Result<Option<RefObject>, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let s =
        api.get_opt(name).await.map_err(|source| Error::Dereference { kind: "Secret", name: name.into(), source })?;
    Ok(s.map(|s| RefObject {
        data: s.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect(),
        annotations: s.metadata.annotations.unwrap_or_default(),
        resource_version: s.metadata.resource_version.unwrap_or_default(),
    }))
}

async fn config_map(client: &Client, ns: &str, name: &str) -> Result<Option<RefObject>, Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let c = api.get_opt(name).await.map_err(|source| Error::Dereference {
        kind: "ConfigMap",
        name: name.into(),
        source,
    })?;
    Ok(c.map(|c| {
        let mut data: BTreeMap<String, Vec<u8>> =
            c.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
        data.extend(c.binary_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)));
        RefObject {
            data,
            annotations: c.metadata.annotations.unwrap_or_default(),
            resource_version: c.metadata.resource_version.unwrap_or_default(),
        }
    }))
}
