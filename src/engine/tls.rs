//! TLS: the rustls client configuration (ring provider), the handshake on the raw TCP stream, and the
//! classification of handshake errors into the contract's reasons.

use std::io;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, PeerIncompatible, RootCertStore,
    SignatureScheme,
};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::budget::Budget;
use super::dial::bare_host;
use super::{Failure, Reason, Step, TlsOptions, TlsVersion};

fn fail(step: Step, reason: Reason, message: String) -> Failure {
    Failure { step, reason, message, reply: None }
}

/// The client configuration for `opts`: webpki roots + `extra_roots`, versions from `min_version`, or a
/// verifier that accepts any certificate with `insecure_skip_verify` (handshake signatures are still checked).
pub(crate) fn client_config(opts: &TlsOptions, step: Step) -> Result<Arc<ClientConfig>, Failure> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&'static rustls::SupportedProtocolVersion] = match opts.min_version {
        TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::V1_3 => &[&rustls::version::TLS13],
    };
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| fail(step, Reason::TlsHandshakeFailed, format!("TLS configuration error: {e}")))?;
    let config = if opts.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        for (i, der) in opts.extra_roots.iter().enumerate() {
            roots.add(CertificateDer::from(der.clone())).map_err(|e| {
                fail(
                    step,
                    Reason::InvalidCABundle,
                    format!(
                        "certificate #{} of the CA bundle is not a usable trust anchor: {e}; fix spec.tls.caBundle",
                        i + 1
                    ),
                )
            })?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// The TLS server name for `server`: a DNS name (SNI + name check) or an IP literal (IP SAN check, no SNI).
pub(crate) fn server_name(server: &str, step: Step) -> Result<ServerName<'static>, Failure> {
    ServerName::try_from(bare_host(server).to_owned()).map_err(|_| {
        fail(step, Reason::InvalidSpec, format!("{server:?} is not a valid TLS server name; fix spec.server"))
    })
}

/// A failed handshake, and whether the server just closed the connection (no TLS alert), which says nothing
/// about why (see `diagnose`).
pub(crate) struct HandshakeFailure {
    pub(crate) failure: Failure,
    pub(crate) closed_by_peer: bool,
}

impl From<HandshakeFailure> for Failure {
    fn from(h: HandshakeFailure) -> Failure {
        h.failure
    }
}

/// True when the handshake ended because the server closed or reset the connection.
fn closed_by_peer(err: &io::Error) -> bool {
    err.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()).is_none()
        && matches!(
            err.kind(),
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
        )
}

/// Runs the TLS handshake on `tcp` within the budget. Returns the stream and the negotiated version.
pub(crate) async fn handshake(
    tcp: TcpStream,
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    budget: &Budget,
    step: Step,
) -> Result<(TlsStream<TcpStream>, String), HandshakeFailure> {
    let connector = tokio_rustls::TlsConnector::from(config);
    let timed_out = |failure| HandshakeFailure { failure, closed_by_peer: false };
    match budget.run(connector.connect(name.clone(), tcp)).await {
        Err(()) => Err(timed_out(fail(
            step,
            Reason::ConnectionTimedOut,
            format!(
                "the TLS handshake did not finish within {}; check that spec.tls.mode matches the port \
                 (ImplicitTLS for 465, StartTLS for 587)",
                budget.describe()
            ),
        ))),
        Ok(Err(e)) => {
            let (reason, message) = classify(&e, &name);
            Err(HandshakeFailure { failure: fail(step, reason, message), closed_by_peer: closed_by_peer(&e) })
        }
        Ok(Ok(tls)) => {
            // A TLS 1.3 server writes its session tickets, then the reply to our first command: ACK at once, or its
            // Nagle holds that reply until our delayed ACK (about 40 ms, measured against Postfix)
            let _ = tls.get_ref().0.set_quickack(true);
            let version = match tls.get_ref().1.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_3) => "1.3",
                Some(rustls::ProtocolVersion::TLSv1_2) => "1.2",
                _ => "unknown",
            };
            Ok((tls, version.to_owned()))
        }
    }
}

/// The certificates `stream`'s server presented, leaf first, as far as [`super::x509::parse`] reads them.
pub(crate) fn presented_chain(stream: &TlsStream<TcpStream>) -> Vec<super::CertificateInfo> {
    let certs = stream.get_ref().1.peer_certificates().unwrap_or_default();
    certs.iter().filter_map(|der| super::x509::parse(der)).collect()
}

fn name_str(name: &ServerName<'_>) -> String {
    match name {
        ServerName::DnsName(d) => d.as_ref().to_owned(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        _ => "the server".to_owned(),
    }
}

/// Maps a handshake error to a reason and a message that says what to do.
pub(crate) fn classify(err: &io::Error, name: &ServerName<'_>) -> (Reason, String) {
    let host = name_str(name);
    let Some(tls) = err.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) else {
        return match err.kind() {
            io::ErrorKind::TimedOut => (Reason::ConnectionTimedOut, format!("the TLS handshake timed out: {err}")),
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => (
                Reason::TlsHandshakeFailed,
                format!(
                    "the server closed the connection during the TLS handshake ({err}); check that spec.tls.mode \
                     matches what the server speaks on this port and that spec.tls.minVersion is supported"
                ),
            ),
            _ => (Reason::TlsHandshakeFailed, format!("the TLS handshake failed: {err}")),
        };
    };
    classify_rustls(tls, &host)
}

pub(crate) fn classify_rustls(tls: &rustls::Error, host: &str) -> (Reason, String) {
    use rustls::Error as E;
    match tls {
        E::InvalidCertificate(ce) => match ce {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => (
                Reason::CertificateNotTrusted,
                format!(
                    "the certificate of {host} is not trusted ({tls}); add the issuing CA to spec.tls.caBundle \
                     (or, for a test server only, set spec.tls.insecureSkipVerify)"
                ),
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => (
                Reason::CertificateNameMismatch,
                format!(
                    "the certificate is not valid for {host} ({tls}); set spec.server to a name the certificate \
                     covers, or fix the server's certificate"
                ),
            ),
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => (
                Reason::CertificateExpired,
                format!(
                    "the certificate of {host} is not valid yet ({tls}); check the clocks of the server and of the \
                     operator's node, or the server's certificate"
                ),
            ),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => (
                Reason::CertificateExpired,
                format!("the certificate of {host} has expired ({tls}); the server's certificate must be renewed"),
            ),
            _ => (
                Reason::CertificateNotTrusted,
                format!("the certificate of {host} was rejected ({tls}); check the server's certificate chain"),
            ),
        },
        E::AlertReceived(AlertDescription::ProtocolVersion)
        | E::PeerIncompatible(
            PeerIncompatible::ServerDoesNotSupportTls12Or13
            | PeerIncompatible::ServerTlsVersionIsDisabledByOurConfig
            | PeerIncompatible::SupportedVersionsExtensionRequired
            | PeerIncompatible::Tls12NotOffered
            | PeerIncompatible::Tls12NotOfferedOrEnabled,
        ) => (
            Reason::TlsVersionNotSupported,
            format!(
                "{host} does not support the required TLS version ({tls}); lower spec.tls.minVersion to \"1.2\" \
                 if the server only speaks TLS 1.2, or upgrade the server"
            ),
        ),
        E::AlertReceived(_) | E::PeerIncompatible(_) => (
            Reason::TlsHandshakeFailed,
            format!(
                "the TLS handshake with {host} failed ({tls}); the server and the operator share no usable TLS parameters"
            ),
        ),
        E::InvalidMessage(_) | E::InappropriateMessage { .. } | E::InappropriateHandshakeMessage { .. } => (
            Reason::TlsHandshakeFailed,
            format!(
                "{host} did not answer with a valid TLS handshake ({tls}); check that spec.tls.mode matches the \
                 port (ImplicitTLS for 465, StartTLS for 587)"
            ),
        ),
        _ => (Reason::TlsHandshakeFailed, format!("the TLS handshake with {host} failed: {tls}")),
    }
}

/// A configuration for the diagnostic handshake only (see `diagnose`): TLS 1.2 and 1.3, any certificate (nothing
/// is sent over it; it only tells which version the server speaks).
pub(crate) fn diagnostic_config() -> Option<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .ok()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        .with_no_client_auth();
    Some(Arc::new(config))
}

/// `insecureSkipVerify`: accepts any certificate and name, but still checks the handshake signatures, so the
/// session is at least bound to the presented key.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let c = |e: rustls::Error| classify_rustls(&e, "mail.example.com").0;
        assert_eq!(
            c(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)),
            Reason::CertificateNotTrusted
        );
        assert_eq!(c(rustls::Error::InvalidCertificate(CertificateError::BadSignature)), Reason::CertificateNotTrusted);
        assert_eq!(
            c(rustls::Error::InvalidCertificate(CertificateError::NotValidForName)),
            Reason::CertificateNameMismatch
        );
        assert_eq!(c(rustls::Error::InvalidCertificate(CertificateError::Expired)), Reason::CertificateExpired);
        assert_eq!(c(rustls::Error::InvalidCertificate(CertificateError::NotValidYet)), Reason::CertificateExpired);
        assert_eq!(c(rustls::Error::AlertReceived(AlertDescription::ProtocolVersion)), Reason::TlsVersionNotSupported);
        assert_eq!(
            c(rustls::Error::PeerIncompatible(PeerIncompatible::ServerDoesNotSupportTls12Or13)),
            Reason::TlsVersionNotSupported
        );
        assert_eq!(c(rustls::Error::AlertReceived(AlertDescription::HandshakeFailure)), Reason::TlsHandshakeFailed);
        let (_, msg) = classify_rustls(&rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer), "h");
        assert!(msg.contains("spec.tls.caBundle"));
    }

    #[test]
    fn io_wrapped_rustls_error_is_unwrapped() {
        let e = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
        );
        let name = ServerName::try_from("localhost").unwrap();
        assert_eq!(classify(&e, &name).0, Reason::CertificateNameMismatch);
    }

    #[test]
    fn invalid_extra_root_is_invalid_ca_bundle() {
        let opts = TlsOptions {
            mode: super::super::TlsMode::StartTls,
            min_version: TlsVersion::V1_2,
            extra_roots: vec![b"not a certificate".to_vec()],
            insecure_skip_verify: false,
        };
        assert_eq!(client_config(&opts, Step::Tls).unwrap_err().reason, Reason::InvalidCABundle);
    }
}
