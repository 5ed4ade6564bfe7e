//! End to end: the operator process against the real kube-apiserver and real SMTP servers (aiosmtpd).
//! Each test has its own namespace, SMTP peer and operator (`--watch-namespace`), so tests run in parallel.

mod support;

use std::time::Duration;

use kube::api::Api;
use serde_json::json;
use smtp_operator::api::{CheckResult, SmtpSettings, TestEmailResult};

use support::kube::{TestNamespace, client};
use support::operator::*;
use support::smtp_peer::SmtpPeer;

const PASSWORD: &str = "pw-Distinctive-7f3a9c";

/// Operator flags for a test namespace whose peers live on loopback (denied by default).
fn flags<'a>(ns: &'a str, ports: &'a str) -> Vec<String> {
    vec![
        "--watch-namespace".into(),
        ns.into(),
        "--denied-cidrs=".into(),
        "--allowed-ports".into(),
        ports.into(),
        "--min-check-interval".into(),
        "1s".into(),
        "--namespace-check-rate".into(),
        "600/m".into(),
    ]
}

fn start_operator(ns: &str, port: u16, extra: &[&str]) -> Operator {
    let port = port.to_string();
    let mut args = flags(ns, &port);
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    Operator::start(&refs)
}

fn basic_spec(port: u16) -> serde_json::Value {
    json!({
        "server": "127.0.0.1",
        "port": port,
        "from": "Platform Alerts <alerts@example.com>",
        "tls": {"mode": "StartTLS", "caBundle": {"configMapKeyRef": {"name": "peer-ca", "key": "ca.crt"}}},
        "auth": {"type": "Basic", "basic": {"username": "alerts", "passwordSecretRef": {"name": "smtp-credentials", "key": "password"}}},
        "testEmail": {"to": ["ops@example.com"]},
    })
}

async fn setup(client: &kube::Client, ns: &str, peer: &SmtpPeer, password: &str, bound: bool) {
    let ca = String::from_utf8(peer.ca_pem()).unwrap();
    create_config_map(client, ns, "peer-ca", &[("ca.crt", &ca)]).await;
    let allowed = format!("127.0.0.1:{}", peer.port);
    let annotations: Vec<(&str, &str)> =
        if bound { vec![("smtp-operator.io/allowed-servers", &allowed)] } else { vec![] };
    create_secret(client, ns, "smtp-credentials", &[("password", password.as_bytes())], &annotations).await;
}

fn plain_peer() -> SmtpPeer {
    SmtpPeer::start(&["--tls", "starttls", "--auth", "plain,login", "--user", "alerts", "--password", PASSWORD])
}

#[tokio::test]
async fn basic_auth_goes_ready_and_stays_idle() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "e2e-ready").await;
    let peer = plain_peer();
    setup(&client, ns.name(), &peer, PASSWORD, true).await;
    let op = start_operator(ns.name(), peer.port, &[]);
    create_smtp(&client, ns.name(), "mail", basic_spec(peer.port)).await;

    // kubectl UX: `kubectl wait` on the Ready condition, the printer columns, `kubectl describe`
    let waited =
        support::kube::kubectl_ok(["wait", "--for=condition=Ready", "smtp/mail", "-n", ns.name(), "--timeout=60s"]);
    assert!(waited.contains("condition met"), "{waited}");
    let obj = wait_condition(&client, ns.name(), "mail", "Ready", "True", Some("CheckSucceeded"), 60).await;
    let table = support::kube::kubectl_ok(["get", "smtp", "-n", ns.name()]);
    for column in
        ["SERVER", "PORT", "AUTH", "READY", "REASON", "LAST CHECK", "AGE", "127.0.0.1", "Basic", "CheckSucceeded"]
    {
        assert!(table.contains(column), "kubectl get smtp lacks {column}:\n{table}");
    }
    let described = support::kube::kubectl_ok(["describe", "smtp", "mail", "-n", ns.name()]);
    assert!(described.contains("CheckSucceeded") && described.contains("AUTH PLAIN accepted"), "{described}");
    let lc = obj.status.as_ref().unwrap().last_check.clone().unwrap();
    assert_eq!(lc.result, CheckResult::Succeeded);
    assert_eq!(lc.auth_mechanism.as_deref(), Some("PLAIN"));
    assert!(lc.tls_version.is_some(), "negotiated TLS version recorded");
    assert!(lc.server_mechanisms.contains(&"PLAIN".to_string()));
    assert_eq!(condition(&obj, "Authenticated").unwrap().reason, "Authenticated");
    assert_eq!(condition(&obj, "Connected").unwrap().status, "True");
    assert!(obj.status.as_ref().unwrap().next_check_time.is_some());
    assert_eq!(peer.count("auth"), 1, "one AUTH: {:?}", peer.events());
    let events = events_for(&client, ns.name(), "mail").await;
    assert!(events.iter().any(|(t, r, _)| t == "Normal" && r == "CheckSucceeded"), "{events:?}");

    // idle: nothing dialled, nothing written
    let connects = peer.count("connect");
    let rv = obj.metadata.resource_version.clone();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let api: Api<SmtpSettings> = Api::namespaced(client.clone(), ns.name());
    assert_eq!(api.get("mail").await.unwrap().metadata.resource_version, rv, "status rewritten while idle");
    assert_eq!(peer.count("connect"), connects, "dialled while idle");

    // the password never shows up in the log (debug level), events or status
    let log = op.log_text();
    assert!(log.contains("check finished"), "operator log has the check: {log}");
    assert!(!log.contains(PASSWORD), "password in the operator log");
    assert!(!format!("{events:?}").contains(PASSWORD));
    assert!(!serde_json::to_string(&obj.status).unwrap().contains(PASSWORD));
    assert!(!peer.events_raw().contains(PASSWORD));
    delete_all_smtp(&client, ns.name()).await;
    ns.cleanup().await;
}

#[tokio::test]
async fn late_secret_turns_ready_without_touching_the_resource() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "e2e-late").await;
    let peer = plain_peer();
    let ca = String::from_utf8(peer.ca_pem()).unwrap();
    create_config_map(&client, ns.name(), "peer-ca", &[("ca.crt", &ca)]).await;
    let _op = start_operator(ns.name(), peer.port, &[]);
    let created = create_smtp(&client, ns.name(), "mail", basic_spec(peer.port)).await;

    let obj = wait_condition(&client, ns.name(), "mail", "Valid", "False", Some("SecretNotFound"), 60).await;
    assert_eq!(condition(&obj, "Ready").unwrap().status, "False");
    assert!(condition(&obj, "Ready").unwrap().message.contains("smtp-credentials"));
    assert_eq!(peer.count("connect"), 0, "no connection without the Secret");

    let allowed = format!("127.0.0.1:{}", peer.port);
    create_secret(
        &client,
        ns.name(),
        "smtp-credentials",
        &[("password", PASSWORD.as_bytes())],
        &[("smtp-operator.io/allowed-servers", &allowed)],
    )
    .await;
    let obj = wait_condition(&client, ns.name(), "mail", "Ready", "True", None, 60).await;
    assert_eq!(obj.metadata.generation, created.metadata.generation, "the resource was not touched");
    delete_all_smtp(&client, ns.name()).await;
    ns.cleanup().await;
}

#[tokio::test]
async fn wrong_password_is_authentication_failed_with_the_reply() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "e2e-wrongpw").await;
    let peer = plain_peer();
    setup(&client, ns.name(), &peer, "not-the-password", true).await;
    let _op = start_operator(ns.name(), peer.port, &[]);
    create_smtp(&client, ns.name(), "mail", basic_spec(peer.port)).await;

    let obj = wait_condition(&client, ns.name(), "mail", "Ready", "False", Some("AuthenticationFailed"), 60).await;
    assert_eq!(condition(&obj, "Connected").unwrap().status, "True");
    let auth = condition(&obj, "Authenticated").unwrap();
    assert_eq!(auth.reason, "AuthenticationFailed");
    assert!(auth.message.contains("535"), "reply code in message: {}", auth.message);
    assert!(!auth.message.contains("not-the-password"));
    assert_eq!(obj.status.as_ref().unwrap().last_check.as_ref().unwrap().result, CheckResult::Failed);
    let events = events_for(&client, ns.name(), "mail").await;
    assert!(events.iter().any(|(t, r, _)| t == "Warning" && r == "AuthenticationFailed"), "{events:?}");
    delete_all_smtp(&client, ns.name()).await;
    ns.cleanup().await;
}

#[tokio::test]
async fn test_email_is_sent_once_per_request_even_across_restarts() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "e2e-testmail").await;
    let peer = plain_peer();
    setup(&client, ns.name(), &peer, PASSWORD, true).await;
    let mut op = start_operator(ns.name(), peer.port, &[]);
    create_smtp(&client, ns.name(), "mail", basic_spec(peer.port)).await;
    wait_condition(&client, ns.name(), "mail", "Ready", "True", None, 60).await;

    annotate_smtp(&client, ns.name(), "mail", "smtp-operator.io/test-email-requested-at", "2026-12-01T10:00:00Z").await;
    let obj = wait_for(&client, ns.name(), "mail", 60, |o| {
        // a request right after a check waits for --min-check-interval (Deferred), then is answered
        o.status
            .as_ref()
            .and_then(|s| s.test_email.as_ref())
            .is_some_and(|t| t.request == "2026-12-01T10:00:00Z" && t.result != TestEmailResult::Deferred)
    })
    .await;
    let te = obj.status.as_ref().unwrap().test_email.clone().unwrap();
    assert_eq!(te.result, TestEmailResult::Sent, "{te:?}");
    assert!(te.message.starts_with("250"), "{}", te.message);
    let messages = peer.events_of("message");
    assert_eq!(messages.len(), 1, "exactly one message: {messages:?}");
    assert_eq!(messages[0]["mail_from"], "alerts@example.com");
    assert_eq!(messages[0]["rcpt_tos"], json!(["ops@example.com"]));
    assert!(messages[0]["subject"].as_str().unwrap().contains("mail"), "{:?}", messages[0]);
    let events = events_for(&client, ns.name(), "mail").await;
    assert!(events.iter().any(|(t, r, _)| t == "Normal" && r == "TestEmailSent"), "{events:?}");

    // a restarted operator neither re-sends nor re-checks
    op.terminate();
    let connects = peer.count("connect");
    let _op2 = start_operator(ns.name(), peer.port, &[]);
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(peer.count("message"), 1, "re-sent after restart");
    assert_eq!(peer.count("connect"), connects, "re-checked after restart although nothing changed");
    delete_all_smtp(&client, ns.name()).await;
    ns.cleanup().await;
}

#[tokio::test]
async fn unbound_secret_and_disallowed_port_send_nothing() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "e2e-policy").await;
    let peer = plain_peer();
    setup(&client, ns.name(), &peer, PASSWORD, false).await;
    // the operator allows only another port for the second resource's case
    let _op = start_operator(ns.name(), peer.port, &[]);
    create_smtp(&client, ns.name(), "unbound", basic_spec(peer.port)).await;
    let obj =
        wait_condition(&client, ns.name(), "unbound", "Valid", "False", Some("CredentialsNotBoundToServer"), 60).await;
    let msg = condition(&obj, "Valid").unwrap().message;
    assert!(msg.contains("smtp-credentials") && msg.contains("kubectl annotate secret"), "{msg}");
    assert!(msg.contains(&format!("127.0.0.1:{}", peer.port)), "{msg}");

    let mut other = basic_spec(peer.port);
    other["port"] = json!(2526);
    create_smtp(&client, ns.name(), "port", other).await;
    wait_condition(&client, ns.name(), "port", "Valid", "False", Some("PortNotAllowed"), 60).await;

    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(peer.count("connect"), 0, "the peer saw a connection: {:?}", peer.events());
    assert_eq!(peer.count("auth"), 0);
    delete_all_smtp(&client, ns.name()).await;
    ns.cleanup().await;
}

#[tokio::test]
async fn server_without_starttls_is_refused_without_auth() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "e2e-nostarttls").await;
    let peer = SmtpPeer::start(&[
        "--tls",
        "starttls",
        "--no-starttls",
        "--auth",
        "plain",
        "--user",
        "alerts",
        "--password",
        PASSWORD,
    ]);
    setup(&client, ns.name(), &peer, PASSWORD, true).await;
    let _op = start_operator(ns.name(), peer.port, &[]);
    create_smtp(&client, ns.name(), "mail", basic_spec(peer.port)).await;
    let obj = wait_condition(&client, ns.name(), "mail", "Ready", "False", Some("StartTlsNotOffered"), 60).await;
    assert_eq!(condition(&obj, "Connected").unwrap().reason, "StartTlsNotOffered");
    assert_eq!(peer.count("auth"), 0, "credentials must not cross in clear text");
    delete_all_smtp(&client, ns.name()).await;
    ns.cleanup().await;
}

#[tokio::test]
async fn check_requested_annotation_rechecks_and_metrics_are_served() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "e2e-recheck").await;
    let peer = plain_peer();
    setup(&client, ns.name(), &peer, PASSWORD, true).await;
    let op = start_operator(ns.name(), peer.port, &[]);
    create_smtp(&client, ns.name(), "mail", basic_spec(peer.port)).await;
    wait_condition(&client, ns.name(), "mail", "Ready", "True", None, 60).await;
    let auths = peer.count("auth");
    tokio::time::sleep(Duration::from_millis(1200)).await; // past --min-check-interval 1s
    annotate_smtp(&client, ns.name(), "mail", "smtp-operator.io/check-requested-at", "again").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while peer.count("auth") == auths {
        assert!(std::time::Instant::now() < deadline, "no re-check after check-requested-at");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let addr = op.metrics_addr();
    assert_eq!(http_get(&addr, "/healthz").0, 200);
    assert_eq!(http_get(&addr, "/readyz").0, 200);
    let (code, body) = http_get(&addr, "/metrics");
    assert_eq!(code, 200);
    assert!(body.contains(r#"smtp_operator_checks_total{result="Succeeded",reason="Succeeded"}"#), "{body}");
    assert!(body.contains("smtp_operator_check_step_duration_seconds_bucket"), "{body}");
    let ready = format!(r#"smtp_operator_resources{{namespace="{}",ready="true"}} 1"#, ns.name());
    assert!(body.contains(&ready), "{body}");
    assert!(!body.contains(PASSWORD));
    delete_all_smtp(&client, ns.name()).await;
    ns.cleanup().await;
}
