//! The SMTP connection of one check: lettre's `AsyncSmtpConnection` on our [`DeadlineStream`], the check's
//! [`Budget`] and the [`Sanitizer`] for what the server says, plus the errors a step can end in. Every step
//! (STARTTLS, AUTH, the test email, and a relay's upstream session) sends its commands through [`Connection`].

use std::fmt::Display;

use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::Quit;
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::response::Response;

use super::budget::Budget;
use super::ehlo::{EhloInfo, parse_ehlo_raw};
use super::progress::Progress;
use super::reply::{self, display};
use super::sanitize::Sanitizer;
use super::stream::{DeadlineStream, MAX_LINE_BYTES, MAX_REPLY_BYTES, StreamHandle};
use super::{Failure, Reason, Reply, Step};

/// What a command can end in besides a positive reply.
pub(crate) enum StepError {
    /// A 4xx/5xx reply.
    Rejected(Reply),
    /// No usable reply: timeout, closed connection, garbage.
    Broken(Failure),
}

/// The lettre connection plus what the engine needs around it.
pub(crate) struct Connection {
    conn: AsyncSmtpConnection,
    pub(crate) handle: StreamHandle,
    pub(crate) budget: Budget,
    pub(crate) sanitizer: Sanitizer,
    pub(crate) client_id: ClientId,
}

pub(crate) fn fail(step: Step, reason: Reason, message: String, reply: Option<Reply>) -> Failure {
    Failure { step, reason, message, reply }
}

/// The budget ran out during `step`.
pub(crate) fn timed_out(step: Step, budget: &Budget) -> Failure {
    if step == Step::Greeting {
        return fail(
            step,
            Reason::ConnectionTimedOut,
            format!(
                "the server sent no complete greeting within {}; check that spec.port is an SMTP port and \
                 spec.tls.mode matches it (an implicit-TLS port or a non-SMTP service such as an HTTP server waits \
                 silently for the client to speak first), else the server is overloaded or tarpits this client",
                budget.describe()
            ),
            None,
        );
    }
    fail(
        step,
        Reason::ConnectionTimedOut,
        format!(
            "the server did not answer within {} during {step}; check spec.tls.mode against the port (a TLS port \
             waits for a handshake, a plain port for commands) and the server's load, or raise spec.check.timeout",
            budget.describe()
        ),
        None,
    )
}

impl Connection {
    /// Reads the greeting and sends the first EHLO (one lettre call, split by the moment the client first
    /// wrote), all within the budget.
    pub(crate) async fn open(
        stream: DeadlineStream,
        handle: StreamHandle,
        helo_name: &str,
        budget: Budget,
        sanitizer: Sanitizer,
        p: &mut Progress,
    ) -> Result<(Connection, EhloInfo), Failure> {
        p.step(Step::Greeting);
        let helo = if helo_name.trim().is_empty() { "localhost".to_owned() } else { helo_name.trim().to_owned() };
        let client_id = ClientId::Domain(helo);
        let connected = budget.run(AsyncSmtpConnection::connect_with_transport(Box::new(stream), &client_id)).await;
        if let Some(at) = handle.first_write_at() {
            p.step_at(Step::Ehlo, at);
        }
        let step = if handle.has_written() { Step::Ehlo } else { Step::Greeting };
        let conn = match connected {
            Ok(Ok(conn)) => conn,
            Err(()) => return Err(timed_out(step, &budget)),
            Ok(Err(e)) => return Err(open_failure(lettre_error(&e, step, &handle, &sanitizer, &budget), step)),
        };
        let ehlo = parse_ehlo_raw(&handle.last_reply_bytes().0);
        Ok((Connection { conn, handle, budget, sanitizer, client_id }, ehlo))
    }

    /// Sends one command and reads the reply, within the budget.
    pub(crate) async fn cmd<C: Display>(&mut self, step: Step, command: C) -> Result<Response, StepError> {
        let r = self.budget.run(self.conn.command(command)).await;
        self.map(step, r)
    }

    /// A fresh budget of `total` from now, for the commands that follow (a relay's long-lived upstream session).
    pub(crate) fn renew_budget(&mut self, total: std::time::Duration) {
        self.budget = Budget::new(total);
        self.handle.set_budget(self.budget);
    }

    /// Reads one reply (after a body written through [`StreamHandle::writer`]).
    pub(crate) async fn read_reply(&mut self, step: Step) -> Result<Response, StepError> {
        let r = self.budget.run(self.conn.read_response()).await;
        self.map(step, r)
    }

    /// Sends the message content after DATA (dot-stuffed by lettre) and reads the final reply.
    pub(crate) async fn message(&mut self, step: Step, bytes: &[u8]) -> Result<Response, StepError> {
        let r = self.budget.run(self.conn.message(bytes)).await;
        self.map(step, r)
    }

    fn map(
        &self,
        step: Step,
        r: Result<Result<Response, lettre::transport::smtp::Error>, ()>,
    ) -> Result<Response, StepError> {
        match r {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(lettre_error(&e, step, &self.handle, &self.sanitizer, &self.budget)),
            Err(()) => Err(StepError::Broken(timed_out(step, &self.budget))),
        }
    }

    /// A reply as a report [`Reply`].
    pub(crate) fn reply_of(&self, r: &Response) -> Reply {
        reply::reply(u16::from(r.code()), r.message(), &self.sanitizer)
    }

    /// Sends `command`; a reply with one of `codes` is returned, a negative one goes through `rejected`, any
    /// other positive one is a ProtocolError.
    pub(crate) async fn expect<C: Display>(
        &mut self,
        step: Step,
        command: C,
        codes: &[u16],
        rejected: impl FnOnce(Reply) -> Failure,
    ) -> Result<Response, Failure> {
        match self.cmd(step, command).await {
            Ok(r) if codes.contains(&u16::from(r.code())) => Ok(r),
            Ok(r) => {
                let reply = self.reply_of(&r);
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

    /// QUIT; a server that drops the line instead of answering does not matter any more.
    pub(crate) async fn quit(&mut self) {
        let _ = self.cmd(Step::Quit, Quit).await;
    }
}

/// A failure of the greeting or the first EHLO.
fn open_failure(e: StepError, step: Step) -> Failure {
    match e {
        StepError::Broken(f) => f,
        StepError::Rejected(r) if step == Step::Greeting => {
            let hint = if (400..500).contains(&r.code) {
                "a temporary refusal (4xx: the server is busy or limits connections); the check is retried with \
                 backoff, nothing to change unless it persists"
            } else {
                "check that this client may connect (IP allow-lists, block lists, connection limits)"
            };
            let message = format!("the server refused the session in its greeting: {}; {hint}", display(&r));
            fail(step, Reason::ServerRejected, message, Some(r))
        }
        StepError::Rejected(r) => {
            let hint = if r.code == 500 || r.code == 502 {
                "the server does not speak ESMTP (EHLO), which STARTTLS and AUTH need: check that spec.port is the \
                 server's submission port (587, or 465 with ImplicitTLS)"
            } else {
                "check the HELO name and the server's policy"
            };
            fail(step, Reason::ServerRejected, format!("the server rejected EHLO: {}; {hint}", display(&r)), Some(r))
        }
    }
}

/// Classifies a lettre error: negative reply → Rejected, everything else → Broken with a reason.
fn lettre_error(
    e: &lettre::transport::smtp::Error,
    step: Step,
    handle: &StreamHandle,
    sanitizer: &Sanitizer,
    budget: &Budget,
) -> StepError {
    if let Some(code) = e.status() {
        let text = std::error::Error::source(e).map(|s| s.to_string()).unwrap_or_default();
        return StepError::Rejected(reply::reply(u16::from(code), [text.as_str()], sanitizer));
    }
    if e.is_timeout() {
        return StepError::Broken(timed_out(step, budget));
    }
    let broken = |reason, message| StepError::Broken(fail(step, reason, message, None));
    if handle.saw_line_too_long() {
        return broken(
            Reason::ProtocolError,
            format!(
                "the server sent a reply line longer than {MAX_LINE_BYTES} bytes during {step}; this is not an SMTP \
                 server speaking normally"
            ),
        );
    }
    if handle.saw_reply_too_long() {
        let (raw, _) = handle.last_reply_bytes();
        return broken(
            Reason::ProtocolError,
            format!(
                "the server sent a reply longer than {MAX_REPLY_BYTES} bytes during {step}, beginning {:?}; this is \
                 not an SMTP server speaking normally: check that spec.port is the mail server's port",
                reply::clean_raw(&raw, sanitizer)
            ),
        );
    }
    if handle.saw_eof() || closed_by_peer(e) {
        return broken(
            Reason::ConnectionFailed,
            format!(
                "the server closed the connection during {step}; check the server's logs (it may limit connections \
                 or require TLS)"
            ),
        );
    }
    if e.is_response() {
        let (raw, _) = handle.last_reply_bytes();
        return broken(
            Reason::ProtocolError,
            format!(
                "the server's reply during {step} is not valid SMTP: {:?}; check that spec.port is an SMTP port and \
                 spec.tls.mode matches it",
                reply::clean_raw(&raw, sanitizer)
            ),
        );
    }
    // network errors: the io::Error is the source
    let detail = std::error::Error::source(e).map(|s| s.to_string()).unwrap_or_else(|| e.to_string());
    broken(Reason::ConnectionFailed, format!("the connection failed during {step}: {}", sanitizer.clean(&detail, 200)))
}

/// True when the connection ended by a reset or a broken pipe (a server that closed while our data was unread).
fn closed_by_peer(e: &lettre::transport::smtp::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            );
        }
        source = s.source();
    }
    false
}
