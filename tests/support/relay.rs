//! The relay as a real process (`smtp-operator relay` against the control plane) and SMTP clients for it:
//! a raw line-level dialog (exact replies, protocol abuse), swaks and Python smtplib.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A running `smtp-operator relay`; SIGTERM (then SIGKILL) on drop.
pub struct RelayProcess {
    pub child: Child,
    pub log: PathBuf,
    /// `127.0.0.1:port` the relay listens on.
    pub addr: String,
    pub metrics_addr: String,
    _dir: tempfile::TempDir,
}

impl RelayProcess {
    /// Starts the relay for `ns/name` on a free loopback port with extra `args` (policy flags), and waits for
    /// it to listen (at most 60 s; it waits for its configuration to load).
    pub fn start(ns: &str, name: &str, args: &[&str]) -> RelayProcess {
        RelayProcess::start_from(ns, name, args, "127.0.0.1")
    }

    pub fn start_from(ns: &str, name: &str, args: &[&str], ip: &str) -> RelayProcess {
        RelayProcess::start_with_env(ns, name, args, ip, &[])
    }

    /// [`RelayProcess::start_from`] with extra environment variables (e.g. `KUBECONFIG` of the relay's
    /// ServiceAccount, to run with exactly the RBAC the operator made for it).
    pub fn start_with_env(ns: &str, name: &str, args: &[&str], ip: &str, env: &[(&str, &str)]) -> RelayProcess {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("relay.log");
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_smtp-operator"))
            .args(["relay", "--namespace", ns, "--name", name, "--metrics-addr", "127.0.0.1:0"])
            .args(["--listen-addr", &format!("{ip}:0")])
            .args(args)
            .env("RUST_LOG", "debug,hyper=info,tower=info,rustls=info,h2=info,kube=info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn smtp-operator relay");
        let mut p = RelayProcess { child, log, addr: String::new(), metrics_addr: String::new(), _dir: dir };
        p.addr = p.wait_log_addr("relay listening");
        p.metrics_addr = p.wait_log_addr("serving /metrics, /healthz, /readyz");
        p
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_log_addr(&mut self, message: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            for line in self.log_text().lines() {
                if let Ok(v) = serde_json::from_str::<Value>(line)
                    && v["message"] == message
                {
                    return v["addr"].as_str().expect("addr").to_string();
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("relay exited with {status}:\n{}", self.log_text());
            }
            assert!(Instant::now() < deadline, "relay did not log {message:?}:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM and wait (at most 40 s) for the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        super::process::terminate(&mut self.child, Duration::from_secs(40))
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
        if let Ok(dir) = std::env::var("SMTP_OPERATOR_TEST_LOGS") {
            let _ = std::fs::create_dir_all(&dir);
            let name = format!("relay-{}-{}.log", std::process::id(), self.child.id());
            let _ = std::fs::copy(&self.log, std::path::Path::new(&dir).join(name));
        }
    }
}

/// A line-level SMTP client: sends exactly what it is given, returns the replies as the server wrote them.
pub struct Dialog {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    pub greeting: String,
}

impl Dialog {
    pub fn connect(addr: &str) -> Dialog {
        Dialog::connect_from(addr, None)
    }

    /// Connects from a chosen loopback source address (each test client its own, for per-address limits).
    pub fn connect_from(addr: &str, source: Option<&str>) -> Dialog {
        let stream = match source {
            None => TcpStream::connect(addr).expect("connect to the relay"),
            Some(src) => {
                let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
                let src: std::net::SocketAddr = format!("{src}:0").parse().unwrap();
                socket.bind(&src.into()).expect("bind source address");
                let dst: std::net::SocketAddr = addr.parse().unwrap();
                socket.connect(&dst.into()).expect("connect to the relay");
                socket.into()
            }
        };
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let writer = stream.try_clone().unwrap();
        let mut d = Dialog { reader: BufReader::new(stream), writer, greeting: String::new() };
        d.greeting = d.reply();
        d
    }

    /// Reads one whole (possibly multi-line) reply, lines joined with `\n`; "" on EOF.
    pub fn reply(&mut self) -> String {
        let mut out = Vec::new();
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) | Err(_) => return out.join("\n"),
                Ok(_) => {}
            }
            let l = line.trim_end().to_string();
            let last = l.len() < 4 || l.as_bytes()[3] != b'-';
            out.push(l);
            if last {
                return out.join("\n");
            }
        }
    }

    /// Writes raw bytes.
    pub fn raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write to the relay");
    }

    /// Sends one command line and returns the reply.
    pub fn cmd(&mut self, line: &str) -> String {
        self.raw(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// EHLO + AUTH PLAIN; returns the AUTH reply.
    pub fn login(&mut self, user: &str, password: &str) -> String {
        use base64::Engine as _;
        let ehlo = self.cmd("EHLO client.test");
        assert!(ehlo.starts_with("250"), "{ehlo}");
        let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        self.cmd(&format!("AUTH PLAIN {token}"))
    }
}

/// Runs swaks (Debian package `swaks`) against `addr` with AUTH PLAIN; returns (exit ok, transcript).
pub fn swaks(addr: &str, user: &str, password: &str, extra: &[&str]) -> (bool, String) {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let out = Command::new("swaks")
        .args(["--server", host, "--port", port, "--auth", "PLAIN", "--auth-user", user, "--auth-password", password])
        .args(["--timeout", "60"])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("run swaks (Debian package swaks)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Sends one message with Python's smtplib (AUTH LOGIN, as many Python apps do); returns its JSON result:
/// `{"ok": true, "reply": [code, text]}` or `{"ok": false, "error": ..., "code": N, "text": ...}`.
pub fn smtplib_send(addr: &str, user: &str, password: &str, from: &str, to: &str, subject: &str) -> Value {
    smtplib_send_with(addr, user, password, from, to, subject, false)
}

/// [`smtplib_send`], optionally with STARTTLS first (the relay's certificate is not verified).
pub fn smtplib_send_with(
    addr: &str,
    user: &str,
    password: &str,
    from: &str,
    to: &str,
    subject: &str,
    starttls: bool,
) -> Value {
    const SCRIPT: &str = r#"
import json, smtplib, ssl, sys
from email.message import EmailMessage
host, port, user, password, sender, rcpt, subject, starttls = sys.argv[1:9]
msg = EmailMessage()
msg["From"], msg["To"], msg["Subject"] = sender, rcpt, subject
msg.set_content("sent by smtplib through the relay\n")
try:
    with smtplib.SMTP(host, int(port), timeout=60) as s:
        s.ehlo()
        if starttls == "yes":
            ctx = ssl.create_default_context()
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            s.starttls(context=ctx)
            s.ehlo()
        s.user, s.password = user, password
        s.auth("LOGIN", s.auth_login, initial_response_ok=False)
        s.send_message(msg)
    print(json.dumps({"ok": True}))
except smtplib.SMTPResponseException as e:
    print(json.dumps({"ok": False, "error": type(e).__name__, "code": e.smtp_code, "text": e.smtp_error.decode(errors="replace")}))
except smtplib.SMTPRecipientsRefused as e:
    code, text = list(e.recipients.values())[0]
    print(json.dumps({"ok": False, "error": "SMTPRecipientsRefused", "code": code, "text": text.decode(errors="replace")}))
"#;
    let (host, port) = addr.rsplit_once(':').unwrap();
    let out = Command::new("python3")
        .args(["-c", SCRIPT, host, port, user, password, from, to, subject, if starttls { "yes" } else { "no" }])
        .stdin(Stdio::null())
        .output()
        .expect("run python3 smtplib");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(
        |_| json!({"ok": false, "error": "script", "text": format!("{text}{}", String::from_utf8_lossy(&out.stderr))}),
    )
}

/// Polls `f` until it returns true, at most `secs` seconds.
pub fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The Alertmanager binary: `SMTP_OPERATOR_ALERTMANAGER_BIN` (set by scripts/test), else what
/// `scripts/build-alertmanager` prints (it builds once into the cache).
pub fn alertmanager_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("SMTP_OPERATOR_ALERTMANAGER_BIN")
        && !bin.is_empty()
    {
        return PathBuf::from(bin);
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-alertmanager");
    let out = Command::new("bash").arg(script).stderr(Stdio::inherit()).output().expect("run build-alertmanager");
    assert!(out.status.success(), "scripts/build-alertmanager failed");
    PathBuf::from(String::from_utf8(out.stdout).expect("utf-8").lines().last().expect("path").trim())
}

/// A running Alertmanager (no clustering, its own storage) with the given configuration; killed on drop.
pub struct Alertmanager {
    child: Child,
    pub addr: String,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    pub fn start(config_yaml: &str) -> Alertmanager {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(&config, config_yaml).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        let log = dir.path().join("alertmanager.log");
        let child = Command::new(alertmanager_bin())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn alertmanager");
        let am = Alertmanager { child, addr, log, _dir: dir };
        wait_until(60, "Alertmanager ready", || {
            Command::new("curl")
                .args(["-sf", &format!("http://{}/-/ready", am.addr)])
                .output()
                .is_ok_and(|o| o.status.success())
        });
        am
    }

    /// Posts alerts (a JSON array) to `/api/v2/alerts`.
    pub fn post_alerts(&self, alerts: &Value) {
        let out = Command::new("curl")
            .args(["-sf", "-XPOST", "-H", "Content-Type: application/json", "--data-binary", &alerts.to_string()])
            .arg(format!("http://{}/api/v2/alerts", self.addr))
            .output()
            .expect("run curl");
        assert!(out.status.success(), "posting alerts failed:\n{}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A self-signed certificate for `san` (e.g. `IP:127.0.0.1`, `DNS:mail-relay.ns.svc`; openssl) as a Secret with
/// `tls.crt` and `tls.key`, as cert-manager writes them; returns the certificate (PEM), for a client's CA bundle.
pub async fn tls_secret(client: &kube::Client, ns: &str, name: &str, san: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (crt, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=relay.test", "-addext", &format!("subjectAltName={san}")])
        // an end-entity certificate (openssl's default for -x509 is a CA, which TLS clients refuse as a server's)
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (crt, key) = (std::fs::read(crt).unwrap(), std::fs::read(key).unwrap());
    super::operator::create_secret(client, ns, name, &[("tls.crt", &crt), ("tls.key", &key)], &[]).await;
    String::from_utf8(crt).unwrap()
}
