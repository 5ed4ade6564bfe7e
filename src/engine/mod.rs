//! The SMTP check engine. It knows nothing about Kubernetes: input is a [`CheckRequest`] (settings, resolved
//! credentials, trust anchors, dial policy), output a [`Report`]. Used by the controller and by
//! `smtp-operator check`.
//!
//! Steps: resolve → policy on the resolved address → TCP connect → implicit TLS or plain → greeting → EHLO →
//! STARTTLS → EHLO → AUTH → (test email: MAIL FROM, RCPT TO, DATA) → QUIT. The whole check runs within one
//! [`Budget`] of [`CheckRequest::timeout`].
//!
//! Files: [`session`] runs the steps in order; `connection` holds the SMTP connection and the step errors;
//! `starttls`, `sasl` (AUTH) and `test_email` are the steps; `credentials` builds every wire form of a
//! credential; [`sanitize`] cleans everything a peer says; `dial`, `tls` and `stream` are the transport.

pub mod budget;
mod connection;
mod credentials;
mod diagnose;
mod dial;
mod ehlo;
mod message;
mod progress;
pub mod reason;
mod reply;
pub mod sanitize;
mod sasl;
pub mod secret;
pub(crate) mod session;
mod starttls;
mod stream;
pub(crate) mod test_email;
mod tls;
pub mod token;
pub mod upstream;
pub mod x509;

pub use crate::vocabulary::{FailureClass, Reason, Step};
pub use budget::Budget;
pub use secret::SecretValue;
pub use x509::CertificateInfo;
// The CIDR maths lives with its parser in `policy` (pure, no Kubernetes); the dial policy uses it.
pub use crate::policy::IpNet;

use std::time::Duration;

/// TLS mode of the connection (mirrors the API's `tls.mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    None,
    StartTls,
    ImplicitTls,
}

/// Lowest TLS version accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsVersion {
    V1_2,
    V1_3,
}

impl TlsVersion {
    /// "1.2" / "1.3", as written in status.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsVersion::V1_2 => "1.2",
            TlsVersion::V1_3 => "1.3",
        }
    }
}

/// TLS settings.
#[derive(Clone, Debug)]
pub struct TlsOptions {
    pub mode: TlsMode,
    pub min_version: TlsVersion,
    /// Extra trust anchors (DER), added to the webpki roots.
    pub extra_roots: Vec<Vec<u8>>,
    /// Skip certificate and host-name verification (reported by the caller every time).
    pub insecure_skip_verify: bool,
}

/// A SASL mechanism for password authentication.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PasswordMechanism {
    Plain,
    Login,
}

/// What to authenticate with.
#[derive(Clone, Debug)]
pub enum Credentials {
    /// No AUTH.
    None,
    /// PLAIN/LOGIN. `mechanisms` empty = what the server offers, PLAIN first.
    Password { username: String, password: SecretValue, mechanisms: Vec<PasswordMechanism> },
    /// SASL XOAUTH2 with an access token already obtained.
    XOAuth2 { username: String, token: SecretValue },
}

/// A test message to send after AUTH.
#[derive(Clone, Debug)]
pub struct TestMessage {
    /// `spec.from` as written (`addr` or `Name <addr>`).
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    pub body: String,
}

/// Where a check may connect (the security policy; empty = allow all). Checked on the resolved address,
/// which is then dialled as is (no second resolution).
#[derive(Clone, Debug, Default)]
pub struct DialPolicy {
    /// Ports that may be dialled; empty = any.
    pub allowed_ports: Vec<u16>,
    /// Address ranges that may not be dialled.
    pub denied: Vec<IpNet>,
}

/// Everything one check needs.
#[derive(Clone, Debug)]
pub struct CheckRequest {
    /// Host name or IP literal; also the TLS server name.
    pub server: String,
    pub port: u16,
    pub tls: TlsOptions,
    pub credentials: Credentials,
    /// Name sent in EHLO.
    pub helo_name: String,
    /// The budget of the whole check (docs/operations.md): every step gets what is left of it.
    pub timeout: Duration,
    pub policy: DialPolicy,
    /// Send this message after AUTH (a test email); `None` = just QUIT.
    pub test_message: Option<TestMessage>,
}

/// The server's reply to the step that failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// Reply text, lines joined by a space, truncated, never containing a credential.
    pub text: String,
}

/// Why a check failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub step: Step,
    pub reason: Reason,
    /// Human-readable cause: what went wrong and what to do next. No credential, no timestamp.
    pub message: String,
    pub reply: Option<Reply>,
}

impl Failure {
    /// The class of a failure of the SMTP side (a token failure is classed by the token client, see
    /// `check::run_classified`): a 4xx reply and a refused, timed-out or dropped connection are transient;
    /// a 5xx reply and everything else (certificates, TLS, policy, configuration) permanent.
    pub fn class(&self) -> FailureClass {
        match (&self.reply, self.reason) {
            (Some(r), _) if (400..500).contains(&r.code) => FailureClass::Transient,
            (Some(_), _) => FailureClass::Permanent,
            (None, Reason::ConnectionRefused | Reason::ConnectionTimedOut | Reason::ConnectionFailed) => {
                FailureClass::Transient
            }
            (None, _) => FailureClass::Permanent,
        }
    }
}

/// The result of a check.
#[derive(Clone, Debug)]
pub struct Report {
    /// The connectivity check: `Ok` when connect, TLS and AUTH passed. Never a failure of the test email
    /// (see [`Report::test_email`]).
    pub outcome: Result<(), Failure>,
    /// The furthest step reached (the failing one, or `Quit`).
    pub last_step: Step,
    /// Negotiated TLS version ("1.2"/"1.3"), when TLS was used.
    pub tls_version: Option<String>,
    /// AUTH mechanisms the server advertised (upper case, as advertised after TLS).
    pub server_mechanisms: Vec<String>,
    /// The mechanism used, when AUTH ran (e.g. "PLAIN", "XOAUTH2").
    pub auth_mechanism: Option<String>,
    /// The address actually dialled.
    pub peer: Option<std::net::SocketAddr>,
    /// The certificates the server presented in the TLS handshake, leaf first (those this engine could read),
    /// for the early warnings (docs/api.md). Empty without TLS or before the handshake.
    pub certificates: Vec<CertificateInfo>,
    /// AUTH mechanisms the server advertised on the plain connection before STARTTLS (`tls.mode: StartTLS`):
    /// an early warning (`AuthOverPlaintextOffered`), since a client that does not insist on STARTTLS would
    /// send its credentials in clear text there.
    pub plaintext_auth: Vec<String>,
    /// The certificates the OAuth2 token endpoint presented when the token in use was fetched (leaf first);
    /// empty without OAuth2. Filled by `crate::check`, which obtains the token.
    pub token_certificates: Vec<CertificateInfo>,
    /// Time spent per step, in order.
    pub step_durations: Vec<(Step, Duration)>,
    pub duration: Duration,
    /// The test email, when one was asked for and the connectivity check passed: `Ok` with the final reply to
    /// DATA (e.g. "250 2.0.0 OK queued as 1A2B"), or the failure of MAIL FROM, RCPT TO or DATA (a rejection,
    /// a timeout, a dropped connection). `None` when none was asked for or the check failed before it.
    pub test_email: Option<Result<String, Failure>>,
}

impl Report {
    /// True when the connectivity check passed (whatever became of the test email).
    pub fn succeeded(&self) -> bool {
        self.outcome.is_ok()
    }

    /// The failure of the test email, if it was attempted and failed.
    pub fn test_email_failure(&self) -> Option<&Failure> {
        self.test_email.as_ref().and_then(|r| r.as_ref().err())
    }
}

/// Runs one check within a budget of [`CheckRequest::timeout`]. Never panics; every failure is a [`Failure`]
/// in the report.
pub async fn run(request: &CheckRequest) -> Report {
    run_within(request, Budget::new(request.timeout)).await
}

/// Runs one check within what is left of `budget` (e.g. after the token request of the same check).
pub async fn run_within(request: &CheckRequest, budget: Budget) -> Report {
    let mut progress = progress::Progress::new();
    let outcome = session::check(request, budget, &mut progress).await;
    progress.into_report(outcome)
}
