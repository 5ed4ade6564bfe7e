//! The real local control plane for integration tests.
//!
//! - [`client`]: a kube client for the plane named by `KUBECONFIG` (as exported by `scripts/test`); when
//!   `KUBECONFIG` is unset, `scripts/control-plane start` is run (it reuses a running plane) and
//!   `target/control-plane/kubeconfig` is used. A plane started that way keeps running after the tests;
//!   stop it with `scripts/control-plane stop`.
//! - [`TestNamespace`]: a fresh namespace per test, deleted on drop or by [`TestNamespace::cleanup`]. Without a
//!   controller-manager a deleted namespace stays `Terminating`; that is fine, names are never reused.
//! - [`kubectl`]: runs kubectl against the same plane.
//!
//! Many test binaries and tests run in parallel against one plane; everything here is safe for that.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

/// The repository root (where `Cargo.toml` and `scripts/` live).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The kubeconfig of the test control plane: `KUBECONFIG` if set, else the one `scripts/control-plane start`
/// writes (the plane is started, or reused, once per test process).
pub fn kubeconfig_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| match std::env::var_os("KUBECONFIG") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => {
            let script = repo_root().join("scripts/control-plane");
            let out = Command::new(&script)
                .arg("start")
                .output()
                .unwrap_or_else(|e| panic!("running {} start: {e}", script.display()));
            assert!(
                out.status.success(),
                "{} start failed ({}):\n{}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            repo_root().join("target/control-plane/kubeconfig")
        }
    })
}

/// A kube client for the test control plane.
pub async fn client() -> Client {
    client_at(kubeconfig_path()).await
}

/// A kube client for the plane of `path` (e.g. a [`super::plane::PrivatePlane`]'s kubeconfig).
pub async fn client_at(path: &Path) -> Client {
    let kubeconfig =
        Kubeconfig::read_from(path).unwrap_or_else(|e| panic!("reading kubeconfig {}: {e}", path.display()));
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("loading kubeconfig {}: {e}", path.display()));
    Client::try_from(config).expect("building the kube client")
}

/// The kubectl binary: `target/control-plane/bin/kubectl` (linked by `scripts/control-plane start` to the
/// cached build), else `kubectl` from PATH.
pub fn kubectl_path() -> PathBuf {
    let linked = repo_root().join("target/control-plane/bin/kubectl");
    if linked.exists() { linked } else { PathBuf::from("kubectl") }
}

/// Runs kubectl with `KUBECONFIG` set to the test plane and returns its output (does not check the status).
pub fn kubectl<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    kubectl_at(kubeconfig_path(), args)
}

/// Like [`kubectl`], against the plane of `kubeconfig`.
pub fn kubectl_at<I, S>(kubeconfig: &Path, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(kubectl_path())
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", kubectl_path().display()))
}

/// Like [`kubectl`], but panics with kubectl's stderr unless it succeeded; returns stdout.
pub fn kubectl_ok<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let out = kubectl(&args);
    assert!(
        out.status.success(),
        "kubectl {:?} failed ({}):\n{}",
        args,
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A unique DNS-1123 label `<prefix>-<pid>-<counter>-<time>` (at most 63 characters).
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let prefix: String =
        prefix.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).take(30).collect();
    let prefix = prefix.trim_matches('-');
    let prefix = if prefix.is_empty() { "t" } else { prefix };
    format!("{prefix}-{}-{n}-{nanos:x}", std::process::id())
}

/// A namespace created for one test and deleted when dropped (or by [`TestNamespace::cleanup`]).
pub struct TestNamespace {
    name: String,
    client: Client,
    /// The plane's kubeconfig, for the kubectl of [`Drop`].
    kubeconfig: PathBuf,
    deleted: bool,
}

impl TestNamespace {
    /// Creates a fresh namespace named after `prefix` (e.g. the test's name).
    pub async fn new(client: &Client, prefix: &str) -> TestNamespace {
        TestNamespace::new_at(client, prefix, kubeconfig_path()).await
    }

    /// Like [`TestNamespace::new`] on the plane of `kubeconfig` (the one `client` talks to).
    pub async fn new_at(client: &Client, prefix: &str, kubeconfig: &Path) -> TestNamespace {
        let name = unique_name(prefix);
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([("smtp-operator.io/test".to_string(), "true".to_string())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("creating test namespace {name}: {e}"));
        TestNamespace { name, client: client.clone(), kubeconfig: kubeconfig.to_path_buf(), deleted: false }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// An `Api` for a namespaced resource in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Deletes the namespace now (it stays `Terminating`: no controller-manager runs).
    pub async fn cleanup(mut self) {
        self.deleted = true;
        match Api::<Namespace>::all(self.client.clone()).delete(&self.name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => panic!("deleting test namespace {}: {e}", self.name),
        }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if self.deleted {
            return;
        }
        // Drop cannot await, and blocking on the kube client here could deadlock the test's runtime, so use
        // kubectl (a separate process, bounded by --request-timeout). Errors are ignored: the namespace is
        // unique, and a leftover one harms no other test.
        let args = ["delete", "namespace", &self.name, "--wait=false", "--ignore-not-found", "--request-timeout=10s"];
        let _ = kubectl_at(&self.kubeconfig, args);
    }
}
