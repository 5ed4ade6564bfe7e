//! A private control plane for one test: `scripts/control-plane` with `CONTROL_PLANE_DIR` set to a directory of
//! the test's own, so the test may stop and start its kube-apiserver or etcd while every other test keeps the
//! shared plane. Stopped (and its directory removed) on drop, also when the test panicked; after a panic the
//! directory stays for its logs (`etcd.log`, `kube-apiserver.log`).
//!
//! ```ignore
//! let plane = PrivatePlane::start("apiserver-outage");
//! let mut s = Scenario::on_plane("e2e-outage", &PEER, plane.kubeconfig()).await;
//! plane.stop_apiserver();
//! plane.start_apiserver();
//! ```
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use super::kube::{repo_root, unique_name};

/// A running private plane; stopped on drop.
pub struct PrivatePlane {
    dir: PathBuf,
    kubeconfig: PathBuf,
}

impl PrivatePlane {
    /// Starts a plane in `target/private-planes/<name>-…` (certificates, kubeconfig and logs there, the etcd data
    /// in a temporary directory); the binaries are the cached ones of the shared plane.
    pub fn start(name: &str) -> PrivatePlane {
        let dir = repo_root().join("target/private-planes").join(unique_name(name));
        std::fs::create_dir_all(&dir).expect("create the private plane's directory");
        let plane = PrivatePlane { kubeconfig: dir.join("kubeconfig"), dir };
        plane.run("start");
        assert!(plane.kubeconfig.exists(), "start wrote no kubeconfig in {}", plane.dir.display());
        plane
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The plane's directory (logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Ends the kube-apiserver only; etcd keeps running.
    pub fn stop_apiserver(&self) {
        self.run("stop-apiserver");
    }

    /// Starts the kube-apiserver again (same port, same certificates) and waits for its /readyz.
    pub fn start_apiserver(&self) {
        self.run("start-apiserver");
    }

    /// Ends etcd only; the kube-apiserver keeps running (and answers with errors).
    pub fn stop_etcd(&self) {
        self.run("stop-etcd");
    }

    /// Starts etcd again (same data, same ports) and waits until the kube-apiserver is ready again.
    pub fn start_etcd(&self) {
        self.run("start-etcd");
    }

    fn command(&self, subcommand: &str) -> Command {
        let mut c = Command::new(repo_root().join("scripts/control-plane"));
        c.arg(subcommand).env("CONTROL_PLANE_DIR", &self.dir);
        c
    }

    fn run(&self, subcommand: &str) {
        let out = self.command(subcommand).output().unwrap_or_else(|e| panic!("running control-plane: {e}"));
        assert!(
            out.status.success(),
            "CONTROL_PLANE_DIR={} scripts/control-plane {subcommand} failed ({}):\n{}",
            self.dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PrivatePlane {
    fn drop(&mut self) {
        let stopped = self.command("stop").output().is_ok_and(|o| o.status.success());
        if stopped && !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
