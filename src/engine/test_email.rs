//! The test-email steps: MAIL FROM, RCPT TO, DATA. `pub(crate)` so a relay's upstream session can send a
//! message over a [`Connection`] opened by [`super::session::establish`].

use lettre::Address;
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};

use super::connection::{Connection, StepError, fail};
use super::message::Prepared;
use super::progress::Progress;
use super::reply::display;
use super::{Failure, Reason, Reply, Step};

/// Sends the prepared message; returns the server's final reply to DATA (e.g. "250 2.0.0 OK queued as 1A2B").
pub(crate) async fn send(c: &mut Connection, p: &mut Progress, m: &Prepared) -> Result<String, Failure> {
    p.step(Step::MailFrom);
    mail_from(c, &m.envelope_from).await?;
    p.step(Step::RcptTo);
    for rcpt in &m.recipients {
        rcpt_to(c, rcpt).await?;
    }
    p.step(Step::Data);
    data(c, &m.formatted).await
}

/// MAIL FROM:<from>.
pub(crate) async fn mail_from(c: &mut Connection, from: &Address) -> Result<(), Failure> {
    c.expect(Step::MailFrom, Mail::new(Some(from.clone()), vec![]), &[250], |r| {
        fail(
            Step::MailFrom,
            Reason::SenderRejected,
            format!(
                "the server rejected the sender <{from}>: {}; {}",
                display(&r),
                unless_temporary(&r, "spec.from must be an address the account may send as")
            ),
            Some(r),
        )
    })
    .await
    .map(drop)
}

/// RCPT TO:<rcpt> (250 or 251).
pub(crate) async fn rcpt_to(c: &mut Connection, rcpt: &Address) -> Result<(), Failure> {
    c.expect(Step::RcptTo, Rcpt::new(rcpt.clone(), vec![]), &[250, 251], |r| {
        fail(
            Step::RcptTo,
            Reason::RecipientRejected,
            format!(
                "the server rejected the recipient <{rcpt}>: {}; {}",
                display(&r),
                unless_temporary(&r, "check spec.testEmail.to")
            ),
            Some(r),
        )
    })
    .await
    .map(drop)
}

/// DATA, the content (dot-stuffed by lettre), and the final reply, which must be 250.
pub(crate) async fn data(c: &mut Connection, formatted: &[u8]) -> Result<String, Failure> {
    let reject = |r: Reply| {
        fail(
            Step::Data,
            Reason::MessageRejected,
            format!(
                "the server rejected the test message: {}; {}",
                display(&r),
                unless_temporary(&r, "the reply says why (content filter, size, mailbox); fix that and request again")
            ),
            Some(r),
        )
    };
    c.expect(Step::Data, Data, &[354], reject).await?;
    let r = match c.message(Step::Data, formatted).await {
        Ok(r) => r,
        Err(StepError::Rejected(r)) => return Err(reject(r)),
        Err(StepError::Broken(f)) => return Err(f),
    };
    let reply = c.reply_of(&r);
    if reply.code != 250 {
        return Err(fail(
            Step::Data,
            Reason::ProtocolError,
            format!("expected 250 after the message, the server replied {}", display(&reply)),
            Some(reply),
        ));
    }
    Ok(display(&reply))
}

/// The hint for a refusal: `permanent`, or for a 4xx reply that it was temporary.
fn unless_temporary<'a>(r: &Reply, permanent: &'a str) -> &'a str {
    if (400..500).contains(&r.code) {
        "a temporary failure on the server's side (4xx): request the test email again later"
    } else {
        permanent
    }
}
