//! The operator as a real process for end-to-end tests: `smtp-operator run` against the control plane, its
//! debug log captured to a file, plus helpers to install the CRD, create objects and wait for conditions.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use smtp_operator::api::SmtpSettings;

/// A running `smtp-operator run`; SIGTERM (then SIGKILL) on drop.
pub struct Operator {
    pub child: Child,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Operator {
    /// Starts the operator with `args` after `run` (add `--watch-namespace NS` etc.), RUST_LOG=debug.
    pub fn start(args: &[&str]) -> Operator {
        Operator::start_with_env(args, &[])
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The address of /metrics (from the startup log line), waiting up to 30 s.
    pub fn metrics_addr(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for line in self.log_text().lines() {
                if let Ok(v) = serde_json::from_str::<Value>(line)
                    && v["message"] == "serving /metrics, /healthz, /readyz"
                {
                    return v["addr"].as_str().expect("addr").to_string();
                }
            }
            assert!(Instant::now() < deadline, "operator did not log its metrics address:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends SIGTERM and waits (at most 20 s) for the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        super::process::terminate(&mut self.child, Duration::from_secs(20))
    }

    /// Kills the process at once (no graceful stop).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Like [`Operator::start`], with extra environment variables (e.g. `KUBECONFIG` of a ServiceAccount).
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Operator {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("operator.log");
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_smtp-operator"))
            .arg("run")
            .args(["--metrics-addr", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "debug,hyper=info,tower=info,rustls=info,h2=info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn smtp-operator");
        Operator { child, log, _dir: dir }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
        // keep the log for the suite-wide secret scan of scripts/test (step leak_scan)
        if let Ok(dir) = std::env::var("SMTP_OPERATOR_TEST_LOGS") {
            let _ = std::fs::create_dir_all(&dir);
            let name = format!("operator-{}-{}.log", std::process::id(), self.child.id());
            let _ = std::fs::copy(&self.log, std::path::Path::new(&dir).join(name));
        }
    }
}

/// A plain HTTP GET on loopback (status code, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect metrics");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let code = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (code, body)
}

/// Applies every CRD of `smtp-operator crd` (server-side) and waits until each is established.
pub async fn install_crd(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (_, yaml) in smtp_operator::crdgen::crds() {
        let crd: CustomResourceDefinition = serde_yaml::from_str(&yaml).unwrap();
        let name = crd.metadata.name.clone().expect("CRD name");
        crds.patch(&name, &PatchParams::apply("smtp-operator-tests").force(), &Patch::Apply(&crd))
            .await
            .expect("apply CRD");
        let mut established = false;
        for _ in 0..200 {
            let c = crds.get(&name).await.unwrap();
            established = c
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(established, "CRD {name} not established");
    }
}

/// Creates a Secret with string values and annotations.
pub async fn create_secret(
    client: &kube::Client,
    ns: &str,
    name: &str,
    data: &[(&str, &[u8])],
    annotations: &[(&str, &str)],
) {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let s = Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            annotations: Some(annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ..Default::default()
        },
        data: Some(data.iter().map(|(k, v)| (k.to_string(), ByteString(v.to_vec()))).collect()),
        ..Default::default()
    };
    api.create(&PostParams::default(), &s).await.expect("create secret");
}

/// Creates a ConfigMap.
pub async fn create_config_map(client: &kube::Client, ns: &str, name: &str, data: &[(&str, &str)]) {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let c = ConfigMap {
        metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
        data: Some(data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>()),
        ..Default::default()
    };
    api.create(&PostParams::default(), &c).await.expect("create configmap");
}

/// Creates an SmtpSettings from a JSON spec.
pub async fn create_smtp(client: &kube::Client, ns: &str, name: &str, spec: Value) -> SmtpSettings {
    let api: Api<SmtpSettings> = Api::namespaced(client.clone(), ns);
    let obj: SmtpSettings = serde_json::from_value(json!({
        "apiVersion": "smtp-operator.io/v1alpha1", "kind": "SmtpSettings",
        "metadata": {"name": name}, "spec": spec,
    }))
    .expect("valid SmtpSettings");
    api.create(&PostParams::default(), &obj).await.expect("create SmtpSettings")
}

/// Sets an annotation on an SmtpSettings (merge patch).
pub async fn annotate_smtp(client: &kube::Client, ns: &str, name: &str, key: &str, value: &str) {
    let api: Api<SmtpSettings> = Api::namespaced(client.clone(), ns);
    api.patch(name, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": {key: value}}})))
        .await
        .expect("annotate");
}

/// Deletes every SmtpSettings in the namespace (no controller-manager empties namespaces here).
pub async fn delete_all_smtp(client: &kube::Client, ns: &str) {
    let api: Api<SmtpSettings> = Api::namespaced(client.clone(), ns);
    let _ = api.delete_collection(&Default::default(), &ListParams::default()).await;
}

/// The condition `type_` of an object, if any.
pub fn condition(obj: &SmtpSettings, type_: &str) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    obj.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_).cloned()
}

/// Polls until `pred` holds for the object (at most `secs`), returning it; panics with the last status.
pub async fn wait_for(
    client: &kube::Client,
    ns: &str,
    name: &str,
    secs: u64,
    pred: impl Fn(&SmtpSettings) -> bool,
) -> SmtpSettings {
    let api: Api<SmtpSettings> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let obj = api.get(name).await.expect("get SmtpSettings");
        if pred(&obj) {
            return obj;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {ns}/{name}; status: {}", serde_json::to_string_pretty(&obj.status).unwrap());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits for condition `type_` with the given status (and reason, when given).
pub async fn wait_condition(
    client: &kube::Client,
    ns: &str,
    name: &str,
    type_: &str,
    status: &str,
    reason: Option<&str>,
    secs: u64,
) -> SmtpSettings {
    wait_for(client, ns, name, secs, |o| {
        condition(o, type_).is_some_and(|c| c.status == status && reason.is_none_or(|r| c.reason == r))
    })
    .await
}

/// Waits (at most 30 s) until an event `type_`/`reason` about `name` exists in `ns`; returns all its events.
/// Events are written after the status, so a test that has just seen a condition must wait for them.
pub async fn wait_event(
    client: &kube::Client,
    ns: &str,
    name: &str,
    type_: &str,
    reason: &str,
) -> Vec<(String, String, String)> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let events = events_for(client, ns, name).await;
        if events.iter().any(|(t, r, _)| t == type_ && r == reason) {
            return events;
        }
        assert!(std::time::Instant::now() < deadline, "no {type_} {reason} event about {name} in {ns}: {events:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Events (events.k8s.io) about `name` in `ns`: (type, reason, note).
pub async fn events_for(client: &kube::Client, ns: &str, name: &str) -> Vec<(String, String, String)> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| (e.type_.unwrap_or_default(), e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}
