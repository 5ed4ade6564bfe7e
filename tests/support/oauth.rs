//! Real peers for the OAuth 2.0 side: the Authlib authorization server (`tests/peers/oauth_server.py`) and the
//! throwaway Postfix + Dovecot instance (`scripts/mta`). Each is a child process that dies with its guard.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The test peers' python (creates the venv on first use).
pub fn python() -> PathBuf {
    let out = Command::new(repo().join("scripts/python-env"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/python-env");
    assert!(out.status.success(), "scripts/python-env failed");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    PathBuf::from(text.lines().last().expect("python path").trim())
}

/// Reads the first stdout line of `child` (the JSON ready line), waiting at most `wait`.
fn ready_line(child: &mut Child, what: &str, wait: Duration) -> Value {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        // keep draining so the child never blocks on a full pipe
        let mut sink = String::new();
        while reader.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
            sink.clear();
        }
    });
    let line = rx.recv_timeout(wait).unwrap_or_else(|_| panic!("{what} did not get ready within {wait:?}"));
    let v: Value = serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{what} ready line {line:?}: {e}"));
    assert_eq!(v["ready"], Value::Bool(true), "{what}: {v}");
    v
}

/// Reads the first PEM certificate of a file as DER.
pub fn pem_cert_der(path: &Path) -> Vec<u8> {
    let pem = std::fs::read(path).expect("read CA PEM");
    let mut r = pem.as_slice();
    let cert = rustls_pemfile::certs(&mut r).next().expect("a certificate").expect("valid PEM");
    cert.to_vec()
}

/// The Authlib authorization server peer.
pub struct OAuthServer {
    child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub url: String,
    pub token_url: String,
    pub introspection_url: String,
    pub redirect_url: String,
    pub ca_path: PathBuf,
    /// The test CA as DER (for `extra_roots`).
    pub ca_der: Vec<u8>,
    pub events_path: PathBuf,
    /// client id → (PKCS#8 PEM path, service-account JSON path), for clients with `"jwt_key": true`.
    pub keys: HashMap<String, (PathBuf, PathBuf)>,
}

impl OAuthServer {
    /// Starts the peer with these clients (`{"clients": [...]}`, see oauth_server.py) and default lifetime.
    pub fn start(clients: &Value) -> Self {
        Self::start_with(clients, 3600)
    }

    pub fn start_with(clients: &Value, expires_in: u64) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let clients_path = dir.path().join("clients.json");
        std::fs::write(&clients_path, serde_json::to_vec(clients).unwrap()).unwrap();
        let state = dir.path().join("state");
        let mut child = Command::new(python())
            .arg(repo().join("tests/peers/oauth_server.py"))
            .arg("--state")
            .arg(&state)
            .arg("--clients")
            .arg(&clients_path)
            .arg("--expires-in")
            .arg(expires_in.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(dir.path().join("stderr.log")).unwrap()))
            .spawn()
            .expect("spawn oauth_server.py");
        let v = ready_line(&mut child, "oauth_server.py", Duration::from_secs(60));
        let s = |k: &str| v[k].as_str().unwrap_or_else(|| panic!("ready line lacks {k}: {v}")).to_string();
        let ca_path = PathBuf::from(s("ca"));
        let keys = v["keys"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(id, k)| {
                        let p = |f: &str| PathBuf::from(k[f].as_str().expect("key path"));
                        (id.clone(), (p("pem"), p("service_account")))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            port: v["port"].as_u64().expect("port") as u16,
            url: s("url"),
            token_url: s("token_url"),
            introspection_url: s("introspection_url"),
            redirect_url: s("redirect_url"),
            ca_der: pem_cert_der(&ca_path),
            ca_path,
            events_path: PathBuf::from(s("events")),
            keys,
            child,
            dir,
        }
    }

    /// All events so far (JSON lines).
    pub fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.events_path)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("event JSON"))
            .collect()
    }

    /// Token requests the server handled for `client` (any result).
    pub fn token_requests(&self, client: &str) -> usize {
        self.events().iter().filter(|e| e["event"] == "token" && e["client"] == client).count()
    }

    /// Successful token requests for `client`.
    pub fn tokens_issued(&self, client: &str) -> usize {
        self.events().iter().filter(|e| e["event"] == "token" && e["client"] == client && e["result"] == "ok").count()
    }

    /// Paths of every HTTP request the server saw, in order.
    pub fn http_paths(&self) -> Vec<String> {
        self.events()
            .iter()
            .filter(|e| e["event"] == "http")
            .map(|e| e["path"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// The whole events file as text (to check that no secret reached it).
    pub fn events_text(&self) -> String {
        std::fs::read_to_string(&self.events_path).unwrap_or_default()
    }
}

impl Drop for OAuthServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A throwaway Postfix (submission with STARTTLS and implicit TLS) + Dovecot (SASL: PLAIN/LOGIN from a
/// passwd-file, XOAUTH2 validated by introspection at an [`OAuthServer`]) started by `scripts/mta`.
pub struct Mta {
    pub dir: tempfile::TempDir,
    pub ready: Value,
    pub submission_port: u16,
    pub smtps_port: u16,
    pub ca_path: PathBuf,
    pub maildir: PathBuf,
    /// The PLAIN/LOGIN user and password configured in the passwd-file.
    pub user: String,
    pub password: String,
}

impl Mta {
    /// Starts the MTA; XOAUTH2 tokens are introspected at `oauth` with the client `introspect_client`.
    pub fn start(oauth: &OAuthServer, introspect_client: &str, introspect_secret: &str) -> Self {
        let ca = oauth.ca_path.to_string_lossy();
        Self::start_with_args(&[
            "--introspection-url",
            &oauth.introspection_url,
            "--introspection-client",
            introspect_client,
            "--introspection-secret",
            introspect_secret,
            "--oauth-ca",
            &ca,
        ])
    }

    /// Starts the MTA with the given `scripts/mta start` options (e.g. `["--tls-max", "1.2"]`, no XOAUTH2).
    pub fn start_with_args(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new(repo().join("scripts/mta"))
            .arg("start")
            .arg("--dir")
            .arg(dir.path())
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/mta start");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "scripts/mta start failed: {text}");
        let line = text.lines().rev().find(|l| l.trim_start().starts_with('{')).expect("mta ready line");
        let ready: Value = serde_json::from_str(line).expect("mta ready JSON");
        assert_eq!(ready["ready"], Value::Bool(true), "{ready}");
        Self {
            submission_port: ready["submission_port"].as_u64().expect("submission_port") as u16,
            smtps_port: ready["smtps_port"].as_u64().expect("smtps_port") as u16,
            ca_path: PathBuf::from(ready["ca"].as_str().expect("ca")),
            maildir: PathBuf::from(ready["maildir"].as_str().expect("maildir")),
            user: ready["user"].as_str().expect("user").to_string(),
            password: ready["password"].as_str().expect("password").to_string(),
            ready,
            dir,
        }
    }

    /// Messages delivered so far (files in the Maildir's new/ and cur/).
    pub fn delivered(&self) -> Vec<String> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(rd) = std::fs::read_dir(self.maildir.join(sub)) {
                for e in rd.flatten() {
                    if let Ok(t) = std::fs::read_to_string(e.path()) {
                        out.push(t);
                    }
                }
            }
        }
        out
    }
}

impl Drop for Mta {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("scripts/mta"))
            .arg("stop")
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status();
    }
}
