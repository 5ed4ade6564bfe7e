//! The STARTTLS step: the command through lettre, the handshake by the engine on the raw TCP stream (to learn
//! the version and get typed rustls errors), then EHLO again over TLS. Never falls back to plain text.

use std::net::SocketAddr;
use std::sync::Arc;

use lettre::transport::smtp::commands::{Ehlo, Starttls};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;

use super::connection::{Connection, fail};
use super::ehlo::{EhloInfo, first_reply_len, parse_ehlo};
use super::progress::Progress;
use super::reply::display;
use super::{CheckRequest, Failure, Reason, Step, diagnose, tls};

/// The TLS client configuration and the server name, prepared before any traffic.
pub(crate) type TlsSetup = (Arc<ClientConfig>, ServerName<'static>);

/// Upgrades the connection; returns what the EHLO over TLS advertises. `req` and `peer` serve a diagnostic
/// handshake when the server closes the connection during the handshake (see `diagnose`).
pub(crate) async fn starttls(
    c: &mut Connection,
    p: &mut Progress,
    ehlo: &EhloInfo,
    setup: TlsSetup,
    (req, peer): (&CheckRequest, SocketAddr),
) -> Result<EhloInfo, Failure> {
    p.step(Step::StartTls);
    if !ehlo.starttls {
        // never fall back to plain text: the credentials would travel unencrypted
        return Err(fail(
            Step::StartTls,
            Reason::StartTlsNotOffered,
            "the server does not offer STARTTLS, so the check stopped before sending anything else (no \
             plain-text fallback); use spec.tls.mode ImplicitTLS if the port speaks TLS from the start (465), \
             or enable STARTTLS on the server"
                .into(),
            None,
        ));
    }
    c.expect(Step::StartTls, Starttls, &[220], |r| {
        fail(
            Step::StartTls,
            Reason::StartTlsNotOffered,
            format!("the server advertised STARTTLS but refused it: {}; check the server's TLS setup", display(&r)),
            Some(r),
        )
    })
    .await?;
    // Anything the server sent after its 220 would be read as if it came over TLS (STARTTLS command
    // injection, CVE-2011-0411 style): refuse.
    let (raw, overflow) = c.handle.last_reply_bytes();
    if overflow || first_reply_len(&raw) != Some(raw.len()) {
        return Err(fail(
            Step::StartTls,
            Reason::ProtocolError,
            "the server sent data after its STARTTLS reply, before the TLS handshake; refusing to continue \
             (this is how STARTTLS injection attacks look)"
                .into(),
            None,
        ));
    }
    let (config, name) = setup;
    let tcp = c
        .handle
        .take_plain()
        .map_err(|e| fail(Step::StartTls, Reason::TlsHandshakeFailed, format!("cannot start TLS: {e}"), None))?;
    let (stream, version) = match tls::handshake(tcp, config, name, &c.budget, Step::StartTls).await {
        Ok(done) => done,
        Err(h) => return Err(diagnose::handshake_failure(req, peer, &c.budget, h).await),
    };
    p.certificates = tls::presented_chain(&stream);
    c.handle.install_tls(stream);
    p.tls_version = Some(version);

    p.step(Step::Ehlo);
    let client_id = c.client_id.clone();
    let r = c
        .expect(Step::Ehlo, Ehlo::new(client_id), &[250], |r| {
            fail(
                Step::Ehlo,
                Reason::ServerRejected,
                format!("the server rejected EHLO after STARTTLS: {}", display(&r)),
                Some(r),
            )
        })
        .await?;
    Ok(parse_ehlo(r.message()))
}
