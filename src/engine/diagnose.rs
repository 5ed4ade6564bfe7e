//! Precise TLS diagnosis. A server that does not speak the required TLS version should answer with a
//! `protocol_version` alert, but many servers and middleboxes just close the connection, which alone says
//! nothing. After such a close, with `minVersion: "1.3"`, one diagnostic handshake that also allows TLS 1.2 is
//! made to the same address (for STARTTLS after greeting, EHLO and STARTTLS again); nothing is sent after it.
//! When it succeeds with TLS 1.2, the failure is `TlsVersionNotSupported` and names the version the server
//! would have used.

use std::net::SocketAddr;

use lettre::transport::smtp::commands::Starttls;
use tokio::net::TcpStream;

use super::budget::Budget;
use super::connection::Connection;
use super::progress::Progress;
use super::sanitize::Sanitizer;
use super::stream::{DeadlineStream, Transport};
use super::tls::{self, HandshakeFailure};
use super::{CheckRequest, Failure, Reason, Step, TlsMode, TlsVersion};

/// The failure to report for a failed handshake: the original one, or `TlsVersionNotSupported` when the server
/// closed the connection and a diagnostic handshake shows it speaks only an older version.
pub(crate) async fn handshake_failure(
    req: &CheckRequest,
    peer: SocketAddr,
    budget: &Budget,
    h: HandshakeFailure,
) -> Failure {
    if !h.closed_by_peer || req.tls.min_version != TlsVersion::V1_3 {
        return h.failure;
    }
    match version_offered(req, peer, budget).await.as_deref() {
        Some("1.2") => Failure {
            step: h.failure.step,
            reason: Reason::TlsVersionNotSupported,
            message: format!(
                "{} closed the connection during the TLS handshake when only TLS 1.3 was allowed; a diagnostic \
                 handshake that also allowed TLS 1.2 succeeded with TLS 1.2, so the server would have used TLS 1.2. \
                 Upgrade the server to TLS 1.3, or set spec.tls.minVersion to \"1.2\"",
                super::dial::bare_host(&req.server)
            ),
            reply: None,
        },
        _ => h.failure,
    }
}

/// The version a handshake allowing TLS 1.2 and 1.3 negotiates with `peer`, if it succeeds within the budget.
async fn version_offered(req: &CheckRequest, peer: SocketAddr, budget: &Budget) -> Option<String> {
    let config = tls::diagnostic_config()?;
    let name = tls::server_name(&req.server, Step::Tls).ok()?;
    let tcp = budget.run(TcpStream::connect(peer)).await.ok()?.ok()?;
    let _ = tcp.set_nodelay(true);
    let tcp = match req.tls.mode {
        TlsMode::StartTls => through_starttls(req, tcp, peer, budget).await?,
        _ => tcp,
    };
    // the stream is dropped right away: nothing is sent after the handshake
    let (_stream, version) = tls::handshake(tcp, config, name, budget, Step::Tls).await.ok()?;
    Some(version)
}

/// Greeting, EHLO and STARTTLS on a fresh connection; the plain TCP stream ready for the handshake.
async fn through_starttls(req: &CheckRequest, tcp: TcpStream, peer: SocketAddr, budget: &Budget) -> Option<TcpStream> {
    let (stream, handle) = DeadlineStream::new(Transport::Plain(tcp), peer, *budget);
    let mut scratch = Progress::new();
    let (mut c, ehlo) =
        Connection::open(stream, handle, &req.helo_name, *budget, Sanitizer::default(), &mut scratch).await.ok()?;
    if !ehlo.starttls {
        return None;
    }
    let r = c.cmd(Step::StartTls, Starttls).await.ok()?;
    if u16::from(r.code()) != 220 {
        return None;
    }
    c.handle.take_plain().ok()
}
