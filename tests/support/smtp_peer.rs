//! A real SMTP server for tests: `tests/peers/smtp_peer.py` (aiosmtpd) in the project venv, one process per
//! peer, killed on drop.
//!
//! ```ignore
//! let peer = SmtpPeer::start(&["--tls", "starttls", "--auth", "plain", "--user", "u", "--password", "p"]);
//! // ... connect to 127.0.0.1:peer.port, trust peer.ca_der() ...
//! assert_eq!(peer.count("auth"), 1);
//! ```
//!
//! The python comes from `SMTP_OPERATOR_PYTHON`, else from `scripts/python-env` (which creates the venv once).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// A running peer.
pub struct SmtpPeer {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    child: Child,
    ca_pem_path: Option<PathBuf>,
    events_path: PathBuf,
    _dir: tempfile::TempDir,
}

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The venv python (resolved once per test binary).
pub fn python() -> &'static str {
    static PY: OnceLock<String> = OnceLock::new();
    PY.get_or_init(|| {
        if let Ok(p) = std::env::var("SMTP_OPERATOR_PYTHON")
            && !p.is_empty()
        {
            return p;
        }
        let out = Command::new("bash")
            .arg(repo_root().join("scripts/python-env"))
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/python-env");
        assert!(out.status.success(), "scripts/python-env failed");
        String::from_utf8(out.stdout)
            .expect("utf-8 from python-env")
            .lines()
            .last()
            .expect("python-env printed the python path")
            .trim()
            .to_owned()
    })
}

impl SmtpPeer {
    /// Starts a peer with the given flags (see `tests/peers/smtp_peer.py --help`); `--events` and `--ca-out`
    /// are added here. Waits for its ready line (at most 60 s).
    pub fn start(args: &[&str]) -> SmtpPeer {
        Self::start_script("smtp_peer.py", args)
    }

    /// Starts another peer script of `tests/peers/` that speaks the same ready line and flags (`--events`,
    /// `--ca-out`), e.g. `fault_peer.py`.
    pub fn start_script(script: &str, args: &[&str]) -> SmtpPeer {
        let dir = tempfile::tempdir().expect("temp dir");
        let events_path = dir.path().join("events.jsonl");
        let ca_out = dir.path().join("ca.pem");
        let mut child = Command::new(python())
            .arg(repo_root().join("tests/peers").join(script))
            .args(args)
            .arg("--events")
            .arg(&events_path)
            .arg("--ca-out")
            .arg(&ca_out)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {script}: {e}"));
        let stdout = child.stdout.take().expect("peer stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) if !l.trim().is_empty() => l,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{script} did not become ready (args {args:?}): {other:?}");
            }
        };
        let ready: Value = serde_json::from_str(line.trim()).expect("peer ready line is JSON");
        let port = ready["port"].as_u64().expect("port in ready line") as u16;
        let ca_pem_path = ready["ca_pem_path"].as_str().map(PathBuf::from);
        SmtpPeer { port, child, ca_pem_path, events_path, _dir: dir }
    }

    /// The peer's CA certificate (PEM). Panics when the peer runs without TLS.
    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.ca_pem_path.as_ref().expect("peer has a CA (TLS on)")).expect("read CA PEM")
    }

    /// The peer's CA certificate (DER), ready for `TlsOptions::extra_roots`.
    pub fn ca_der(&self) -> Vec<u8> {
        let pem = self.ca_pem();
        let mut rd = &pem[..];
        rustls_pemfile::certs(&mut rd).next().expect("a certificate in the CA PEM").expect("valid PEM").to_vec()
    }

    /// Every event so far, in order (`{"event": "connect" | "ehlo" | "auth_command" | "auth" | "mail_from" |
    /// "rcpt_to" | "message" | "quit", ...}`).
    pub fn events(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.events_path).unwrap_or_default();
        text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).expect("event JSON")).collect()
    }

    /// The events of one kind.
    pub fn events_of(&self, kind: &str) -> Vec<Value> {
        self.events().into_iter().filter(|e| e["event"] == kind).collect()
    }

    /// How many events of one kind.
    pub fn count(&self, kind: &str) -> usize {
        self.events_of(kind).len()
    }

    /// The raw event log (to assert that no secret was ever written).
    pub fn events_raw(&self) -> String {
        std::fs::read_to_string(&self.events_path).unwrap_or_default()
    }
}

impl Drop for SmtpPeer {
    fn drop(&mut self) {
        // SIGTERM for a clean exit, then make sure
        super::process::terminate(&mut self.child, Duration::from_secs(1));
    }
}
