//! The relay controller's apply step against the real kube-apiserver: every object of an SmtpRelay exists with
//! the right fields and an owner reference to it (what the garbage collector follows when the SmtpRelay is
//! deleted; no kube-controller-manager runs here), re-applying writes nothing, the generated credentials Secret
//! is never rotated, and the status says why the relay is not Ready yet.

mod support;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use serde_json::json;
use smtp_operator::cli::PolicyArgs;
use smtp_operator::relay::api::SmtpRelay;
use smtp_operator::relay::objects::RelayPodSettings;
use smtp_operator::relay::reconcile::{MANAGER, apply_relay, write_status};

use support::kube::{TestNamespace, client};
use support::operator::*;

fn pod() -> RelayPodSettings {
    RelayPodSettings {
        image: "registry.example/smtp-operator:test".into(),
        policy: PolicyArgs {
            allowed_ports: "587".into(),
            allowed_token_ports: "443".into(),
            denied_cidrs: "default".into(),
            require_secret_binding: true,
        },
        network_policy: false,
        cluster_resource_namespace: None,
    }
}

fn owned_by(meta: &ObjectMeta, relay: &SmtpRelay, what: &str) {
    let refs = meta.owner_references.clone().unwrap_or_default();
    assert_eq!(refs.len(), 1, "{what}: {refs:?}");
    let r = &refs[0];
    assert_eq!(
        (r.kind.as_str(), r.name.as_str(), r.uid.as_str(), r.controller, r.block_owner_deletion),
        ("SmtpRelay", "mail", relay.metadata.uid.as_deref().unwrap(), Some(true), Some(true)),
        "{what}"
    );
}

#[tokio::test]
async fn the_relay_objects_are_applied_owned_and_stable() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "relay-objects").await;
    create_secret(&client, ns.name(), "smtp-password", &[("password", b"x")], &[]).await;
    create_smtp(&client, ns.name(), "office", json!({
        "server": "smtp.example.com", "port": 587, "from": "alerts@example.com",
        "auth": {"type": "Basic", "basic": {"username": "u", "passwordSecretRef": {"name": "smtp-password", "key": "password"}}},
    }))
    .await;
    let relays: Api<SmtpRelay> = ns.api();
    let obj: SmtpRelay = serde_json::from_value(json!({
        "apiVersion": "smtp-operator.io/v1alpha1", "kind": "SmtpRelay", "metadata": {"name": "mail"},
        "spec": {"settingsRef": {"name": "office"}, "replicas": 2, "listen": {"port": 2525},
                 "clients": [{"username": "grafana", "passwordSecretRef": {"name": "grafana-smtp", "key": "pw"}}]},
    }))
    .unwrap();
    let relay = relays.create(&PostParams::default(), &obj).await.expect("create SmtpRelay");

    let status = apply_relay(&client, &relay, &pod()).await.expect("apply");
    let dep: Deployment = ns.api().get("mail-relay").await.unwrap();
    owned_by(&dep.metadata, &relay, "Deployment");
    let spec = dep.spec.clone().unwrap();
    assert_eq!(spec.replicas, Some(2));
    let c = &spec.template.spec.as_ref().unwrap().containers[0];
    assert_eq!(c.image.as_deref(), Some("registry.example/smtp-operator:test"));
    assert!(c.args.as_ref().unwrap().contains(&"--listen-addr=0.0.0.0:2525".to_string()));
    let svc: Service = ns.api().get("mail-relay").await.unwrap();
    owned_by(&svc.metadata, &relay, "Service");
    assert_eq!(svc.spec.unwrap().ports.unwrap()[0].port, 2525);
    let sa: ServiceAccount = ns.api().get("mail-relay").await.unwrap();
    owned_by(&sa.metadata, &relay, "ServiceAccount");
    let rb: RoleBinding = ns.api().get("mail-relay").await.unwrap();
    owned_by(&rb.metadata, &relay, "RoleBinding");
    let role: Role = ns.api().get("mail-relay").await.unwrap();
    owned_by(&role.metadata, &relay, "Role");
    let secrets = role.rules.unwrap().into_iter().find(|r| r.resources == Some(vec!["secrets".into()])).unwrap();
    assert_eq!(secrets.resource_names.unwrap(), ["grafana-smtp", "mail-relay-credentials", "smtp-password"]);
    let pdb: PodDisruptionBudget = ns.api().get("mail-relay").await.unwrap();
    owned_by(&pdb.metadata, &relay, "PodDisruptionBudget");
    let creds: Secret = ns.api().get("mail-relay-credentials").await.unwrap();
    owned_by(&creds.metadata, &relay, "credentials Secret");
    let data = creds.data.clone().unwrap();
    for k in ["username", "password", "host", "port"] {
        assert!(data.contains_key(k), "credentials Secret has {k}");
    }
    assert_eq!(data["port"].0, b"2525");
    assert_eq!(data["password"].0.len(), 32);

    // status: the settings were never checked here (no operator), so not Ready, with the reason
    write_status(&client, &relay, &status).await.unwrap();
    let relay = relays.get("mail").await.unwrap();
    let st = relay.status.clone().unwrap();
    assert_eq!(st.endpoint.as_deref(), Some(format!("mail-relay.{}.svc:2525", ns.name()).as_str()));
    assert_eq!(st.credentials_secret.as_deref(), Some("mail-relay-credentials"));
    let ready = st.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "SettingsNotReady"));

    // re-applying writes nothing: the Service's and the Secret's resourceVersions stay, the Deployment keeps its
    // generation and this operator's managed-fields entry (its resourceVersion moves with the status that
    // kube-controller-manager writes when a node runs), the password is not rotated
    let ours = |m: &ObjectMeta| {
        let entries = m.managed_fields.clone().unwrap_or_default();
        let mine: Vec<_> = entries.into_iter().filter(|f| f.manager.as_deref() == Some(MANAGER)).collect();
        serde_json::to_string(&mine).unwrap()
    };
    let versions = |d: &Deployment, s: &Service, c: &Secret| {
        let dep = format!("generation {:?}, {}", d.metadata.generation, ours(&d.metadata));
        [dep, s.metadata.resource_version.clone().unwrap(), c.metadata.resource_version.clone().unwrap()]
    };
    let before = versions(&dep, &ns.api().get("mail-relay").await.unwrap(), &creds);
    let status2 = apply_relay(&client, &relay, &pod()).await.expect("re-apply");
    write_status(&client, &relay, &status2).await.unwrap();
    let dep2: Deployment = ns.api().get("mail-relay").await.unwrap();
    let creds2: Secret = ns.api().get("mail-relay-credentials").await.unwrap();
    assert_eq!(versions(&dep2, &ns.api().get("mail-relay").await.unwrap(), &creds2), before, "nothing written");
    assert_eq!(relays.get("mail").await.unwrap().metadata.resource_version, relay.metadata.resource_version);
    assert_eq!(creds2.data.unwrap()["password"], data["password"]);
    ns.cleanup().await;
}
