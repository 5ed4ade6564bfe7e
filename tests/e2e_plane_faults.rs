//! The cluster rows of the fault table (issue 11) that stop part of the control plane: the kube-apiserver stopped
//! for 30 s and started again, and etcd restarted, while the operator checks an SmtpSettings every 2 s. Each test
//! owns a private plane (`support::plane`, stopped also when the test panics), so it takes turns with nothing: the
//! rest of the suite keeps the shared plane. After the outage: the same operator process is running and did not
//! panic, its watches resumed (a spec change and a `check-requested-at` made afterwards are reconciled, the latter
//! with exactly one check), Ready is True again, the test email requested before was sent exactly once, it did not
//! hammer the plane while it was down (bounded by its backoff) and no secret is in its log.

mod support;

use std::time::{Duration, Instant};

use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use smtp_operator::api::{SmtpSettings, TestEmailResult};
use support::operator::*;
use support::plane::PrivatePlane;
use support::scenario::Scenario;

const PASSWORD: &str = "e2e-plane-faults-pw-5e07b3";
const PEER: [&str; 8] = ["--tls", "starttls", "--auth", "plain,login", "--user", "alerts", "--password", PASSWORD];
/// `spec.check.interval` before and during the outage: checks keep running.
const INTERVAL: Duration = Duration::from_secs(2);
const TEST_EMAIL_REQUEST: &str = "before-the-outage";

#[tokio::test]
async fn the_kube_apiserver_stopped_for_30s_and_started_again_is_survived_without_a_restart() {
    let down = Duration::from_secs(30);
    survives("e2e-apiserver-outage", PrivatePlane::stop_apiserver, down, PrivatePlane::start_apiserver).await;
}

#[tokio::test]
async fn etcd_restarted_is_survived_without_a_restart() {
    survives("e2e-etcd-restart", PrivatePlane::stop_etcd, Duration::from_secs(10), PrivatePlane::start_etcd).await;
}

/// The row on a private plane of its own: Ready with a test email sent, then the outage, then the recovery.
async fn survives(name: &str, stop: fn(&PrivatePlane), down: Duration, start: fn(&PrivatePlane)) {
    let plane = PrivatePlane::start(name);
    let mut s = ready_with_one_test_email(&plane, name).await;
    let outage = outage(&mut s, || stop(&plane), down, || start(&plane)).await;
    assert_recovered(&mut s, &outage).await;
    s.finish().await;
}

/// On the private plane: the operator, an SmtpSettings `mail` (Basic auth against the aiosmtpd peer, checked every
/// [`INTERVAL`]) Ready, and its test email [`TEST_EMAIL_REQUEST`] sent.
async fn ready_with_one_test_email(plane: &PrivatePlane, prefix: &str) -> Scenario {
    let mut s = Scenario::on_plane(prefix, &PEER, plane.kubeconfig()).await;
    s.basic_credentials(PASSWORD, true).await;
    s.start_operator(&[]);
    let mut spec = s.basic_spec();
    spec["check"] = json!({"interval": format!("{}s", INTERVAL.as_secs())});
    s.create("mail", spec).await;
    s.wait_condition("mail", "Ready", "True", None).await;
    annotate_smtp(&s.client, s.ns(), "mail", "smtp-operator.io/test-email-requested-at", TEST_EMAIL_REQUEST).await;
    let obj = wait_for(&s.client, s.ns(), "mail", 60, |o| {
        o.status.as_ref().and_then(|s| s.test_email.as_ref()).is_some_and(|t| {
            t.request == TEST_EMAIL_REQUEST && !matches!(t.result, TestEmailResult::Deferred | TestEmailResult::Sending)
        })
    })
    .await;
    assert_eq!(obj.status.unwrap().test_email.unwrap().result, TestEmailResult::Sent);
    assert_eq!(s.peer.count("message"), 1);
    s
}

/// What happened while the plane was down.
struct Outage {
    /// From the stop until the restarted process was ready again.
    took: Duration,
    /// The operator's log lines of that time.
    log: Vec<String>,
    /// Connections at the peer in that time (the checks that ran).
    connects: usize,
}

/// The fault: `stop`, `down` long, `start` (which returns once the plane is ready again). The pause is the
/// outage itself, not a wait for something.
async fn outage(s: &mut Scenario, stop: impl FnOnce(), down: Duration, start: impl FnOnce()) -> Outage {
    let (lines, connects) = (s.op().log_text().lines().count(), s.peer.count("connect"));
    let started = Instant::now();
    stop();
    tokio::time::sleep(down).await;
    start();
    let took = started.elapsed();
    let log = s.op().log_text().lines().skip(lines).map(String::from).collect();
    Outage { took, log, connects: s.peer.count("connect") - connects }
}

async fn assert_recovered(s: &mut Scenario, outage: &Outage) {
    assert!(s.op().is_running(), "the operator survived the outage:\n{}", s.op().log_text());
    assert_not_hammered(outage);
    let api: Api<SmtpSettings> = Api::namespaced(s.client.clone(), s.ns());

    // the watch resumed: a spec change made now is reconciled (the periodic checks stop: only on change)
    let patch = json!({"spec": {"check": {"interval": "0s"}}});
    let changed = api.patch("mail", &PatchParams::default(), &Patch::Merge(patch)).await.expect("patch the spec");
    let generation = changed.metadata.generation;
    // (a watch that failed through the outage waits up to its 5 s backoff cap before it reconnects, and once more
    // when the plane answers its resume with 410 Gone and it lists anew)
    let obj = wait_for(&s.client, s.ns(), "mail", 60, |o| {
        condition(o, "Ready").is_some_and(|c| c.status == "True" && c.observed_generation == generation)
    })
    .await;
    let inputs = obj.status.and_then(|st| st.last_check).and_then(|l| l.inputs);

    // a check requested now is made exactly once
    let connects = s.peer.count("connect");
    annotate_smtp(&s.client, s.ns(), "mail", "smtp-operator.io/check-requested-at", "after-the-outage").await;
    let obj = wait_for(&s.client, s.ns(), "mail", 60, |o| {
        let last = o.status.as_ref().and_then(|st| st.last_check.as_ref());
        last.is_some_and(|l| l.inputs != inputs) && condition(o, "Ready").is_some_and(|c| c.status == "True")
    })
    .await;
    assert_eq!(condition(&obj, "Ready").unwrap().reason, "CheckSucceeded");
    assert_eq!(s.peer.count("connect"), connects + 1, "one check for the request: {:?}", s.peer.events_of("connect"));

    // the test email requested before the outage: answered once, sent once
    let te = obj.status.as_ref().and_then(|st| st.test_email.clone()).expect("testEmail status");
    assert_eq!((te.request.as_str(), te.result), (TEST_EMAIL_REQUEST, TestEmailResult::Sent));
    assert_eq!(s.peer.count("message"), 1, "the test email was sent again: {:?}", s.peer.events_of("message"));

    let log = s.op().log_text();
    assert!(!log.contains("panicked"), "no panic:\n{log}");
    assert!(!log.contains(PASSWORD), "the password is in the operator log");
    assert!(s.op().is_running(), "still the same operator process");
}

/// The operator did not hammer the plane while it was down. Its watches retry with `WatchBackoff` (0.8 s, doubling
/// up to 5 s) and a failed reconcile waits 10 s, then 20 s, ... (`error_policy`): each may fail at most
/// [`attempts`] times in the outage. The checks keep to the interval.
fn assert_not_hammered(outage: &Outage) {
    let secs = outage.took.as_secs_f64();
    let watch_failures = outage.log.iter().filter(|l| is_watch_failure(l)).count();
    // the watched kinds: SmtpSettings, Secrets and ConfigMaps (one backoff each), SmtpRelays and their Deployments
    let watches = 5;
    let watch_bound = watches * attempts(secs, 0.8, 5.0);
    assert!(
        watch_failures <= watch_bound,
        "{watch_failures} failed watch requests in {secs:.1} s, more than {watch_bound} ({watches} watches \
         backing off):\n{}",
        outage.log.join("\n")
    );
    let reconcile_failures = outage.log.iter().filter(|l| l.contains(r#""message":"reconcile failed""#)).count();
    let reconcile_bound = attempts(secs, 10.0, 300.0);
    assert!(
        reconcile_failures <= reconcile_bound,
        "{reconcile_failures} failed reconciles of one object in {secs:.1} s, more than {reconcile_bound}:\n{}",
        outage.log.join("\n")
    );
    let check_bound = 1 + (secs / INTERVAL.as_secs_f64()) as usize;
    assert!(outage.connects <= check_bound, "{} checks in {secs:.1} s, interval {INTERVAL:?}", outage.connects);
    // and nothing else floods the log: a few lines per failed request
    let line_bound = 4 * (watch_bound + reconcile_bound + check_bound) + 50;
    assert!(
        outage.log.len() <= line_bound,
        "{} log lines in {secs:.1} s (bound {line_bound}):\n{}",
        outage.log.len(),
        outage.log.join("\n")
    );
}

/// A failed watch request as kube-runtime's watcher logs it (`watch initlist error`, `watcher error`, ...).
fn is_watch_failure(line: &str) -> bool {
    line.contains("kube_runtime::watcher") && line.contains("error")
}

/// How often something retried with exponential backoff (first wait `first` s, doubling up to `max` s) can fail in
/// `secs` seconds: the first failure, plus one after each wait that fits.
fn attempts(secs: f64, first: f64, max: f64) -> usize {
    let (mut n, mut waited, mut wait) = (1, 0.0, first);
    while waited + wait <= secs {
        waited += wait;
        wait = (wait * 2.0).min(max);
        n += 1;
    }
    n
}
