//! The Kubernetes objects of one SmtpRelay, built by a pure function (spec → objects) that the relay
//! reconciler applies with server-side apply: Deployment, Service, ServiceAccount, Role (reads exactly the
//! Secrets this relay references), RoleBinding, a PodDisruptionBudget when replicas > 1, and the NetworkPolicy
//! when asked for. Reference: docs/relay.md.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::{Value, json};

use super::api::{ListenTlsMode, SettingsKind, SmtpRelay, credentials_secret_name};
use crate::validate;

/// What the operator passes on to every relay pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayPodSettings {
    /// The operator's own image (the relay is a subcommand of the same binary).
    pub image: String,
    /// `run`'s policy flags, as given to the operator.
    pub policy: crate::cli::PolicyArgs,
    /// Add a NetworkPolicy that admits SMTP from anywhere in the cluster and metrics scrapes, nothing else.
    pub network_policy: bool,
    /// `run`'s cluster resource namespace when the operator serves ClusterSmtpSettings (passed on to the pods as
    /// `--cluster-resource-namespace`); `None`: references to ClusterSmtpSettings are refused.
    pub cluster_resource_namespace: Option<String>,
}

/// The objects of one relay.
#[derive(Clone, Debug)]
pub struct RelayObjects {
    pub service_account: ServiceAccount,
    pub role: Role,
    pub role_binding: RoleBinding,
    pub deployment: Deployment,
    pub service: Service,
    pub pdb: Option<PodDisruptionBudget>,
    pub network_policy: Option<NetworkPolicy>,
}

/// Name of a relay's objects (Deployment, Service, ServiceAccount, Role, RoleBinding, PDB).
pub fn object_name(relay: &str) -> String {
    format!("{relay}-relay")
}

/// Port of `/metrics`, `/healthz`, `/readyz` in a relay pod.
pub const METRICS_PORT: i32 = 8080;
/// The port the relay listens on inside its pod. The Service maps `spec.listen.port` (587 by default) to it: a
/// non-root process with every capability dropped (the restricted Pod Security level) cannot bind a port below
/// 1024 on container runtimes that keep the kernel's default `ip_unprivileged_port_start`.
pub const POD_SMTP_PORT: i32 = 2525;

/// The Secrets a relay pod reads: the settings' (passwords, OAuth2 material, CA bundle Secret), the
/// generated credentials, the clients' and the listener certificate. Sorted, without duplicates.
pub fn referenced_secrets(relay: &SmtpRelay, settings_refs: &[validate::Reference]) -> Vec<String> {
    let name = relay.metadata.name.clone().unwrap_or_default();
    let mut out = BTreeSet::from([credentials_secret_name(&name)]);
    out.extend(settings_refs.iter().filter(|r| r.kind == validate::RefKind::Secret).map(|r| r.name.clone()));
    out.extend(relay.spec.clients.iter().map(|c| c.password_secret_ref.name.clone()));
    if relay.spec.listen.tls.mode == ListenTlsMode::StartTLS
        && let Some(r) = &relay.spec.listen.tls.certificate_secret_ref
    {
        out.insert(r.name.clone());
    }
    out.into_iter().collect()
}

/// The ConfigMaps a relay pod reads (a CA bundle from a ConfigMap).
fn referenced_config_maps(settings_refs: &[validate::Reference]) -> Vec<String> {
    let set: BTreeSet<String> =
        settings_refs.iter().filter(|r| r.kind == validate::RefKind::ConfigMap).map(|r| r.name.clone()).collect();
    set.into_iter().collect()
}

fn owner(relay: &SmtpRelay) -> OwnerReference {
    OwnerReference {
        api_version: "smtp-operator.io/v1alpha1".into(),
        kind: "SmtpRelay".into(),
        name: relay.metadata.name.clone().unwrap_or_default(),
        uid: relay.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn labels(relay: &str) -> Value {
    json!({"app.kubernetes.io/name": "smtp-relay", "app.kubernetes.io/instance": relay,
           "app.kubernetes.io/managed-by": "smtp-operator"})
}

fn meta(relay: &SmtpRelay, name: &str) -> Value {
    let r = relay.metadata.name.clone().unwrap_or_default();
    json!({"name": name, "namespace": relay.metadata.namespace, "labels": labels(&r), "ownerReferences": [owner(relay)]})
}

fn typed<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("built objects always match their type")
}

/// Builds every object of `relay` (pure). `settings_refs` are the references of its SmtpSettings; those of a
/// ClusterSmtpSettings live in the cluster resource namespace and are granted by [`cluster_access`] instead.
pub fn build(relay: &SmtpRelay, settings_refs: &[validate::Reference], pod: &RelayPodSettings) -> RelayObjects {
    let relay_name = relay.metadata.name.clone().unwrap_or_default();
    let name = object_name(&relay_name);
    let cluster = relay.spec.settings_ref.kind == SettingsKind::ClusterSmtpSettings;
    let settings_refs = if cluster { &[] } else { settings_refs };
    let secrets = referenced_secrets(relay, settings_refs);
    let config_maps = referenced_config_maps(settings_refs);
    let mut rules = vec![
        json!({"apiGroups": ["smtp-operator.io"], "resources": ["smtprelays"], "resourceNames": [relay_name], "verbs": ["get"]}),
    ];
    if !cluster {
        rules.push(json!({"apiGroups": ["smtp-operator.io"], "resources": ["smtpsettings"],
                          "resourceNames": [relay.spec.settings_ref.name], "verbs": ["get"]}));
    }
    rules.push(json!({"apiGroups": [""], "resources": ["secrets"], "resourceNames": secrets, "verbs": ["get"]}));
    if !config_maps.is_empty() {
        rules.push(
            json!({"apiGroups": [""], "resources": ["configmaps"], "resourceNames": config_maps, "verbs": ["get"]}),
        );
    }
    let replicas = relay.spec.replicas.max(1);
    RelayObjects {
        service_account: typed(json!({"metadata": meta(relay, &name), "automountServiceAccountToken": true})),
        role: typed(json!({"metadata": meta(relay, &name), "rules": rules})),
        role_binding: typed(json!({
            "metadata": meta(relay, &name),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": relay.metadata.namespace}],
        })),
        deployment: deployment(relay, &name, pod),
        service: typed(json!({
            "metadata": meta(relay, &name),
            "spec": {"selector": labels(&relay_name), "ports": [
                {"name": "smtp", "port": relay.spec.listen.port, "targetPort": "smtp", "protocol": "TCP"},
                {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"}]},
        })),
        pdb: (replicas > 1).then(|| {
            typed(json!({"metadata": meta(relay, &name),
                         "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels(&relay_name)}}}))
        }),
        network_policy: pod.network_policy.then(|| {
            typed(json!({"metadata": meta(relay, &name), "spec": {
                "podSelector": {"matchLabels": labels(&relay_name)},
                "policyTypes": ["Ingress"],
                "ingress": [{"ports": [{"port": POD_SMTP_PORT, "protocol": "TCP"},
                                       {"port": METRICS_PORT, "protocol": "TCP"}]}],
            }}))
        }),
    }
}

/// What a relay that uses a ClusterSmtpSettings may read outside its namespace, all by name: the
/// ClusterSmtpSettings and its own Namespace (for `allowedNamespaces`) through a ClusterRole, the settings'
/// Secrets and ConfigMaps through a Role in the cluster resource namespace. Cluster-scoped and cross-namespace
/// objects cannot be owned by the SmtpRelay, so the relay controller deletes them itself (a finalizer).
#[derive(Clone, Debug)]
pub struct ClusterAccess {
    pub cluster_role: ClusterRole,
    pub cluster_role_binding: ClusterRoleBinding,
    pub role: Role,
    pub role_binding: RoleBinding,
}

/// Name of a relay's [`ClusterAccess`] objects: `smtp-relay.<namespace>.<name>` (unique across namespaces).
pub fn cluster_access_name(namespace: &str, relay: &str) -> String {
    format!("smtp-relay.{namespace}.{relay}")
}

/// Builds the [`ClusterAccess`] of a relay whose settings are the ClusterSmtpSettings `settingsRef.name`
/// (pure); `settings_refs` are its references, which live in `resources` (the cluster resource namespace).
pub fn cluster_access(relay: &SmtpRelay, settings_refs: &[validate::Reference], resources: &str) -> ClusterAccess {
    let relay_name = relay.metadata.name.clone().unwrap_or_default();
    let ns = relay.metadata.namespace.clone().unwrap_or_default();
    let name = cluster_access_name(&ns, &relay_name);
    let mut labels = labels(&relay_name);
    labels["smtp-operator.io/relay-namespace"] = json!(ns);
    let subject = json!([{"kind": "ServiceAccount", "name": object_name(&relay_name), "namespace": ns}]);
    let secrets: BTreeSet<&str> =
        settings_refs.iter().filter(|r| r.kind == validate::RefKind::Secret).map(|r| r.name.as_str()).collect();
    let mut rules =
        vec![json!({"apiGroups": [""], "resources": ["secrets"], "resourceNames": secrets, "verbs": ["get"]})];
    let config_maps = referenced_config_maps(settings_refs);
    if !config_maps.is_empty() {
        rules.push(
            json!({"apiGroups": [""], "resources": ["configmaps"], "resourceNames": config_maps, "verbs": ["get"]}),
        );
    }
    let meta = |namespace: Option<&str>| json!({"name": name, "namespace": namespace, "labels": labels});
    ClusterAccess {
        cluster_role: typed(json!({"metadata": meta(None), "rules": [
            {"apiGroups": ["smtp-operator.io"], "resources": ["clustersmtpsettings"],
             "resourceNames": [relay.spec.settings_ref.name], "verbs": ["get"]},
            {"apiGroups": [""], "resources": ["namespaces"], "resourceNames": [ns], "verbs": ["get"]},
        ]})),
        cluster_role_binding: typed(json!({"metadata": meta(None), "subjects": subject,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name}})),
        role: typed(json!({"metadata": meta(Some(resources)), "rules": rules})),
        role_binding: typed(json!({"metadata": meta(Some(resources)), "subjects": subject,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}})),
    }
}

fn deployment(relay: &SmtpRelay, name: &str, pod: &RelayPodSettings) -> Deployment {
    let relay_name = relay.metadata.name.clone().unwrap_or_default();
    let port = POD_SMTP_PORT;
    let mut args = vec![
        "relay".to_owned(),
        format!("--namespace={}", relay.metadata.namespace.clone().unwrap_or_default()),
        format!("--name={relay_name}"),
        format!("--listen-addr=0.0.0.0:{port}"),
        format!("--metrics-addr=0.0.0.0:{METRICS_PORT}"),
        format!("--allowed-ports={}", pod.policy.allowed_ports),
        format!("--allowed-token-ports={}", pod.policy.allowed_token_ports),
        format!("--denied-cidrs={}", pod.policy.denied_cidrs),
        format!("--require-secret-binding={}", pod.policy.require_secret_binding),
    ];
    if let Some(ns) = &pod.cluster_resource_namespace {
        args.push(format!("--cluster-resource-namespace={ns}"));
    }
    let probe = |path: &str, period: i32| json!({"httpGet": {"path": path, "port": "metrics"}, "periodSeconds": period, "timeoutSeconds": 5});
    typed(json!({
        "metadata": meta(relay, name),
        "spec": {
            "replicas": relay.spec.replicas.max(1),
            "selector": {"matchLabels": labels(&relay_name)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels(&relay_name)},
                "spec": {
                    "serviceAccountName": name,
                    // the relay finishes transactions in flight after SIGTERM (at most 25 s)
                    "terminationGracePeriodSeconds": 40,
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "relay",
                        "image": pod.image,
                        "args": args,
                        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                        "ports": [{"name": "smtp", "containerPort": port, "protocol": "TCP"},
                                  {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
                        "readinessProbe": probe("/readyz", 5),
                        "livenessProbe": probe("/healthz", 10),
                        // leave the Service's endpoints before the process stops accepting
                        "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
                        "resources": {"requests": {"cpu": "20m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
                        "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                                            "runAsNonRoot": true, "runAsUser": 65532,
                                            "capabilities": {"drop": ["ALL"]},
                                            "seccompProfile": {"type": "RuntimeDefault"}},
                    }],
                },
            },
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::{Purpose, RefKind, Reference};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn relay(spec: Value) -> SmtpRelay {
        serde_json::from_value(json!({
            "apiVersion": "smtp-operator.io/v1alpha1", "kind": "SmtpRelay",
            "metadata": {"name": "mail", "namespace": "mon", "uid": "u-1"}, "spec": spec,
        }))
        .unwrap()
    }

    fn pod() -> RelayPodSettings {
        RelayPodSettings {
            image: "ghcr.io/x/smtp-operator:1".into(),
            policy: crate::cli::PolicyArgs {
                allowed_ports: "587".into(),
                allowed_token_ports: "443".into(),
                denied_cidrs: "default".into(),
                require_secret_binding: true,
            },
            network_policy: false,
            cluster_resource_namespace: None,
        }
    }

    fn refs() -> Vec<Reference> {
        let r = |kind, name: &str| Reference { kind, name: name.into(), key: "k".into(), purpose: Purpose::Password };
        vec![r(RefKind::Secret, "smtp-oauth"), r(RefKind::ConfigMap, "corp-ca"), r(RefKind::Secret, "smtp-oauth")]
    }

    #[test]
    fn role_reads_exactly_the_referenced_secrets() {
        let o = build(
            &relay(json!({"settingsRef": {"name": "office"},
                "listen": {"port": 2525, "tls": {"mode": "StartTLS", "certificateSecretRef": {"name": "relay-tls"}}},
                "clients": [{"username": "grafana", "passwordSecretRef": {"name": "grafana-smtp", "key": "pw"}}]})),
            &refs(),
            &pod(),
        );
        let rules = o.role.rules.unwrap();
        let secrets = rules.iter().find(|r| r.resources.as_deref() == Some(&["secrets".to_string()][..])).unwrap();
        assert_eq!(
            secrets.resource_names.clone().unwrap(),
            ["grafana-smtp", "mail-relay-credentials", "relay-tls", "smtp-oauth"]
        );
        assert!(rules.iter().all(|r| r.verbs == ["get"] && r.resource_names.is_some()), "read-only, by name");
        assert_eq!(
            rules
                .iter()
                .find(|r| r.resources.as_deref() == Some(&["configmaps".to_string()][..]))
                .unwrap()
                .resource_names
                .clone()
                .unwrap(),
            ["corp-ca"]
        );
    }

    #[test]
    fn with_cluster_settings_the_namespace_role_keeps_its_own_secrets_and_the_rest_is_granted_by_name() {
        let r = relay(json!({"settingsRef": {"kind": "ClusterSmtpSettings", "name": "company"}}));
        let p = RelayPodSettings { cluster_resource_namespace: Some("smtp-system".into()), ..pod() };
        let o = build(&r, &refs(), &p);
        let rules = o.role.rules.unwrap();
        assert!(rules.iter().all(|r| r.resources.as_deref() != Some(&["smtpsettings".to_string()][..])), "{rules:?}");
        assert!(rules.iter().all(|r| r.resources.as_deref() != Some(&["configmaps".to_string()][..])), "{rules:?}");
        let secrets = rules.iter().find(|r| r.resources.as_deref() == Some(&["secrets".to_string()][..])).unwrap();
        assert_eq!(secrets.resource_names.clone().unwrap(), ["mail-relay-credentials"], "no settings Secret here");
        let args = o.deployment.spec.unwrap().template.spec.unwrap().containers[0].args.clone().unwrap();
        assert!(args.contains(&"--cluster-resource-namespace=smtp-system".to_string()), "{args:?}");

        let a = cluster_access(&r, &refs(), "smtp-system");
        let name = "smtp-relay.mon.mail";
        assert_eq!(a.cluster_role.metadata.name.as_deref(), Some(name));
        let by_resource = |rules: &[k8s_openapi::api::rbac::v1::PolicyRule], res: &str| {
            let rule = rules.iter().find(|r| r.resources.as_deref() == Some(&[res.to_string()][..])).unwrap();
            assert_eq!(rule.verbs, ["get"], "{res}: read only");
            rule.resource_names.clone().unwrap()
        };
        let cluster_rules = a.cluster_role.rules.unwrap();
        assert_eq!(cluster_rules.len(), 2);
        assert_eq!(by_resource(&cluster_rules, "clustersmtpsettings"), ["company"]);
        assert_eq!(by_resource(&cluster_rules, "namespaces"), ["mon"]);
        assert_eq!(a.role.metadata.namespace.as_deref(), Some("smtp-system"));
        let role_rules = a.role.rules.unwrap();
        assert_eq!(by_resource(&role_rules, "secrets"), ["smtp-oauth"]);
        assert_eq!(by_resource(&role_rules, "configmaps"), ["corp-ca"]);
        for subjects in [a.cluster_role_binding.subjects.unwrap(), a.role_binding.subjects.unwrap()] {
            assert_eq!(subjects.len(), 1);
            assert_eq!((subjects[0].name.as_str(), subjects[0].namespace.as_deref()), ("mail-relay", Some("mon")));
        }
        assert_eq!(a.role_binding.role_ref.name, name);
        assert!(a.role.metadata.owner_references.is_none(), "a cross-namespace owner is not allowed");
    }

    #[test]
    fn deployment_is_restricted_probed_owned_and_passes_the_policy_flags() {
        let o = build(&relay(json!({"settingsRef": {"name": "office"}, "replicas": 1})), &[], &pod());
        let owner = &o.deployment.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str(), owner.controller), ("SmtpRelay", "u-1", Some(true)));
        let spec = o.deployment.spec.unwrap().template.spec.unwrap();
        let c = &spec.containers[0];
        let args = c.args.clone().unwrap();
        for a in [
            "relay",
            "--namespace=mon",
            "--name=mail",
            "--listen-addr=0.0.0.0:2525",
            "--allowed-ports=587",
            "--denied-cidrs=default",
            "--require-secret-binding=true",
        ] {
            assert!(args.contains(&a.to_string()), "{a} in {args:?}");
        }
        let sc = c.security_context.clone().unwrap();
        assert_eq!((sc.allow_privilege_escalation, sc.read_only_root_filesystem), (Some(false), Some(true)));
        assert_eq!(sc.capabilities.unwrap().drop.unwrap(), ["ALL"]);
        assert!(c.readiness_probe.is_some() && c.liveness_probe.is_some());
        assert_eq!(spec.service_account_name.as_deref(), Some("mail-relay"));
        assert!(o.pdb.is_none(), "one replica: no PDB");
        assert!(o.network_policy.is_none());
    }

    #[test]
    fn pdb_with_more_replicas_and_network_policy_when_asked() {
        let p = RelayPodSettings { network_policy: true, ..pod() };
        let o = build(&relay(json!({"settingsRef": {"name": "office"}, "replicas": 3})), &[], &p);
        assert_eq!(o.pdb.unwrap().spec.unwrap().max_unavailable.unwrap(), IntOrString::Int(1));
        assert!(o.network_policy.is_some());
        let ports = o.service.spec.unwrap().ports.unwrap();
        assert_eq!(ports[0].port, 587);
        assert_eq!(ports[0].target_port, Some(IntOrString::String("smtp".into())));
        let c = &o.deployment.spec.unwrap().template.spec.unwrap().containers[0];
        assert_eq!(c.ports.as_ref().unwrap()[0].container_port, POD_SMTP_PORT, "unprivileged inside the pod");
    }
}
