//! The real test node (`scripts/node`): the operator's image imported into it, helm against it, polling waits
//! that print the node's diagnostics (pod descriptions, pod logs, events, kubelet and containerd log tails)
//! when they time out.
//!
//! ```ignore
//! ensure_node();                                   // `scripts/node start` unless it is up (scripts/test starts it)
//! let (repo, tag) = import_operator_image();       // scripts/image from this build, imported with ctr
//! helm_ok(&["install", "rel", chart(), "-n", ns, "--set", &format!("image.tag={tag}")]);
//! ```
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::kube::{kubeconfig_path, kubectl, repo_root};
use super::rbac::helm;

/// The node's host address on the pod network (scripts/node's `gateway`): test servers that pods must reach
/// listen there, and it is the node's InternalIP.
pub fn gateway() -> &'static str {
    static GW: OnceLock<String> = OnceLock::new();
    GW.get_or_init(|| {
        let script = std::fs::read_to_string(repo_root().join("scripts/node")).expect("read scripts/node");
        script
            .lines()
            .find_map(|l| l.strip_prefix("gateway="))
            .expect("scripts/node defines gateway=")
            .trim()
            .to_string()
    })
}

/// Makes sure the node runs: `scripts/node status`, else `scripts/node start` (once per test process). A node
/// started here keeps running after the tests (scripts/test stops the one it started).
pub fn ensure_node() {
    static UP: OnceLock<()> = OnceLock::new();
    UP.get_or_init(|| {
        let script = repo_root().join("scripts/node");
        let status = Command::new(&script).arg("status").output().expect("run scripts/node status");
        if status.status.success() {
            return;
        }
        let out = Command::new(&script).arg("start").output().expect("run scripts/node start");
        assert!(
            out.status.success(),
            "scripts/node start failed ({}); the node tests need root and the packages of .ci/run:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// Builds the operator image from this test build's binary (scripts/image) and imports it into the node, once
/// per test process. Returns (repository, tag) for the chart's `image.*` values.
pub fn import_operator_image() -> (String, String) {
    static IMAGE: OnceLock<(String, String)> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            ensure_node();
            let out = Command::new(repo_root().join("scripts/image"))
                .args(["--binary", env!("CARGO_BIN_EXE_smtp-operator"), "--import"])
                .output()
                .expect("run scripts/image");
            assert!(out.status.success(), "scripts/image --import failed:\n{}", String::from_utf8_lossy(&out.stderr));
            let name = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().trim().to_string();
            let (repo, tag) = name.rsplit_once(':').expect("image reference with a tag");
            (repo.trim_start_matches("docker.io/library/").to_string(), tag.to_string())
        })
        .clone()
}

/// The chart directory.
pub fn chart() -> PathBuf {
    repo_root().join("charts/smtp-operator")
}

/// Runs helm against the test plane; returns (success, stdout + stderr).
pub fn helm_run(args: &[&str]) -> (bool, String) {
    let out = Command::new(helm()).args(args).env("KUBECONFIG", kubeconfig_path()).output().expect("run helm");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Runs helm and fails the test with its output (and the node's diagnostics for `ns`) when it fails.
pub fn helm_ok(ns: &str, args: &[&str]) -> String {
    let (ok, text) = helm_run(args);
    if !ok {
        panic!("helm {args:?} failed:\n{text}\n{}", diagnostics(ns));
    }
    text
}

/// kubectl's output (stdout, or stderr when it failed), never panicking: for diagnostics.
fn kubectl_text(args: &[&str]) -> String {
    let out = kubectl(args);
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        text.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    text
}

/// The last `n` lines of a file in target/node/.
fn node_log_tail(name: &str, n: usize) -> String {
    let path = repo_root().join("target/node").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| format!("({}: {e})", path.display()));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// What helps to see why something on the node did not happen: pods, their descriptions and logs (also of the
/// previous container), the namespace's events, the node, and the kubelet's and containerd's log tails.
pub fn diagnostics(ns: &str) -> String {
    let mut out = String::new();
    let mut section = |title: &str, body: String| out.push_str(&format!("\n===== {title}\n{body}"));
    section("pods", kubectl_text(&["get", "pods", "-n", ns, "-o", "wide"]));
    section("describe pods", kubectl_text(&["describe", "pods", "-n", ns]));
    let names = kubectl_text(&["get", "pods", "-n", ns, "-o", "jsonpath={.items[*].metadata.name}"]);
    for pod in names.split_whitespace() {
        section(&format!("logs {pod}"), kubectl_text(&["logs", "-n", ns, pod, "--tail=40"]));
        section(&format!("previous logs {pod}"), kubectl_text(&["logs", "-n", ns, pod, "--previous", "--tail=20"]));
    }
    section("events", kubectl_text(&["get", "events", "-n", ns, "--sort-by=.lastTimestamp"]));
    section("node", kubectl_text(&["describe", "node"]));
    section("kubelet.log", node_log_tail("kubelet.log", 40));
    section("containerd.log", node_log_tail("containerd.log", 20));
    out
}

/// Polls `check` every 250 ms until it returns Some (at most `secs`); on timeout fails with `what`, the last
/// observation and the node's diagnostics for `ns`.
pub async fn poll<T, F, Fut>(ns: &str, what: &str, secs: u64, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {secs}s waiting for {what}; last: {last}\n{}", diagnostics(ns))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// A plain HTTP GET to `addr` (any reachable address, e.g. a pod or Service IP): (status code, body), or the
/// connection error.
pub fn http_get(addr: &str, path: &str) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let sock: std::net::SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let mut s =
        std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(5)).map_err(|e| format!("{addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| format!("{addr}: {e}"))?;
    let code = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((code, body))
}

/// The log of a pod's operator container (through the kubelet: `kubectl logs`), empty when unavailable.
pub fn pod_log(ns: &str, pod: &str) -> String {
    let out = kubectl(["logs", "-n", ns, pod]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Saves a pod's log into $SMTP_OPERATOR_TEST_LOGS (for scripts/test's secret scan of every operator log).
pub fn keep_pod_log(ns: &str, pod: &str) {
    if let Ok(dir) = std::env::var("SMTP_OPERATOR_TEST_LOGS") {
        let log = pod_log(ns, pod);
        if !log.is_empty() {
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::write(Path::new(&dir).join(format!("operator-pod-{ns}-{pod}.log")), log);
        }
    }
}
