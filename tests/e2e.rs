//! End to end: the operator process against the real kube-apiserver and real SMTP servers (aiosmtpd).
//! Each test has its own namespace, SMTP peer and operator (`--watch-namespace`), so tests run in parallel.

mod support;

use std::time::Duration;

use kube::api::Api;
use serde_json::json;
use smtp_operator::api::{CheckResult, SmtpSettings, TestEmailResult};

use support::operator::*;
use support::scenario::Scenario;

const PASSWORD: &str = "pw-Distinctive-7f3a9c";

const PLAIN_PEER: [&str; 8] =
    ["--tls", "starttls", "--auth", "plain,login", "--user", "alerts", "--password", PASSWORD];

/// Waits until the operator's log shows `n` reconciles (its debug line `reconciled`).
async fn wait_reconciled(op: &Operator, n: usize, secs: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let seen = op.log_text().lines().filter(|l| l.contains(r#""message":"reconciled""#)).count();
        if seen >= n {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "no reconcile logged:\n{}", op.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn basic_auth_goes_ready_and_stays_idle() {
    let mut s = Scenario::new("e2e-ready", &PLAIN_PEER).await;
    s.basic_credentials(PASSWORD, true).await;
    s.start_operator(&[]);
    s.create("mail", s.basic_spec()).await;
    let (client, ns, peer) = (s.client.clone(), s.ns().to_string(), &s.peer);

    // kubectl UX: `kubectl wait` on the Ready condition, the printer columns, `kubectl describe`
    let waited = support::kube::kubectl_ok(["wait", "--for=condition=Ready", "smtp/mail", "-n", &ns, "--timeout=60s"]);
    assert!(waited.contains("condition met"), "{waited}");
    let obj = s.wait_condition("mail", "Ready", "True", Some("CheckSucceeded")).await;
    let table = support::kube::kubectl_ok(["get", "smtp", "-n", &ns]);
    for column in
        ["SERVER", "PORT", "AUTH", "READY", "REASON", "LAST CHECK", "AGE", "127.0.0.1", "Basic", "CheckSucceeded"]
    {
        assert!(table.contains(column), "kubectl get smtp lacks {column}:\n{table}");
    }
    let described = support::kube::kubectl_ok(["describe", "smtp", "mail", "-n", &ns]);
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
    let events = s.wait_event("mail", "Normal", "CheckSucceeded").await;

    // idle: nothing dialled, nothing written
    let connects = peer.count("connect");
    let rv = obj.metadata.resource_version.clone();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let api: Api<SmtpSettings> = Api::namespaced(client.clone(), &ns);
    assert_eq!(api.get("mail").await.unwrap().metadata.resource_version, rv, "status rewritten while idle");
    assert_eq!(peer.count("connect"), connects, "dialled while idle");

    // the password never shows up in the log (debug level), events or status
    let log = s.op().log_text();
    assert!(log.contains("check finished"), "operator log has the check: {log}");
    assert!(!log.contains(PASSWORD), "password in the operator log");
    assert!(!format!("{events:?}").contains(PASSWORD));
    assert!(!serde_json::to_string(&obj.status).unwrap().contains(PASSWORD));
    assert!(!s.peer.events_raw().contains(PASSWORD));
    s.finish().await;
}

#[tokio::test]
async fn late_secret_turns_ready_without_touching_the_resource() {
    let mut s = Scenario::new("e2e-late", &PLAIN_PEER).await;
    let ca = String::from_utf8(s.peer.ca_pem()).unwrap();
    create_config_map(&s.client, s.ns(), "peer-ca", &[("ca.crt", &ca)]).await;
    s.start_operator(&[]);
    let created = create_smtp(&s.client, s.ns(), "mail", s.basic_spec()).await;

    let obj = s.wait_condition("mail", "Valid", "False", Some("SecretNotFound")).await;
    assert_eq!(condition(&obj, "Ready").unwrap().status, "False");
    assert!(condition(&obj, "Ready").unwrap().message.contains("smtp-credentials"));
    assert_eq!(s.peer.count("connect"), 0, "no connection without the Secret");

    let allowed = format!("127.0.0.1:{}", s.peer.port);
    let annotations = [("smtp-operator.io/allowed-servers", allowed.as_str())];
    create_secret(&s.client, s.ns(), "smtp-credentials", &[("password", PASSWORD.as_bytes())], &annotations).await;
    let obj = s.wait_condition("mail", "Ready", "True", None).await;
    assert_eq!(obj.metadata.generation, created.metadata.generation, "the resource was not touched");
    s.finish().await;
}

#[tokio::test]
async fn wrong_password_is_authentication_failed_with_the_reply() {
    let mut s = Scenario::new("e2e-wrongpw", &PLAIN_PEER).await;
    s.basic_credentials("not-the-password", true).await;
    s.start_operator(&[]);
    s.create("mail", s.basic_spec()).await;

    let obj = s.wait_condition("mail", "Ready", "False", Some("AuthenticationFailed")).await;
    assert_eq!(condition(&obj, "Connected").unwrap().status, "True");
    let auth = condition(&obj, "Authenticated").unwrap();
    assert_eq!(auth.reason, "AuthenticationFailed");
    assert!(auth.message.contains("535"), "reply code in message: {}", auth.message);
    assert!(!auth.message.contains("not-the-password"));
    assert_eq!(obj.status.as_ref().unwrap().last_check.as_ref().unwrap().result, CheckResult::Failed);
    s.wait_event("mail", "Warning", "AuthenticationFailed").await;
    s.finish().await;
}

#[tokio::test]
async fn test_email_is_sent_once_per_request_even_across_restarts() {
    let mut s = Scenario::new("e2e-testmail", &PLAIN_PEER).await;
    s.basic_credentials(PASSWORD, true).await;
    s.start_operator(&[]);
    s.create("mail", s.basic_spec()).await;
    s.wait_condition("mail", "Ready", "True", None).await;

    annotate_smtp(&s.client, s.ns(), "mail", "smtp-operator.io/test-email-requested-at", "2026-12-01T10:00:00Z").await;
    let obj = wait_for(&s.client, s.ns(), "mail", 60, |o| {
        // a request right after a check waits for --min-check-interval (Deferred), then is answered
        o.status.as_ref().and_then(|s| s.test_email.as_ref()).is_some_and(|t| {
            t.request == "2026-12-01T10:00:00Z"
                && !matches!(t.result, TestEmailResult::Deferred | TestEmailResult::Sending)
        })
    })
    .await;
    let te = obj.status.as_ref().unwrap().test_email.clone().unwrap();
    assert_eq!(te.result, TestEmailResult::Sent, "{te:?}");
    assert!(te.message.starts_with("250"), "{}", te.message);
    let messages = s.peer.events_of("message");
    assert_eq!(messages.len(), 1, "exactly one message: {messages:?}");
    assert_eq!(messages[0]["mail_from"], "alerts@example.com");
    assert_eq!(messages[0]["rcpt_tos"], json!(["ops@example.com"]));
    assert!(messages[0]["subject"].as_str().unwrap().contains("mail"), "{:?}", messages[0]);
    s.wait_event("mail", "Normal", "TestEmailSent").await;

    // a restarted operator neither re-sends nor re-checks: asserted after its first reconcile of the object
    s.op().terminate();
    let connects = s.peer.count("connect");
    s.start_operator(&[]);
    wait_reconciled(s.op(), 1, 60).await;
    assert_eq!(s.peer.count("message"), 1, "re-sent after restart");
    assert_eq!(s.peer.count("connect"), connects, "re-checked after restart although nothing changed");
    s.finish().await;
}

#[tokio::test]
async fn an_operator_killed_while_sending_never_sends_that_test_email_again() {
    let mut peer_args = PLAIN_PEER.to_vec();
    peer_args.extend(["--data-delay", "60"]);
    let mut s = Scenario::new("e2e-sending", &peer_args).await;
    s.basic_credentials(PASSWORD, true).await;
    s.start_operator(&[]);
    s.create("mail", s.basic_spec()).await;
    s.wait_condition("mail", "Ready", "True", None).await;

    annotate_smtp(&s.client, s.ns(), "mail", "smtp-operator.io/test-email-requested-at", "once").await;
    // the peer has the message but holds its reply: the operator is between DATA and its status write
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while s.peer.count("message") == 0 {
        assert!(std::time::Instant::now() < deadline, "no message reached the peer: {:?}", s.peer.events());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let obj = wait_for(&s.client, s.ns(), "mail", 5, |_| true).await;
    let te = obj.status.as_ref().unwrap().test_email.clone().unwrap();
    assert_eq!((te.request.as_str(), te.result), ("once", TestEmailResult::Sending), "recorded before sending");
    s.op().kill(); // SIGKILL

    s.start_operator(&[]);
    let obj = wait_for(&s.client, s.ns(), "mail", 60, |o| {
        o.status.as_ref().and_then(|s| s.test_email.as_ref()).is_some_and(|t| t.result == TestEmailResult::Unknown)
    })
    .await;
    let te = obj.status.as_ref().unwrap().test_email.clone().unwrap();
    assert_eq!(te.request, "once");
    assert!(te.message.contains("stopped while sending"), "{}", te.message);
    // the interrupted check itself runs again, without the test email
    s.wait_condition("mail", "Ready", "True", Some("CheckSucceeded")).await;
    wait_reconciled(s.op(), 2, 60).await;
    assert_eq!(s.peer.count("message"), 1, "the test email was sent again: {:?}", s.peer.events_of("message"));
    s.finish().await;
}

#[tokio::test]
async fn a_fast_check_writes_status_once_per_object() {
    use futures::StreamExt;
    use kube::api::{WatchEvent, WatchParams};
    // SMTP_OPERATOR_STATUS_WRITE_OBJECTS=200 for the figure in the README (scripts/bench-status-writes)
    let n: usize = std::env::var("SMTP_OPERATOR_STATUS_WRITE_OBJECTS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let mut s = Scenario::new("e2e-writes", &["--tls", "none"]).await;
    let api: Api<SmtpSettings> = Api::namespaced(s.client.clone(), s.ns());
    // every status write is one MODIFIED event of the watch (the objects are never changed otherwise)
    let mut watch = api.watch(&WatchParams::default().timeout(290), "0").await.expect("watch").boxed();
    s.start_operator(&["--namespace-check-rate", "100000/m", "--global-check-rate", "100000/m"]);
    for i in 0..n {
        s.create(&format!("m{i:03}"), s.bare_spec()).await;
    }
    let mut writes = std::collections::BTreeMap::<String, usize>::new();
    let mut ready = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60 + n as u64);
    while ready.len() < n {
        let ev = tokio::time::timeout_at(deadline, watch.next()).await;
        let Ok(Some(Ok(ev))) = ev else { panic!("{} of {n} Ready; writes so far {writes:?}", ready.len()) };
        if let WatchEvent::Modified(o) = ev {
            let name = o.metadata.name.clone().unwrap();
            *writes.entry(name.clone()).or_default() += 1;
            if condition(&o, "Ready").is_some_and(|c| c.status == "True") {
                ready.insert(name);
            }
        }
    }
    let total: usize = writes.values().sum();
    eprintln!("status writes: {total} for {n} objects = {:.3} per object", total as f64 / n as f64);
    assert_eq!(total, n, "one status write per object to reach Ready: {writes:?}");
    s.finish().await;
}

#[tokio::test]
async fn unbound_secret_and_disallowed_port_send_nothing() {
    let mut s = Scenario::new("e2e-policy", &PLAIN_PEER).await;
    s.basic_credentials(PASSWORD, false).await;
    s.start_operator(&[]);
    s.create("unbound", s.basic_spec()).await;
    let obj = s.wait_condition("unbound", "Valid", "False", Some("CredentialsNotBoundToServer")).await;
    let msg = condition(&obj, "Valid").unwrap().message;
    assert!(msg.contains("smtp-credentials") && msg.contains("kubectl annotate secret"), "{msg}");
    assert!(msg.contains(&format!("127.0.0.1:{}", s.peer.port)), "{msg}");

    // the operator allows only the peer's port
    let mut other = s.basic_spec();
    other["port"] = json!(2526);
    s.create("port", other).await;
    s.wait_condition("port", "Valid", "False", Some("PortNotAllowed")).await;

    wait_reconciled(s.op(), 2, 30).await;
    assert_eq!(s.peer.count("connect"), 0, "the peer saw a connection: {:?}", s.peer.events());
    assert_eq!(s.peer.count("auth"), 0);
    s.finish().await;
}

#[tokio::test]
async fn server_without_starttls_is_refused_without_auth() {
    let mut s = Scenario::new(
        "e2e-nostarttls",
        &["--tls", "starttls", "--no-starttls", "--auth", "plain", "--user", "alerts", "--password", PASSWORD],
    )
    .await;
    s.basic_credentials(PASSWORD, true).await;
    s.start_operator(&[]);
    s.create("mail", s.basic_spec()).await;
    let obj = s.wait_condition("mail", "Ready", "False", Some("StartTlsNotOffered")).await;
    assert_eq!(condition(&obj, "Connected").unwrap().reason, "StartTlsNotOffered");
    assert_eq!(s.peer.count("auth"), 0, "credentials must not cross in clear text");
    s.finish().await;
}

#[tokio::test]
async fn check_requested_annotation_rechecks_and_metrics_are_served() {
    let mut s = Scenario::new("e2e-recheck", &PLAIN_PEER).await;
    s.basic_credentials(PASSWORD, true).await;
    s.start_operator(&[]);
    s.create("mail", s.basic_spec()).await;
    s.wait_condition("mail", "Ready", "True", None).await;
    let auths = s.peer.count("auth");
    annotate_smtp(&s.client, s.ns(), "mail", "smtp-operator.io/check-requested-at", "again").await;
    // deferred by --min-check-interval 1s at most, then checked
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while s.peer.count("auth") == auths {
        assert!(std::time::Instant::now() < deadline, "no re-check after check-requested-at");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let addr = s.op().metrics_addr();
    assert_eq!(http_get(&addr, "/healthz").0, 200);
    assert_eq!(http_get(&addr, "/readyz").0, 200);
    // the gauge follows the status the re-check leaves (the request was deferred first: Ready=Unknown)
    let ready = format!(r#"smtp_operator_resources{{namespace="{}",ready="true",scope="Namespaced"}} 1"#, s.ns());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let body = loop {
        let (code, body) = http_get(&addr, "/metrics");
        assert_eq!(code, 200);
        if body.contains(&ready) {
            break body;
        }
        assert!(std::time::Instant::now() < deadline, "no {ready}:\n{body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        body.contains(r#"smtp_operator_checks_total{result="Succeeded",reason="Succeeded",class="none"}"#),
        "{body}"
    );
    assert!(body.contains("smtp_operator_check_step_duration_seconds_bucket"), "{body}");
    assert!(!body.contains(PASSWORD));
    s.finish().await;
}
