//! One client session: the SMTP submission dialogue (commands parsed by `smtp-proto`), authentication, the
//! relay's policy, and the transaction passed through to the upstream ([`crate::engine::upstream`]).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use smtp_proto::{EhloResponse, Request};
use tracing::{debug, info};

use super::io::{Client, Line};
use super::message::{self, BodyLine, Headers};
use super::{Relay, RelayConfig};
use crate::engine::SecretValue;
use crate::engine::upstream::{Upstream, UpstreamError};

/// Longest command line (smtp-proto's own limit).
const MAX_COMMAND: usize = smtp_proto::request::receiver::MAX_LINE_LENGTH;
/// Longest body line kept in memory (RFC 5321 says 1000; be lenient but bounded).
const MAX_BODY_LINE: usize = 64 * 1024;
/// Largest header block inspected for From before the message goes upstream.
const MAX_HEADER_BYTES: usize = 256 * 1024;
/// Commands without a finished transaction, and bad commands, before the session is closed.
const MAX_IDLE_COMMANDS: u32 = 200;
const MAX_BAD_COMMANDS: u32 = 10;

/// A reply to the client.
struct R(String);

fn r(code: u16, text: &str) -> R {
    R(format!("{code} {text}\r\n"))
}

/// The upstream's reply as the client gets it (already sanitized by the engine: single line, no control
/// characters, no credential, truncated).
fn passthrough(code: u16, text: &str) -> R {
    if text.is_empty() { R(format!("{code}\r\n")) } else { r(code, text) }
}

/// The transaction in progress.
#[derive(Default)]
struct Tx {
    accepted_rcpts: u32,
    rcpts: u32,
}

pub(super) struct Session {
    relay: Arc<Relay>,
    cfg: Arc<RelayConfig>,
    ip: IpAddr,
    client: Option<Client>,
    user: Option<String>,
    ehlo: bool,
    tx: Option<Tx>,
    upstream: Option<Upstream>,
    idle_commands: u32,
    bad_commands: u32,
}

enum Flow {
    Continue,
    Close,
}

impl Session {
    pub(super) fn new(relay: Arc<Relay>, client: Client, ip: IpAddr) -> Self {
        let cfg = relay.config();
        Self {
            relay,
            cfg,
            ip,
            client: Some(client),
            user: None,
            ehlo: false,
            tx: None,
            upstream: None,
            idle_commands: 0,
            bad_commands: 0,
        }
    }

    fn client(&mut self) -> &mut Client {
        self.client.as_mut().expect("client present outside STARTTLS")
    }

    async fn send(&mut self, reply: R) -> std::io::Result<()> {
        self.client().write(reply.0.as_bytes()).await
    }

    /// Runs the session to its end; errors end it quietly (the client is gone or too slow).
    pub(super) async fn run(mut self) {
        let greeting = format!("220 {} ESMTP smtp-operator relay\r\n", self.cfg.hostname);
        if self.client().write(greeting.as_bytes()).await.is_err() {
            return;
        }
        let mut line = Vec::with_capacity(256);
        loop {
            if *self.relay.shutdown.borrow() {
                let _ = self.send(r(421, "4.3.2 relay shutting down, try again")).await;
                break;
            }
            // between transactions a stopping relay does not wait for the client's next command
            let idle = self.tx.is_none();
            let mut stop = self.relay.shutdown.clone();
            let client = self.client.as_mut().expect("client present outside STARTTLS");
            let read = tokio::select! {
                r = client.read_line(&mut line, MAX_COMMAND) => r,
                _ = stop.wait_for(|s| *s), if idle => continue,
            };
            let read = match read {
                Ok(l) => l,
                Err(e) => {
                    debug!(client = %self.ip, error = %e, "client session ended");
                    let _ = self.send(r(421, "4.4.2 timeout, closing")).await;
                    break;
                }
            };
            let flow = match read {
                Line::Eof => break,
                Line::TooLong => self.bad(r(500, "5.5.2 line too long")).await,
                Line::Full => self.command(&line).await,
            };
            match flow {
                Ok(Flow::Continue) => {}
                Ok(Flow::Close) | Err(_) => break,
            }
        }
        self.release_upstream().await;
    }

    /// Gives the upstream session back to the pool when it can carry another transaction: not in the middle of a
    /// body (dropped: the upstream discards a body that never ended), an open MAIL/RCPT reset first.
    async fn release_upstream(&mut self) {
        let Some(mut u) = self.upstream.take() else { return };
        if u.in_data() || (self.tx.take().is_some() && u.rset().await.is_err()) {
            return;
        }
        if *self.relay.shutdown.borrow() {
            u.quit().await;
        } else {
            self.relay.pool.put(u, self.cfg.clone());
        }
    }

    async fn bad(&mut self, reply: R) -> std::io::Result<Flow> {
        self.bad_commands += 1;
        if self.bad_commands > MAX_BAD_COMMANDS {
            self.send(r(421, "4.7.0 too many errors, closing")).await?;
            return Ok(Flow::Close);
        }
        self.send(reply).await?;
        Ok(Flow::Continue)
    }

    async fn command(&mut self, line: &[u8]) -> std::io::Result<Flow> {
        self.idle_commands += 1;
        if self.idle_commands > MAX_IDLE_COMMANDS {
            self.send(r(421, "4.7.0 too many commands without a message, closing")).await?;
            return Ok(Flow::Close);
        }
        let parsed = Request::parse(&mut line.iter()).map(Request::into_owned);
        let req = match parsed {
            Ok(req) => req,
            Err(smtp_proto::Error::UnknownCommand) => return self.bad(r(500, "5.5.1 command not recognized")).await,
            Err(e) => return self.bad(r(501, &format!("5.5.4 {}", clean(&e.to_string())))).await,
        };
        match req {
            Request::Ehlo { host } => self.on_ehlo(&host).await,
            Request::Helo { .. } => {
                self.ehlo = true;
                self.reset_tx().await;
                self.send(r(250, &self.cfg.hostname.clone())).await.map(|_| Flow::Continue)
            }
            Request::StartTls => self.on_starttls().await,
            Request::Auth { mechanism, initial_response } => self.on_auth(mechanism, initial_response).await,
            Request::Mail { from } => self.on_mail(from).await,
            Request::Rcpt { to } => self.on_rcpt(&to.address).await,
            Request::Data => self.on_data().await,
            Request::Rset => {
                self.reset_tx().await;
                self.send(r(250, "2.0.0 OK")).await.map(|_| Flow::Continue)
            }
            Request::Noop { .. } => self.send(r(250, "2.0.0 OK")).await.map(|_| Flow::Continue),
            Request::Vrfy { .. } => self.send(r(252, "2.5.0 cannot verify")).await.map(|_| Flow::Continue),
            Request::Quit => {
                self.send(r(221, "2.0.0 bye")).await?;
                Ok(Flow::Close)
            }
            _ => self.bad(r(502, "5.5.1 command not implemented")).await,
        }
    }

    fn auth_allowed(&self) -> bool {
        self.cfg.tls.is_none() || self.client.as_ref().is_some_and(Client::is_tls)
    }

    async fn on_ehlo(&mut self, host: &str) -> std::io::Result<Flow> {
        self.ehlo = true;
        self.reset_tx().await;
        let cfg = self.cfg.clone();
        let mut e = EhloResponse::new(cfg.hostname.as_str());
        e.capabilities = smtp_proto::EXT_PIPELINING
            | smtp_proto::EXT_SIZE
            | smtp_proto::EXT_8BIT_MIME
            | smtp_proto::EXT_ENHANCED_STATUS_CODES;
        e.size = self.cfg.max_message_bytes;
        if self.cfg.tls.is_some() && !self.client().is_tls() {
            e.capabilities |= smtp_proto::EXT_START_TLS;
        }
        if self.auth_allowed() && self.user.is_none() {
            e.capabilities |= smtp_proto::EXT_AUTH;
            e.auth_mechanisms = smtp_proto::AUTH_PLAIN | smtp_proto::AUTH_LOGIN;
        }
        let mut out = Vec::new();
        e.write(&mut out)?;
        debug!(client = %self.ip, helo = %clean(host), "EHLO");
        self.client().write(&out).await?;
        Ok(Flow::Continue)
    }

    async fn on_starttls(&mut self) -> std::io::Result<Flow> {
        let Some(config) = self.cfg.tls.clone() else { return self.bad(r(502, "5.5.1 TLS not available")).await };
        if self.client().is_tls() {
            return self.bad(r(503, "5.5.1 TLS already active")).await;
        }
        // anything pipelined after STARTTLS would be read as if it came over TLS: refuse (CVE-2011-0411)
        if self.client().has_buffered() {
            self.send(r(554, "5.5.1 data after STARTTLS, closing")).await?;
            return Ok(Flow::Close);
        }
        self.send(r(220, "2.0.0 ready to start TLS")).await?;
        let client = self.client.take().expect("client present");
        match client.start_tls(config).await {
            Ok(c) => {
                self.client = Some(c);
                // RFC 3207: forget everything learned before TLS
                self.ehlo = false;
                self.user = None;
                self.reset_tx().await;
                Ok(Flow::Continue)
            }
            Err(e) => {
                debug!(client = %self.ip, error = %e, "TLS handshake failed");
                Ok(Flow::Close)
            }
        }
    }

    async fn on_auth(&mut self, mechanism: u64, initial: String) -> std::io::Result<Flow> {
        if self.user.is_some() {
            return self.bad(r(503, "5.5.1 already authenticated")).await;
        }
        if !self.auth_allowed() {
            return self.bad(r(538, "5.7.11 encryption required: use STARTTLS first")).await;
        }
        if self.tx.is_some() {
            return self.bad(r(503, "5.5.1 AUTH not allowed during a transaction")).await;
        }
        if self.relay.lockout.locked(self.ip, Instant::now()) {
            self.relay.metrics.auth_failure("locked_out");
            return self.bad(r(454, "4.7.0 too many failed logins from this address, try later")).await;
        }
        let creds = match mechanism {
            smtp_proto::AUTH_PLAIN => self.auth_plain(initial).await?,
            smtp_proto::AUTH_LOGIN => self.auth_login(initial).await?,
            _ => return self.bad(r(504, "5.5.4 mechanism not supported (PLAIN, LOGIN)")).await,
        };
        let Some((user, password)) = creds else {
            return self.bad(r(501, "5.5.2 cannot decode the AUTH response")).await;
        };
        if super::auth::verify(&self.cfg.accounts, &user, password.expose()) {
            self.relay.lockout.succeeded(self.ip);
            self.user = Some(String::from_utf8_lossy(&user).into_owned());
            info!(client = %self.ip, user = %clean(&String::from_utf8_lossy(&user)), "client authenticated");
            self.send(r(235, "2.7.0 authentication successful")).await?;
            return Ok(Flow::Continue);
        }
        let delay = self.relay.lockout.failed(self.ip, Instant::now());
        self.relay.metrics.auth_failure("bad_credentials");
        info!(client = %self.ip, "client authentication failed");
        tokio::time::sleep(delay).await;
        self.bad(r(535, "5.7.8 authentication credentials invalid")).await
    }

    /// Reads one AUTH continuation line (`*` cancels).
    async fn challenge(&mut self, prompt: &str) -> std::io::Result<Option<String>> {
        self.send(R(format!("334 {prompt}\r\n"))).await?;
        let mut line = Vec::new();
        match self.client().read_line(&mut line, MAX_COMMAND).await? {
            Line::Full => {}
            _ => return Ok(None),
        }
        let text = String::from_utf8_lossy(&line).trim().to_owned();
        line.iter_mut().for_each(|b| *b = 0);
        Ok(if text == "*" { None } else { Some(text) })
    }

    async fn auth_plain(&mut self, initial: String) -> std::io::Result<Option<(Vec<u8>, SecretValue)>> {
        let initial = SecretValue::new(initial);
        let response = match initial.expose_str().unwrap_or("") {
            "" => match self.challenge("").await? {
                Some(t) => SecretValue::new(t),
                None => return Ok(None),
            },
            _ => initial,
        };
        Ok(super::auth::decode_plain(response.expose_str().unwrap_or("")))
    }

    async fn auth_login(&mut self, initial: String) -> std::io::Result<Option<(Vec<u8>, SecretValue)>> {
        let user_b64 = if initial.is_empty() {
            match self.challenge("VXNlcm5hbWU6").await? {
                Some(t) => t,
                None => return Ok(None),
            }
        } else {
            initial
        };
        let Some(pass_b64) = self.challenge("UGFzc3dvcmQ6").await? else { return Ok(None) };
        let pass_b64 = SecretValue::new(pass_b64);
        let (Ok(user), Ok(pass)) = (B64.decode(user_b64.trim()), B64.decode(pass_b64.expose())) else {
            return Ok(None);
        };
        Ok(Some((user, SecretValue::new(pass))))
    }

    async fn reset_tx(&mut self) {
        if self.tx.take().is_some()
            && let Some(u) = self.upstream.as_mut()
            && u.rset().await.is_err()
        {
            self.upstream = None;
        }
    }
}

/// Text from the client or a parser, safe for a reply or a log line.
pub(super) fn clean(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// Duration in seconds for the histogram.
pub(super) fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

// --- the transaction: MAIL, RCPT, DATA passed through to the upstream
impl Session {
    fn require_auth(&self) -> Option<R> {
        if self.user.is_none() {
            return Some(r(530, "5.7.0 authentication required"));
        }
        if !self.ehlo {
            return Some(r(503, "5.5.1 say EHLO first"));
        }
        None
    }

    async fn on_mail(&mut self, from: smtp_proto::MailFrom<String>) -> std::io::Result<Flow> {
        if let Some(refusal) = self.require_auth() {
            return self.bad(refusal).await;
        }
        if self.tx.is_some() {
            return self.bad(r(503, "5.5.1 nested MAIL command")).await;
        }
        let address = from.address.trim().to_owned();
        // the null sender (bounces) is not an app's sender: it never matches the allowed senders
        if !message::sender_allowed(&self.cfg.senders, &address) {
            self.relay.metrics.message("refused_sender", 5);
            return self.send(r(550, "5.7.1 sender address not allowed for this relay")).await.map(|_| Flow::Continue);
        }
        if from.size > self.cfg.max_message_bytes {
            self.relay.metrics.message("too_large", 5);
            return self.send(r(552, "5.3.4 message size exceeds the relay's limit")).await.map(|_| Flow::Continue);
        }
        if !self.relay.rate_ok(self.ip) {
            self.relay.metrics.message("rate_limited", 4);
            return self
                .send(r(450, "4.7.0 too many messages from this client, try later"))
                .await
                .map(|_| Flow::Continue);
        }
        let eight_bit = from.flags & smtp_proto::MAIL_BODY_8BITMIME != 0;
        let reply = match self.upstream_mail(&address, eight_bit).await {
            Ok(reply) => reply,
            Err(refusal) => return self.send(refusal).await.map(|_| Flow::Continue),
        };
        self.tx = Some(Tx::default());
        self.send(reply).await.map(|_| Flow::Continue)
    }

    /// MAIL upstream on the session kept from the last transaction, an idle one from the pool, or a new one; a
    /// reused session that turns out dead is replaced once.
    async fn upstream_mail(&mut self, from: &str, eight_bit: bool) -> Result<R, R> {
        for attempt in 0..2 {
            let mut reused = self.upstream.is_some();
            if !reused
                && attempt == 0
                && let Some(u) = self.relay.pool.take(&self.cfg)
            {
                self.relay.metrics.upstream_session("pooled");
                self.upstream = Some(u);
                reused = true;
            }
            if self.upstream.is_none() {
                match self.relay.open_upstream(&self.cfg).await {
                    Ok(u) => {
                        self.relay.metrics.upstream_session("opened");
                        self.upstream = Some(u);
                    }
                    Err(m) => {
                        info!(client = %self.ip, error = %m, "upstream session could not be opened");
                        self.relay.metrics.message("upstream_unavailable", 4);
                        return Err(r(451, "4.4.1 upstream server unavailable, try again later"));
                    }
                }
            }
            let u = self.upstream.as_mut().expect("just opened");
            let sender = if from.is_empty() { None } else { Some(from) };
            match u.mail(sender, eight_bit).await {
                Ok(reply) => return Ok(passthrough(reply.code, &reply.text)),
                // a kept session the server closed meanwhile ("421 4.4.2 timeout exceeded"): replaced once
                Err(UpstreamError::Rejected(reply)) if reused && reply.code == 421 => self.upstream = None,
                Err(UpstreamError::Rejected(reply)) => {
                    self.relay.metrics.message("upstream_refused", reply.code / 100);
                    return Err(passthrough(reply.code, &reply.text));
                }
                Err(UpstreamError::Broken(m)) => {
                    self.upstream = None;
                    if !reused {
                        info!(client = %self.ip, error = %m, "upstream failed at MAIL");
                        self.relay.metrics.message("upstream_unavailable", 4);
                        return Err(r(451, "4.4.1 upstream server unavailable, try again later"));
                    }
                }
            }
        }
        Err(r(451, "4.4.1 upstream server unavailable, try again later"))
    }

    async fn on_rcpt(&mut self, to: &str) -> std::io::Result<Flow> {
        if let Some(refusal) = self.require_auth() {
            return self.bad(refusal).await;
        }
        let max = self.cfg.max_recipients;
        let Some(tx) = self.tx.as_mut() else { return self.bad(r(503, "5.5.1 need MAIL first")).await };
        if tx.rcpts >= max {
            return self.send(r(452, "4.5.3 too many recipients")).await.map(|_| Flow::Continue);
        }
        tx.rcpts += 1;
        let Some(u) = self.upstream.as_mut() else { return self.bad(r(503, "5.5.1 need MAIL first")).await };
        let reply = match u.rcpt(to.trim()).await {
            Ok(reply) => {
                if let Some(tx) = self.tx.as_mut() {
                    tx.accepted_rcpts += 1;
                }
                passthrough(reply.code, &reply.text)
            }
            Err(UpstreamError::Rejected(reply)) => passthrough(reply.code, &reply.text),
            Err(UpstreamError::Broken(m)) => {
                info!(client = %self.ip, error = %m, "upstream failed at RCPT");
                self.upstream = None;
                self.tx = None;
                r(451, "4.4.2 upstream connection lost, try again later")
            }
        };
        self.send(reply).await.map(|_| Flow::Continue)
    }

    async fn on_data(&mut self) -> std::io::Result<Flow> {
        if let Some(refusal) = self.require_auth() {
            return self.bad(refusal).await;
        }
        match &self.tx {
            None => return self.bad(r(503, "5.5.1 need MAIL first")).await,
            Some(tx) if tx.accepted_rcpts == 0 => return self.bad(r(554, "5.5.1 no valid recipients")).await,
            Some(_) => {}
        }
        self.send(r(354, "end data with <CR><LF>.<CR><LF>")).await?;
        let started = Instant::now();
        let outcome = self.relay_body().await?;
        self.tx = None;
        self.idle_commands = 0;
        let reply = match outcome {
            Body::Sent(reply) => {
                self.relay.metrics.upstream_duration(secs(started.elapsed()));
                self.relay
                    .metrics
                    .message(if reply.code < 300 { "sent" } else { "upstream_refused" }, reply.code / 100);
                info!(client = %self.ip, code = reply.code, "message relayed");
                passthrough(reply.code, &reply.text)
            }
            Body::Refused(result, class, reply) => {
                self.relay.metrics.message(result, class);
                // the upstream holds a half-sent message or an open transaction: drop it, it is never completed
                if let Some(u) = self.upstream.take() {
                    drop(u);
                }
                reply
            }
        };
        self.send(reply).await.map(|_| Flow::Continue)
    }
}

enum Body {
    /// The upstream's final reply (positive or not).
    Sent(crate::engine::Reply),
    /// Not sent (or not completed) upstream: metric result, class, the reply for the client.
    Refused(&'static str, u16, R),
}

impl Session {
    /// Reads the body: headers first (bounded) to check From, then DATA upstream and the rest streamed line
    /// by line. Anything refused is read to its end and dropped, never buffered.
    async fn relay_body(&mut self) -> std::io::Result<Body> {
        let mut headers = Headers::default();
        let mut line = Vec::with_capacity(1024);
        let mut size = 0usize;
        let mut ended = false;
        // 1. the header block
        loop {
            let Some(l) = self.body_line(&mut line, &mut size).await? else {
                return self
                    .drain(Body::Refused("too_large", 5, r(552, "5.3.4 line too long or message too big")))
                    .await;
            };
            match l {
                BodyLine::End => {
                    ended = true;
                    break;
                }
                BodyLine::Line(bytes) => {
                    let blank = bytes == b"\r\n";
                    headers.raw.extend_from_slice(&bytes);
                    if blank {
                        break;
                    }
                    if headers.raw.len() > MAX_HEADER_BYTES {
                        return self.drain(Body::Refused("too_large", 5, r(552, "5.3.4 header block too big"))).await;
                    }
                }
            }
        }
        if let Some(refusal) = self.check_headers(&headers) {
            return if ended { Ok(refusal) } else { self.drain(refusal).await };
        }
        // 2. DATA upstream, then the headers and the rest of the body
        let u = self.upstream.as_mut().expect("transaction has an upstream");
        if let Err(e) = u.data().await {
            let refusal = upstream_refusal(e);
            return self.drain(refusal).await;
        }
        if let Err(e) = u.body_line(&headers.raw).await {
            return self.drain(upstream_refusal(e)).await;
        }
        let complete = self.stream_rest(&mut line, &mut size, !ended).await?;
        if let Some(refusal) = complete {
            return Ok(refusal);
        }
        let u = self.upstream.as_mut().expect("transaction has an upstream");
        match u.end_data().await {
            Ok(reply) => Ok(Body::Sent(reply)),
            Err(UpstreamError::Rejected(reply)) => Ok(Body::Sent(reply)),
            Err(UpstreamError::Broken(m)) => {
                info!(client = %self.ip, error = %m, "upstream failed after DATA");
                Ok(Body::Refused(
                    "upstream_failed",
                    4,
                    r(451, "4.4.2 upstream connection lost; the message was NOT accepted, try again"),
                ))
            }
        }
    }

    /// Streams the body after the headers; `Some(refusal)` when it could not be completed.
    async fn stream_rest(&mut self, line: &mut Vec<u8>, size: &mut usize, more: bool) -> std::io::Result<Option<Body>> {
        if !more {
            return Ok(None);
        }
        loop {
            let Some(l) = self.body_line(line, size).await? else {
                let refusal = Body::Refused("too_large", 5, r(552, "5.3.4 message size exceeds the relay's limit"));
                return self.drain(refusal).await.map(Some);
            };
            let BodyLine::Line(bytes) = l else { return Ok(None) };
            let u = self.upstream.as_mut().expect("transaction has an upstream");
            if let Err(e) = u.body_line(&bytes).await {
                return self.drain(upstream_refusal(e)).await.map(Some);
            }
        }
    }

    /// One body line; `None` when the line or the message is over the limit (the rest is then drained).
    async fn body_line(&mut self, line: &mut Vec<u8>, size: &mut usize) -> std::io::Result<Option<BodyLine>> {
        match self.client().read_line(line, MAX_BODY_LINE).await? {
            Line::Eof => Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "client left during DATA")),
            Line::TooLong => Ok(None),
            Line::Full => {
                *size += line.len();
                let l = message::body_line(line);
                if l != BodyLine::End && *size > self.cfg.max_message_bytes {
                    return Ok(None);
                }
                Ok(Some(l))
            }
        }
    }

    /// Reads and drops the rest of the body up to the end-of-data line, then returns `refusal`.
    async fn drain(&mut self, refusal: Body) -> std::io::Result<Body> {
        let mut line = Vec::with_capacity(1024);
        loop {
            match self.client().read_line(&mut line, MAX_BODY_LINE).await? {
                Line::Eof => {
                    return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "client left during DATA"));
                }
                Line::TooLong => {}
                Line::Full => {
                    if message::body_line(&line) == BodyLine::End {
                        return Ok(refusal);
                    }
                }
            }
        }
    }

    fn check_headers(&self, headers: &Headers) -> Option<Body> {
        let from = match headers.sender_addresses() {
            Ok(f) => f,
            Err(_) => {
                return Some(Body::Refused("refused_sender", 5, r(550, "5.7.1 the From header cannot be parsed")));
            }
        };
        let bad = from.iter().find(|a| !message::sender_allowed(&self.cfg.senders, a));
        if bad.is_some() {
            return Some(Body::Refused(
                "refused_sender",
                5,
                r(550, "5.7.1 header From address not allowed for this relay"),
            ));
        }
        None
    }
}

fn upstream_refusal(e: UpstreamError) -> Body {
    match e {
        UpstreamError::Rejected(reply) => {
            Body::Refused("upstream_refused", reply.code / 100, passthrough(reply.code, &reply.text))
        }
        UpstreamError::Broken(_) => Body::Refused(
            "upstream_failed",
            4,
            r(451, "4.4.2 upstream connection lost; the message was NOT accepted, try again"),
        ),
    }
}
