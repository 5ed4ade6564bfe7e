//! One scenario fixture for the end-to-end tests: a client with the CRD installed, a fresh namespace, an SMTP
//! peer on loopback, the operator watching only that namespace, and cleanup.
//!
//! ```ignore
//! let mut s = Scenario::new("e2e-ready", &PLAIN_PEER).await;
//! s.basic_credentials(PASSWORD, true).await;
//! s.start_operator(&[]);
//! s.create("mail", s.basic_spec()).await;
//! ...
//! s.finish().await;
//! ```
#![allow(dead_code)]

use serde_json::{Value, json};

use std::path::{Path, PathBuf};

use super::kube::{TestNamespace, client_at, kubeconfig_path};
use super::operator::*;
use super::smtp_peer::SmtpPeer;

/// A test's namespace, peer and operator.
pub struct Scenario {
    pub client: kube::Client,
    /// The plane's kubeconfig (the shared plane's, or a private one: [`Scenario::on_plane`]).
    pub kubeconfig: PathBuf,
    pub ns: TestNamespace,
    pub peer: SmtpPeer,
    pub op: Option<Operator>,
    /// Further namespaces of the test ([`Scenario::namespace`]), cleaned up with the first.
    pub more: Vec<TestNamespace>,
    guard: DeleteSmtpOnDrop,
}

/// Deletes the SmtpSettings of the scenario's namespaces on drop, also when the test panicked: without a
/// controller-manager a deleted namespace keeps its objects, and an all-namespaces operator of a later test
/// would see them. [`Scenario::finish`] empties it (it deletes them itself).
struct DeleteSmtpOnDrop(Vec<String>, PathBuf);

impl Drop for DeleteSmtpOnDrop {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = super::kube::kubectl_at(
                &self.1,
                ["delete", "smtpsettings", "--all", "-n", ns, "--wait=false", "--request-timeout=10s"],
            );
        }
    }
}

impl Scenario {
    /// Client, CRD, a namespace named after `prefix`, and a peer started with `peer_args`.
    pub async fn new(prefix: &str, peer_args: &[&str]) -> Scenario {
        Scenario::on_plane(prefix, peer_args, kubeconfig_path()).await
    }

    /// Like [`Scenario::new`], on the plane of `kubeconfig` (e.g. a test's own
    /// [`super::plane::PrivatePlane`]); the operator is started with that kubeconfig too.
    pub async fn on_plane(prefix: &str, peer_args: &[&str], kubeconfig: &Path) -> Scenario {
        let client = client_at(kubeconfig).await;
        install_crd(&client).await;
        let ns = TestNamespace::new_at(&client, prefix, kubeconfig).await;
        let guard = DeleteSmtpOnDrop(vec![ns.name().to_string()], kubeconfig.to_path_buf());
        let peer = SmtpPeer::start(peer_args);
        Scenario { client, kubeconfig: kubeconfig.to_path_buf(), ns, peer, op: None, more: Vec::new(), guard }
    }

    /// Another namespace for the test (e.g. the operator's own, or a second tenant); returns its name.
    pub async fn namespace(&mut self, prefix: &str) -> String {
        let ns = TestNamespace::new_at(&self.client, prefix, &self.kubeconfig).await;
        let name = ns.name().to_string();
        self.guard.0.push(name.clone());
        self.more.push(ns);
        name
    }

    pub fn ns(&self) -> &str {
        self.ns.name()
    }

    /// The operator flags of a scenario: this namespace only, loopback allowed, the peer's port allowed,
    /// a 1 s minimum interval and a namespace rate that does not get in the way; then `extra`, whose flags
    /// replace these defaults.
    pub fn operator_args(&self, extra: &[&str]) -> Vec<String> {
        let port = self.peer.port.to_string();
        let defaults = [
            ("--watch-namespace", self.ns()),
            ("--denied-cidrs", ""),
            ("--allowed-ports", port.as_str()),
            ("--min-check-interval", "1s"),
            ("--namespace-check-rate", "600/m"),
        ];
        let overridden = |flag: &str| extra.iter().any(|e| *e == flag || e.starts_with(&format!("{flag}=")));
        let mut args: Vec<String> =
            defaults.iter().filter(|(f, _)| !overridden(f)).map(|(f, v)| format!("{f}={v}")).collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    /// Starts (or replaces) the operator with [`Scenario::operator_args`], on the scenario's plane.
    pub fn start_operator(&mut self, extra: &[&str]) -> &mut Operator {
        let args = self.operator_args(extra);
        self.start_operator_as(&args, None)
    }

    /// [`Scenario::operator_args`] without `--watch-namespace`: an operator that watches every namespace.
    pub fn all_namespaces_args(&self, extra: &[&str]) -> Vec<String> {
        self.operator_args(extra).into_iter().filter(|a| !a.starts_with("--watch-namespace=")).collect()
    }

    /// Starts (or replaces) the operator with exactly `args`, authenticating with `kubeconfig` (e.g. a
    /// ServiceAccount's, to run with limited RBAC) instead of the plane's admin kubeconfig when given.
    pub fn start_operator_as(&mut self, args: &[String], kubeconfig: Option<&std::path::Path>) -> &mut Operator {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let kc = kubeconfig.unwrap_or(&self.kubeconfig).to_str().expect("utf-8 kubeconfig path").to_string();
        self.op = Some(Operator::start_with_env(&refs, &[("KUBECONFIG", &kc)]));
        self.op.as_mut().expect("just started")
    }

    pub fn op(&mut self) -> &mut Operator {
        self.op.as_mut().expect("operator started")
    }

    /// The peer's CA as ConfigMap `peer-ca` and the password as Secret `smtp-credentials`, bound to the peer
    /// (`allowed-servers: 127.0.0.1:PORT`) when `bound`.
    pub async fn basic_credentials(&self, password: &str, bound: bool) {
        let ca = String::from_utf8(self.peer.ca_pem()).unwrap();
        create_config_map(&self.client, self.ns(), "peer-ca", &[("ca.crt", &ca)]).await;
        let allowed = format!("127.0.0.1:{}", self.peer.port);
        let annotations: Vec<(&str, &str)> =
            if bound { vec![("smtp-operator.io/allowed-servers", &allowed)] } else { vec![] };
        create_secret(&self.client, self.ns(), "smtp-credentials", &[("password", password.as_bytes())], &annotations)
            .await;
    }

    /// StartTLS with the peer's CA, Basic auth `alerts` with Secret `smtp-credentials`, one test recipient.
    pub fn basic_spec(&self) -> Value {
        json!({
            "server": "127.0.0.1",
            "port": self.peer.port,
            "from": "Platform Alerts <alerts@example.com>",
            "tls": {"mode": "StartTLS", "caBundle": {"configMapKeyRef": {"name": "peer-ca", "key": "ca.crt"}}},
            "auth": {"type": "Basic", "basic": {"username": "alerts", "passwordSecretRef": {"name": "smtp-credentials", "key": "password"}}},
            "testEmail": {"to": ["ops@example.com"]},
        })
    }

    /// Plain text, no auth (a peer started with `--tls none`), one test recipient.
    pub fn bare_spec(&self) -> Value {
        json!({
            "server": "127.0.0.1", "port": self.peer.port, "from": "alerts@example.com",
            "tls": {"mode": "None"}, "testEmail": {"to": ["ops@example.com"]},
        })
    }

    pub async fn create(&self, name: &str, spec: Value) {
        create_smtp(&self.client, self.ns(), name, spec).await;
    }

    pub async fn wait_condition(
        &self,
        name: &str,
        type_: &str,
        status: &str,
        reason: Option<&str>,
    ) -> smtp_operator::api::SmtpSettings {
        wait_condition(&self.client, self.ns(), name, type_, status, reason, 60).await
    }

    /// Waits (at most 30 s) until an event `type_`/`reason` about `name` exists; returns all its events.
    pub async fn wait_event(&self, name: &str, type_: &str, reason: &str) -> Vec<(String, String, String)> {
        wait_event(&self.client, self.ns(), name, type_, reason).await
    }

    /// Deletes the resources (while the operator still runs), stops the operator, deletes the namespaces.
    pub async fn finish(mut self) {
        self.guard.0.clear();
        delete_all_smtp(&self.client, self.ns()).await;
        for ns in &self.more {
            delete_all_smtp(&self.client, ns.name()).await;
        }
        drop(self.op.take());
        self.ns.cleanup().await;
        for ns in self.more.drain(..) {
            ns.cleanup().await;
        }
    }
}
