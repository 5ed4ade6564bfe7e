//! The test email: envelope and RFC 5322 message, built with lettre's message builder before any connection
//! (so an invalid address fails the check without touching the network).

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{Address, Message};

use super::{Failure, Reason, Step, TestMessage};

/// A test email ready to send.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) envelope_from: Address,
    pub(crate) recipients: Vec<Address>,
    pub(crate) formatted: Vec<u8>,
}

fn invalid(reason: Reason, message: String) -> Failure {
    Failure { step: Step::Policy, reason, message, reply: None }
}

/// Validates and builds `m`: From = the full `from` (display name kept), To = the recipients, Subject, Date,
/// Message-ID, a text/plain body.
pub(crate) fn prepare(m: &TestMessage) -> Result<Prepared, Failure> {
    let from: Mailbox = m.from.trim().parse().map_err(|e| {
        invalid(
            Reason::InvalidFromAddress,
            format!(
                "spec.from {:?} is not a valid address ({e}); use `addr@example.com` or `Name <addr@example.com>`",
                m.from
            ),
        )
    })?;
    if m.to.is_empty() {
        return Err(invalid(
            Reason::InvalidSpec,
            "a test email needs at least one recipient in spec.testEmail.to".into(),
        ));
    }
    let mut builder = Message::builder()
        .from(from.clone())
        .subject(m.subject.clone())
        .date_now()
        .message_id(None)
        .header(ContentType::TEXT_PLAIN);
    let mut recipients = Vec::with_capacity(m.to.len());
    for to in &m.to {
        let mb: Mailbox = to.trim().parse().map_err(|e| {
            invalid(
                Reason::InvalidSpec,
                format!("test email recipient {to:?} is not a valid address ({e}); fix spec.testEmail.to"),
            )
        })?;
        recipients.push(mb.email.clone());
        builder = builder.to(mb);
    }
    let message = builder
        .body(m.body.clone())
        .map_err(|e| invalid(Reason::InvalidSpec, format!("the test email could not be built: {e}")))?;
    Ok(Prepared { envelope_from: from.email, recipients, formatted: message.formatted() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(from: &str, to: &[&str]) -> TestMessage {
        TestMessage {
            from: from.into(),
            to: to.iter().map(|s| s.to_string()).collect(),
            subject: "Test from smtp-operator".into(),
            body: "hello\n.\nworld".into(),
        }
    }

    #[test]
    fn builds_headers_and_envelope() {
        let p = prepare(&msg("Platform Alerts <alerts@example.com>", &["ops@example.com", "Dev <dev@example.org>"]))
            .unwrap();
        assert_eq!(p.envelope_from.to_string(), "alerts@example.com");
        assert_eq!(
            p.recipients.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            ["ops@example.com", "dev@example.org"]
        );
        let text = String::from_utf8(p.formatted).unwrap();
        for h in [
            "From: \"Platform Alerts\" <alerts@example.com>",
            "To: ",
            "Subject: Test from smtp-operator",
            "Date: ",
            "Message-ID: <",
        ] {
            assert!(text.contains(h), "missing {h} in {text}");
        }
    }

    #[test]
    fn invalid_addresses_are_reported() {
        assert_eq!(prepare(&msg("not an address", &["a@b.c"])).unwrap_err().reason, Reason::InvalidFromAddress);
        assert_eq!(prepare(&msg("a@b.c", &["nope"])).unwrap_err().reason, Reason::InvalidSpec);
        assert_eq!(prepare(&msg("a@b.c", &[])).unwrap_err().reason, Reason::InvalidSpec);
    }
}
