//! End to end, the security rules (docs/security.md) against the real kube-apiserver and aiosmtpd peers:
//! least-privilege RBAC from the chart, the rate limits, the destination policy with the default denylist,
//! hostile input the schema admits, and no leak of Secret values anywhere.
//!
//! Every test is a [`Scenario`] (namespace, peer, operator, cleanup). Most run their operator limited to their
//! own namespace (`--watch-namespace`). Two tests need an operator that watches every namespace; they take
//! [`ALL_NAMESPACES`] exclusively (every other test here takes it shared), and they allow only their own peers'
//! ports, so a resource they might still see from an earlier run is left `PortNotAllowed` instead of being
//! dialled.

mod support;

use std::time::{Duration, Instant};

use base64::Engine as _;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use smtp_operator::api::{SmtpSettings, TestEmailResult};
use tokio::sync::RwLock;

use support::operator::*;
use support::rbac::ChartRbac;
use support::scenario::Scenario;
use support::smtp_peer::SmtpPeer;

/// Exclusive for tests whose operator watches all namespaces, shared for the others.
static ALL_NAMESPACES: RwLock<()> = RwLock::const_new(());

const PASSWORD: &str = "sec-Pw-Distinctive-4d2b7e";

fn plain_peer(password: &str) -> [&str; 8] {
    ["--tls", "starttls", "--auth", "plain,login", "--user", "alerts", "--password", password]
}

/// A peer without TLS or AUTH (cheap: for counting connections).
const BARE_PEER: [&str; 2] = ["--tls", "none"];

fn basic_spec(server: &str, port: u16, secret: &str) -> Value {
    json!({
        "server": server,
        "port": port,
        "from": "Platform Alerts <alerts@example.com>",
        "tls": {"mode": "StartTLS", "caBundle": {"configMapKeyRef": {"name": "peer-ca", "key": "ca.crt"}}},
        "auth": {"type": "Basic", "basic": {"username": "alerts", "passwordSecretRef": {"name": secret, "key": "password"}}},
        "check": {"interval": "0s"},
        "testEmail": {"to": ["ops@example.com"]},
    })
}

fn bare_spec(server: &str, port: u16) -> Value {
    json!({
        "server": server,
        "port": port,
        "from": "alerts@example.com",
        "tls": {"mode": "None"},
        "auth": {"type": "None"},
        "check": {"interval": "0s"},
    })
}

/// The peers' CAs in one ConfigMap `peer-ca` (key `ca.crt`), so a resource may move between them.
async fn ca_config_map(client: &kube::Client, ns: &str, peers: &[&SmtpPeer]) {
    let pem: String = peers.iter().map(|p| String::from_utf8(p.ca_pem()).unwrap()).collect();
    create_config_map(client, ns, "peer-ca", &[("ca.crt", &pem)]).await;
}

async fn bound_secret(client: &kube::Client, ns: &str, name: &str, password: &[u8], allowed: &str) {
    create_secret(client, ns, name, &[("password", password)], &[("smtp-operator.io/allowed-servers", allowed)]).await;
}

async fn patch_spec(client: &kube::Client, ns: &str, name: &str, patch: Value) {
    let api: Api<SmtpSettings> = Api::namespaced(client.clone(), ns);
    api.patch(name, &PatchParams::default(), &Patch::Merge(json!({ "spec": patch }))).await.expect("patch spec");
}

/// Polls `f` until it returns true (at most `secs`), panicking with `what`.
async fn eventually(secs: u64, what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out after {secs}s waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn lease_holder(client: &kube::Client, ns: &str) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    leases.get_opt("smtp-operator").await.ok().flatten()?.spec?.holder_identity.filter(|h| !h.is_empty())
}

/// A value of the Prometheus text exposition, by exact series name (with labels).
fn metric(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

// ------------------------------------------------------------------------------------------------------------
// 1. Least privilege: the operator runs as the chart's ServiceAccount with the chart's RBAC
// ------------------------------------------------------------------------------------------------------------

/// Creates a bound Basic-auth resource in the scenario's namespace against its peer and checks that its
/// operator (running as a ServiceAccount) gets it Ready, publishes events, and holds the Lease in `lease_ns`.
async fn ready_events_and_lease(s: &mut Scenario, lease_ns: &str) {
    s.basic_credentials(PASSWORD, true).await;
    s.create("mail", basic_spec("127.0.0.1", s.peer.port, "smtp-credentials")).await;
    let (client, ns, peer) = (&s.client, s.ns.name(), &s.peer);

    let obj = wait_condition(client, ns, "mail", "Ready", "True", Some("CheckSucceeded"), 120).await;
    assert_eq!(condition(&obj, "Authenticated").unwrap().reason, "Authenticated");
    assert_eq!(peer.count("auth"), 1, "{:?}", peer.events());
    let mut events = Vec::new();
    eventually(30, "a CheckSucceeded event", async || {
        events = events_for(client, ns, "mail").await;
        events.iter().any(|(t, r, _)| t == "Normal" && r == "CheckSucceeded")
    })
    .await;
    // this very process holds the Lease (identity `<host>-<pid>` outside a pod)
    let holder = lease_holder(client, lease_ns).await.expect("the Lease smtp-operator is held");
    let op = s.op.as_mut().expect("operator started");
    assert!(holder.ends_with(&format!("-{}", op.child.id())), "holder {holder}, operator pid {}", op.child.id());
    assert!(op.is_running(), "operator exited:\n{}", op.log_text());
    let log = op.log_text();
    // an RBAC denial reads `<resource> is forbidden: User "system:serviceaccount:..." cannot <verb> ...`
    let denied: Vec<&str> = log.lines().filter(|l| l.contains("is forbidden: User")).collect();
    assert!(denied.is_empty(), "the ServiceAccount lacked a permission:\n{}", denied.join("\n"));
}

#[tokio::test]
async fn chart_cluster_role_suffices_for_an_all_namespaces_operator() {
    let _all = ALL_NAMESPACES.write().await;
    let mut s = Scenario::new("sec-rbac-work", &plain_peer(PASSWORD)).await;
    let op_ns = s.namespace("sec-rbac-op").await;
    let ns = s.ns().to_string();
    let rbac = ChartRbac::install(&op_ns, &[("leaderElect", "true")]);
    let kinds = rbac.kinds();
    for k in ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"] {
        assert!(kinds.iter().any(|x| x == k), "chart rendered no {k}: {kinds:?}");
    }
    // the identity is really not an admin, and really has what the operator needs
    assert!(rbac.can_i(&["list", "secrets", "--all-namespaces"]));
    assert!(rbac.can_i(&["patch", "smtpsettings.smtp-operator.io", "--subresource=status", "-n", ns.as_str()]));
    assert!(!rbac.can_i(&["update", "smtpsettings.smtp-operator.io", "-n", ns.as_str()]), "may edit specs");
    // ClusterSmtpSettings: read and status only; namespaces: only read (their labels, for allowedNamespaces)
    assert!(rbac.can_i(&["watch", "clustersmtpsettings.smtp-operator.io"]));
    assert!(rbac.can_i(&["patch", "clustersmtpsettings.smtp-operator.io", "--subresource=status"]));
    assert!(!rbac.can_i(&["update", "clustersmtpsettings.smtp-operator.io"]), "may edit ClusterSmtpSettings specs");
    assert!(rbac.can_i(&["get", "namespaces"]) && !rbac.can_i(&["patch", "namespaces"]));
    // create: only for the generated SmtpRelay credentials Secret (docs/relay.md); existing Secrets stay untouchable
    for verb in ["update", "patch", "delete"] {
        assert!(!rbac.can_i(&[verb, "secrets", "-n", ns.as_str()]), "may {verb} Secrets");
    }
    assert!(!rbac.can_i(&["list", "pods", "-n", ns.as_str()]), "may list pods");
    assert!(!rbac.can_i(&["create", "leases.coordination.k8s.io", "-n", ns.as_str()]), "may create leases elsewhere");

    let args = s.all_namespaces_args(&["--leader-elect", "--leader-election-namespace", &op_ns]);
    s.start_operator_as(&args, Some(&rbac.kubeconfig));
    ready_events_and_lease(&mut s, &op_ns).await;
    s.finish().await;
}

#[tokio::test]
async fn chart_namespaced_role_suffices_with_watch_namespace() {
    let _shared = ALL_NAMESPACES.read().await;
    let mut s = Scenario::new("sec-rbacns-work", &plain_peer(PASSWORD)).await;
    let op_ns = s.namespace("sec-rbacns-op").await;
    let ns = s.ns().to_string();
    let rbac = ChartRbac::install(&op_ns, &[("leaderElect", "true"), ("watchNamespace", &ns)]);
    let kinds = rbac.kinds();
    assert!(!kinds.iter().any(|k| k.starts_with("Cluster")), "watchNamespace must not render cluster RBAC: {kinds:?}");
    assert!(rbac.can_i(&["list", "secrets", "-n", ns.as_str()]));
    assert!(!rbac.can_i(&["list", "secrets", "-n", op_ns.as_str()]), "may read Secrets outside the watched namespace");
    assert!(!rbac.can_i(&["list", "secrets", "--all-namespaces"]), "may read Secrets cluster-wide");
    assert!(!rbac.can_i(&["list", "clustersmtpsettings.smtp-operator.io"]), "ClusterSmtpSettings are off here");

    let args = s.operator_args(&["--leader-elect", "--leader-election-namespace", &op_ns]);
    s.start_operator_as(&args, Some(&rbac.kubeconfig));
    ready_events_and_lease(&mut s, &op_ns).await;
    s.finish().await;
}

// ------------------------------------------------------------------------------------------------------------
// 2. Rate limits
// ------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn namespace_rate_defers_checks_while_other_namespaces_keep_going() {
    let _all = ALL_NAMESPACES.write().await;
    let mut s = Scenario::new("sec-rate-busy", &BARE_PEER).await;
    let calm = s.namespace("sec-rate-calm").await;
    let calm_peer = SmtpPeer::start(&BARE_PEER);
    let ports = format!("{},{}", s.peer.port, calm_peer.port);
    // watches all namespaces: only these two peers' ports are allowed
    let args = s.all_namespaces_args(&["--allowed-ports", &ports, "--namespace-check-rate", "4/m"]);
    let metrics = s.start_operator_as(&args, None).metrics_addr();
    let (client, busy, busy_peer) = (&s.client, s.ns.name(), &s.peer);
    let calm = calm.as_str();

    // a dozen resources at once in one namespace: a burst of 4, then one check every 15 s
    let started = Instant::now();
    for i in 0..12 {
        create_smtp(client, busy, &format!("m{i:02}"), bare_spec("127.0.0.1", busy_peer.port)).await;
    }
    create_smtp(client, calm, "calm", bare_spec("127.0.0.1", calm_peer.port)).await;

    // the deferred resources say so, without a time in the message (so a retry rewrites nothing), and
    // status.nextCheckTime gives each its own time: they do not all wake at the same instant
    let api: Api<SmtpSettings> = Api::namespaced(client.clone(), busy);
    let deferred = |items: &[SmtpSettings]| -> Vec<(String, String)> {
        items
            .iter()
            .filter_map(|o| {
                let c = condition(o, "Ready").filter(|c| c.status == "Unknown" && c.reason == "CheckDeferred")?;
                Some((c.message, o.status.as_ref()?.next_check_time.clone()?))
            })
            .collect()
    };
    let mut seen = Vec::new();
    eventually(60, "8 resources Ready=Unknown CheckDeferred", async || {
        seen = deferred(&api.list(&ListParams::default()).await.unwrap().items);
        seen.len() >= 8
    })
    .await;
    let (msg, _) = &seen[0];
    assert!(msg.contains("--namespace-check-rate") && msg.contains("nextCheckTime"), "{msg}");
    assert!(!msg.chars().any(|c| c.is_ascii_digit()), "a time in the condition message: {msg}");
    let mut times: Vec<k8s_openapi::jiff::Timestamp> =
        seen.iter().map(|(_, t)| t.parse().unwrap_or_else(|e| panic!("{t:?} is not a time: {e}"))).collect();
    times.sort();
    times.dedup();
    assert_eq!(times.len(), seen.len(), "deferred resources share a wake-up time: {seen:?}");

    // the other namespace is checked meanwhile
    wait_condition(client, calm, "calm", "Ready", "True", None, 60).await;

    // at most the burst of 4 plus one per 15 s since before the first resource was created: always asserted
    let within_rate = |peer: &SmtpPeer| {
        let allowed = 4 + started.elapsed().as_secs() / 15;
        assert!(
            peer.count("connect") as u64 <= allowed,
            "{} connections after {:?}, at most {allowed} allowed",
            peer.count("connect"),
            started.elapsed()
        );
    };
    within_rate(busy_peer);

    // the other namespace keeps being checked, on every request, while the busy one waits
    for i in 0..3 {
        let before = calm_peer.count("connect");
        tokio::time::sleep(Duration::from_millis(1100)).await; // past --min-check-interval
        annotate_smtp(client, calm, "calm", "smtp-operator.io/check-requested-at", &format!("calm-{i}")).await;
        eventually(30, "a requested check in the calm namespace", async || calm_peer.count("connect") > before).await;
        within_rate(busy_peer);
    }
    assert!(calm_peer.count("connect") >= 4, "{:?}", calm_peer.events());

    // deferred checks are not dropped: they run later, one every 15 s
    let mut ready = 0;
    eventually(120, "a deferred check in the busy namespace to run", async || {
        ready = api
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .filter(|o| condition(o, "Ready").is_some_and(|c| c.status == "True"))
            .count();
        ready >= 6
    })
    .await;
    within_rate(busy_peer);
    assert!(busy_peer.count("connect") >= 6, "{:?}", busy_peer.events());

    let (code, body) = http_get(&metrics, "/metrics");
    assert_eq!(code, 200);
    let deferred = metric(&body, r#"smtp_operator_checks_deferred_total{limit="namespace"}"#).unwrap_or(0.0);
    assert!(deferred >= 8.0, "deferred counter {deferred}:\n{body}");
    s.finish().await;
}

// ------------------------------------------------------------------------------------------------------------
// 3. Destination policy
// ------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn default_denylist_refuses_loopback_by_name_and_by_every_literal_form() {
    let _shared = ALL_NAMESPACES.read().await;
    let mut s = Scenario::new("sec-deny", &BARE_PEER).await;
    s.start_operator(&["--denied-cidrs", "default"]);
    let (client, ns, peer) = (&s.client, s.ns.name(), &s.peer);

    // a host name resolving to loopback: refused after resolution, before connecting
    create_smtp(client, ns, "by-name", bare_spec("localhost", peer.port)).await;
    let obj = wait_condition(client, ns, "by-name", "Ready", "False", Some("DestinationNotAllowed"), 60).await;
    let valid = condition(&obj, "Valid").unwrap();
    assert_eq!((valid.status.as_str(), valid.reason.as_str()), ("False", "DestinationNotAllowed"), "{valid:?}");

    // IPv4 literals in the forms inet_aton and URL parsers accept: all are 127.0.0.1
    let admitted = ["127.0.0.1", "0x7f.1", "2130706433", "127.1", "0177.0.0.1", "[::1]", "::1"];
    for (i, server) in admitted.iter().enumerate() {
        let name = format!("literal-{i}");
        create_smtp(client, ns, &name, bare_spec(server, peer.port)).await;
        let obj = wait_condition(client, ns, &name, "Valid", "False", Some("DestinationNotAllowed"), 60).await;
        let msg = condition(&obj, "Valid").unwrap().message;
        assert!(msg.contains("--denied-cidrs"), "{server}: {msg}");
    }
    // IPv4-mapped IPv6 is refused by the schema already (CEL isIP does not accept it)
    let api: Api<SmtpSettings> = Api::namespaced(client.clone(), ns);
    for server in ["[::ffff:127.0.0.1]", "::ffff:127.0.0.1", "[::ffff:7f00:1]"] {
        let obj: SmtpSettings = serde_json::from_value(json!({
            "apiVersion": "smtp-operator.io/v1alpha1", "kind": "SmtpSettings",
            "metadata": {"name": "mapped"}, "spec": bare_spec(server, peer.port),
        }))
        .unwrap();
        match api.create(&PostParams::default(), &obj).await {
            Err(kube::Error::Api(e)) => {
                assert_eq!(e.code, 422, "{server}: {e:?}");
                assert!(e.message.contains("server must be a host name or an IP literal"), "{server}: {}", e.message);
            }
            other => panic!("the schema admitted {server}: {other:?}"),
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(peer.count("connect"), 0, "the peer saw a connection: {:?}", peer.events());
    s.finish().await;
}

#[tokio::test]
async fn moving_the_destination_without_rebinding_the_secret_sends_no_credential() {
    let _shared = ALL_NAMESPACES.read().await;
    let mut s = Scenario::new("sec-move", &plain_peer(PASSWORD)).await;
    let second = SmtpPeer::start(&plain_peer(PASSWORD));
    let ports = format!("{},{}", s.peer.port, second.port);
    s.start_operator(&["--allowed-ports", &ports]);
    let (client, ns, first) = (&s.client, s.ns.name(), &s.peer);
    ca_config_map(client, ns, &[first, &second]).await;
    bound_secret(client, ns, "smtp-credentials", PASSWORD.as_bytes(), &format!("127.0.0.1:{}", first.port)).await;
    create_smtp(client, ns, "mail", basic_spec("127.0.0.1", first.port, "smtp-credentials")).await;
    wait_condition(client, ns, "mail", "Ready", "True", None, 60).await;
    assert_eq!(first.count("auth"), 1);

    // another port: the Secret does not list it
    patch_spec(client, ns, "mail", json!({"port": second.port})).await;
    let obj = wait_condition(client, ns, "mail", "Valid", "False", Some("CredentialsNotBoundToServer"), 60).await;
    let msg = condition(&obj, "Valid").unwrap().message;
    assert!(msg.contains(&format!("127.0.0.1:{}", second.port)), "{msg}");
    assert_eq!(condition(&obj, "Ready").unwrap().reason, "CredentialsNotBoundToServer");

    // another host name at the first port: not listed either
    patch_spec(client, ns, "mail", json!({"server": "localhost", "port": first.port})).await;
    let obj = wait_for(client, ns, "mail", 60, |o| {
        condition(o, "Valid")
            .is_some_and(|c| c.reason == "CredentialsNotBoundToServer" && c.message.contains("localhost"))
    })
    .await;
    assert_eq!(condition(&obj, "Valid").unwrap().status, "False");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(second.count("connect"), 0, "the new destination was dialled: {:?}", second.events());
    assert_eq!(second.count("auth"), 0);
    assert_eq!(first.count("auth"), 1, "the password was sent again: {:?}", first.events());

    // whoever may edit the Secret binds it to the new destination: now it is used there
    patch_spec(client, ns, "mail", json!({"server": "127.0.0.1", "port": second.port})).await;
    wait_condition(client, ns, "mail", "Valid", "False", Some("CredentialsNotBoundToServer"), 60).await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), ns);
    let allowed = format!("127.0.0.1:{}, 127.0.0.1:{}", first.port, second.port);
    secrets
        .patch(
            "smtp-credentials",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"smtp-operator.io/allowed-servers": allowed}}})),
        )
        .await
        .unwrap();
    wait_condition(client, ns, "mail", "Ready", "True", None, 60).await;
    assert_eq!(second.count("auth"), 1, "{:?}", second.events());
    s.finish().await;
}

// ------------------------------------------------------------------------------------------------------------
// 4. Hostile input the schema admits
// ------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn hostile_input_gets_precise_reasons_and_the_operator_keeps_working() {
    let _shared = ALL_NAMESPACES.read().await;
    let mut s = Scenario::new("sec-hostile", &plain_peer(PASSWORD)).await;
    s.start_operator(&[]);
    let (client, n, peer) = (&s.client, s.ns.name(), &s.peer);
    let op = s.op.as_mut().expect("operator started");
    let allowed = format!("127.0.0.1:{}", peer.port);
    ca_config_map(client, n, &[peer]).await;
    bound_secret(client, n, "smtp-credentials", PASSWORD.as_bytes(), &allowed).await;
    bound_secret(client, n, "empty", b"", &allowed).await;
    bound_secret(client, n, "binary", &[0xff, 0xfe, 0x00, 0x80, 0xc3, 0x28, b'\n', 0x00], &allowed).await;
    create_config_map(client, n, "not-pem", &[("ca.crt", "this is not a certificate\n")]).await;
    let garbage_pem = "-----BEGIN CERTIFICATE-----\nTm90IGEgY2VydGlmaWNhdGUgYXQgYWxs\n-----END CERTIFICATE-----\n";
    create_config_map(client, n, "garbage-pem", &[("ca.crt", garbage_pem)]).await;

    // the longest server name the schema admits (253 characters), which does not resolve
    let label = "a".repeat(63);
    let long_server = format!("{label}.{label}.{label}.{}.invalid", "b".repeat(53));
    assert_eq!(long_server.len(), 253);
    create_smtp(
        client,
        n,
        "long-server",
        json!({"server": long_server, "port": peer.port, "from": "alerts@example.com", "auth": {"type": "None"}}),
    )
    .await;
    // a 998-character from with a huge display name
    let mut long_from = basic_spec("127.0.0.1", peer.port, "smtp-credentials");
    let display = "x".repeat(998 - " <alerts@example.com>".len());
    long_from["from"] = json!(format!("{display} <alerts@example.com>"));
    create_smtp(client, n, "long-from", long_from).await;
    // 50 recipients, then a test email
    let mut many = basic_spec("127.0.0.1", peer.port, "smtp-credentials");
    many["testEmail"]["to"] = json!((0..50).map(|i| format!("rcpt{i:02}@example.com")).collect::<Vec<_>>());
    create_smtp(client, n, "many-rcpts", many.clone()).await;
    // 50 recipients of which one is at the schema's length limit but not a valid address
    let mut bad = many.clone();
    bad["testEmail"]["to"][49] = json!(format!("{}@example.com", "l".repeat(320 - "@example.com".len())));
    create_smtp(client, n, "bad-rcpt", bad).await;
    create_smtp(client, n, "empty-pw", basic_spec("127.0.0.1", peer.port, "empty")).await;
    create_smtp(client, n, "binary-pw", basic_spec("127.0.0.1", peer.port, "binary")).await;
    let mut not_pem = basic_spec("127.0.0.1", peer.port, "smtp-credentials");
    not_pem["tls"]["caBundle"]["configMapKeyRef"]["name"] = json!("not-pem");
    create_smtp(client, n, "not-pem", not_pem.clone()).await;
    not_pem["tls"]["caBundle"]["configMapKeyRef"]["name"] = json!("garbage-pem");
    create_smtp(client, n, "garbage-pem", not_pem).await;

    let msg = |o: &SmtpSettings, t: &str| condition(o, t).unwrap().message;
    let o = wait_condition(client, n, "long-server", "Ready", "False", Some("DnsLookupFailed"), 90).await;
    assert_eq!(condition(&o, "Connected").unwrap().reason, "DnsLookupFailed");
    assert!(msg(&o, "Connected").len() <= 1024, "{}", msg(&o, "Connected"));
    let o = wait_condition(client, n, "bad-rcpt", "Valid", "False", Some("InvalidSpec"), 60).await;
    assert!(msg(&o, "Valid").contains("testEmail.to"), "{}", msg(&o, "Valid"));
    assert!(msg(&o, "Valid").len() <= 1024, "{}", msg(&o, "Valid"));
    let o = wait_condition(client, n, "empty-pw", "Valid", "False", Some("InvalidSecretValue"), 60).await;
    assert!(msg(&o, "Valid").contains("empty"), "{}", msg(&o, "Valid"));
    // a password that is not UTF-8 is sent as the bytes it is; the server refuses it
    wait_condition(client, n, "binary-pw", "Ready", "False", Some("AuthenticationFailed"), 60).await;
    for name in ["not-pem", "garbage-pem"] {
        let o = wait_condition(client, n, name, "Valid", "False", Some("InvalidCABundle"), 60).await;
        assert!(msg(&o, "Valid").contains(name), "{}", msg(&o, "Valid"));
    }
    wait_condition(client, n, "long-from", "Ready", "True", None, 60).await;
    wait_condition(client, n, "many-rcpts", "Ready", "True", None, 60).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    annotate_smtp(client, n, "many-rcpts", "smtp-operator.io/test-email-requested-at", "fifty").await;
    let o = wait_for(client, n, "many-rcpts", 60, |o| {
        o.status.as_ref().and_then(|s| s.test_email.as_ref()).is_some_and(|t| {
            t.request == "fifty" && !matches!(t.result, TestEmailResult::Deferred | TestEmailResult::Sending)
        })
    })
    .await;
    assert_eq!(o.status.unwrap().test_email.unwrap().result, TestEmailResult::Sent);
    let messages = peer.events_of("message");
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["rcpt_tos"].as_array().unwrap().len(), 50);

    // the operator is still up and still serves a fresh, plain resource
    assert!(op.is_running(), "operator exited:\n{}", op.log_text());
    create_smtp(client, n, "after", basic_spec("127.0.0.1", peer.port, "smtp-credentials")).await;
    wait_condition(client, n, "after", "Ready", "True", None, 60).await;
    assert!(op.is_running());
    assert!(!op.log_text().contains("panicked"), "{}", op.log_text());
    s.finish().await;
}

// ------------------------------------------------------------------------------------------------------------
// 5. No leaks
// ------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn secret_values_appear_in_no_log_event_status_or_metric() {
    let _shared = ALL_NAMESPACES.read().await;
    const OK: &str = "leak-Pw-Ok-5c1d8e70";
    const WRONG: &str = "leak-Pw-Wrong-9b7a2f31";
    const UNBOUND: &str = "leak-Pw-Unbound-1e44c9ad";
    const UNUSED: &str = "leak-Unused-3e8f0a62";
    let mut s = Scenario::new("sec-leak", &plain_peer(OK)).await;
    s.start_operator(&[]);
    let (client, n, peer) = (&s.client, s.ns.name(), &s.peer);
    let op = s.op.as_ref().expect("operator started");
    let allowed = format!("127.0.0.1:{}", peer.port);
    ca_config_map(client, n, &[peer]).await;
    create_secret(
        client,
        n,
        "ok",
        &[("password", OK.as_bytes()), ("unused", UNUSED.as_bytes())],
        &[("smtp-operator.io/allowed-servers", &allowed)],
    )
    .await;
    bound_secret(client, n, "wrong", WRONG.as_bytes(), &allowed).await;
    create_secret(client, n, "unbound", &[("password", UNBOUND.as_bytes())], &[]).await;

    create_smtp(client, n, "ok", basic_spec("127.0.0.1", peer.port, "ok")).await;
    let mut login = basic_spec("127.0.0.1", peer.port, "wrong");
    login["auth"]["basic"]["mechanisms"] = json!(["Login"]);
    create_smtp(client, n, "wrong-login", login).await;
    create_smtp(client, n, "wrong-plain", basic_spec("127.0.0.1", peer.port, "wrong")).await;
    create_smtp(client, n, "unbound", basic_spec("127.0.0.1", peer.port, "unbound")).await;
    let mut no_key = basic_spec("127.0.0.1", peer.port, "ok");
    no_key["auth"]["basic"]["passwordSecretRef"]["key"] = json!("pasword");
    create_smtp(client, n, "no-key", no_key).await;

    wait_condition(client, n, "ok", "Ready", "True", None, 60).await;
    wait_condition(client, n, "wrong-login", "Ready", "False", Some("AuthenticationFailed"), 60).await;
    wait_condition(client, n, "wrong-plain", "Ready", "False", Some("AuthenticationFailed"), 60).await;
    wait_condition(client, n, "unbound", "Valid", "False", Some("CredentialsNotBoundToServer"), 60).await;
    let o = wait_condition(client, n, "no-key", "Valid", "False", Some("SecretKeyNotFound"), 60).await;
    assert!(condition(&o, "Valid").unwrap().message.contains("unused"), "the key names are listed");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    annotate_smtp(client, n, "ok", "smtp-operator.io/test-email-requested-at", "leak-test").await;
    wait_for(client, n, "ok", 60, |o| {
        o.status.as_ref().and_then(|s| s.test_email.as_ref()).is_some_and(|t| t.result == TestEmailResult::Sent)
    })
    .await;
    // the wrong passwords really were sent (to the destination they are bound to) and refused
    assert!(peer.count("auth") >= 3, "{:?}", peer.events());
    tokio::time::sleep(Duration::from_secs(1)).await;

    // everything the operator wrote or logged
    let log = op.log_text();
    assert!(log.contains("check finished"), "debug log captured: {log}");
    let events: Vec<Event> =
        Api::<Event>::namespaced(client.clone(), n).list(&ListParams::default()).await.unwrap().items;
    assert!(!events.is_empty());
    let events = serde_json::to_string(&events).unwrap();
    let statuses: Vec<Value> = Api::<SmtpSettings>::namespaced(client.clone(), n)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|o| json!({"name": o.metadata.name, "annotations": o.metadata.annotations, "status": o.status}))
        .collect();
    let statuses = serde_json::to_string(&statuses).unwrap();
    let (_, metrics) = http_get(&op.metrics_addr(), "/metrics");
    assert!(metrics.contains("smtp_operator_checks_total"), "{metrics}");

    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    for secret in [OK, WRONG, UNBOUND, UNUSED] {
        // the value, and its base64 forms (AUTH PLAIN / LOGIN put them on the wire that way)
        let forms = [secret.to_string(), b64(secret), b64(&format!("\0alerts\0{secret}")), secret.to_ascii_lowercase()];
        for form in &forms {
            for (place, text) in
                [("operator log", &log), ("events", &events), ("status", &statuses), ("metrics", &metrics)]
            {
                assert!(!text.contains(form.as_str()), "{secret:?} (as {form:?}) leaked into the {place}");
            }
        }
    }
    s.finish().await;
}
