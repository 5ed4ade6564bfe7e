//! End to end, against the real kube-apiserver and real SMTP peers (aiosmtpd): ClusterSmtpSettings (references
//! resolved in the cluster resource namespace, printer columns, metrics with `scope`) and the early warnings
//! (`Degraded` with `CertificateExpiresSoon` from a certificate generated to expire in 3 days, and
//! `AuthOverPlaintextOffered` from a server offering AUTH before STARTTLS) while `Ready` stays True, and an
//! SmtpRelay that uses a ClusterSmtpSettings: delivering from an allowed namespace with exactly the RBAC made for
//! it, refused with `NamespaceNotAllowed` (and nothing sent) from another, and following its namespace's labels
//! at once (on a private plane).
//!
//! ClusterSmtpSettings are cluster-scoped: every operator that serves them (`--cluster-settings`) checks all of
//! them, so the tests that start such an operator take [`CLUSTER_SETTINGS`] in turn; the others run with the
//! default (off with `--watch-namespace`). Their objects have unique names and are deleted on drop.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use smtp_operator::api::ClusterSmtpSettings;
use smtp_operator::cli::PolicyArgs;
use smtp_operator::relay::api::SmtpRelay;
use smtp_operator::relay::objects::{RelayPodSettings, cluster_access_name};
use smtp_operator::relay::reconcile::{FINALIZER, apply_relay, release_cluster_access, write_status};

use support::kube::{kubectl, kubectl_at, kubectl_ok, unique_name};
use support::operator::*;
use support::plane::PrivatePlane;
use support::rbac::{can_i, create_token, write_token_kubeconfig};
use support::relay::{Dialog, RelayProcess};
use support::scenario::Scenario;

const PASSWORD: &str = "pw-Cluster-4e1d07";

/// Held by each test whose operator serves ClusterSmtpSettings: one such operator at a time.
static CLUSTER_SETTINGS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn peer_args(extra: &[&'static str]) -> Vec<&'static str> {
    let mut args = vec!["--tls", "starttls", "--auth", "plain,login", "--user", "alerts", "--password", PASSWORD];
    args.extend_from_slice(extra);
    args
}

/// Deletes a ClusterSmtpSettings on drop (also when the test panicked): cluster-scoped objects outlive the
/// test's namespaces.
struct ClusterObject(String);

impl Drop for ClusterObject {
    fn drop(&mut self) {
        let _ = kubectl(["delete", "clustersmtpsettings", &self.0, "--ignore-not-found", "--wait=false"]);
    }
}

async fn create_cluster_smtp(client: &kube::Client, name: &str, spec: Value) -> ClusterObject {
    let api: Api<ClusterSmtpSettings> = Api::all(client.clone());
    let obj: ClusterSmtpSettings = serde_json::from_value(json!({
        "apiVersion": "smtp-operator.io/v1alpha1", "kind": "ClusterSmtpSettings",
        "metadata": {"name": name}, "spec": spec,
    }))
    .expect("valid ClusterSmtpSettings");
    api.create(&PostParams::default(), &obj).await.expect("create ClusterSmtpSettings");
    ClusterObject(name.to_string())
}

fn cluster_condition(
    obj: &ClusterSmtpSettings,
    type_: &str,
) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    obj.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_).cloned()
}

/// Polls a ClusterSmtpSettings until condition `type_` has `status` (and `reason`), at most 60 s.
async fn wait_cluster_condition(
    client: &kube::Client,
    name: &str,
    type_: &str,
    status: &str,
    reason: Option<&str>,
) -> ClusterSmtpSettings {
    let api: Api<ClusterSmtpSettings> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let obj = api.get(name).await.expect("get ClusterSmtpSettings");
        if cluster_condition(&obj, type_).is_some_and(|c| c.status == status && reason.is_none_or(|r| c.reason == r)) {
            return obj;
        }
        assert!(Instant::now() < deadline, "{name}: no {type_}={status} {reason:?}; status {:?}", obj.status);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits (at most 30 s) until the operator's /metrics has a line starting with `prefix`; returns that line.
async fn metric_line(op: &Operator, prefix: &str) -> String {
    let addr = op.metrics_addr();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = http_get(&addr, "/metrics");
        if let Some(line) = body.lines().find(|l| l.starts_with(prefix)) {
            return line.to_string();
        }
        assert!(Instant::now() < deadline, "no metric {prefix} in:\n{body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn cluster_settings_resolve_in_the_cluster_resource_namespace_and_go_ready() {
    let _one = CLUSTER_SETTINGS.lock().await;
    let mut s = Scenario::new("e2e-csmtp", &peer_args(&[])).await;
    // the scenario's namespace is the cluster resource namespace: the credentials live there
    s.basic_credentials(PASSWORD, true).await;
    let resources = s.ns().to_string();
    let flags = format!("--cluster-resource-namespace={resources}");
    s.start_operator(&["--cluster-settings=true", &flags]);
    let name = unique_name("company");
    let mut spec = s.basic_spec();
    spec["allowedNamespaces"] = json!({});
    let _guard = create_cluster_smtp(&s.client, &name, spec).await;
    let missing = unique_name("missing");
    let mut spec = s.basic_spec();
    spec["auth"]["basic"]["passwordSecretRef"]["name"] = json!("not-there");
    let _guard_missing = create_cluster_smtp(&s.client, &missing, spec).await;

    let obj = wait_cluster_condition(&s.client, &name, "Ready", "True", Some("CheckSucceeded")).await;
    assert_eq!(cluster_condition(&obj, "Degraded").unwrap().reason, "NoWarnings");
    let lc = obj.status.as_ref().unwrap().last_check.clone().unwrap();
    let cert = lc.certificate.expect("status.lastCheck.certificate");
    assert_eq!(cert.subject, "CN=localhost");
    assert_eq!(cert.issuer, "CN=smtp-operator test CA");
    assert_eq!(cert.dns_names, ["localhost"]);
    assert_eq!(s.peer.count("auth"), 1, "{:?}", s.peer.events());
    let table = kubectl_ok(["get", "csmtp", &name, "-o", "wide"]);
    for column in
        ["SERVER", "PORT", "AUTH", "READY", "REASON", "LAST CHECK", "DEGRADED", "CheckSucceeded", "NoWarnings"]
    {
        assert!(table.contains(column), "kubectl get csmtp lacks {column}:\n{table}");
    }
    let mail = kubectl_ok(["get", "mail", "-A"]);
    assert!(mail.contains(&name), "category mail lists the ClusterSmtpSettings:\n{mail}");
    // events about a cluster-scoped object live in the default namespace
    wait_event(&s.client, "default", &name, "Normal", "CheckSucceeded").await;

    // a Secret that is not in the cluster resource namespace is not found, whatever other namespaces hold
    let refused = wait_cluster_condition(&s.client, &missing, "Valid", "False", Some("SecretNotFound")).await;
    let message = cluster_condition(&refused, "Valid").unwrap().message;
    assert!(message.contains("not-there"), "{message}");

    let op = s.op();
    let ready = metric_line(op, &format!(r#"smtp_operator_ready{{namespace="",name="{name}""#)).await;
    assert!(ready.contains(r#"kind="ClusterSmtpSettings",reason="CheckSucceeded"} 1"#), "{ready}");
    let degraded = metric_line(op, &format!(r#"smtp_operator_degraded{{namespace="",name="{name}""#)).await;
    assert!(degraded.ends_with(" 0"), "{degraded}");
    let scope = metric_line(op, r#"smtp_operator_resources{namespace="",ready="true",scope="Cluster"}"#).await;
    assert!(scope.ends_with(" 1"), "{scope}");
    let log = op.log_text();
    assert!(!log.contains(PASSWORD), "password in the log");
    s.finish().await;
}

#[tokio::test]
async fn a_certificate_expiring_in_3_days_is_degraded_while_ready() {
    let mut s = Scenario::new("e2e-expiring", &peer_args(&["--cert-days", "3"])).await;
    s.basic_credentials(PASSWORD, true).await;
    s.start_operator(&[]);
    s.create("mail", s.basic_spec()).await;

    let obj = s.wait_condition("mail", "Degraded", "True", Some("CertificateExpiresSoon")).await;
    assert_eq!(condition(&obj, "Ready").unwrap().status, "True", "an early warning leaves Ready True");
    let cert = obj.status.as_ref().unwrap().last_check.clone().unwrap().certificate.expect("certificate");
    let not_after: k8s_openapi::jiff::Timestamp = cert.not_after.parse().expect("RFC 3339 notAfter");
    let left = not_after.as_second() - k8s_openapi::jiff::Timestamp::now().as_second();
    assert!((2 * 86_400..=3 * 86_400).contains(&left), "notAfter {} is not 3 days ahead", cert.not_after);
    let degraded = condition(&obj, "Degraded").unwrap();
    assert!(degraded.message.contains(&cert.not_after), "the message carries the date: {}", degraded.message);
    assert!(degraded.message.contains("CN=localhost") && degraded.message.contains("14d"), "{}", degraded.message);
    let events = s.wait_event("mail", "Warning", "CertificateExpiresSoon").await;
    assert!(events.iter().any(|(_, r, n)| r == "CertificateExpiresSoon" && n.contains(&cert.not_after)), "{events:?}");

    // the metric carries the date
    let ns = s.ns().to_string();
    let expiry = format!(
        r#"smtp_operator_certificate_expiry_timestamp_seconds{{namespace="{ns}",name="mail",endpoint="smtp"}}"#
    );
    let line = metric_line(s.op(), &expiry).await;
    let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(value as i64, not_after.as_second(), "{line}");
    let line = metric_line(s.op(), &format!(r#"smtp_operator_degraded{{namespace="{ns}",name="mail""#)).await;
    assert!(line.ends_with(" 1"), "{line}");

    // another check with the same finding: no new event, the condition's transition time stays
    let connects = s.peer.count("connect");
    annotate_smtp(&s.client, s.ns(), "mail", "smtp-operator.io/check-requested-at", "again").await;
    let first_check = obj.status.as_ref().unwrap().last_check.clone().unwrap().time;
    let again = wait_for(&s.client, s.ns(), "mail", 60, |o| {
        o.status.as_ref().and_then(|st| st.last_check.as_ref()).is_some_and(|l| l.time != first_check)
            || s.peer.count("connect") > connects + 1
    })
    .await;
    assert!(s.peer.count("connect") > connects, "checked again");
    let again_degraded = condition(&again, "Degraded").unwrap();
    assert_eq!(again_degraded.last_transition_time, degraded.last_transition_time);
    assert_eq!(again_degraded.message, degraded.message, "the message does not count down");
    let warnings = support::operator::events_for(&s.client, s.ns(), "mail").await;
    let n: Vec<_> = warnings.iter().filter(|(_, r, _)| r == "CertificateExpiresSoon").collect();
    assert_eq!(n.len(), 1, "one event on the transition, not per check: {warnings:?}");
    s.finish().await;
}

#[tokio::test]
async fn auth_offered_before_starttls_is_degraded_but_never_used_in_clear_text() {
    let mut s = Scenario::new("e2e-plainauth", &peer_args(&["--auth-before-tls"])).await;
    s.basic_credentials(PASSWORD, true).await;
    s.start_operator(&[]);
    s.create("mail", s.basic_spec()).await;

    let obj = s.wait_condition("mail", "Degraded", "True", Some("AuthOverPlaintextOffered")).await;
    assert_eq!(condition(&obj, "Ready").unwrap().status, "True");
    let message = condition(&obj, "Degraded").unwrap().message;
    assert!(message.contains("PLAIN") && message.contains("STARTTLS"), "{message}");
    s.wait_event("mail", "Warning", "AuthOverPlaintextOffered").await;
    // the operator authenticated once, after STARTTLS (the EHLO over TLS comes first)
    let events = s.peer.events();
    let tls_ehlo = events.iter().position(|e| e["event"] == "ehlo" && e["tls"] == true);
    let auth = events.iter().position(|e| e["event"] == "auth_command");
    assert!(tls_ehlo.is_some() && tls_ehlo < auth, "AUTH only after STARTTLS: {events:?}");
    assert_eq!(s.peer.count("auth_command"), 1, "{events:?}");
    s.finish().await;
}

/// Deletes a relay's cluster-scoped access objects on drop (when the test failed before the finalizer ran).
struct ClusterAccessGuard(String);

impl Drop for ClusterAccessGuard {
    fn drop(&mut self) {
        for kind in ["clusterrolebinding", "clusterrole"] {
            let _ = kubectl(["delete", kind, &self.0, "--ignore-not-found", "--wait=false"]);
        }
    }
}

async fn create_relay(client: &kube::Client, ns: &str, settings: &str) -> SmtpRelay {
    let api: Api<SmtpRelay> = Api::namespaced(client.clone(), ns);
    let obj: SmtpRelay = serde_json::from_value(json!({
        "apiVersion": "smtp-operator.io/v1alpha1", "kind": "SmtpRelay", "metadata": {"name": "mail"},
        "spec": {"settingsRef": {"kind": "ClusterSmtpSettings", "name": settings}},
    }))
    .unwrap();
    api.create(&PostParams::default(), &obj).await.expect("create SmtpRelay")
}

fn relay_condition(relay: &SmtpRelay, type_: &str) -> (String, String, String) {
    let c = relay.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == type_).unwrap();
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

/// The relay controller's apply step (the library function the operator runs) for a relay in `ns`, then a
/// fresh read of the relay with the status written.
async fn apply(client: &kube::Client, ns: &str, pod: &RelayPodSettings) -> SmtpRelay {
    let api: Api<SmtpRelay> = Api::namespaced(client.clone(), ns);
    let relay = api.get("mail").await.unwrap();
    let status = apply_relay(client, &relay, pod).await.expect("apply relay");
    write_status(client, &relay, &status).await.unwrap();
    api.get("mail").await.unwrap()
}

#[tokio::test]
async fn a_relay_uses_cluster_settings_from_an_allowed_namespace_and_is_refused_from_another() {
    let _one = CLUSTER_SETTINGS.lock().await;
    let mut s = Scenario::new("e2e-crelay", &peer_args(&[])).await;
    s.basic_credentials(PASSWORD, true).await;
    let resources = s.ns().to_string();
    let (allowed, denied) = (s.namespace("e2e-crelay-ok").await, s.namespace("e2e-crelay-no").await);
    let flag = format!("--cluster-resource-namespace={resources}");
    s.start_operator(&["--cluster-settings=true", &flag]);
    let name = unique_name("company");
    let mut spec = s.basic_spec();
    spec["allowedNamespaces"] = json!({"matchLabels": {"kubernetes.io/metadata.name": allowed}});
    let _settings = create_cluster_smtp(&s.client, &name, spec).await;
    wait_cluster_condition(&s.client, &name, "Ready", "True", Some("CheckSucceeded")).await;
    let pod = RelayPodSettings {
        image: "smtp-operator:test".into(),
        policy: PolicyArgs {
            allowed_ports: s.peer.port.to_string(),
            allowed_token_ports: "443".into(),
            denied_cidrs: String::new(),
            require_secret_binding: true,
        },
        network_policy: false,
        cluster_resource_namespace: Some(resources.clone()),
    };

    // allowed: Valid, the access the relay needs by name, and the relay, as its own ServiceAccount, delivers
    let access = cluster_access_name(&allowed, "mail");
    let _guard = ClusterAccessGuard(access.clone());
    create_relay(&s.client, &allowed, &name).await;
    let relay = apply(&s.client, &allowed, &pod).await;
    assert_eq!(relay_condition(&relay, "Valid").1, "Valid");
    assert_eq!(relay_condition(&relay, "Ready").1, "PodsNotAvailable", "settings Ready, no pod runs here");
    assert!(relay.metadata.finalizers.unwrap_or_default().contains(&FINALIZER.to_string()));
    let kubeconfig = tempfile::NamedTempFile::new().unwrap();
    write_token_kubeconfig(&create_token("mail-relay", &allowed), kubeconfig.path());
    let kc = kubeconfig.path().to_str().unwrap();
    assert!(can_i(kubeconfig.path(), &["get", &format!("clustersmtpsettings.smtp-operator.io/{name}")]));
    assert!(!can_i(kubeconfig.path(), &["list", "clustersmtpsettings.smtp-operator.io"]), "by name only");
    assert!(can_i(kubeconfig.path(), &["get", "secret/smtp-credentials", "-n", &resources]));
    assert!(!can_i(kubeconfig.path(), &["get", "secret/other", "-n", &resources]), "only the settings' Secrets");
    let ports = format!("--allowed-ports={}", s.peer.port);
    let args = ["--denied-cidrs=", ports.as_str(), flag.as_str()];
    let mut process = RelayProcess::start_with_env(&allowed, "mail", &args, "127.0.0.1", &[("KUBECONFIG", kc)]);
    let creds: k8s_openapi::api::core::v1::Secret =
        Api::namespaced(s.client.clone(), &allowed).get("mail-relay-credentials").await.unwrap();
    let data = creds.data.unwrap();
    let (user, password) = (
        String::from_utf8(data["username"].0.clone()).unwrap(),
        String::from_utf8(data["password"].0.clone()).unwrap(),
    );
    let mut d = Dialog::connect(&process.addr);
    let auth = d.login(&user, &password);
    assert!(auth.starts_with("235"), "{auth}");
    assert!(d.cmd("MAIL FROM:<alerts@example.com>").starts_with("250"));
    assert!(d.cmd("RCPT TO:<ops@example.com>").starts_with("250"));
    assert!(d.cmd("DATA").starts_with("354"));
    d.raw(b"Subject: through the company settings\r\n\r\nhello\r\n.\r\n");
    let sent = d.reply();
    assert!(sent.starts_with("250"), "{sent}\n{}", process.log_text());
    let subjects: Vec<String> =
        s.peer.events_of("message").iter().map(|e| e["subject"].as_str().unwrap_or_default().to_string()).collect();
    assert!(subjects.contains(&"through the company settings".to_string()), "{subjects:?}");
    process.terminate();

    // disallowed: Valid=False NamespaceNotAllowed, no access granted, and its relay sends nothing
    create_relay(&s.client, &denied, &name).await;
    let refused = apply(&s.client, &denied, &pod).await;
    let (status, reason, message) = relay_condition(&refused, "Valid");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "NamespaceNotAllowed"), "{message}");
    assert!(message.contains(&name) && message.contains(&denied), "{message}");
    assert_eq!(relay_condition(&refused, "Ready").1, "NamespaceNotAllowed");
    let roles: Api<ClusterRole> = Api::all(s.client.clone());
    assert!(roles.get_opt(&cluster_access_name(&denied, "mail")).await.unwrap().is_none(), "access granted");
    let connects = s.peer.count("connect");
    let log = relay_log_until(&denied, &["--denied-cidrs=", &ports, &flag], "NamespaceNotAllowed");
    assert!(!log.contains("relay listening"), "the relay must not serve without usable settings:\n{log}");
    assert_eq!(s.peer.count("connect"), connects, "nothing sent from the disallowed namespace");

    // deleting the allowed relay removes its cluster access (the finalizer), then the relay itself
    let api: Api<SmtpRelay> = Api::namespaced(s.client.clone(), &allowed);
    api.delete("mail", &Default::default()).await.unwrap();
    let deleting = api.get("mail").await.unwrap();
    assert!(deleting.metadata.deletion_timestamp.is_some(), "held by the finalizer");
    release_cluster_access(&s.client, &deleting, Some(&resources)).await.unwrap();
    assert!(roles.get_opt(&access).await.unwrap().is_none(), "ClusterRole left behind");
    let role: Api<k8s_openapi::api::rbac::v1::Role> = Api::namespaced(s.client.clone(), &resources);
    assert!(role.get_opt(&access).await.unwrap().is_none(), "Role left behind");
    let deadline = Instant::now() + Duration::from_secs(30);
    while api.get_opt("mail").await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "the SmtpRelay stayed after its finalizer was removed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    s.finish().await;
}

/// Runs `smtp-operator relay` for `ns/mail` (admin kubeconfig) until its log contains `needle` (at most 60 s),
/// then stops it; returns the log.
fn relay_log_until(ns: &str, args: &[&str], needle: &str) -> String {
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_smtp-operator"))
        .args(["relay", "--namespace", ns, "--name", "mail", "--metrics-addr", "127.0.0.1:0"])
        .args(["--listen-addr", "127.0.0.1:0"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .expect("spawn smtp-operator relay");
    let deadline = Instant::now() + Duration::from_secs(60);
    let text = loop {
        let text = std::fs::read_to_string(log.path()).unwrap_or_default();
        if text.contains(needle) || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(text.contains(needle), "relay log never said {needle:?}:\n{text}");
    text
}

/// Polls the relay `ns/mail` until its `Valid` condition is (`status`, `reason`), at most `secs`.
async fn wait_relay_valid(client: &kube::Client, ns: &str, want: (&str, &str), secs: u64) -> SmtpRelay {
    let api: Api<SmtpRelay> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let relay = api.get("mail").await.expect("get SmtpRelay");
        let valid = relay.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == "Valid"));
        if valid.is_some_and(|c| (c.status.as_str(), c.reason.as_str()) == want) {
            return relay;
        }
        assert!(Instant::now() < deadline, "relay {ns}/mail: no Valid {want:?} within {secs} s; {:?}", relay.status);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The relay controller of a running operator follows the labels of a relay's namespace through a Namespace
/// watch, not only on its periodic pass (every 60 s): setting the label `allowedNamespaces` selects grants the
/// relay its cluster access, removing it takes that access away, each well within the 60 s. On a private plane:
/// the operator watches every namespace, which would disturb the other tests on the shared one.
#[tokio::test]
async fn a_relay_follows_its_namespace_labels_at_once() {
    let plane = PrivatePlane::start("e2e-relay-labels");
    let kubeconfig = plane.kubeconfig().to_path_buf();
    let mut s = Scenario::on_plane("e2e-rlabels", &peer_args(&[]), &kubeconfig).await;
    s.basic_credentials(PASSWORD, true).await;
    let resources = s.ns().to_string();
    let app = s.namespace("e2e-rlabels-app").await;
    let flag = format!("--cluster-resource-namespace={resources}");
    let args = s.all_namespaces_args(&["--cluster-settings=true", &flag]);
    s.start_operator_as(&args, None);
    let name = unique_name("labelled");
    let mut spec = s.basic_spec();
    spec["allowedNamespaces"] = json!({"matchLabels": {"smtp-operator.io/e2e-mail": "allowed"}});
    let _settings = create_cluster_smtp(&s.client, &name, spec).await;
    wait_cluster_condition(&s.client, &name, "Ready", "True", Some("CheckSucceeded")).await;
    create_relay(&s.client, &app, &name).await;
    let roles: Api<ClusterRole> = Api::all(s.client.clone());
    let access = cluster_access_name(&app, "mail");
    wait_relay_valid(&s.client, &app, ("False", "NamespaceNotAllowed"), 60).await;
    assert!(roles.get_opt(&access).await.unwrap().is_none(), "access granted to a namespace not allowed");

    let label = |value: &str| {
        let out = kubectl_at(&kubeconfig, ["label", "namespace", &app, &format!("smtp-operator.io/e2e-mail{value}")]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    label("=allowed");
    let relay = wait_relay_valid(&s.client, &app, ("True", "Valid"), 20).await;
    assert!(relay.metadata.finalizers.unwrap_or_default().contains(&FINALIZER.to_string()));
    assert!(roles.get_opt(&access).await.unwrap().is_some(), "the allowed relay has no cluster access");

    label("-");
    wait_relay_valid(&s.client, &app, ("False", "NamespaceNotAllowed"), 20).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while roles.get_opt(&access).await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "the relay kept its cluster access after its label was removed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!s.op().log_text().contains("panicked"), "{}", s.op().log_text());
    s.finish().await;
}
