//! The SMTP check engine. It knows nothing about Kubernetes: input is a [`CheckRequest`] (settings, resolved
//! credentials, trust anchors, dial policy), output a [`Report`]. Used by the controller and by
//! `smtp-operator check`.
//!
//! Steps: resolve → policy on the resolved address → TCP connect → implicit TLS or plain → greeting → EHLO →
//! STARTTLS → EHLO → AUTH → (test email: MAIL FROM, RCPT TO, DATA) → QUIT. Every step is bounded by
//! [`CheckRequest::timeout`].

mod dial;
mod message;
pub mod reason;
mod reply;
mod sasl;
pub mod secret;
mod session;
mod stream;
mod tls;
pub mod token;
pub mod upstream;

pub use reason::{Reason, Step};
pub use secret::SecretValue;
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
    /// Bound for every single network step.
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

/// The result of a check.
#[derive(Clone, Debug)]
pub struct Report {
    /// `Ok` when every step passed.
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
    /// Time spent per step, in order.
    pub step_durations: Vec<(Step, Duration)>,
    pub duration: Duration,
    /// With a test message: the final reply to DATA (e.g. "250 2.0.0 OK queued as 1A2B") when it was accepted.
    pub test_message_reply: Option<String>,
}

impl Report {
    /// True when every step passed.
    pub fn succeeded(&self) -> bool {
        self.outcome.is_ok()
    }
}

/// Runs one check. Never panics; every failure is a [`Failure`] in the report.
pub async fn run(request: &CheckRequest) -> Report {
    let mut progress = session::Progress::new();
    let outcome = session::check(request, &mut progress).await;
    progress.into_report(outcome)
}
