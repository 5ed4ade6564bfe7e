//! The contract's vocabulary: the steps of a check, the condition kinds and the reasons they fail with
//! (condition `reason`, event reason, metric label). Shared by the engine, validation, status and metrics;
//! documented in docs/api.md.

use std::fmt;

/// A step of a check, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Step {
    Policy,
    Token,
    Resolve,
    Connect,
    Tls,
    Greeting,
    Ehlo,
    StartTls,
    Auth,
    MailFrom,
    RcptTo,
    Data,
    Quit,
}

impl Step {
    /// Lower-case name, used in messages and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Policy => "policy",
            Step::Token => "token",
            Step::Resolve => "resolve",
            Step::Connect => "connect",
            Step::Tls => "tls",
            Step::Greeting => "greeting",
            Step::Ehlo => "ehlo",
            Step::StartTls => "starttls",
            Step::Auth => "auth",
            Step::MailFrom => "mail_from",
            Step::RcptTo => "rcpt_to",
            Step::Data => "data",
            Step::Quit => "quit",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which condition a reason belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionKind {
    Valid,
    Connected,
    Authenticated,
    /// Only the test email failed; the check itself passed.
    TestEmail,
}

macro_rules! reasons {
    ($($name:ident => $kind:ident),* $(,)?) => {
        /// A failure reason, named as in the contract (condition `reason`, event reason, metric label).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Reason { $($name),* }

        impl Reason {
            /// The reason as written in conditions, events and metrics.
            pub fn as_str(self) -> &'static str {
                match self { $(Reason::$name => stringify!($name)),* }
            }
            /// The condition this reason sets to False.
            pub fn condition(self) -> ConditionKind {
                match self { $(Reason::$name => ConditionKind::$kind),* }
            }
            /// Every reason (for docs and tests).
            pub const ALL: &'static [Reason] = &[$(Reason::$name),*];
        }
    };
}

reasons! {
    InvalidSpec => Valid,
    InvalidFromAddress => Valid,
    SecretNotFound => Valid,
    SecretKeyNotFound => Valid,
    ConfigMapNotFound => Valid,
    ConfigMapKeyNotFound => Valid,
    InvalidCABundle => Valid,
    InvalidSecretValue => Valid,
    PortNotAllowed => Valid,
    DestinationNotAllowed => Valid,
    CredentialsNotBoundToServer => Valid,
    SubjectNotAllowed => Valid,
    NamespaceNotAllowed => Valid,
    DnsLookupFailed => Connected,
    ConnectionRefused => Connected,
    ConnectionTimedOut => Connected,
    ConnectionFailed => Connected,
    TlsHandshakeFailed => Connected,
    CertificateNotTrusted => Connected,
    CertificateNameMismatch => Connected,
    CertificateExpired => Connected,
    TlsVersionNotSupported => Connected,
    StartTlsNotOffered => Connected,
    ServerRejected => Connected,
    ProtocolError => Connected,
    AuthMechanismNotOffered => Authenticated,
    AuthenticationFailed => Authenticated,
    TokenRequestFailed => Authenticated,
    SenderRejected => TestEmail,
    RecipientRejected => TestEmail,
    MessageRejected => TestEmail,
}

/// Whether a failed check is retried before its interval (docs/api.md, "When checks run"): `Transient` failures
/// are on the server's side and may go away by themselves (4xx replies, timeouts, refused or dropped
/// connections, a token endpoint's 5xx or 429, an endpoint that cannot be reached), retried with a capped
/// exponential backoff; `Permanent` ones need a change (5xx replies, certificates, policy, configuration) and
/// wait for the interval or a change. Also the `class` label of `smtp_operator_checks_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureClass {
    Transient,
    Permanent,
}

impl FailureClass {
    /// Lower-case name, used as the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Transient => "transient",
            FailureClass::Permanent => "permanent",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
