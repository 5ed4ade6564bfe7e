//! Leader election end to end: two real operator processes with `--leader-elect` against the real
//! kube-apiserver and a real SMTP peer (aiosmtpd). Each test has its own namespace, which also holds the Lease
//! `smtp-operator`, so the tests run in parallel with each other and with the other e2e tests.
//!
//! Identities are `<host>-<pid>` (no POD_NAME outside a cluster), so the Lease's holderIdentity tells which
//! process leads.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use serde_json::json;

use support::kube::{TestNamespace, client};
use support::operator::*;
use support::smtp_peer::SmtpPeer;

const PASSWORD: &str = "pw-Leader-3b81d0";
/// The lease duration in src/leader.rs is 15 s; every liveness wait here is far longer (2-core machine).
const TAKEOVER_BOUND_SECS: u64 = 60;

/// Starts one elected operator for `ns` (Lease in `ns`), with the loopback flags the peer needs.
fn start_elected(ns: &str, port: u16) -> Operator {
    let port = port.to_string();
    Operator::start(&[
        "--leader-elect=true",
        "--leader-election-namespace",
        ns,
        "--watch-namespace",
        ns,
        "--denied-cidrs=",
        "--allowed-ports",
        &port,
        "--min-check-interval",
        "1s",
        "--namespace-check-rate",
        "600/m",
    ])
}

/// The Lease identity of an operator process started by the tests (see `leader::identity`).
fn identity(op: &Operator) -> String {
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    format!("{}-{}", if host.is_empty() { "smtp-operator" } else { &host }, op.child.id())
}

/// The Lease's holderIdentity (None when there is no Lease yet or nobody holds it).
async fn holder(client: &kube::Client, ns: &str) -> Option<String> {
    let api: Api<Lease> = Api::namespaced(client.clone(), ns);
    match api.get_opt("smtp-operator").await.expect("get Lease") {
        Some(lease) => lease.spec.and_then(|s| s.holder_identity).filter(|h| !h.is_empty()),
        None => None,
    }
}

/// Polls the Lease until `pred` holds for its holder (at most `secs`), returning the holder.
async fn wait_holder(
    client: &kube::Client,
    ns: &str,
    secs: u64,
    what: &str,
    pred: impl Fn(&Option<String>) -> bool,
) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let h = holder(client, ns).await;
        if pred(&h) {
            return h;
        }
        assert!(Instant::now() < deadline, "timed out waiting for the Lease holder to be {what}; holder is {h:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the operator's log contains `needle` (at most `secs`).
async fn wait_log(op: &Operator, needle: &str, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !op.log_text().contains(needle) {
        assert!(Instant::now() < deadline, "operator log never contained {needle:?}:\n{}", op.log_text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until GET `path` on the operator's metrics address answers `code` (at most `secs`).
async fn wait_http(op: &Operator, path: &str, code: u16, secs: u64) {
    let addr = op.metrics_addr();
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (got, body) = http_get(&addr, path);
        if got == code {
            return;
        }
        assert!(Instant::now() < deadline, "GET {path} stayed {got} ({body:?}), want {code}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The value of the `smtp_operator_leader` gauge.
fn leader_gauge(op: &Operator) -> i64 {
    let (code, body) = http_get(&op.metrics_addr(), "/metrics");
    assert_eq!(code, 200, "{body}");
    body.lines()
        .find_map(|l| l.strip_prefix("smtp_operator_leader "))
        .unwrap_or_else(|| panic!("no smtp_operator_leader in /metrics:\n{body}"))
        .trim()
        .parse()
        .expect("gauge value")
}

/// How many checks the operator has logged.
fn checks_logged(op: &Operator) -> usize {
    op.log_text().matches("check finished").count()
}

/// Namespace, peer, Secret (bound to the peer), CA ConfigMap.
async fn setup(client: &kube::Client, prefix: &str) -> (TestNamespace, SmtpPeer) {
    install_crd(client).await;
    let ns = TestNamespace::new(client, prefix).await;
    let peer = SmtpPeer::start(&["--tls", "starttls", "--auth", "plain", "--user", "alerts", "--password", PASSWORD]);
    let ca = String::from_utf8(peer.ca_pem()).unwrap();
    create_config_map(client, ns.name(), "peer-ca", &[("ca.crt", &ca)]).await;
    let allowed = format!("127.0.0.1:{}", peer.port);
    create_secret(
        client,
        ns.name(),
        "smtp-credentials",
        &[("password", PASSWORD.as_bytes())],
        &[("smtp-operator.io/allowed-servers", &allowed)],
    )
    .await;
    (ns, peer)
}

fn spec(port: u16) -> serde_json::Value {
    json!({
        "server": "127.0.0.1",
        "port": port,
        "from": "alerts@example.com",
        "tls": {"mode": "StartTLS", "caBundle": {"configMapKeyRef": {"name": "peer-ca", "key": "ca.crt"}}},
        "auth": {"type": "Basic", "basic": {"username": "alerts", "passwordSecretRef": {"name": "smtp-credentials", "key": "password"}}},
    })
}

/// Starts two elected operators and waits until exactly one of them holds the Lease; returns (leader, standby).
async fn elect(client: &kube::Client, ns: &str, port: u16) -> (Operator, Operator) {
    let a = start_elected(ns, port);
    let b = start_elected(ns, port);
    let (ia, ib) = (identity(&a), identity(&b));
    let h = wait_holder(client, ns, TAKEOVER_BOUND_SECS, "one of the two operators", |h| {
        h.as_deref().is_some_and(|h| h == ia || h == ib)
    })
    .await
    .unwrap();
    let (leader, standby) = if h == ia { (a, b) } else { (b, a) };
    // both know their role: the leader after its cache synced, the standby at once
    wait_http(&leader, "/readyz", 200, 60).await;
    wait_http(&standby, "/readyz", 200, 60).await;
    wait_log(&standby, "standing by for the leader lease", 30).await;
    wait_log(&leader, "became leader", 30).await;
    (leader, standby)
}

#[tokio::test]
async fn one_leader_checks_and_the_standby_takes_over_after_a_crash() {
    let client = client().await;
    let (ns, peer) = setup(&client, "e2e-leader-crash").await;
    let (mut leader, standby) = elect(&client, ns.name(), peer.port).await;
    let (leader_id, standby_id) = (identity(&leader), identity(&standby));
    assert_eq!(leader_gauge(&leader), 1);
    assert_eq!(leader_gauge(&standby), 0);

    create_smtp(&client, ns.name(), "mail", spec(peer.port)).await;
    wait_condition(&client, ns.name(), "mail", "Ready", "True", Some("CheckSucceeded"), 60).await;
    wait_log(&leader, "check finished", 30).await;
    // only the leader dialled: every connection the peer saw is one of the leader's checks
    let leader_checks = checks_logged(&leader);
    assert_eq!(peer.count("connect"), leader_checks, "peer events: {:?}", peer.events());
    assert_eq!(checks_logged(&standby), 0, "the standby checked:\n{}", standby.log_text());
    assert!(!standby.log_text().contains("became leader"));
    assert_eq!(http_get(&standby.metrics_addr(), "/readyz").0, 200, "a standby is ready");
    assert_eq!(holder(&client, ns.name()).await.as_deref(), Some(leader_id.as_str()));

    // the leader dies without releasing: the Lease still names it until it expires, then the standby takes it
    leader.kill();
    wait_holder(&client, ns.name(), TAKEOVER_BOUND_SECS, "the former standby", |h| {
        h.as_deref() == Some(standby_id.as_str())
    })
    .await;
    wait_log(&standby, "became leader", 30).await;
    assert_eq!(leader_gauge(&standby), 1);
    wait_http(&standby, "/readyz", 200, 60).await;

    // the new leader checks on request (the resource itself is unchanged, so nothing else is owed)
    let connects = peer.count("connect");
    annotate_smtp(&client, ns.name(), "mail", "smtp-operator.io/check-requested-at", "after-failover").await;
    wait_log(&standby, "check finished", 60).await;
    assert!(peer.count("connect") > connects, "the new leader did not dial the peer: {:?}", peer.events());
    let obj = wait_condition(&client, ns.name(), "mail", "Ready", "True", None, 30).await;
    assert_eq!(obj.status.unwrap().last_check.unwrap().result, smtp_operator::api::CheckResult::Succeeded);
    assert!(!standby.log_text().contains(PASSWORD));
    delete_all_smtp(&client, ns.name()).await;
    ns.cleanup().await;
}

#[tokio::test]
async fn a_graceful_stop_releases_the_lease_at_once() {
    let client = client().await;
    let (ns, peer) = setup(&client, "e2e-leader-release").await;
    let (mut leader, standby) = elect(&client, ns.name(), peer.port).await;
    let (leader_id, standby_id) = (identity(&leader), identity(&standby));
    assert_eq!(holder(&client, ns.name()).await.as_deref(), Some(leader_id.as_str()));

    let status = leader.terminate().expect("the leader exits after SIGTERM");
    assert!(status.success(), "graceful stop exit status {status:?}:\n{}", leader.log_text());
    assert!(leader.log_text().contains("leader lease released"), "{}", leader.log_text());
    // Right after the exit: a lease that was not released would still name the old leader (it is renewed 5 s
    // before its 15 s expire, and the standby waits for expiry before taking an unreleased lease).
    let h = holder(&client, ns.name()).await;
    assert!(
        h.is_none() || h.as_deref() == Some(standby_id.as_str()),
        "the Lease still names the stopped leader: {h:?}"
    );

    // and the standby takes it over
    wait_holder(&client, ns.name(), TAKEOVER_BOUND_SECS, "the former standby", |h| {
        h.as_deref() == Some(standby_id.as_str())
    })
    .await;
    wait_log(&standby, "became leader", 30).await;
    assert_eq!(leader_gauge(&standby), 1);
    ns.cleanup().await;
}
