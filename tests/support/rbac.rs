//! Least-privilege identities for end-to-end tests: the chart's ServiceAccount and RBAC rendered with
//! `helm template`, applied to the test plane, and a kubeconfig that authenticates with a token from the
//! TokenRequest API (`kubectl create token`), so the operator runs as that ServiceAccount instead of the
//! plane's `system:masters` admin.
//!
//! ```ignore
//! let chart = ChartRbac::install("opns", &[("watchNamespace", "wns")]);   // SA + Role/ClusterRole + bindings
//! let op = Operator::start_with_env(&args, &[("KUBECONFIG", chart.kubeconfig.to_str().unwrap())]);
//! ```
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_yaml::Value;

use super::kube::{kubeconfig_path, kubectl, kubectl_ok, repo_root};

/// The helm binary (`scripts/build-helm` builds it once into the cache and prints its path).
pub fn helm() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        let out =
            Command::new("bash").arg(repo_root().join("scripts/build-helm")).output().expect("run scripts/build-helm");
        assert!(out.status.success(), "scripts/build-helm failed:\n{}", String::from_utf8_lossy(&out.stderr));
        PathBuf::from(String::from_utf8(out.stdout).expect("utf-8").lines().last().expect("helm path").trim())
    })
}

/// `helm template RELEASE charts/smtp-operator --namespace NS --set K=V ... --show-only T ...`.
pub fn render_chart(release: &str, namespace: &str, sets: &[(&str, &str)], show_only: &[&str]) -> String {
    let mut cmd = Command::new(helm());
    cmd.arg("template").arg(release).arg(repo_root().join("charts/smtp-operator")).args(["--namespace", namespace]);
    for (k, v) in sets {
        cmd.arg("--set").arg(format!("{k}={v}"));
    }
    for t in show_only {
        cmd.args(["--show-only", t]);
    }
    let out = cmd.output().expect("run helm template");
    assert!(out.status.success(), "helm template failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8 from helm")
}

/// The (kind, namespace, name) of every document in a multi-document YAML stream.
pub fn documents(yaml: &str) -> Vec<(String, Option<String>, String)> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let Ok(v) = <Value as serde::Deserialize>::deserialize(doc) else { continue };
        let kind = v["kind"].as_str().unwrap_or_default().to_string();
        if kind.is_empty() {
            continue;
        }
        let ns = v["metadata"]["namespace"].as_str().map(str::to_string);
        let name = v["metadata"]["name"].as_str().unwrap_or_default().to_string();
        out.push((kind, ns, name));
    }
    out
}

/// `kubectl apply -f` of a YAML stream (as the plane's admin).
pub fn apply_yaml(yaml: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("manifest.yaml");
    std::fs::write(&file, yaml).expect("write manifest");
    kubectl_ok(["apply", "-f", file.to_str().unwrap()]);
}

/// A token for ServiceAccount `sa` in `ns` from the TokenRequest API (valid for an hour).
pub fn create_token(sa: &str, ns: &str) -> String {
    kubectl_ok(["create", "token", sa, "-n", ns, "--duration=1h"]).trim().to_string()
}

/// Writes a kubeconfig that talks to the test plane (server and CA from the admin kubeconfig) with `token`.
pub fn write_token_kubeconfig(token: &str, path: &Path) {
    let admin: Value = serde_yaml::from_str(&std::fs::read_to_string(kubeconfig_path()).expect("read kubeconfig"))
        .expect("kubeconfig YAML");
    let cluster = &admin["clusters"][0]["cluster"];
    let server = cluster["server"].as_str().expect("server in kubeconfig");
    let ca = cluster["certificate-authority-data"].as_str().expect("certificate-authority-data in kubeconfig");
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "plane", "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "plane", "user": "sa", "namespace": "default"}}],
        "current-context": "sa",
    });
    std::fs::write(path, serde_yaml::to_string(&config).unwrap()).expect("write kubeconfig");
}

/// `kubectl auth can-i ARGS` as the identity of `kubeconfig`.
pub fn can_i(kubeconfig: &Path, args: &[&str]) -> bool {
    let out = Command::new(super::kube::kubectl_path())
        .args(["auth", "can-i"])
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("run kubectl auth can-i");
    String::from_utf8_lossy(&out.stdout).trim() == "yes"
}

/// The chart's ServiceAccount and RBAC for one release, applied to the plane, plus a token kubeconfig for the
/// ServiceAccount. Cluster-scoped objects (ClusterRole/ClusterRoleBinding) are deleted on drop; namespaced
/// ones go with their (test) namespaces.
pub struct ChartRbac {
    /// The release name (also the prefix of every object name).
    pub release: String,
    /// The ServiceAccount's name (in the release namespace).
    pub service_account: String,
    /// The rendered manifests that were applied.
    pub manifests: String,
    /// A kubeconfig authenticating as the ServiceAccount.
    pub kubeconfig: PathBuf,
    cluster_scoped: Vec<(String, String)>,
    _dir: tempfile::TempDir,
}

impl ChartRbac {
    /// Renders `templates/serviceaccount.yaml` and `templates/rbac.yaml` of the chart for a fresh release in
    /// `namespace` with the given `--set` values, applies them and fetches a token for the ServiceAccount.
    pub fn install(namespace: &str, sets: &[(&str, &str)]) -> ChartRbac {
        // short and unique: cluster-scoped names are shared by every test on the plane
        let release = format!(
            "r{:x}{:x}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos()
        );
        let manifests =
            render_chart(&release, namespace, sets, &["templates/serviceaccount.yaml", "templates/rbac.yaml"]);
        let docs = documents(&manifests);
        let service_account = docs
            .iter()
            .find(|(k, _, _)| k == "ServiceAccount")
            .map(|(_, _, n)| n.clone())
            .expect("the chart renders a ServiceAccount");
        let cluster_scoped: Vec<(String, String)> = docs
            .iter()
            .filter(|(k, _, _)| k == "ClusterRole" || k == "ClusterRoleBinding")
            .map(|(k, _, n)| (k.clone(), n.clone()))
            .collect();
        let mut rbac = ChartRbac {
            release,
            service_account,
            manifests,
            kubeconfig: PathBuf::new(),
            cluster_scoped,
            _dir: tempfile::tempdir().expect("temp dir"),
        };
        apply_yaml(&rbac.manifests);
        let token = create_token(&rbac.service_account, namespace);
        rbac.kubeconfig = rbac._dir.path().join("kubeconfig");
        write_token_kubeconfig(&token, &rbac.kubeconfig);
        rbac
    }

    /// The kinds of the applied documents (e.g. to assert a Role rather than a ClusterRole was rendered).
    pub fn kinds(&self) -> Vec<String> {
        documents(&self.manifests).into_iter().map(|(k, _, _)| k).collect()
    }

    /// `kubectl auth can-i` as the ServiceAccount.
    pub fn can_i(&self, args: &[&str]) -> bool {
        can_i(&self.kubeconfig, args)
    }
}

impl Drop for ChartRbac {
    fn drop(&mut self) {
        for (kind, name) in &self.cluster_scoped {
            let _ = kubectl([
                "delete",
                &kind.to_ascii_lowercase(),
                name,
                "--ignore-not-found",
                "--wait=false",
                "--request-timeout=10s",
            ]);
        }
    }
}
