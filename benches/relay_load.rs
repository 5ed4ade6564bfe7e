//! The load generator of the relay benchmark (`scripts/bench relay`, which builds it in release and hands it to
//! `benches/relay.py`; not part of the operator binary). `--clients` concurrent clients send `--count` messages of
//! `--size` bytes to one target, each message on a NEW connection as Alertmanager does: greeting, EHLO,
//! [STARTTLS, EHLO,] AUTH PLAIN, MAIL, RCPT, DATA, the message, QUIT. Every reply is checked against the code it
//! must have (the QUIT reply only has to arrive); a message's latency is from connect to the final reply to DATA.
//!
//!     relay_load --addr 127.0.0.1:PORT --user USER [--ca MTA-CA.pem] --name TARGET
//!                --count N [--first I] [--clients 20] [--size 10240]      (the password is stdin's first line)
//!
//! `--ca` turns STARTTLS on: a full handshake per message (no session resumption, as Alertmanager's Go client),
//! the server verified as the IP address of `--addr` against that CA. Prints one JSON line on stdout:
//! `{"latencies": [seconds, ...], "failures": ["...", ...], "seconds": wall time of the whole load}`; messages are
//! numbered from `--first` (their Subject and Message-ID). One thread (tokio's current-thread runtime) drives all
//! clients, so the generator takes as little of the machine's CPU as it can from the relay and Postfix.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use clap::Parser;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

/// Time allowed for each step: connect, TLS handshake, a command and its reply.
const OP_TIMEOUT: Duration = Duration::from_secs(60);
const ADDRESS: &str = "alerts@example.test";
const EHLO: &[u8] = b"EHLO bench.example.test\r\n";
const LINE: &[u8] = b"The quick brown fox jumps over the lazy dog, and the relay passes it on line by line.\r\n";

#[derive(Parser)]
struct Args {
    /// Given by `cargo bench` (ignored).
    #[arg(long)]
    bench: bool,
    #[arg(long)]
    addr: SocketAddr,
    #[arg(long)]
    user: String,
    /// PEM CA bundle of the server: STARTTLS after the first EHLO.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// The target's name, in every Subject and Message-ID.
    #[arg(long)]
    name: String,
    #[arg(long)]
    count: usize,
    #[arg(long, default_value_t = 0)]
    first: usize,
    #[arg(long, default_value_t = 20)]
    clients: usize,
    #[arg(long, default_value_t = 10240)]
    size: usize,
}

/// What every message to one target shares.
struct Target {
    addr: SocketAddr,
    tls: Option<TlsConnector>,
    /// `AUTH PLAIN <base64>\r\n`
    auth: Vec<u8>,
    name: String,
    size: usize,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo test --all-targets` runs bench targets without arguments and `cargo bench` with --bench alone: only
    // benches/relay.py names a target
    if !std::env::args().any(|a| a == "--addr") {
        return Ok(());
    }
    let args = Args::parse();
    let mut password = String::new();
    std::io::stdin().read_line(&mut password)?;
    let plain = format!("\0{}\0{}", args.user, password.trim_end_matches(['\r', '\n']));
    let target = Arc::new(Target {
        addr: args.addr,
        tls: args.ca.as_deref().map(tls_connector).transpose()?,
        auth: format!("AUTH PLAIN {}\r\n", base64::engine::general_purpose::STANDARD.encode(plain)).into_bytes(),
        name: args.name,
        size: args.size,
    });
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (latencies, failures, seconds) = rt.block_on(load(target, args.clients, args.first, args.count));
    let report = serde_json::json!({"latencies": latencies, "failures": failures, "seconds": seconds});
    println!("{report}");
    Ok(())
}

fn tls_connector(ca: &Path) -> Result<TlsConnector, Box<dyn std::error::Error>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut std::io::BufReader::new(std::fs::File::open(ca)?)) {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Messages `first..first + count` from `clients` concurrent clients: (latencies in seconds, failures, seconds).
async fn load(target: Arc<Target>, clients: usize, first: usize, count: usize) -> (Vec<f64>, Vec<String>, f64) {
    let next = Arc::new(AtomicUsize::new(first));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients.max(1) {
        let (target, next) = (target.clone(), next.clone());
        tasks.spawn(async move {
            let (mut latencies, mut failures) = (Vec::new(), Vec::new());
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= first + count {
                    return (latencies, failures);
                }
                match one_message(&target, i).await {
                    Ok(latency) => latencies.push(latency),
                    Err(e) => failures.push(e),
                }
            }
        });
    }
    let (mut latencies, mut failures) = (Vec::with_capacity(count), Vec::new());
    while let Some(done) = tasks.join_next().await {
        let (l, f) = done.expect("a client task panicked");
        latencies.extend(l);
        failures.extend(f);
    }
    (latencies, failures, start.elapsed().as_secs_f64())
}

/// Sends message `i` on a new connection; its latency (s) from connect to the final reply to DATA.
async fn one_message(t: &Target, i: usize) -> Result<f64, String> {
    let start = Instant::now();
    let tcp = match timeout(OP_TIMEOUT, TcpStream::connect(t.addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => return Err(format!("connect: {e}")),
        Err(_) => return Err(format!("connect: not within {} s", OP_TIMEOUT.as_secs())),
    };
    tcp.set_nodelay(true).map_err(|e| format!("connect: {e}"))?;
    let mut s = BufReader::new(tcp);
    let mut buf = Vec::with_capacity(512);
    let code = step(reply(&mut s, &mut buf)).await?;
    if code != 220 {
        return Err(format!("greeting: {}", String::from_utf8_lossy(&buf).trim_end()));
    }
    command(&mut s, &mut buf, EHLO, 250).await?;
    let Some(tls) = &t.tls else {
        return transaction(s, &mut buf, t, i, start).await;
    };
    command(&mut s, &mut buf, b"STARTTLS\r\n", 220).await?;
    if !s.buffer().is_empty() {
        return Err("STARTTLS: the server sent more after its 220".into());
    }
    let name = ServerName::IpAddress(t.addr.ip().into());
    let tls =
        step(async { tls.connect(name, s.into_inner()).await.map_err(|e| format!("TLS handshake: {e}")) }).await?;
    let mut s = BufReader::new(tls);
    command(&mut s, &mut buf, EHLO, 250).await?;
    transaction(s, &mut buf, t, i, start).await
}

/// AUTH, MAIL, RCPT, DATA and the message, then QUIT; the latency from `start` to the reply to the message.
async fn transaction<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: BufReader<S>,
    buf: &mut Vec<u8>,
    t: &Target,
    i: usize,
    start: Instant,
) -> Result<f64, String> {
    command(&mut s, buf, &t.auth, 235).await?;
    command(&mut s, buf, format!("MAIL FROM:<{ADDRESS}> SIZE={}\r\n", t.size).as_bytes(), 250).await?;
    command(&mut s, buf, format!("RCPT TO:<{ADDRESS}>\r\n").as_bytes(), 250).await?;
    command(&mut s, buf, b"DATA\r\n", 354).await?;
    command(&mut s, buf, &message(t, i), 250).await?;
    let latency = start.elapsed().as_secs_f64();
    step(async {
        s.get_mut().write_all(b"QUIT\r\n").await.map_err(|e| format!("QUIT: {e}"))?;
        reply(&mut s, buf).await
    })
    .await?;
    // TLS: close_notify; then the FIN. The server closes after its QUIT reply anyway.
    let _ = timeout(Duration::from_secs(5), s.get_mut().shutdown()).await;
    Ok(latency)
}

/// Message `i` of `t.size` bytes (headers included) in DATA form: CRLF lines ending in the lone dot.
fn message(t: &Target, i: usize) -> Vec<u8> {
    let head = format!(
        "From: {ADDRESS}\r\nTo: {ADDRESS}\r\nSubject: bench-{name}-{i}\r\n\
         Message-ID: <bench-{name}-{i}-{pid}@example.test>\r\n\r\n",
        name = t.name,
        pid = std::process::id()
    );
    let body = t.size.saturating_sub(head.len());
    let (lines, rest) = (body / LINE.len(), body % LINE.len());
    let mut m = Vec::with_capacity(t.size + 3);
    m.extend_from_slice(head.as_bytes());
    for _ in 0..lines {
        m.extend_from_slice(LINE);
    }
    if rest >= 2 {
        m.resize(m.len() + rest - 2, b'x');
        m.extend_from_slice(b"\r\n");
    }
    m.extend_from_slice(b".\r\n");
    m
}

/// Writes `line` (CRLF included) and reads the reply, which must have code `want`.
async fn command<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    buf: &mut Vec<u8>,
    line: &[u8],
    want: u16,
) -> Result<(), String> {
    let verb = || String::from_utf8_lossy(line.split(|&b| b == b' ' || b == b'\r').next().unwrap_or(b"")).into_owned();
    let code = step(async {
        s.get_mut().write_all(line).await.map_err(|e| format!("{}: {e}", verb()))?;
        reply(s, buf).await
    })
    .await?;
    if code != want {
        return Err(format!("{}: {}", verb(), String::from_utf8_lossy(buf).trim_end()));
    }
    Ok(())
}

/// Reads one SMTP reply (all its lines); its code, with `buf` holding its last line.
async fn reply<S: AsyncRead + Unpin>(s: &mut BufReader<S>, buf: &mut Vec<u8>) -> Result<u16, String> {
    loop {
        buf.clear();
        if s.read_until(b'\n', buf).await.map_err(|e| e.to_string())? == 0 {
            return Err("connection closed".into());
        }
        if buf.len() < 4 || buf[3] != b'-' {
            let code = std::str::from_utf8(&buf[..buf.len().min(3)]).ok().and_then(|c| c.parse().ok());
            return code.ok_or_else(|| format!("not an SMTP reply: {}", String::from_utf8_lossy(buf).trim_end()));
        }
    }
}

/// One step of a session, bounded by OP_TIMEOUT.
async fn step<T>(f: impl Future<Output = Result<T, String>>) -> Result<T, String> {
    timeout(OP_TIMEOUT, f).await.unwrap_or_else(|_| Err(format!("no reply within {} s", OP_TIMEOUT.as_secs())))
}
