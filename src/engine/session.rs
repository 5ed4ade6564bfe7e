//! One check from start to end: policy → resolve → policy on the resolved addresses → connect → implicit TLS
//! → greeting + EHLO → STARTTLS → AUTH ([`establish`]), then the optional test email and QUIT ([`check`]).
//! Every step runs within the check's one [`Budget`].

use super::budget::Budget;
use super::connection::Connection;
use super::ehlo::EhloInfo;
use super::progress::Progress;
use super::sanitize::Sanitizer;
use super::starttls::{TlsSetup, starttls};
use super::stream::{DeadlineStream, Transport};
use super::{CheckRequest, Credentials, Failure, Reason, Step, TlsMode};
use super::{diagnose, dial, message, sasl, test_email, tls};

/// Runs the whole check: [`establish`], the test email when asked for, QUIT.
pub(crate) async fn check(req: &CheckRequest, budget: Budget, p: &mut Progress) -> Result<(), Failure> {
    // before any network traffic: an invalid test message fails the check without touching the network
    p.step(Step::Policy);
    let prepared = req.test_message.as_ref().map(message::prepare).transpose()?;
    let mut c = establish(req, budget, p).await?;
    // the check has passed: a failure of only the test email goes into its own outcome, never into the check's
    let usable = match &prepared {
        Some(m) => {
            let sent = test_email::send(&mut c, p, m).await;
            let usable = sent.as_ref().err().is_none_or(|f| f.reply.is_some());
            p.test_email = Some(sent);
            usable
        }
        None => true,
    };
    // a server that drops the line instead of answering QUIT does not fail the check
    p.step(Step::Quit);
    if usable {
        c.quit().await;
    }
    Ok(())
}

/// Connects, secures and authenticates: a [`Connection`] ready for MAIL FROM (also used by a relay's upstream
/// session). On failure a still-usable connection is closed with QUIT.
pub(crate) async fn establish(req: &CheckRequest, budget: Budget, p: &mut Progress) -> Result<Connection, Failure> {
    p.step(Step::Policy);
    dial::check_port(&req.policy, req.port)?;
    let setup = tls_setup(req)?;
    let (transport, peer) = open_transport(req, &budget, p, setup.as_ref()).await?;
    let (stream, handle) = DeadlineStream::new(transport, peer, budget);
    let sanitizer = Sanitizer::for_credentials(&req.credentials);
    let (mut c, ehlo) = Connection::open(stream, handle, &req.helo_name, budget, sanitizer, p).await?;
    match secure_and_authenticate(req, &mut c, p, ehlo, setup, peer).await {
        Ok(()) => Ok(c),
        Err(f) => {
            quit_if_usable(&mut c, &f).await;
            Err(f)
        }
    }
}

/// The TLS configuration and server name, built before any traffic (`None` without TLS).
fn tls_setup(req: &CheckRequest) -> Result<Option<TlsSetup>, Failure> {
    match req.tls.mode {
        TlsMode::None => Ok(None),
        mode => {
            let step = if mode == TlsMode::ImplicitTls { Step::Tls } else { Step::StartTls };
            Ok(Some((tls::client_config(&req.tls, step)?, tls::server_name(&req.server, step)?)))
        }
    }
}

/// Resolve, policy on every resolved address, connect to a checked address, implicit TLS when configured.
async fn open_transport(
    req: &CheckRequest,
    budget: &Budget,
    p: &mut Progress,
    setup: Option<&TlsSetup>,
) -> Result<(Transport, std::net::SocketAddr), Failure> {
    p.step(Step::Resolve);
    let addrs = dial::resolve(&req.server, req.port, budget).await?;
    p.step(Step::Policy);
    dial::check_addresses(&req.policy, &req.server, &addrs)?;
    p.step(Step::Connect);
    let (tcp, peer) = dial::connect(&addrs, budget).await?;
    p.peer = Some(peer);
    match (setup, req.tls.mode) {
        (Some((config, name)), TlsMode::ImplicitTls) => {
            p.step(Step::Tls);
            let (stream, version) = match tls::handshake(tcp, config.clone(), name.clone(), budget, Step::Tls).await {
                Ok(done) => done,
                Err(h) => return Err(diagnose::handshake_failure(req, peer, budget, h).await),
            };
            p.tls_version = Some(version);
            p.certificates = tls::presented_chain(&stream);
            Ok((Transport::Tls(Box::new(stream)), peer))
        }
        _ => Ok((Transport::Plain(tcp), peer)),
    }
}

/// STARTTLS when configured, then AUTH when credentials are given.
async fn secure_and_authenticate(
    req: &CheckRequest,
    c: &mut Connection,
    p: &mut Progress,
    mut ehlo: EhloInfo,
    setup: Option<TlsSetup>,
    peer: std::net::SocketAddr,
) -> Result<(), Failure> {
    if req.tls.mode == TlsMode::StartTls {
        let Some(setup) = setup else {
            return Err(Failure {
                step: Step::StartTls,
                reason: Reason::TlsHandshakeFailed,
                message: "no TLS configuration".into(),
                reply: None,
            });
        };
        // offered on the plain connection: an early warning (the engine itself never authenticates before TLS)
        p.plaintext_auth = ehlo.auth.clone();
        ehlo = starttls(c, p, &ehlo, setup, (req, peer)).await?;
    }
    p.server_mechanisms = ehlo.auth.clone();
    if !matches!(req.credentials, Credentials::None) {
        p.step(Step::Auth);
        if let Some(mechanism) = sasl::choose(&req.credentials, &ehlo.auth)? {
            p.auth_mechanism = Some(mechanism.as_str().to_owned());
            sasl::authenticate(c, &req.credentials, mechanism).await?;
        }
    }
    Ok(())
}

/// QUIT after a failure that left the dialogue in a known state (a reply, or a refusal of ours before
/// sending); a broken connection is just dropped.
async fn quit_if_usable(c: &mut Connection, f: &Failure) {
    if f.reply.is_some() || matches!(f.reason, Reason::StartTlsNotOffered | Reason::AuthMechanismNotOffered) {
        c.quit().await;
    }
}
