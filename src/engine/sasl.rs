//! SASL over SMTP AUTH: PLAIN, LOGIN and XOAUTH2.
//!
//! Written on top of lettre's `AsyncConnectionConnection::command` with our own command types instead of lettre's
//! `auth()`: lettre's XOAUTH2 always sends the initial response inline (no 512-byte fallback, no handling of
//! the failure challenge that carries the JSON error), and its `Credentials` are plain `String`s. Here every
//! credential stays a [`SecretValue`] until the line is written, and the server's replies are masked before
//! they reach a report.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use lettre::transport::smtp::response::Response;

use super::connection::{Connection, StepError};
use super::credentials::{Line, SecretLine, b64 as base64_of, plain_payload, xoauth2_payload};
use super::reply::display;
use super::{Credentials, Failure, PasswordMechanism, Reason, Reply, SecretValue, Step};

/// RFC 5321 command line limit (including CRLF); a longer inline AUTH line may be cut or refused.
pub(crate) const MAX_COMMAND_LINE: usize = 512;

/// A mechanism the engine speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mechanism {
    Plain,
    Login,
    XOAuth2,
}

impl Mechanism {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::XOAuth2 => "XOAUTH2",
        }
    }
}

/// Summarises the JSON error of an XOAUTH2 failure challenge (`{"status":"401","schemes":"Bearer",...}`):
/// only the known, non-secret fields.
pub(crate) fn describe_xoauth2_error(challenge_b64: &str) -> Option<String> {
    let raw = B64.decode(challenge_b64.trim()).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&raw).ok()?;
    let obj = v.as_object()?;
    let mut parts = Vec::new();
    for key in ["status", "schemes", "scope"] {
        if let Some(val) = obj.get(key) {
            let s = match val {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let s: String = s.chars().filter(|&c| !super::sanitize::is_stripped(c)).take(100).collect();
            parts.push(format!("{key} {s}"));
        }
    }
    if parts.is_empty() { None } else { Some(parts.join(", ")) }
}

fn offered_list(offered: &[String]) -> String {
    if offered.is_empty() { "no AUTH mechanisms".to_owned() } else { offered.join(", ") }
}

/// Picks the mechanism: for passwords the first of `mechanisms` (empty = PLAIN, LOGIN) the server offers; for
/// XOAUTH2 the server must offer XOAUTH2.
pub(crate) fn choose(credentials: &Credentials, offered: &[String]) -> Result<Option<Mechanism>, Failure> {
    let has = |m: &str| offered.iter().any(|o| o.eq_ignore_ascii_case(m));
    let not_offered = |wanted: &str, what_to_do: &str| Failure {
        step: Step::Auth,
        reason: Reason::AuthMechanismNotOffered,
        message: format!("the server offers {} but the check needs {wanted}; {what_to_do}", offered_list(offered)),
        reply: None,
    };
    match credentials {
        Credentials::None => Ok(None),
        Credentials::Password { mechanisms, .. } => {
            let wanted: Vec<PasswordMechanism> = if mechanisms.is_empty() {
                vec![PasswordMechanism::Plain, PasswordMechanism::Login]
            } else {
                mechanisms.clone()
            };
            for m in &wanted {
                let mech = match m {
                    PasswordMechanism::Plain => Mechanism::Plain,
                    PasswordMechanism::Login => Mechanism::Login,
                };
                if has(mech.as_str()) {
                    return Ok(Some(mech));
                }
            }
            let names: Vec<&str> = wanted
                .iter()
                .map(|m| match m {
                    PasswordMechanism::Plain => "PLAIN",
                    PasswordMechanism::Login => "LOGIN",
                })
                .collect();
            Err(not_offered(
                &names.join(" or "),
                if offered.is_empty() {
                    "the server does not accept AUTH here (with StartTLS/ImplicitTLS many servers offer AUTH only \
                     after TLS); check spec.tls.mode, or set spec.auth.type None if the server needs no login"
                } else {
                    "set spec.auth.basic.mechanisms to one the server offers, or use the matching auth type"
                },
            ))
        }
        Credentials::XOAuth2 { .. } => {
            if has("XOAUTH2") {
                Ok(Some(Mechanism::XOAuth2))
            } else {
                Err(not_offered(
                    "XOAUTH2",
                    "use spec.auth.type Basic, or a server endpoint that supports OAuth2 (XOAUTH2)",
                ))
            }
        }
    }
}

fn auth_failed(reply: Reply, mechanism: Mechanism, hint: &str) -> Failure {
    let reason = if reply.code == 504 { Reason::AuthMechanismNotOffered } else { Reason::AuthenticationFailed };
    let hint = known_refusal(&reply).unwrap_or(hint);
    Failure {
        step: Step::Auth,
        reason,
        message: format!("AUTH {} failed: the server replied {}; {hint}", mechanism.as_str(), display(&reply)),
        reply: Some(reply),
    }
}

/// What to do about AUTH refusals that are not about a wrong password, recognised by their enhanced status code.
fn known_refusal(reply: &Reply) -> Option<&'static str> {
    let text = reply.text.as_str();
    if text.starts_with("5.7.139") || text.contains("SmtpClientAuthentication") {
        // Microsoft 365: SMTP AUTH is off for the tenant or the mailbox
        Some(
            "SMTP AUTH is disabled for this mailbox or its tenant (Microsoft 365): enable Authenticated SMTP for \
             the mailbox (or turn SmtpClientAuthenticationDisabled off for the tenant), or use spec.auth.type \
             OAuth2",
        )
    } else if reply.code == 534 || text.starts_with("5.7.9") {
        // Google: the account has 2-step verification and refuses its normal password
        Some(
            "the account requires an app password (2-step verification is on): create an app password for the \
             account and put it into the referenced Secret, or use spec.auth.type OAuth2",
        )
    } else if (400..500).contains(&reply.code) {
        Some(
            "a temporary failure on the server's side (4xx), not a verdict on the credentials: nothing to change \
             unless it persists; the check is retried with backoff",
        )
    } else {
        None
    }
}

fn unexpected(smtp: &Connection, r: &Response, mechanism: Mechanism, waiting_for: &str) -> Failure {
    let reply = smtp.reply_of(r);
    Failure {
        step: Step::Auth,
        reason: Reason::ProtocolError,
        message: format!("AUTH {}: expected {waiting_for}, the server replied {}", mechanism.as_str(), display(&reply)),
        reply: Some(reply),
    }
}

fn code(r: &Response) -> u16 {
    u16::from(r.code())
}

/// Runs the AUTH exchange for `mechanism`.
pub(crate) async fn authenticate(
    smtp: &mut Connection,
    credentials: &Credentials,
    mechanism: Mechanism,
) -> Result<(), Failure> {
    const PASSWORD_HINT: &str = "check spec.auth.basic.username and the password in the referenced Secret";
    match (credentials, mechanism) {
        (Credentials::Password { username, password, .. }, Mechanism::Plain) => {
            let payload = plain_payload(username, password);
            let b64 = payload.expose_str().unwrap_or_default();
            let inline = SecretLine::new(format!("AUTH PLAIN {b64}"));
            let r = if inline.wire_len() > MAX_COMMAND_LINE {
                // too long for one line: initial response after the empty challenge (RFC 4954)
                let r = step(smtp, Line("AUTH PLAIN"), mechanism, PASSWORD_HINT).await?;
                if code(&r) != 334 {
                    return Err(unexpected(smtp, &r, mechanism, "334"));
                }
                step(smtp, SecretLine::new(b64.to_owned()), mechanism, PASSWORD_HINT).await?
            } else {
                let r = step(smtp, inline, mechanism, PASSWORD_HINT).await?;
                if code(&r) == 334 {
                    // the server wants the response on its own line
                    step(smtp, SecretLine::new(b64.to_owned()), mechanism, PASSWORD_HINT).await?
                } else {
                    r
                }
            };
            expect_235(smtp, &r, mechanism)
        }
        (Credentials::Password { username, password, .. }, Mechanism::Login) => {
            let r = step(smtp, Line("AUTH LOGIN"), mechanism, PASSWORD_HINT).await?;
            if code(&r) != 334 {
                return Err(unexpected(smtp, &r, mechanism, "334 (username challenge)"));
            }
            let user = SecretLine::new(base64_of(username.as_bytes()).expose_str().unwrap_or_default().to_owned());
            let r = step(smtp, user, mechanism, PASSWORD_HINT).await?;
            if code(&r) != 334 {
                return Err(unexpected(smtp, &r, mechanism, "334 (password challenge)"));
            }
            let pass = base64_of(password.expose());
            let line = SecretLine::new(pass.expose_str().unwrap_or_default().to_owned());
            let r = step(smtp, line, mechanism, PASSWORD_HINT).await?;
            expect_235(smtp, &r, mechanism)
        }
        (Credentials::XOAuth2 { username, token }, Mechanism::XOAuth2) => xoauth2(smtp, username, token).await,
        _ => Err(Failure {
            step: Step::Auth,
            reason: Reason::AuthMechanismNotOffered,
            message: format!("AUTH {} does not fit the configured credentials", mechanism.as_str()),
            reply: None,
        }),
    }
}

fn expect_235(smtp: &Connection, r: &Response, mechanism: Mechanism) -> Result<(), Failure> {
    if code(r) == 235 { Ok(()) } else { Err(unexpected(smtp, r, mechanism, "235 (authentication succeeded)")) }
}

/// Sends one AUTH line; a negative reply becomes AuthenticationFailed.
async fn step(
    smtp: &mut Connection,
    line: impl fmt::Display,
    mechanism: Mechanism,
    hint: &str,
) -> Result<Response, Failure> {
    match smtp.cmd(Step::Auth, line).await {
        Ok(r) => Ok(r),
        Err(StepError::Rejected(reply)) => Err(auth_failed(reply, mechanism, hint)),
        Err(StepError::Broken(f)) => Err(f),
    }
}

const XOAUTH2_HINT: &str = "check spec.auth.oauth2.username (the mailbox) and that the OAuth2 client may send \
                            mail as it (e.g. SMTP.Send permission or the mail scope)";

async fn xoauth2(smtp: &mut Connection, username: &str, token: &SecretValue) -> Result<(), Failure> {
    let m = Mechanism::XOAuth2;
    let payload = xoauth2_payload(username, token);
    let b64 = payload.expose_str().unwrap_or_default();
    let inline = SecretLine::new(format!("AUTH XOAUTH2 {b64}"));

    let mut r = if inline.wire_len() > MAX_COMMAND_LINE {
        drop(inline);
        two_step(smtp, b64).await?
    } else {
        match smtp.cmd(Step::Auth, inline).await {
            Ok(r) => r,
            // "500 line too long" / "501 syntax" to the inline form: retry once with the empty challenge
            Err(StepError::Rejected(reply)) if reply.code == 500 || reply.code == 501 => two_step(smtp, b64).await?,
            Err(StepError::Rejected(reply)) => return Err(auth_failed(reply, m, XOAUTH2_HINT)),
            Err(StepError::Broken(f)) => return Err(f),
        }
    };
    if code(&r) == 334 {
        // failure challenge: base64 JSON describing the error; answer with an empty line, then read the 5xx
        let detail = r.message().next().and_then(describe_xoauth2_error);
        r = match smtp.cmd(Step::Auth, Line("")).await {
            Ok(r) => r,
            Err(StepError::Rejected(reply)) => {
                let shown = display(&reply);
                let mut f = auth_failed(reply, m, XOAUTH2_HINT);
                if let Some(d) = detail {
                    f.message = format!(
                        "AUTH XOAUTH2 failed: the server refused the access token ({d}) and replied {shown}; {XOAUTH2_HINT}"
                    );
                }
                return Err(f);
            }
            Err(StepError::Broken(f)) => return Err(f),
        };
    }
    expect_235(smtp, &r, m)
}

/// `AUTH XOAUTH2` alone, the empty 334 challenge, then the initial response on its own line.
async fn two_step(smtp: &mut Connection, b64: &str) -> Result<Response, Failure> {
    let m = Mechanism::XOAuth2;
    let r = step(smtp, Line("AUTH XOAUTH2"), m, XOAUTH2_HINT).await?;
    if code(&r) != 334 {
        return Err(unexpected(smtp, &r, m, "334 (empty challenge)"));
    }
    step(smtp, SecretLine::new(b64.to_owned()), m, XOAUTH2_HINT).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xoauth2_error_summary_keeps_known_fields_only() {
        let c = B64.encode(br#"{"status":"401","schemes":"Bearer","scope":"https://mail.google.com/","extra":"x"}"#);
        assert_eq!(describe_xoauth2_error(&c).unwrap(), "status 401, schemes Bearer, scope https://mail.google.com/");
        assert!(describe_xoauth2_error("not base64!").is_none());
        assert!(describe_xoauth2_error(&B64.encode(b"[1]")).is_none());
    }

    #[test]
    fn mechanism_choice() {
        let pw = |m: Vec<PasswordMechanism>| Credentials::Password {
            username: "u".into(),
            password: SecretValue::new("p"),
            mechanisms: m,
        };
        let offered = vec!["LOGIN".to_owned(), "PLAIN".to_owned()];
        assert_eq!(choose(&pw(vec![]), &offered).unwrap(), Some(Mechanism::Plain));
        assert_eq!(choose(&pw(vec![PasswordMechanism::Login]), &offered).unwrap(), Some(Mechanism::Login));
        let f = choose(&pw(vec![PasswordMechanism::Plain]), &["LOGIN".to_owned()]).unwrap_err();
        assert_eq!(f.reason, Reason::AuthMechanismNotOffered);
        assert!(f.message.contains("offers LOGIN"), "{}", f.message);
        let x = Credentials::XOAuth2 { username: "u".into(), token: SecretValue::new("t") };
        assert_eq!(choose(&x, &["XOAUTH2".to_owned()]).unwrap(), Some(Mechanism::XOAuth2));
        assert_eq!(choose(&x, &offered).unwrap_err().reason, Reason::AuthMechanismNotOffered);
        assert_eq!(choose(&Credentials::None, &[]).unwrap(), None);
    }
}
