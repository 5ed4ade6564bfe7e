//! Benchmarks (`cargo bench --bench checks`, or `scripts/bench`): prints figures and ratios, asserts nothing.
//!
//! - validation: how many specs per second the pure validate/build step handles;
//! - the check engine against a real aiosmtpd peer on loopback: plain vs STARTTLS+PLAIN, per-check latency
//!   and the TLS/plain ratio;
//! - memory: the process's peak RSS (VmHWM) before and after the engine runs.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use smtp_operator::api::SmtpSettingsSpec;
use smtp_operator::engine::{
    self, CheckRequest, Credentials, DialPolicy, SecretValue, TlsMode, TlsOptions, TlsVersion,
};
use smtp_operator::validate::{self, RefKind, RefObject, Referenced, SecurityPolicy};

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").parse().unwrap_or(0))
        })
        .unwrap_or(0)
}

fn python() -> String {
    if let Ok(p) = std::env::var("SMTP_OPERATOR_PYTHON") {
        return p;
    }
    let out = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/python-env"))
        .output()
        .expect("python-env");
    String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or("python3").trim().to_string()
}

struct Peer {
    child: Child,
    port: u16,
    ca: Option<Vec<u8>>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn peer(args: &[&str]) -> Peer {
    let dir = std::env::temp_dir().join(format!("smtp-bench-{}-{}", std::process::id(), args.len()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = Command::new(python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/smtp_peer.py"))
        .args(args)
        .arg("--events")
        .arg(dir.join("events.jsonl"))
        .arg("--ca-out")
        .arg(dir.join("ca.pem"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start peer");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let v: serde_json::Value = serde_json::from_str(line.trim()).expect("ready line");
    let ca = v["ca_pem_path"].as_str().map(|p| {
        let pem = std::fs::read(p).unwrap();
        validate::parse_ca_bundle(&pem).unwrap().remove(0)
    });
    Peer { child, port: v["port"].as_u64().unwrap() as u16, ca }
}

fn bench_validate() {
    let spec: SmtpSettingsSpec = serde_yaml::from_str(
        "server: smtp.example.com\nport: 587\nfrom: 'Alerts <alerts@example.com>'\n\
         auth: {type: Basic, basic: {username: u, passwordSecretRef: {name: creds, key: password}}}\n\
         testEmail: {to: [ops@example.com]}\n",
    )
    .unwrap();
    let mut referenced = Referenced::default();
    referenced.objects.insert(
        (RefKind::Secret, "creds".into()),
        RefObject {
            data: [("password".to_string(), b"pw".to_vec())].into(),
            annotations: [("smtp-operator.io/allowed-servers".to_string(), "smtp.example.com:587".to_string())].into(),
            resource_version: "1".into(),
        },
    );
    let options =
        SecurityPolicy { require_secret_binding: true, allowed_ports: vec![25, 465, 587, 2525], ..Default::default() };
    let n = 50_000;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(validate::validate(&spec, "ns", &referenced, &options).unwrap());
    }
    let per = t.elapsed() / n;
    println!(
        "validate+build          {n} specs: {:>8.1} µs/spec, {:>9.0} specs/s",
        per.as_secs_f64() * 1e6,
        1.0 / per.as_secs_f64()
    );
}

async fn bench_engine(label: &str, p: &Peer, mode: TlsMode, n: u32) -> Duration {
    let request = CheckRequest {
        server: "127.0.0.1".into(),
        port: p.port,
        tls: TlsOptions {
            mode,
            min_version: TlsVersion::V1_2,
            extra_roots: p.ca.clone().into_iter().collect(),
            insecure_skip_verify: false,
        },
        credentials: if mode == TlsMode::None {
            Credentials::None
        } else {
            Credentials::Password { username: "u".into(), password: SecretValue::new("p"), mechanisms: vec![] }
        },
        helo_name: "bench.local".into(),
        timeout: Duration::from_secs(10),
        policy: DialPolicy::default(),
        test_message: None,
    };
    // warm up
    assert!(engine::run(&request).await.succeeded(), "{label}: the check must pass");
    let t = Instant::now();
    for _ in 0..n {
        let r = engine::run(&request).await;
        assert!(r.succeeded());
    }
    let per = t.elapsed() / n;
    println!(
        "engine {label:<16} {n} checks: {:>8.2} ms/check, {:>9.1} checks/s",
        per.as_secs_f64() * 1e3,
        1.0 / per.as_secs_f64()
    );
    per
}

fn main() {
    // `cargo test --all-targets` builds benches as tests and runs them with --bench absent: do nothing then
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rss0 = peak_rss_kib();
    bench_validate();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let plain = peer(&["--tls", "none"]);
    let tls = peer(&["--tls", "starttls", "--auth", "plain", "--user", "u", "--password", "p"]);
    let (a, b) = rt.block_on(async {
        let a = bench_engine("plain", &plain, TlsMode::None, 100).await;
        let b = bench_engine("starttls+plain", &tls, TlsMode::StartTls, 100).await;
        (a, b)
    });
    println!("ratio starttls+auth / plain:  {:.2}x", b.as_secs_f64() / a.as_secs_f64());
    let rss1 = peak_rss_kib();
    println!("peak RSS: {} KiB at start, {} KiB after 200 checks (+{} KiB)", rss0, rss1, rss1.saturating_sub(rss0));
}
