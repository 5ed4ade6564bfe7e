//! The cluster rows of the fault table (issue 11; the engine rows are `tests/faults.rs`) that leave the shared
//! control plane alone: a referenced Secret deleted while Ready and recreated, the namespace deleted with a
//! resource in it, and a status written by another field manager; plus the TLS row that needs the controller
//! (insecureSkipVerify against an expired certificate: Ready, with the warning event). Stopping the kube-apiserver
//! or etcd needs a private control plane: those rows are `tests/e2e_plane_faults.rs`.

mod support;

use std::time::{Duration, Instant};

use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use smtp_operator::api::SmtpSettings;
use support::kube::kubectl_ok;
use support::operator::*;
use support::scenario::Scenario;

const PASSWORD: &str = "e2e-faults-pw-31c9d0";
const PEER: [&str; 8] = ["--tls", "starttls", "--auth", "plain,login", "--user", "alerts", "--password", PASSWORD];

/// Nothing the operator wrote or logged holds the password.
async fn assert_no_password(s: &mut Scenario, name: &str) {
    let api: Api<SmtpSettings> = Api::namespaced(s.client.clone(), s.ns());
    let obj = api.get(name).await.unwrap();
    assert!(!serde_json::to_string(&obj.status).unwrap().contains(PASSWORD));
    assert!(!format!("{:?}", events_for(&s.client, s.ns(), name).await).contains(PASSWORD));
    assert!(!s.op().log_text().contains(PASSWORD), "password in the operator log");
}

#[tokio::test]
async fn a_secret_deleted_while_ready_is_secret_not_found_and_recreating_it_makes_it_ready_again() {
    let mut s = Scenario::new("e2e-secret-gone", &PEER).await;
    s.basic_credentials(PASSWORD, true).await;
    s.start_operator(&[]);
    s.create("mail", s.basic_spec()).await;
    s.wait_condition("mail", "Ready", "True", None).await;
    let connects = s.peer.count("connect");

    kubectl_ok(["delete", "secret", "smtp-credentials", "-n", s.ns(), "--wait=true"]);
    // within seconds: the Secret's watch event triggers the reconcile, no periodic check is needed
    let obj = wait_condition(&s.client, s.ns(), "mail", "Valid", "False", Some("SecretNotFound"), 15).await;
    let ready = condition(&obj, "Ready").unwrap();
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "SecretNotFound"));
    assert!(ready.message.contains("smtp-credentials"), "{}", ready.message);
    assert_eq!(s.peer.count("connect"), connects, "nothing is dialled without the Secret");

    let allowed = format!("127.0.0.1:{}", s.peer.port);
    let annotations = [("smtp-operator.io/allowed-servers", allowed.as_str())];
    create_secret(&s.client, s.ns(), "smtp-credentials", &[("password", PASSWORD.as_bytes())], &annotations).await;
    let obj = wait_condition(&s.client, s.ns(), "mail", "Ready", "True", Some("CheckSucceeded"), 30).await;
    assert_eq!(condition(&obj, "Valid").unwrap().status, "True");
    let auths = s.peer.events_of("auth");
    assert_eq!(auths.len(), 2, "one check before the deletion, one after the Secret came back: {auths:?}");
    assert!(auths.iter().all(|a| a["success"] == true));
    assert_no_password(&mut s, "mail").await;
    s.finish().await;
}

#[tokio::test]
async fn a_status_written_by_another_field_manager_does_not_stop_the_operator_from_writing_its_own() {
    let mut s = Scenario::new("e2e-status-conflict", &PEER).await;
    s.basic_credentials(PASSWORD, true).await;
    s.start_operator(&[]);
    s.create("mail", s.basic_spec()).await;
    s.wait_condition("mail", "Ready", "True", None).await;

    // another manager takes over the Ready condition (server-side apply, forced)
    let api: Api<SmtpSettings> = Api::namespaced(s.client.clone(), s.ns());
    let intruder = json!({
        "apiVersion": "smtp-operator.io/v1alpha1", "kind": "SmtpSettings",
        "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "Intruder",
            "message": "written by another manager", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    });
    api.patch_status("mail", &PatchParams::apply("e2e-intruder").force(), &Patch::Apply(intruder)).await.unwrap();
    let obj = api.get("mail").await.unwrap();
    assert_eq!(condition(&obj, "Ready").unwrap().reason, "Intruder");

    // the next check's result is written over it: the operator's apply is forced, so the other manager's
    // ownership of the field is no conflict (an unforced apply would fail here, reconcile after reconcile)
    annotate_smtp(&s.client, s.ns(), "mail", "smtp-operator.io/check-requested-at", "after-intruder").await;
    let obj = wait_condition(&s.client, s.ns(), "mail", "Ready", "True", Some("CheckSucceeded"), 30).await;
    assert_ne!(condition(&obj, "Ready").unwrap().message, "written by another manager");
    let log = s.op().log_text();
    assert!(!log.contains("reconcile failed"), "no failed reconcile:\n{log}");
    assert!(s.op().is_running(), "the operator is still running");
    assert_no_password(&mut s, "mail").await;
    s.finish().await;
}

#[tokio::test]
async fn deleting_a_namespace_with_a_resource_in_it_ends_quietly() {
    let mut s = Scenario::new("e2e-ns-gone", &PEER).await;
    let ns2 = s.namespace("e2e-ns-gone-2").await;
    s.start_operator(&[&format!("--watch-namespace={ns2}")]);
    create_smtp(&s.client, &ns2, "mail", s.bare_spec()).await;
    wait_condition(&s.client, &ns2, "mail", "Ready", "True", Some("CheckSucceeded"), 60).await;
    let connects = s.peer.count("connect");

    kubectl_ok(["delete", "namespace", &ns2, "--wait=true", "--timeout=90s"]);
    // the operator saw the resource go: its per-object series is dropped
    let series = format!("smtp_operator_ready{{namespace=\"{ns2}\"");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = http_get(&s.op().metrics_addr(), "/metrics");
        if !body.contains(&series) {
            break;
        }
        assert!(Instant::now() < deadline, "the series of the deleted resource stays:\n{body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(s.peer.count("connect"), connects, "no check after the deletion");
    let log = s.op().log_text();
    assert!(!log.contains("reconcile failed"), "no failed reconcile (no error loop):\n{log}");
    assert!(s.op().is_running(), "the operator is still running");
    s.finish().await;
}

#[tokio::test]
async fn insecure_skip_verify_against_an_expired_certificate_is_ready_with_the_warning_event() {
    let mut s = Scenario::new("e2e-insecure", &PEER).await;
    let bad = support::smtp_peer::SmtpPeer::start_script("fault_peer.py", &["--tls", "starttls", "--cert", "expired"]);
    let allowed = format!("127.0.0.1:{}", bad.port);
    let annotations = [("smtp-operator.io/allowed-servers", allowed.as_str())];
    create_secret(&s.client, s.ns(), "smtp-credentials", &[("password", PASSWORD.as_bytes())], &annotations).await;
    s.start_operator(&[&format!("--allowed-ports={}", bad.port)]);
    let spec = json!({
        "server": "127.0.0.1", "port": bad.port, "from": "alerts@example.com",
        "tls": {"mode": "StartTLS", "insecureSkipVerify": true},
        "auth": {"type": "Basic", "basic": {"username": "alerts",
            "passwordSecretRef": {"name": "smtp-credentials", "key": "password"}}},
    });
    s.create("mail", spec).await;
    let obj = s.wait_condition("mail", "Ready", "True", Some("CheckSucceeded")).await;
    assert_eq!(condition(&obj, "Authenticated").unwrap().status, "True");
    s.wait_event("mail", "Warning", "InsecureSkipVerify").await;
    let auths = bad.events_of("command").into_iter().filter(|c| c["verb"] == "AUTH").collect::<Vec<_>>();
    assert_eq!(auths.len(), 1, "AUTH went over the (unverified) TLS session: {auths:?}");
    assert_eq!(auths[0]["tls"], true);
    assert_no_password(&mut s, "mail").await;
    s.finish().await;
}
