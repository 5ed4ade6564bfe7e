//! The chart and the image on a real node (scripts/node: kubelet, containerd, kube-proxy, controller-manager,
//! scheduler): `helm install` with the chart's defaults (2 replicas, leader election) into a namespace that
//! enforces the restricted Pod Security level, an SmtpSettings checked from inside a pod against a real SMTP
//! peer on the node's gateway, metrics through the Service (kube-proxy), a leader pod deleted and the handover,
//! `helm upgrade` rolling without losing the Lease for long, and `helm uninstall` leaving nothing behind. And an
//! SmtpRelay run by the operator in its pod: two relay pods under the restricted level, a client pod sending a
//! test email through the relay's Service with STARTTLS and the generated credentials, the message delivered
//! upstream, and the garbage collector removing the relay's objects when the SmtpRelay is deleted.
//!
//! Values other than the defaults, and why: the image (built from this test build by scripts/image, imported,
//! `pullPolicy: Never`), `watchNamespace` (other tests run their own operators against the same plane at the
//! same time), `allowedPorts` (the peer's port), debug logs (to see what the new leader reconciled).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};
use serde_json::json;
use smtp_operator::leader::{LEASE_DURATION, LEASE_GRACE};

/// How long the Lease may be without a valid holder: a released Lease is taken by a starting pod at once, but a
/// standby waits for the old lease's expiry (at most the lease duration after the last renewal), plus the API
/// round trips and the pod's own renew margin on this 2-core machine.
const LEASE_GAP_BOUND: Duration = Duration::from_secs(LEASE_DURATION + LEASE_GRACE);

use support::kube::{TestNamespace, client, kubectl, kubectl_ok};
use support::node::*;
use support::operator::{annotate_smtp, create_config_map, create_secret, create_smtp, install_crd, wait_condition};
use support::rbac::apply_yaml;
use support::relay::tls_secret;
use support::smtp_peer::SmtpPeer;

const PASSWORD: &str = "pw-Node-5d0c7a1e";
const RELEASE: &str = "smtp";
/// The chart's full name for RELEASE (`<release>-smtp-operator`).
const FULLNAME: &str = "smtp-smtp-operator";

/// The tests of this file one at a time: each installs the chart, and the lease handover is timed.
static NODE_TESTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits for the other tests of this file, starts the node if needed, and installs the chart as `release` into
/// a new restricted namespace with the peer of [`setup`].
async fn begin(
    prefix: &str,
    release: &str,
) -> (tokio::sync::MutexGuard<'static, ()>, kube::Client, TestNamespace, SmtpPeer) {
    let serial = NODE_TESTS.lock().await;
    ensure_node();
    let client = client().await;
    let (namespace, peer) = setup(&client, prefix).await;
    install(release, namespace.name(), peer.port);
    (serial, client, namespace, peer)
}

/// Running, Ready pods of the release that are not being deleted: (name, pod IP).
async fn ready_pods(client: &kube::Client, ns: &str) -> Vec<(String, String)> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(&format!("app.kubernetes.io/instance={RELEASE}"));
    let mut out: Vec<(String, String)> = pods
        .list(&lp)
        .await
        .expect("list pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            let st = p.status.as_ref();
            st.and_then(|s| s.phase.as_deref()) == Some("Running")
                && st
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .map(|p| {
            let ip = p.status.and_then(|s| s.pod_ip).unwrap_or_default();
            (p.metadata.name.unwrap_or_default(), ip)
        })
        .collect();
    out.sort();
    out
}

/// The Lease's holder while its renewal is current (None when released, never held, or expired).
async fn valid_holder(client: &kube::Client, ns: &str) -> Option<String> {
    let spec = Api::<Lease>::namespaced(client.clone(), ns).get_opt("smtp-operator").await.ok()??.spec?;
    let holder = spec.holder_identity.filter(|h| !h.is_empty())?;
    let renewed = spec.renew_time?.0;
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(LEASE_DURATION as i32));
    let expires = renewed.checked_add(jiff_secs(duration)).ok()?;
    (Timestamp::now() < expires).then_some(holder)
}

fn jiff_secs(s: i64) -> k8s_openapi::jiff::SignedDuration {
    k8s_openapi::jiff::SignedDuration::from_secs(s)
}

/// `smtp_operator_leader` as served by one pod (its pod IP, the chart's metrics port).
fn leader_gauge(ip: &str) -> Result<i64, String> {
    let (code, body) = http_get(&format!("{ip}:8080"), "/metrics")?;
    if code != 200 {
        return Err(format!("GET /metrics on {ip}: {code}"));
    }
    body.lines()
        .find_map(|l| l.strip_prefix("smtp_operator_leader "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no smtp_operator_leader on {ip}"))
}

fn spec(server: &str, port: u16) -> serde_json::Value {
    json!({
        "server": server,
        "port": port,
        "from": "Node Alerts <alerts@example.com>",
        "tls": {"mode": "StartTLS", "caBundle": {"configMapKeyRef": {"name": "peer-ca", "key": "ca.crt"}}},
        "auth": {"type": "Basic", "basic": {"username": "alerts", "passwordSecretRef": {"name": "smtp-credentials", "key": "password"}}},
        "check": {"interval": "1h", "timeout": "20s"},
    })
}

/// The namespace (restricted Pod Security), the peer on the gateway, its CA and the bound Secret.
async fn setup(client: &kube::Client, prefix: &str) -> (TestNamespace, SmtpPeer) {
    install_crd(client).await;
    let ns = TestNamespace::new(client, prefix).await;
    kubectl_ok(["label", "namespace", ns.name(), "pod-security.kubernetes.io/enforce=restricted"]);
    let peer = SmtpPeer::start(&[
        "--host",
        gateway(),
        "--tls",
        "starttls",
        "--auth",
        "plain",
        "--user",
        "alerts",
        "--password",
        PASSWORD,
    ]);
    let ca = String::from_utf8(peer.ca_pem()).unwrap();
    create_config_map(client, ns.name(), "peer-ca", &[("ca.crt", &ca)]).await;
    let allowed = format!("{}:{}", gateway(), peer.port);
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

/// `helm install` with the defaults plus what this suite needs (see the module comment).
fn install(release: &str, ns: &str, port: u16) {
    let (repo, tag) = import_operator_image();
    let chart = chart();
    helm_ok(
        ns,
        &[
            "install",
            release,
            chart.to_str().unwrap(),
            "--namespace",
            ns,
            "--set",
            &format!("image.repository={repo}"),
            "--set",
            &format!("image.tag={tag}"),
            "--set",
            "image.pullPolicy=Never",
            "--set",
            &format!("watchNamespace={ns}"),
            "--set",
            &format!("allowedPorts={{{port}}}"),
            "--set",
            "logLevel=smtp_operator=debug\\,info",
            "--timeout",
            "60s",
        ],
    );
}

/// Waits for exactly `n` Ready pods of the release and a valid Lease holder among them: (pods, holder).
async fn wait_ready(client: &kube::Client, ns: &str, n: usize, secs: u64) -> (Vec<(String, String)>, String) {
    poll(ns, &format!("{n} Ready pods and a Lease holder among them"), secs, || async {
        let pods = ready_pods(client, ns).await;
        let holder = valid_holder(client, ns).await;
        match &holder {
            Some(h) if pods.len() == n && pods.iter().any(|(p, _)| p == h) => Ok((pods, h.clone())),
            _ => Err(format!("pods {pods:?}, holder {holder:?}")),
        }
    })
    .await
}

/// Each pod's leader gauge: 1 on the holder, 0 on every other pod (exactly one leader).
async fn assert_one_leader(ns: &str, pods: &[(String, String)], holder: &str) {
    poll(ns, "the leader gauge to be 1 on the holder and 0 elsewhere", 60, || async {
        let gauges: Vec<(String, Result<i64, String>)> =
            pods.iter().map(|(p, ip)| (p.clone(), leader_gauge(ip))).collect();
        let ok = gauges.iter().all(|(p, g)| g.as_ref().ok() == Some(&i64::from(p == holder)));
        if ok { Ok(()) } else { Err(format!("{gauges:?} (holder {holder})")) }
    })
    .await;
}

/// GET /metrics through the metrics Service's ClusterIP (kube-proxy's rules), from the host.
async fn metrics_through_service(client: &kube::Client, ns: &str) -> String {
    let svc = Api::<Service>::namespaced(client.clone(), ns).get(&format!("{FULLNAME}-metrics")).await.unwrap();
    let ip = svc.spec.and_then(|s| s.cluster_ip).expect("a ClusterIP");
    poll(ns, "GET /metrics through the Service", 60, || async {
        match http_get(&format!("{ip}:8080"), "/metrics") {
            Ok((200, body)) if body.contains("smtp_operator_checks_total") => Ok(body),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

/// Lines of a pod's log that say it reconciled SmtpSettings `name` (debug level).
fn reconciled(ns: &str, pod: &str, name: &str) -> usize {
    let needle = format!("/{name}.{ns}");
    pod_log(ns, pod).lines().filter(|l| l.contains("\"reconciled\"") && l.contains(&needle)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_runs_on_a_real_node_and_hands_over_the_lease() {
    let (_serial, client, namespace, peer) = begin("node-chart", RELEASE).await;
    let ns = &namespace.name().to_string();

    // both pods Running and Ready under the restricted level; exactly one leader
    let (pods, leader) = wait_ready(&client, ns, 2, 240).await;
    assert_one_leader(ns, &pods, &leader).await;

    // a check from inside the pod: TCP to the gateway, STARTTLS with the CA bundle, AUTH PLAIN
    create_smtp(&client, ns, "mail", spec(gateway(), peer.port)).await;
    wait_condition(&client, ns, "mail", "Ready", "True", Some("CheckSucceeded"), 120).await;
    let auths = peer.events_of("auth");
    assert!(!auths.is_empty() && auths.iter().all(|a| a["success"] == true), "peer auth events: {auths:?}");
    let leader_checks = pod_log(ns, &leader).matches("check finished").count();
    assert_eq!(peer.count("connect"), leader_checks, "only the leader dialled: {:?}", peer.events());

    let body = metrics_through_service(&client, ns).await;
    assert!(body.contains("smtp_operator_leader"), "{body}");

    // the leader pod is deleted: its successor holds the Lease within the lease duration, and checks nothing
    // that was already checked
    let connects = peer.count("connect");
    keep_pod_log(ns, &leader);
    let t0 = Instant::now();
    kubectl_ok(["delete", "pod", "-n", ns, &leader, "--wait=false"]);
    let next = poll(ns, "a new Lease holder", LEASE_DURATION + 30, || async {
        match valid_holder(&client, ns).await {
            Some(h) if h != leader => Ok(h),
            other => Err(format!("holder {other:?}")),
        }
    })
    .await;
    let handover = t0.elapsed();
    assert!(handover < LEASE_GAP_BOUND, "handover took {handover:?}");
    eprintln!("node: leader {leader} deleted, {next} holds the Lease after {handover:?}");
    poll(ns, "the new leader to reconcile `mail`", 90, || async {
        let log = pod_log(ns, &next);
        if log.contains("became leader") && reconciled(ns, &next, "mail") > 0 { Ok(()) } else { Err(log) }
    })
    .await;
    assert_eq!(peer.count("connect"), connects, "the new leader dialled again: {:?}", peer.events());
    assert_eq!(pod_log(ns, &next).matches("check finished").count(), 0, "{}", pod_log(ns, &next));
    // and it does check when asked
    annotate_smtp(&client, ns, "mail", "smtp-operator.io/check-requested-at", "after-handover").await;
    poll(ns, "the new leader's check", 90, || async {
        if peer.count("connect") > connects { Ok(()) } else { Err(format!("{:?}", peer.events())) }
    })
    .await;
    wait_condition(&client, ns, "mail", "Ready", "True", Some("CheckSucceeded"), 60).await;

    upgrade_rolls_without_losing_the_lease(&client, ns).await;
    // name resolution in the image (glibc, /etc/hosts): `localhost` resolves, to a denied address
    let local = json!({"server": "localhost", "port": peer.port, "from": "a@example.com", "tls": {"mode": "None"}});
    create_smtp(&client, ns, "resolver", local).await;
    wait_condition(&client, ns, "resolver", "Valid", "False", Some("DestinationNotAllowed"), 120).await;
    uninstall_leaves_nothing(&client, ns).await;
    drop(peer);
    namespace.cleanup().await;
}

/// `helm upgrade` with a changed value: a new ReplicaSet rolls out; the Lease is never without a valid holder
/// for longer than the lease duration; afterwards two new pods run the new value and one of them leads.
async fn upgrade_rolls_without_losing_the_lease(client: &kube::Client, ns: &str) {
    let (before, _) = wait_ready(client, ns, 2, 120).await;
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (client, ns, done) = (client.clone(), ns.to_string(), done.clone());
        tokio::spawn(async move {
            let (mut longest, mut since): (Duration, Option<Instant>) = (Duration::ZERO, None);
            while !done.load(Ordering::Acquire) {
                match (valid_holder(&client, &ns).await, since) {
                    (None, None) => since = Some(Instant::now()),
                    (Some(_), Some(t)) => {
                        longest = longest.max(t.elapsed());
                        since = None;
                    }
                    _ => {}
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            longest.max(since.map(|t| t.elapsed()).unwrap_or_default())
        })
    };
    let chart = chart();
    for p in &before {
        keep_pod_log(ns, &p.0);
    }
    helm_ok(
        ns,
        &["upgrade", RELEASE, chart.to_str().unwrap(), "-n", ns, "--reuse-values", "--set", "minCheckInterval=30s"],
    );
    let rollout = kubectl(["rollout", "status", "-n", ns, &format!("deployment/{FULLNAME}"), "--timeout=240s"]);
    assert!(rollout.status.success(), "rollout: {}\n{}", String::from_utf8_lossy(&rollout.stderr), diagnostics(ns));
    let (after, holder) = wait_ready(client, ns, 2, 120).await;
    done.store(true, Ordering::Release);
    let longest = watcher.await.unwrap();
    assert!(longest < LEASE_GAP_BOUND, "the Lease had no valid holder for {longest:?}");
    eprintln!("node: during the rollout the Lease was without a valid holder for at most {longest:?}");
    assert!(after.iter().all(|p| !before.contains(p)), "the pods were not replaced: {before:?} -> {after:?}");
    for (pod, _) in &after {
        let args = kubectl_ok(["get", "pod", "-n", ns, pod, "-o", "jsonpath={.spec.containers[0].args}"]);
        assert!(args.contains("--min-check-interval=30s"), "{pod}: {args}");
    }
    assert_one_leader(ns, &after, &holder).await;
    wait_condition(client, ns, "mail", "Ready", "True", Some("CheckSucceeded"), 60).await;
}

/// `helm uninstall`: no pod, workload, Service, account or RBAC object of the release is left; the Lease the
/// operator made stays, unheld, as do the SmtpSettings and the CRD (documented in the chart README).
async fn uninstall_leaves_nothing(client: &kube::Client, ns: &str) {
    for (pod, _) in ready_pods(client, ns).await {
        keep_pod_log(ns, &pod);
    }
    helm_ok(ns, &["uninstall", RELEASE, "-n", ns, "--wait", "--timeout", "120s"]);
    let selector = format!("app.kubernetes.io/instance={RELEASE}");
    poll(ns, "nothing of the release left", 120, || async {
        let namespaced = kubectl_ok([
            "get", "pods,deployments,replicasets,services,endpointslices,serviceaccounts,roles,rolebindings,leases,configmaps,secrets",
            "-n", ns, "-o", "name",
        ]);
        let ours: Vec<&str> = namespaced
            .lines()
            .filter(|l| {
                !matches!(
                    *l,
                    "configmap/peer-ca"
                        | "configmap/kube-root-ca.crt"
                        | "secret/smtp-credentials"
                        | "lease.coordination.k8s.io/smtp-operator"
                )
            })
            .filter(|l| !l.starts_with("serviceaccount/default"))
            .collect();
        let cluster = kubectl_ok(["get", "clusterroles,clusterrolebindings", "-l", &selector, "-o", "name"]);
        if ours.is_empty() && cluster.trim().is_empty() { Ok(()) } else { Err(format!("{ours:?} {cluster}")) }
    })
    .await;
    // helm deletes the RBAC and the ServiceAccount while the pods stop, so the last leader may not be allowed to
    // release the Lease any more; it is not renewed either: nobody holds it once the lease duration is over
    poll(ns, "the Lease to have no valid holder", LEASE_DURATION + 30, || async {
        match valid_holder(client, ns).await {
            None => Ok(()),
            Some(h) => Err(format!("still held by {h}")),
        }
    })
    .await;
    let crd = kubectl(["get", "crd", "smtpsettings.smtp-operator.io"]);
    assert!(crd.status.success(), "the CRD stays after uninstall");
    let smtp = kubectl_ok(["get", "smtpsettings", "-n", ns, "-o", "name"]);
    assert!(smtp.contains("mail"), "{smtp}");
}

/// A restricted-level pod that runs the image's `smtp-operator check --send-test-email` as an SMTP client of the
/// relay: the SmtpSettings manifest from the ConfigMap `relay-client`, the password from the relay's generated
/// credentials Secret (mounted, as apps do).
fn client_pod(ns: &str, image: &str, relay: &str, service_ip: &str) -> serde_json::Value {
    let restricted = json!({"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                            "capabilities": {"drop": ["ALL"]}});
    json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "relay-client", "namespace": ns},
        "spec": {
            "restartPolicy": "Never",
            "hostAliases": [{"ip": service_ip, "hostnames": [format!("{relay}-relay")]}],
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "client", "image": image, "imagePullPolicy": "Never", "securityContext": restricted,
                "args": ["check", "-f", "/manifest/settings.yaml", "--send-test-email",
                         "--secret-file", format!("{relay}-relay-credentials=/credentials"),
                         "--configmap-file", "relay-client=/manifest"],
                "volumeMounts": [{"name": "manifest", "mountPath": "/manifest"},
                                 {"name": "credentials", "mountPath": "/credentials"}],
            }],
            "volumes": [{"name": "manifest", "configMap": {"name": "relay-client"}},
                        {"name": "credentials", "secret": {"secretName": format!("{relay}-relay-credentials")}}],
        },
    })
}

/// What the client pod checks: the relay's Service (its name mapped to the ClusterIP by the pod's hostAliases:
/// the test node runs no cluster DNS; kube-proxy routes it), STARTTLS with the relay's certificate, AUTH with
/// the generated credentials, and a test email from the settings' own From (the relay's default sender).
fn client_settings(relay: &str) -> String {
    serde_json::to_string(&json!({
        "apiVersion": "smtp-operator.io/v1alpha1", "kind": "SmtpSettings", "metadata": {"name": "via-relay"},
        "spec": {
            "server": format!("{relay}-relay"), "port": 587, "from": "Node Alerts <alerts@example.com>",
            "tls": {"mode": "StartTLS", "caBundle": {"configMapKeyRef": {"name": "relay-client", "key": "ca.crt"}}},
            "auth": {"type": "Basic", "basic": {"username": relay,
                "passwordSecretRef": {"name": format!("{relay}-relay-credentials"), "key": "password"}}},
            "testEmail": {"to": ["oncall@example.com"]},
        },
    }))
    .unwrap()
}

fn jsonpath(ns: &str, object: &str, path: &str) -> String {
    kubectl_ok(["get", object, "-n", ns, "-o", &format!("jsonpath={path}")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smtp_relay_runs_as_pods_and_delivers_mail_from_a_client_pod() {
    let (_serial, client, namespace, peer) = begin("node-relay", "relay").await;
    let ns = &namespace.name().to_string();
    create_smtp(&client, ns, "upstream", spec(gateway(), peer.port)).await;
    wait_condition(&client, ns, "upstream", "Ready", "True", Some("CheckSucceeded"), 240).await;

    // the operator (in its pod) makes the relay's objects; the relay pods pass the restricted level and serve
    let relay = json!({"apiVersion": "smtp-operator.io/v1alpha1", "kind": "SmtpRelay",
                       "metadata": {"name": "mail", "namespace": ns},
                       "spec": {"settingsRef": {"name": "upstream"}, "replicas": 2,
                                "listen": {"port": 587, "tls": {"mode": "StartTLS", "certificateSecretRef": {"name": "relay-tls"}}}}});
    let relay_ca = tls_secret(&client, ns, "relay-tls", "DNS:mail-relay").await;
    apply_yaml(&relay.to_string());
    let ready = r#"{.status.conditions[?(@.type=="Ready")].status}"#;
    poll(ns, "SmtpRelay mail Ready", 240, || async {
        let r = jsonpath(ns, "smtprelay/mail", ready);
        if r == "True" { Ok(()) } else { Err(kubectl_ok(["get", "smtprelay/mail", "-n", ns, "-o", "yaml"])) }
    })
    .await;
    poll(ns, "both relay pods available", 120, || async {
        let n = jsonpath(ns, "deployment/mail-relay", "{.status.availableReplicas}");
        if n == "2" { Ok(()) } else { Err(n) }
    })
    .await;
    assert_eq!(jsonpath(ns, "pdb/mail-relay", "{.spec.maxUnavailable}"), "1");

    // a client pod sends through the Service; the relay delivers upstream with its own AUTH
    let ip = jsonpath(ns, "service/mail-relay", "{.spec.clusterIP}");
    let manifest = client_settings("mail");
    create_config_map(&client, ns, "relay-client", &[("settings.yaml", &manifest), ("ca.crt", &relay_ca)]).await;
    let (repo, tag) = import_operator_image();
    apply_yaml(&client_pod(ns, &format!("{repo}:{tag}"), "mail", &ip).to_string());
    poll(ns, "the client pod to finish", 180, || async {
        match jsonpath(ns, "pod/relay-client", "{.status.phase}").as_str() {
            "Succeeded" => Ok(()),
            "Failed" => panic!("client pod failed:\n{}", pod_log(ns, "relay-client")),
            p => Err(p.to_string()),
        }
    })
    .await;
    let msgs = peer.events_of("message");
    assert_eq!(msgs.len(), 1, "{:?}\n{}", peer.events(), pod_log(ns, "relay-client"));
    assert_eq!(msgs[0]["mail_from"], "alerts@example.com");
    assert_eq!(msgs[0]["rcpt_tos"], json!(["oncall@example.com"]));
    let relay_auths: Vec<_> = peer.events_of("auth").into_iter().filter(|a| a["user"] == "alerts").collect();
    assert!(relay_auths.iter().all(|a| a["success"] == true), "{relay_auths:?}");

    // deleting the SmtpRelay: the garbage collector removes everything the operator made for it
    kubectl_ok(["delete", "smtprelay", "mail", "-n", ns]);
    poll(ns, "the relay's objects collected", 120, || async {
        let left = kubectl_ok([
            "get",
            "deployments,services,serviceaccounts,roles,rolebindings,poddisruptionbudgets,secrets",
            "-n",
            ns,
            "-l",
            "app.kubernetes.io/name=smtp-relay",
            "-o",
            "name",
        ]);
        if left.trim().is_empty() { Ok(()) } else { Err(left) }
    })
    .await;
    helm_ok(ns, &["uninstall", "relay", "-n", ns, "--wait", "--timeout", "120s"]);
    drop(peer);
    namespace.cleanup().await;
}
