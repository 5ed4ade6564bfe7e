//! The local control plane that all integration tests use (scripts/control-plane) really works: objects
//! round-trip through kube-apiserver and etcd, and it is the Kubernetes version pinned in tools/control-plane.
mod support;

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use support::kube::{TestNamespace, client, kubectl_ok, repo_root};

#[tokio::test]
async fn namespace_and_secret_round_trip() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "control-plane-roundtrip").await;

    let got = Api::<Namespace>::all(client.clone()).get(ns.name()).await.expect("get the namespace");
    assert_eq!(got.metadata.name.as_deref(), Some(ns.name()));

    let data = BTreeMap::from([
        ("password".to_string(), ByteString(b"s3cr3t\x00\xff binary".to_vec())),
        ("username".to_string(), ByteString(b"alerts@example.com".to_vec())),
    ]);
    let secret = Secret {
        metadata: ObjectMeta { name: Some("smtp-credentials".into()), ..ObjectMeta::default() },
        data: Some(data.clone()),
        ..Secret::default()
    };
    let secrets: Api<Secret> = ns.api();
    secrets.create(&PostParams::default(), &secret).await.expect("create the secret");
    let read = secrets.get("smtp-credentials").await.expect("read the secret back");
    assert_eq!(read.data, Some(data));
    assert_eq!(read.metadata.namespace.as_deref(), Some(ns.name()));

    // kubectl sees the same object on the same plane
    let out = kubectl_ok(["get", "secret", "smtp-credentials", "-n", ns.name(), "-o", "jsonpath={.data.username}"]);
    assert_eq!(out, "YWxlcnRzQGV4YW1wbGUuY29t");

    ns.cleanup().await;
}

#[tokio::test]
async fn version_is_the_pinned_one() {
    let go_mod = std::fs::read_to_string(repo_root().join("tools/control-plane/go.mod")).expect("read go.mod");
    let pinned = go_mod
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("k8s.io/kubernetes")).then(|| words.next()).flatten()
        })
        .next()
        .expect("k8s.io/kubernetes pinned in tools/control-plane/go.mod");
    assert!(pinned.starts_with("v1."), "unexpected pin {pinned}");

    let info = client().await.apiserver_version().await.expect("GET /version");
    assert_eq!(info.git_version, pinned);
}
