//! The SMTP dialogue of one check, driven through lettre's `AsyncSmtpConnection` on our [`DeadlineStream`]:
//! greeting + EHLO (`connect_with_transport`), STARTTLS (command through lettre, handshake by us, EHLO again),
//! AUTH ([`super::sasl`]), the optional test email, QUIT.

use std::fmt::Display;
use std::time::{Duration, Instant};

use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Quit, Rcpt, Starttls};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::response::Response;

use super::reply::{self, Redactor, display};
use super::stream::{DeadlineStream, MAX_LINE_BYTES, StreamHandle, Transport};
use super::{CheckRequest, Credentials, Failure, Reason, Reply, Report, Step, TlsMode};
use super::{dial, message, sasl, tls};

/// What a command can end in besides a positive reply.
pub(crate) enum StepError {
    /// A 4xx/5xx reply.
    Rejected(Reply),
    /// No usable reply: timeout, closed connection, garbage.
    Broken(Failure),
}

/// The lettre connection plus what the engine needs around it.
pub(crate) struct Smtp {
    pub(crate) conn: AsyncSmtpConnection,
    pub(crate) handle: StreamHandle,
    pub(crate) timeout: Duration,
    redactor: Redactor,
}

impl Smtp {
    /// Sends one command and reads the reply; the whole exchange is bounded by the timeout (on top of the
    /// stream's per-I/O deadline).
    pub(crate) async fn cmd<C: Display>(&mut self, step: Step, command: C) -> Result<Response, StepError> {
        let r = tokio::time::timeout(self.timeout, self.conn.command(command)).await;
        self.map(step, r)
    }

    /// Sends the message content after DATA (dot-stuffed by lettre) and reads the final reply.
    async fn message(&mut self, step: Step, bytes: &[u8]) -> Result<Response, StepError> {
        let r = tokio::time::timeout(self.timeout, self.conn.message(bytes)).await;
        self.map(step, r)
    }

    pub(crate) fn map(
        &self,
        step: Step,
        r: Result<Result<Response, lettre::transport::smtp::Error>, tokio::time::error::Elapsed>,
    ) -> Result<Response, StepError> {
        match r {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(lettre_error(&e, step, &self.handle, &self.redactor, self.timeout)),
            Err(_) => Err(StepError::Broken(timed_out(step, self.timeout))),
        }
    }

    /// A positive reply as a report [`Reply`].
    pub(crate) fn reply_of(&self, r: &Response) -> Reply {
        reply::reply(u16::from(r.code()), r.message(), &self.redactor)
    }

    /// QUIT without caring for the answer (after a failure the server may already be gone).
    async fn quit_quietly(&mut self) {
        let _ = tokio::time::timeout(self.timeout, self.conn.command(Quit)).await;
    }
}

fn fail(step: Step, reason: Reason, message: String, reply: Option<Reply>) -> Failure {
    Failure { step, reason, message, reply }
}

fn timed_out(step: Step, timeout: Duration) -> Failure {
    fail(
        step,
        Reason::ConnectionTimedOut,
        format!(
            "the server did not answer within {} during {step}; check spec.tls.mode against the port (a TLS port \
             waits for a handshake, a plain port for commands) and the server's load, or raise spec.check.timeout",
            crate::duration::format(timeout)
        ),
        None,
    )
}

/// Classifies a lettre error: negative reply → Rejected, everything else → Broken with a reason.
fn lettre_error(
    e: &lettre::transport::smtp::Error,
    step: Step,
    handle: &StreamHandle,
    redactor: &Redactor,
    timeout: Duration,
) -> StepError {
    if let Some(code) = e.status() {
        let text = std::error::Error::source(e).map(|s| s.to_string()).unwrap_or_default();
        return StepError::Rejected(reply::reply(u16::from(code), [text.as_str()], redactor));
    }
    if e.is_timeout() {
        return StepError::Broken(timed_out(step, timeout));
    }
    if handle.saw_line_too_long() {
        return StepError::Broken(fail(
            step,
            Reason::ProtocolError,
            format!(
                "the server sent a reply line longer than {MAX_LINE_BYTES} bytes during {step}; this is not an SMTP server speaking normally"
            ),
            None,
        ));
    }
    if handle.saw_eof() {
        return StepError::Broken(fail(
            step,
            Reason::ConnectionFailed,
            format!(
                "the server closed the connection during {step}; check the server's logs (it may limit connections or require TLS)"
            ),
            None,
        ));
    }
    if e.is_response() {
        let (raw, _) = handle.last_reply_bytes();
        return StepError::Broken(fail(
            step,
            Reason::ProtocolError,
            format!(
                "the server's reply during {step} is not valid SMTP: {:?}; check that spec.port is an SMTP port and spec.tls.mode matches it",
                reply::clean_raw(&raw, redactor)
            ),
            None,
        ));
    }
    // network errors: the io::Error is the source
    let detail = std::error::Error::source(e).map(|s| s.to_string()).unwrap_or_else(|| e.to_string());
    StepError::Broken(fail(
        step,
        Reason::ConnectionFailed,
        format!("the connection failed during {step}: {}", reply::truncate(&detail, 200)),
        None,
    ))
}

/// What an EHLO reply told us.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct EhloInfo {
    pub(crate) starttls: bool,
    /// AUTH mechanisms, upper case, in advertised order, without duplicates.
    pub(crate) auth: Vec<String>,
}

/// Parses EHLO reply text lines (without the `250-` prefix).
pub(crate) fn parse_ehlo<'a>(lines: impl IntoIterator<Item = &'a str>) -> EhloInfo {
    let mut info = EhloInfo::default();
    for line in lines.into_iter().skip(1) {
        let line = line.trim();
        let mut words = line.split_whitespace();
        let Some(keyword) = words.next() else { continue };
        let upper = keyword.to_ascii_uppercase();
        let mechs: Vec<&str> = if upper == "STARTTLS" {
            info.starttls = true;
            continue;
        } else if upper == "AUTH" {
            words.collect()
        } else if upper.starts_with("AUTH=") {
            // old-style "AUTH=LOGIN PLAIN" (some servers send both forms); the prefix is ASCII
            let mut v = vec![&keyword[5..]];
            v.extend(words);
            v
        } else {
            continue;
        };
        for m in mechs {
            let m = m.to_ascii_uppercase();
            if !m.is_empty()
                && m.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                && !info.auth.contains(&m)
            {
                info.auth.push(m);
            }
        }
    }
    info
}

/// Parses a raw captured reply (`250-...\r\n250 ...\r\n`).
pub(crate) fn parse_ehlo_raw(raw: &[u8]) -> EhloInfo {
    let text = String::from_utf8_lossy(raw);
    parse_ehlo(text.lines().map(|l| l.get(4..).unwrap_or("")))
}

/// Length of the first complete reply in `raw` (up to and including the final line's LF), if complete.
pub(crate) fn first_reply_len(raw: &[u8]) -> Option<usize> {
    let mut pos = 0;
    while pos < raw.len() {
        let end = raw[pos..].iter().position(|&b| b == b'\n')? + pos + 1;
        let line = &raw[pos..end];
        if line.len() < 4 || line[3] != b'-' {
            return Some(end);
        }
        pos = end;
    }
    None
}

/// Per-step timing and what the report collects along the way.
pub(crate) struct Progress {
    start: Instant,
    current: Option<(Step, Instant)>,
    steps: Vec<(Step, Duration)>,
    last_step: Step,
    tls_version: Option<String>,
    server_mechanisms: Vec<String>,
    auth_mechanism: Option<String>,
    peer: Option<std::net::SocketAddr>,
    test_message_reply: Option<String>,
    /// Set by [`super::upstream`]: stop after AUTH and keep the session here instead of QUIT.
    pub(crate) keep_open: bool,
    pub(crate) session: Option<Smtp>,
}

impl Progress {
    pub(crate) fn new() -> Self {
        Progress {
            start: Instant::now(),
            current: None,
            steps: Vec::new(),
            last_step: Step::Policy,
            tls_version: None,
            server_mechanisms: Vec::new(),
            auth_mechanism: None,
            peer: None,
            test_message_reply: None,
            keep_open: false,
            session: None,
        }
    }

    fn step(&mut self, s: Step) {
        self.step_at(s, Instant::now());
    }

    fn step_at(&mut self, s: Step, at: Instant) {
        if let Some((prev, t0)) = self.current.take() {
            self.steps.push((prev, at.saturating_duration_since(t0)));
        }
        self.current = Some((s, at));
        self.last_step = s;
    }

    pub(crate) fn into_report(mut self, outcome: Result<(), Failure>) -> Report {
        let now = Instant::now();
        if let Some((prev, t0)) = self.current.take() {
            self.steps.push((prev, now.saturating_duration_since(t0)));
        }
        let last_step = match &outcome {
            Err(f) => f.step,
            Ok(()) => self.last_step,
        };
        Report {
            outcome,
            last_step,
            tls_version: self.tls_version,
            server_mechanisms: self.server_mechanisms,
            auth_mechanism: self.auth_mechanism,
            peer: self.peer,
            step_durations: self.steps,
            duration: now.saturating_duration_since(self.start),
            test_message_reply: self.test_message_reply,
        }
    }
}

/// Runs the check up to the SMTP connection, then the dialogue.
pub(crate) async fn check(req: &CheckRequest, p: &mut Progress) -> Result<(), Failure> {
    // --- before any network traffic: port policy, test message, TLS configuration
    p.step(Step::Policy);
    dial::check_port(&req.policy, req.port)?;
    let prepared = req.test_message.as_ref().map(message::prepare).transpose()?;
    let tls_setup = match req.tls.mode {
        TlsMode::None => None,
        mode => {
            let step = if mode == TlsMode::ImplicitTls { Step::Tls } else { Step::StartTls };
            Some((tls::client_config(&req.tls, step)?, tls::server_name(&req.server, step)?))
        }
    };

    // --- resolve, policy on every resolved address, connect to a checked address
    p.step(Step::Resolve);
    let addrs = dial::resolve(&req.server, req.port, req.timeout).await?;
    p.step(Step::Policy);
    dial::check_addresses(&req.policy, &req.server, &addrs)?;
    p.step(Step::Connect);
    let (tcp, peer) = dial::connect(&addrs, req.timeout).await?;
    p.peer = Some(peer);

    let transport = match (&tls_setup, req.tls.mode) {
        (Some((config, name)), TlsMode::ImplicitTls) => {
            p.step(Step::Tls);
            let (stream, version) = tls::handshake(tcp, config.clone(), name.clone(), req.timeout, Step::Tls).await?;
            p.tls_version = Some(version);
            Transport::Tls(Box::new(stream))
        }
        _ => Transport::Plain(tcp),
    };
    let (stream, handle) = DeadlineStream::new(transport, peer, req.timeout);
    let redactor = Redactor::for_credentials(&req.credentials);

    // --- greeting + first EHLO (one lettre call; split by the moment the client first wrote)
    p.step(Step::Greeting);
    let helo = if req.helo_name.trim().is_empty() { "localhost".to_owned() } else { req.helo_name.trim().to_owned() };
    let client_id = ClientId::Domain(helo);
    let connected = tokio::time::timeout(
        req.timeout.saturating_mul(2),
        AsyncSmtpConnection::connect_with_transport(Box::new(stream), &client_id),
    )
    .await;
    if let Some(at) = handle.first_write_at() {
        p.step_at(Step::Ehlo, at);
    }
    let step = if handle.has_written() { Step::Ehlo } else { Step::Greeting };
    let conn = match connected {
        Ok(Ok(conn)) => conn,
        Err(_) => return Err(timed_out(step, req.timeout)),
        Ok(Err(e)) => {
            return Err(match lettre_error(&e, step, &handle, &redactor, req.timeout) {
                StepError::Broken(f) => f,
                StepError::Rejected(r) if step == Step::Greeting => fail(
                    step,
                    Reason::ServerRejected,
                    format!(
                        "the server refused the session in its greeting: {}; check that this client may connect (IP allow-lists, limits)",
                        display(&r)
                    ),
                    Some(r),
                ),
                StepError::Rejected(r) => fail(
                    step,
                    Reason::ServerRejected,
                    format!("the server rejected EHLO: {}; check the HELO name and the server's policy", display(&r)),
                    Some(r),
                ),
            });
        }
    };
    let ehlo = parse_ehlo_raw(&handle.last_reply_bytes().0);
    let mut smtp = Smtp { conn, handle, timeout: req.timeout, redactor };

    let result = dialogue(req, p, &mut smtp, ehlo, &client_id, tls_setup, prepared).await;
    match &result {
        Ok(()) if p.keep_open => p.session = Some(smtp),
        Ok(()) => {}
        Err(f)
            if f.reply.is_some()
                || matches!(f.reason, Reason::StartTlsNotOffered | Reason::AuthMechanismNotOffered) =>
        {
            smtp.quit_quietly().await
        }
        Err(_) => {}
    }
    result
}

async fn dialogue(
    req: &CheckRequest,
    p: &mut Progress,
    smtp: &mut Smtp,
    mut ehlo: EhloInfo,
    client_id: &ClientId,
    tls_setup: Option<(std::sync::Arc<rustls::ClientConfig>, rustls::pki_types::ServerName<'static>)>,
    prepared: Option<message::Prepared>,
) -> Result<(), Failure> {
    if req.tls.mode == TlsMode::StartTls {
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
        expect(smtp, Step::StartTls, Starttls, &[220], |r| {
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
        let (raw, overflow) = smtp.handle.last_reply_bytes();
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
        let Some((config, name)) = tls_setup else {
            return Err(fail(Step::StartTls, Reason::TlsHandshakeFailed, "no TLS configuration".into(), None));
        };
        let tcp = smtp
            .handle
            .take_plain()
            .map_err(|e| fail(Step::StartTls, Reason::TlsHandshakeFailed, format!("cannot start TLS: {e}"), None))?;
        let (tls_stream, version) = tls::handshake(tcp, config, name, req.timeout, Step::StartTls).await?;
        smtp.handle.install_tls(tls_stream);
        p.tls_version = Some(version);

        p.step(Step::Ehlo);
        let r = expect(smtp, Step::Ehlo, Ehlo::new(client_id.clone()), &[250], |r| {
            fail(
                Step::Ehlo,
                Reason::ServerRejected,
                format!("the server rejected EHLO after STARTTLS: {}", display(&r)),
                Some(r),
            )
        })
        .await?;
        ehlo = parse_ehlo(r.message());
    }
    p.server_mechanisms = ehlo.auth.clone();

    // --- AUTH
    if !matches!(req.credentials, Credentials::None) {
        p.step(Step::Auth);
        if let Some(mechanism) = sasl::choose(&req.credentials, &ehlo.auth)? {
            p.auth_mechanism = Some(mechanism.as_str().to_owned());
            sasl::authenticate(smtp, &req.credentials, mechanism).await?;
        }
    }

    // --- test email
    if let Some(m) = prepared {
        p.step(Step::MailFrom);
        expect(smtp, Step::MailFrom, Mail::new(Some(m.envelope_from.clone()), vec![]), &[250], |r| {
            fail(
                Step::MailFrom,
                Reason::SenderRejected,
                format!(
                    "the server rejected the sender <{}>: {}; spec.from must be an address the account may send as",
                    m.envelope_from,
                    display(&r)
                ),
                Some(r),
            )
        })
        .await?;
        p.step(Step::RcptTo);
        for rcpt in &m.recipients {
            expect(smtp, Step::RcptTo, Rcpt::new(rcpt.clone(), vec![]), &[250, 251], |r| {
                fail(
                    Step::RcptTo,
                    Reason::RecipientRejected,
                    format!("the server rejected the recipient <{rcpt}>: {}; check spec.testEmail.to", display(&r)),
                    Some(r),
                )
            })
            .await?;
        }
        p.step(Step::Data);
        let reject_data = |r: Reply| {
            fail(
                Step::Data,
                Reason::MessageRejected,
                format!("the server rejected the test message: {}", display(&r)),
                Some(r),
            )
        };
        expect(smtp, Step::Data, Data, &[354], reject_data).await?;
        let r = match smtp.message(Step::Data, &m.formatted).await {
            Ok(r) => r,
            Err(StepError::Rejected(r)) => return Err(reject_data(r)),
            Err(StepError::Broken(f)) => return Err(f),
        };
        let reply = smtp.reply_of(&r);
        if reply.code != 250 {
            return Err(fail(
                Step::Data,
                Reason::ProtocolError,
                format!("expected 250 after the message, the server replied {}", display(&reply)),
                Some(reply),
            ));
        }
        p.test_message_reply = Some(display(&reply));
    }

    if p.keep_open {
        return Ok(());
    }
    // --- QUIT: the check has passed; a server that drops the line instead of answering does not fail it
    p.step(Step::Quit);
    let _ = smtp.cmd(Step::Quit, Quit).await;
    Ok(())
}

/// Sends `command`; a negative reply goes through `rejected`, an unexpected positive one is a ProtocolError.
async fn expect<C: Display>(
    smtp: &mut Smtp,
    step: Step,
    command: C,
    codes: &[u16],
    rejected: impl FnOnce(Reply) -> Failure,
) -> Result<Response, Failure> {
    match smtp.cmd(step, command).await {
        Ok(r) if codes.contains(&u16::from(r.code())) => Ok(r),
        Ok(r) => {
            let reply = smtp.reply_of(&r);
            Err(fail(
                step,
                Reason::ProtocolError,
                format!("unexpected reply during {step}: {}", display(&reply)),
                Some(reply),
            ))
        }
        Err(StepError::Rejected(r)) => Err(rejected(r)),
        Err(StepError::Broken(f)) => Err(f),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ehlo_parsing() {
        let raw = b"250-mail.example.com Hello\r\n250-SIZE 35882577\r\n250-STARTTLS\r\n250-AUTH LOGIN plain XOAUTH2\r\n250-AUTH=LOGIN\r\n250 HELP\r\n";
        let info = parse_ehlo_raw(raw);
        assert!(info.starttls);
        assert_eq!(info.auth, ["LOGIN", "PLAIN", "XOAUTH2"]);
        // the greeting line (first) is not a keyword
        let info = parse_ehlo(["STARTTLS mail server", "8BITMIME"]);
        assert_eq!(info, EhloInfo::default());
        let info = parse_ehlo(["x", "AUTH=PLAIN LOGIN"]);
        assert_eq!(info.auth, ["PLAIN", "LOGIN"]);
    }

    #[test]
    fn first_reply_boundaries() {
        assert_eq!(first_reply_len(b"220 go ahead\r\n"), Some(14));
        assert_eq!(first_reply_len(b"220-a\r\n220 b\r\n"), Some(14));
        assert_eq!(first_reply_len(b"220 go\r\n250 injected\r\n"), Some(8));
        assert_eq!(first_reply_len(b"220-a\r\n"), None);
        assert_eq!(first_reply_len(b""), None);
    }

    #[test]
    fn progress_records_steps_in_order() {
        let mut p = Progress::new();
        p.step(Step::Policy);
        p.step(Step::Resolve);
        p.step(Step::Connect);
        let r = p.into_report(Ok(()));
        assert_eq!(
            r.step_durations.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            [Step::Policy, Step::Resolve, Step::Connect]
        );
        assert_eq!(r.last_step, Step::Connect);
    }
}
