//! An upstream session that carries mail for the relay (src/relay/): the same steps as a check (port and
//! address policy, connect, TLS as configured, EHLO, AUTH) through [`super::session::establish`], then MAIL,
//! RCPT, DATA on the kept [`Connection`]. The message body is streamed: the caller hands over lines as they
//! arrive. Connecting and AUTH share one budget of `CheckRequest::timeout`; each later command gets its own.

use std::net::SocketAddr;
use std::time::Duration;

use lettre::Address;
use lettre::transport::smtp::commands::{Data, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
use tokio::io::AsyncWriteExt;

use super::budget::Budget;
use super::connection::{Connection, StepError};
use super::progress::Progress;
use super::session;
use super::stream::DeadlineStream;
use super::{CheckRequest, Failure, Reason, Reply, Step};

/// What an upstream command ended in, besides a positive reply.
#[derive(Debug)]
pub enum UpstreamError {
    /// The upstream's own negative reply (sanitized: no credential, no control character, truncated).
    Rejected(Reply),
    /// No usable reply (timeout, closed connection, garbage); the session is unusable.
    Broken(String),
}

/// An authenticated upstream session.
pub struct Upstream {
    conn: Connection,
    peer: SocketAddr,
    timeout: Duration,
    body: Option<DeadlineStream>,
    /// The mechanism AUTH used, if any.
    pub auth_mechanism: Option<String>,
}

/// Connects and authenticates exactly like a check of `req` (its `test_message` is ignored).
pub async fn open(req: &CheckRequest) -> Result<Upstream, Failure> {
    let mut req = req.clone();
    req.test_message = None;
    let mut p = Progress::new();
    let conn = session::establish(&req, Budget::new(req.timeout), &mut p).await?;
    let Some(peer) = p.peer else {
        return Err(Failure {
            step: Step::Connect,
            reason: Reason::ConnectionFailed,
            message: "no session".into(),
            reply: None,
        });
    };
    Ok(Upstream { conn, peer, timeout: req.timeout, body: None, auth_mechanism: p.auth_mechanism.take() })
}

impl Upstream {
    fn positive(&self, r: Result<Response, StepError>) -> Result<Reply, UpstreamError> {
        match r {
            Ok(resp) => Ok(self.conn.reply_of(&resp)),
            Err(StepError::Rejected(reply)) => Err(UpstreamError::Rejected(reply)),
            Err(StepError::Broken(f)) => Err(UpstreamError::Broken(f.message)),
        }
    }

    /// `MAIL FROM:<from>` (`None` = the null sender); `eight_bit` adds `BODY=8BITMIME`.
    pub async fn mail(&mut self, from: Option<&str>, eight_bit: bool) -> Result<Reply, UpstreamError> {
        let from = match from.map(str::parse::<Address>).transpose() {
            Ok(a) => a,
            Err(e) => return Err(UpstreamError::Rejected(Reply { code: 553, text: format!("5.1.7 {e}") })),
        };
        let params = if eight_bit { vec![MailParameter::Body(MailBodyParameter::EightBitMime)] } else { vec![] };
        self.conn.renew_budget(self.timeout);
        let r = self.conn.cmd(Step::MailFrom, Mail::new(from, params)).await;
        self.positive(r)
    }

    /// `RCPT TO:<to>`.
    pub async fn rcpt(&mut self, to: &str) -> Result<Reply, UpstreamError> {
        let to = to
            .parse::<Address>()
            .map_err(|e| UpstreamError::Rejected(Reply { code: 553, text: format!("5.1.3 {e}") }))?;
        self.conn.renew_budget(self.timeout);
        let r = self.conn.cmd(Step::RcptTo, Rcpt::new(to, vec![])).await;
        self.positive(r)
    }

    /// `DATA`; on `354` the body can follow through [`Upstream::body_line`].
    pub async fn data(&mut self) -> Result<Reply, UpstreamError> {
        self.conn.renew_budget(self.timeout);
        let r = self.conn.cmd(Step::Data, Data).await;
        let reply = self.positive(r)?;
        self.body = Some(self.conn.handle.writer(self.peer));
        Ok(reply)
    }

    /// Writes body bytes as they go on the wire (CRLF lines, already dot-stuffed).
    pub async fn body_line(&mut self, bytes: &[u8]) -> Result<(), UpstreamError> {
        self.conn.renew_budget(self.timeout);
        let Some(w) = self.body.as_mut() else { return Err(UpstreamError::Broken("DATA was not accepted".into())) };
        w.write_all(bytes).await.map_err(|e| UpstreamError::Broken(format!("writing the message upstream: {e}")))
    }

    /// Ends the body (`.`) and returns the upstream's final reply.
    pub async fn end_data(&mut self) -> Result<Reply, UpstreamError> {
        self.conn.renew_budget(self.timeout);
        let Some(mut w) = self.body.take() else { return Err(UpstreamError::Broken("DATA was not accepted".into())) };
        w.write_all(b".\r\n").await.map_err(|e| UpstreamError::Broken(format!("ending the message upstream: {e}")))?;
        w.flush().await.map_err(|e| UpstreamError::Broken(format!("ending the message upstream: {e}")))?;
        let r = self.conn.read_reply(Step::Data).await;
        self.positive(r)
    }

    /// True between an accepted `DATA` and the end of the body: the session then holds a half-sent message and
    /// can only be dropped (the upstream discards a body that never ended), never reused.
    pub fn in_data(&self) -> bool {
        self.body.is_some()
    }

    /// `RSET`, to reuse the session for the next transaction.
    pub async fn rset(&mut self) -> Result<Reply, UpstreamError> {
        self.conn.renew_budget(self.timeout);
        let r = self.conn.cmd(Step::Quit, Rset).await;
        self.positive(r)
    }

    /// `QUIT` without caring for the answer.
    pub async fn quit(mut self) {
        self.conn.renew_budget(Duration::from_secs(5));
        self.conn.quit().await;
    }
}
