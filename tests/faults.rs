//! The fault table (issue 11): how a mail server or a token endpoint can fail, each row run through the same entry
//! the controller and `smtp-operator check` use (`check::run` on a validated plan), against real peers:
//! `tests/peers/fault_peer.py` (plain asyncio sockets, one scripted fault per process), aiosmtpd
//! (`tests/peers/smtp_peer.py`) and the Authlib token endpoint (`tests/peers/oauth_server.py`).
//!
//! Every row asserts: the reason and the step; that the check returned within its own budget (`check.timeout`)
//! plus one second; the server's reply code and sanitized text in the message when there was a reply; the words of
//! the hint that says what to do; and that no credential appears anywhere in the report, the condition message or
//! the peer's log. One test per row (the harness runs them in parallel); [`table`] lists them all for the README
//! check. Rows that need more than one check (Retry-After) or a name with several addresses (a private
//! `/etc/hosts`, through `smtp-operator check`) live at the end.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;
use smtp_operator::engine::token::{ClientAuth, Grant, TokenCache, TokenRequest};
use smtp_operator::engine::{
    CheckRequest, Credentials, DialPolicy, FailureClass, IpNet, Reason, Report, SecretValue, Step, TestMessage,
    TlsMode, TlsOptions, TlsVersion,
};
use smtp_operator::validate::{OAuthPlan, Plan};
use support::oauth::OAuthServer;
use support::smtp_peer::SmtpPeer;

/// `check.timeout` of every row.
const BUDGET: Duration = Duration::from_secs(3);
const USER: &str = "fault-user@example.com";
/// Credentials that must appear nowhere: report, condition message, peer log.
const PASSWORD: &str = "fault-password-9c41e7";
const TOKEN: &str = "fault-access-token-77d2a0";
const CLIENT_SECRET: &str = "fault-client-secret-52b8f1";

/// What answers on the other side.
#[derive(Clone, Copy)]
enum Peer {
    /// A port nobody listens on.
    Closed,
    /// A listener whose accept queue is full: SYNs are dropped, the connect hangs.
    BlackHole,
    /// `fault_peer.py` with these flags.
    Fault(&'static [&'static str]),
    /// `smtp_peer.py` (aiosmtpd) with these flags.
    Aiosmtpd(&'static [&'static str]),
    /// The Authlib token endpoint at this path (the SMTP side is never reached).
    TokenPath(&'static str),
    /// The Authlib token endpoint at this path, its CA not trusted.
    TokenUntrusted(&'static str),
    /// A token URL on a port nobody listens on.
    TokenClosed,
}

#[derive(Clone, Copy, PartialEq)]
enum Auth {
    None,
    Password,
    XOAuth2,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// The check passed.
    Ready,
    /// The check failed at this step with this reason.
    Fails(Step, Reason),
    /// The check passed; only the test email failed.
    TestEmailFails(Step, Reason),
}

#[derive(Clone, Copy)]
struct Row {
    peer: Peer,
    mode: TlsMode,
    /// `spec.server`; empty = 127.0.0.1.
    server: &'static str,
    /// Add the peer's CA to the trust anchors.
    trust: bool,
    insecure: bool,
    min_tls13: bool,
    auth: Auth,
    /// Deny loopback (the production default) instead of allowing it.
    deny_loopback: bool,
    test_email: bool,
    expect: Expect,
    /// The reply code the failure must carry (its text then must be in the message).
    reply: Option<u16>,
    /// Words of the message (what happened, what to do).
    says: &'static [&'static str],
}

const ROW: Row = Row {
    peer: Peer::Closed,
    mode: TlsMode::None,
    server: "",
    trust: true,
    insecure: false,
    min_tls13: false,
    auth: Auth::None,
    deny_loopback: false,
    test_email: false,
    expect: Expect::Ready,
    reply: None,
    says: &[],
};

const fn fails(step: Step, reason: Reason) -> Expect {
    Expect::Fails(step, reason)
}

macro_rules! table {
    ($($name:ident: $row:expr,)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                run_row(stringify!($name), $row).await;
            }
        )*
        /// Every row, by name.
        fn table() -> Vec<(&'static str, Row)> {
            vec![$((stringify!($name), $row)),*]
        }
    };
}

use Reason as R;
use Step as S;

table! {
    // TCP / DNS
    tcp_connection_refused: Row { expect: fails(S::Connect, R::ConnectionRefused), says: &["refused", "spec.port"], ..ROW },
    tcp_black_hole: Row { peer: Peer::BlackHole, expect: fails(S::Connect, R::ConnectionTimedOut), says: &["did not finish", "firewall"], ..ROW },
    dns_unresolvable_name: Row { server: "smtp.does-not-exist.invalid", expect: fails(S::Resolve, R::DnsLookupFailed), says: &["smtp.does-not-exist.invalid"], ..ROW },
    dns_only_denied_addresses: Row { peer: Peer::Fault(&[]), server: "localhost", deny_loopback: true, expect: fails(S::Policy, R::DestinationNotAllowed), says: &["127.0.0.1", "--denied-cidrs"], ..ROW },
    // Greeting
    greeting_never_sent: Row { peer: Peer::Fault(&["--fault", "tarpit"]), expect: fails(S::Greeting, R::ConnectionTimedOut), says: &["greeting", "spec.check.timeout"], ..ROW },
    greeting_421: Row { peer: Peer::Fault(&["--fault", "greeting-421"]), expect: fails(S::Greeting, R::ServerRejected), reply: Some(421), says: &["greeting", "temporary", "backoff"], ..ROW },
    greeting_554: Row { peer: Peer::Fault(&["--fault", "greeting-554"]), expect: fails(S::Greeting, R::ServerRejected), reply: Some(554), says: &["greeting", "allow-lists", "block list"], ..ROW },
    greeting_dripped: Row { peer: Peer::Fault(&["--fault", "greeting-drip"]), expect: fails(S::Greeting, R::ConnectionTimedOut), says: &["greeting"], ..ROW },
    greeting_from_an_http_server: Row { peer: Peer::Fault(&["--fault", "http"]), expect: fails(S::Greeting, R::ConnectionTimedOut), says: &["greeting", "spec.port"], ..ROW },
    greeting_ssh_banner: Row { peer: Peer::Fault(&["--fault", "ssh-banner"]), expect: fails(S::Greeting, R::ProtocolError), says: &["SSH-2.0", "spec.port"], ..ROW },
    greeting_of_1mb: Row { peer: Peer::Fault(&["--fault", "greeting-1mb"]), expect: fails(S::Greeting, R::ProtocolError), says: &["greeting", "bytes"], ..ROW },
    greeting_then_closed: Row { peer: Peer::Fault(&["--fault", "close-after-greeting"]), expect: fails(S::Ehlo, R::ConnectionFailed), says: &["closed the connection", "logs"], ..ROW },
    // EHLO / STARTTLS
    ehlo_500: Row { peer: Peer::Fault(&["--fault", "ehlo-500"]), expect: fails(S::Ehlo, R::ServerRejected), reply: Some(500), says: &["EHLO", "ESMTP"], ..ROW },
    ehlo_502: Row { peer: Peer::Fault(&["--fault", "ehlo-502"]), expect: fails(S::Ehlo, R::ServerRejected), reply: Some(502), says: &["EHLO", "ESMTP"], ..ROW },
    starttls_not_offered: Row { peer: Peer::Fault(&["--fault", "no-starttls", "--tls", "starttls"]), mode: TlsMode::StartTls, auth: Auth::Password, expect: fails(S::StartTls, R::StartTlsNotOffered), says: &["does not offer STARTTLS", "ImplicitTLS"], ..ROW },
    starttls_454: Row { peer: Peer::Fault(&["--fault", "starttls-454", "--tls", "starttls"]), mode: TlsMode::StartTls, auth: Auth::Password, expect: fails(S::StartTls, R::StartTlsNotOffered), reply: Some(454), says: &["refused", "TLS setup"], ..ROW },
    implicit_tls_on_a_plain_port: Row { peer: Peer::Fault(&[]), mode: TlsMode::ImplicitTls, expect: fails(S::Tls, R::TlsHandshakeFailed), says: &["spec.tls.mode"], ..ROW },
    starttls_on_an_implicit_tls_port: Row { peer: Peer::Fault(&["--tls", "implicit"]), mode: TlsMode::StartTls, expect: fails(S::Greeting, R::ConnectionTimedOut), says: &["spec.tls.mode"], ..ROW },
    closed_after_starttls_220: Row { peer: Peer::Fault(&["--fault", "close-after-starttls", "--tls", "starttls"]), mode: TlsMode::StartTls, auth: Auth::Password, expect: fails(S::StartTls, R::TlsHandshakeFailed), says: &["closed the connection", "spec.tls.mode"], ..ROW },
    // TLS
    tls_untrusted_issuer: Row { peer: Peer::Fault(&["--tls", "starttls"]), mode: TlsMode::StartTls, trust: false, auth: Auth::Password, expect: fails(S::StartTls, R::CertificateNotTrusted), says: &["spec.tls.caBundle"], ..ROW },
    tls_name_mismatch: Row { peer: Peer::Fault(&["--tls", "implicit", "--cert", "wrong-name"]), mode: TlsMode::ImplicitTls, auth: Auth::Password, expect: fails(S::Tls, R::CertificateNameMismatch), says: &["not valid for 127.0.0.1", "spec.server"], ..ROW },
    tls_expired: Row { peer: Peer::Fault(&["--tls", "starttls", "--cert", "expired"]), mode: TlsMode::StartTls, auth: Auth::Password, expect: fails(S::StartTls, R::CertificateExpired), says: &["expired", "renewed"], ..ROW },
    tls_not_yet_valid: Row { peer: Peer::Fault(&["--tls", "implicit", "--cert", "not-yet-valid"]), mode: TlsMode::ImplicitTls, auth: Auth::Password, expect: fails(S::Tls, R::CertificateExpired), says: &["not valid yet", "clock"], ..ROW },
    tls_12_only_with_alert: Row { peer: Peer::Aiosmtpd(&["--tls", "implicit", "--tls-max", "1.2"]), mode: TlsMode::ImplicitTls, min_tls13: true, expect: fails(S::Tls, R::TlsVersionNotSupported), says: &["minVersion"], ..ROW },
    tls_12_only_without_alert: Row { peer: Peer::Aiosmtpd(&["--tls", "starttls", "--tls-max", "1.2", "--tls-no-alert"]), mode: TlsMode::StartTls, min_tls13: true, expect: fails(S::StartTls, R::TlsVersionNotSupported), says: &["would have used TLS 1.2", "minVersion"], ..ROW },
    tls_handshake_stalled_implicit: Row { peer: Peer::Fault(&["--fault", "tarpit"]), mode: TlsMode::ImplicitTls, expect: fails(S::Tls, R::ConnectionTimedOut), says: &["TLS handshake", "spec.tls.mode"], ..ROW },
    tls_handshake_stalled_after_starttls: Row { peer: Peer::Fault(&["--fault", "starttls-stall", "--tls", "starttls"]), mode: TlsMode::StartTls, auth: Auth::Password, expect: fails(S::StartTls, R::ConnectionTimedOut), says: &["TLS handshake"], ..ROW },
    tls_insecure_skip_verify_with_a_bad_certificate: Row { peer: Peer::Fault(&["--tls", "starttls", "--cert", "expired"]), mode: TlsMode::StartTls, trust: false, insecure: true, auth: Auth::Password, ..ROW },
    // AUTH
    auth_not_offered: Row { peer: Peer::Fault(&["--fault", "auth-none"]), auth: Auth::Password, expect: fails(S::Auth, R::AuthMechanismNotOffered), says: &["no AUTH mechanisms", "spec.auth.type None"], ..ROW },
    auth_only_cram_md5: Row { peer: Peer::Fault(&["--fault", "auth-cram-md5"]), auth: Auth::Password, expect: fails(S::Auth, R::AuthMechanismNotOffered), says: &["CRAM-MD5", "spec.auth.basic.mechanisms"], ..ROW },
    auth_535_578: Row { peer: Peer::Fault(&["--fault", "auth-535"]), auth: Auth::Password, expect: fails(S::Auth, R::AuthenticationFailed), reply: Some(535), says: &["username", "password"], ..ROW },
    auth_535_57139_smtp_auth_disabled: Row { peer: Peer::Fault(&["--fault", "auth-535-57139"]), auth: Auth::Password, expect: fails(S::Auth, R::AuthenticationFailed), reply: Some(535), says: &["Authenticated SMTP", "mailbox", "OAuth2"], ..ROW },
    auth_534_579_app_password: Row { peer: Peer::Fault(&["--fault", "auth-534-579"]), auth: Auth::Password, expect: fails(S::Auth, R::AuthenticationFailed), reply: Some(534), says: &["app password", "OAuth2"], ..ROW },
    auth_454_temporary: Row { peer: Peer::Fault(&["--fault", "auth-454"]), auth: Auth::Password, expect: fails(S::Auth, R::AuthenticationFailed), reply: Some(454), says: &["temporary", "retried"], ..ROW },
    auth_xoauth2_json_challenge: Row { peer: Peer::Fault(&["--fault", "xoauth2-challenge"]), auth: Auth::XOAuth2, expect: fails(S::Auth, R::AuthenticationFailed), reply: Some(535), says: &["status 400", "spec.auth.oauth2.username"], ..ROW },
    auth_connection_closed: Row { peer: Peer::Fault(&["--fault", "auth-close"]), auth: Auth::Password, expect: fails(S::Auth, R::ConnectionFailed), says: &["closed the connection during auth"], ..ROW },
    // Test email (the check passes)
    test_email_rcpt_550: Row { peer: Peer::Fault(&["--fault", "rcpt-550"]), test_email: true, expect: Expect::TestEmailFails(S::RcptTo, R::RecipientRejected), reply: Some(550), says: &["ops@example.com", "spec.testEmail.to"], ..ROW },
    test_email_552_after_data: Row { peer: Peer::Fault(&["--fault", "data-552"]), test_email: true, expect: Expect::TestEmailFails(S::Data, R::MessageRejected), reply: Some(552), says: &["rejected the test message"], ..ROW },
    test_email_451_after_data: Row { peer: Peer::Fault(&["--fault", "data-451"]), test_email: true, expect: Expect::TestEmailFails(S::Data, R::MessageRejected), reply: Some(451), says: &["temporar"], ..ROW },
    test_email_data_never_answered: Row { peer: Peer::Fault(&["--fault", "data-stall"]), test_email: true, expect: Expect::TestEmailFails(S::Data, R::ConnectionTimedOut), says: &["during data"], ..ROW },
    test_email_larger_than_size: Row { peer: Peer::Fault(&["--fault", "size-100"]), test_email: true, expect: Expect::TestEmailFails(S::Data, R::MessageRejected), reply: Some(552), says: &["size"], ..ROW },
    // Token endpoint
    token_500: Row { peer: Peer::TokenPath("/fault/500"), expect: fails(S::Token, R::TokenRequestFailed), says: &["HTTP 500", "token endpoint"], ..ROW },
    token_429_retry_after: Row { peer: Peer::TokenPath("/fault/429"), expect: fails(S::Token, R::TokenRequestFailed), says: &["HTTP 429", "temporarily_unavailable", "30s"], ..ROW },
    token_html_error_page: Row { peer: Peer::TokenPath("/fault/html"), expect: fails(S::Token, R::TokenRequestFailed), says: &["HTTP 502", "not the expected OAuth JSON", "tokenUrl"], ..ROW },
    token_20mb_body: Row { peer: Peer::TokenPath("/fault/20mb"), expect: fails(S::Token, R::TokenRequestFailed), says: &["exceeds 65536 bytes"], ..ROW },
    token_invalid_json: Row { peer: Peer::TokenPath("/fault/invalid-json"), expect: fails(S::Token, R::TokenRequestFailed), says: &["HTTP 200", "not the expected OAuth JSON"], ..ROW },
    token_without_access_token: Row { peer: Peer::TokenPath("/fault/no-access-token"), expect: fails(S::Token, R::TokenRequestFailed), says: &["access_token"], ..ROW },
    token_type_not_bearer: Row { peer: Peer::TokenPath("/fault/mac"), expect: fails(S::Token, R::TokenRequestFailed), says: &["token_type", "Bearer"], ..ROW },
    token_302_not_followed: Row { peer: Peer::TokenPath("/redirect"), expect: fails(S::Token, R::TokenRequestFailed), says: &["redirects are not followed", "tokenUrl"], ..ROW },
    token_untrusted_certificate: Row { peer: Peer::TokenUntrusted("/token"), expect: fails(S::Token, R::TokenRequestFailed), says: &["certificate", "caBundle"], ..ROW },
    token_never_answers: Row { peer: Peer::TokenPath("/hang"), expect: fails(S::Token, R::TokenRequestFailed), says: &["no response headers"], ..ROW },
    token_connection_refused: Row { peer: Peer::TokenClosed, expect: fails(S::Token, R::TokenRequestFailed), says: &["refused"], ..ROW },
}

/// A started peer and what the row's request needs from it.
struct Running {
    smtp: Option<SmtpPeer>,
    oauth: Option<OAuthServer>,
    port: u16,
    ca: Option<Vec<u8>>,
    token_url: Option<String>,
    _keep: Vec<Box<dyn std::any::Any>>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A listener with backlog 0 whose accept queue holds one connection nobody accepts: further SYNs are dropped.
fn black_hole() -> (u16, Vec<Box<dyn std::any::Any>>) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&addr.into()).unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let filler = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("the queue takes one");
    (addr.port(), vec![Box::new(socket), Box::new(filler)])
}

fn oauth_server() -> OAuthServer {
    OAuthServer::start(&json!({"clients": [
        {"client_id": "fault-client", "client_secret": CLIENT_SECRET, "token_endpoint_auth_method": "client_secret_post",
         "grant_types": ["client_credentials"], "user": USER}]}))
}

fn start(peer: Peer) -> Running {
    let none = |port| Running { smtp: None, oauth: None, port, ca: None, token_url: None, _keep: vec![] };
    match peer {
        Peer::Closed => none(free_port()),
        Peer::BlackHole => {
            let (port, keep) = black_hole();
            Running { _keep: keep, ..none(port) }
        }
        Peer::Fault(args) | Peer::Aiosmtpd(args) => {
            let script = if matches!(peer, Peer::Fault(_)) { "fault_peer.py" } else { "smtp_peer.py" };
            let p = SmtpPeer::start_script(script, args);
            let tls = args.windows(2).any(|w| w[0] == "--tls" && w[1] != "none");
            Running { port: p.port, ca: tls.then(|| p.ca_der()), smtp: Some(p), ..none(0) }
        }
        Peer::TokenPath(path) | Peer::TokenUntrusted(path) => {
            let s = oauth_server();
            let ca = matches!(peer, Peer::TokenPath(_)).then(|| s.ca_der.clone());
            Running { token_url: Some(format!("{}{path}", s.url)), ca, oauth: Some(s), ..none(9) }
        }
        Peer::TokenClosed => Running { token_url: Some(format!("https://127.0.0.1:{}/token", free_port())), ..none(9) },
    }
}

fn plan(row: &Row, run: &Running) -> Plan {
    let policy = DialPolicy {
        allowed_ports: vec![],
        denied: if row.deny_loopback {
            vec![
                IpNet { addr: "127.0.0.0".parse().unwrap(), prefix: 8 },
                IpNet { addr: "::1".parse().unwrap(), prefix: 128 },
            ]
        } else {
            vec![]
        },
    };
    let credentials = match row.auth {
        Auth::None => Credentials::None,
        Auth::Password => {
            Credentials::Password { username: USER.into(), password: SecretValue::new(PASSWORD), mechanisms: vec![] }
        }
        Auth::XOAuth2 => Credentials::XOAuth2 { username: USER.into(), token: SecretValue::new(TOKEN) },
    };
    let request = CheckRequest {
        server: if row.server.is_empty() { "127.0.0.1".into() } else { row.server.into() },
        port: run.port,
        tls: TlsOptions {
            mode: row.mode,
            min_version: if row.min_tls13 { TlsVersion::V1_3 } else { TlsVersion::V1_2 },
            extra_roots: run.ca.clone().filter(|_| row.trust).into_iter().collect(),
            insecure_skip_verify: row.insecure,
        },
        credentials,
        helo_name: "faults.local".into(),
        timeout: BUDGET,
        policy: policy.clone(),
        test_message: None,
    };
    let oauth = run.token_url.as_ref().map(|url| OAuthPlan {
        username: USER.into(),
        request: TokenRequest {
            token_url: url.clone(),
            client_id: "fault-client".into(),
            grant: Grant::ClientCredentials { client_secret: SecretValue::new(CLIENT_SECRET) },
            scopes: vec![],
            client_auth: ClientAuth::RequestBody,
            extra_roots: run.ca.clone().into_iter().collect(),
            timeout: BUDGET,
            policy,
        },
    });
    Plan { request, oauth, interval: None, from_address: "alerts@example.com".into() }
}

fn test_message() -> TestMessage {
    TestMessage {
        from: "Alerts <alerts@example.com>".into(),
        to: vec!["ops@example.com".into()],
        subject: "smtp-operator fault table".into(),
        body: "A test email of the fault table.".into(),
    }
}

/// The rows whose failure is transient (retried with backoff, docs/api.md "Retries after a failure"); every other
/// failing row is permanent.
const TRANSIENT: &[&str] = &[
    "tcp_connection_refused",
    "tcp_black_hole",
    "greeting_never_sent",
    "greeting_421",
    "greeting_dripped",
    "greeting_from_an_http_server",
    "greeting_then_closed",
    "starttls_454",
    "starttls_on_an_implicit_tls_port",
    "tls_handshake_stalled_implicit",
    "tls_handshake_stalled_after_starttls",
    "auth_454_temporary",
    "auth_connection_closed",
    "token_500",
    "token_429_retry_after",
    "token_html_error_page",
    "token_never_answers",
    "token_connection_refused",
];

/// Runs the check of a plan like the controller does, asserting it returns within the budget plus one second.
async fn check_within_budget(plan: &Plan, tokens: &TokenCache, message: Option<TestMessage>) -> Report {
    check_classified(plan, tokens, message).await.0
}

async fn check_classified(
    plan: &Plan,
    tokens: &TokenCache,
    message: Option<TestMessage>,
) -> (Report, Option<FailureClass>) {
    let started = Instant::now();
    let checked = smtp_operator::check::run_classified(plan, tokens, message);
    let (report, class) = tokio::time::timeout(Duration::from_secs(60), checked).await.expect("the check returned");
    let took = started.elapsed();
    assert!(took <= BUDGET + Duration::from_secs(1), "took {took:?} with a budget of {BUDGET:?}: {:?}", report.outcome);
    (report, class)
}

/// Every form a credential could leak in.
fn secrets() -> Vec<String> {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    vec![
        PASSWORD.into(),
        TOKEN.into(),
        CLIENT_SECRET.into(),
        b64(&format!("\0{USER}\0{PASSWORD}")),
        b64(PASSWORD),
        b64(&format!("user={USER}\x01auth=Bearer {TOKEN}\x01\x01")),
    ]
}

async fn run_row(name: &str, row: Row) {
    let run = start(row.peer);
    let plan = plan(&row, &run);
    let (report, class) = check_classified(&plan, &TokenCache::new(), row.test_email.then(test_message)).await;
    let want_class = match row.expect {
        Expect::Fails(..) if TRANSIENT.contains(&name) => Some(FailureClass::Transient),
        Expect::Fails(..) => Some(FailureClass::Permanent),
        _ => None,
    };
    assert_eq!(class, want_class, "{name}: the retry class");
    let failure = match row.expect {
        Expect::Ready => {
            assert!(report.succeeded(), "{name}: expected Ready, got {:?}", report.outcome);
            None
        }
        Expect::Fails(step, reason) => {
            let f = report.outcome.clone().expect_err("the check failed");
            assert_eq!((f.step, f.reason), (step, reason), "{name}: {f:?}");
            assert_eq!(report.last_step, step, "{name}");
            Some(f)
        }
        Expect::TestEmailFails(step, reason) => {
            assert!(report.succeeded(), "{name}: the check itself passes: {:?}", report.outcome);
            let f = report.test_email_failure().cloned().expect("the test email failed");
            assert_eq!((f.step, f.reason), (step, reason), "{name}: {f:?}");
            Some(f)
        }
    };
    if let Some(f) = &failure {
        let condition = smtp_operator::status::failure_message(f);
        assert!(condition.starts_with(&format!("{} failed: ", f.step)), "{name}: the step is named: {condition}");
        match (row.reply, &f.reply) {
            (Some(code), Some(reply)) => {
                assert_eq!(reply.code, code, "{name}: {f:?}");
                assert!(!reply.text.is_empty(), "{name}: the server's text is kept: {f:?}");
                assert!(reply.text.chars().all(|c| !c.is_control()), "{name}: sanitized: {:?}", reply.text);
                assert!(
                    f.message.contains(&format!("{code} {}", reply.text)),
                    "{name}: reply in message: {}",
                    f.message
                );
            }
            (None, None) => {}
            (want, got) => panic!("{name}: reply {got:?}, expected code {want:?}: {f:?}"),
        }
        for word in row.says {
            assert!(f.message.contains(word), "{name}: the message should say {word:?}: {}", f.message);
        }
    }
    let everything = format!(
        "{report:?} {} {}",
        failure.as_ref().map(smtp_operator::status::failure_message).unwrap_or_default(),
        run.smtp.as_ref().map(SmtpPeer::events_raw).unwrap_or_default()
            + &run.oauth.as_ref().map(OAuthServer::events_text).unwrap_or_default()
    );
    for s in secrets() {
        assert!(!everything.contains(&s), "{name}: a credential leaked: {everything}");
    }
    row_specific(name, &row, &run);
}

/// What the peer saw, for the rows where that is the point.
fn row_specific(name: &str, row: &Row, run: &Running) {
    let Some(peer) = &run.smtp else { return };
    let auth_commands = peer.events_of("command").iter().filter(|e| e["verb"] == "AUTH").count();
    match name {
        "starttls_not_offered" | "starttls_454" | "closed_after_starttls_220" | "tls_untrusted_issuer" => {
            assert_eq!(auth_commands, 0, "{name}: credentials never sent")
        }
        "dns_only_denied_addresses" => assert_eq!(peer.count("connect"), 0, "{name}: nothing dialled"),
        "tls_insecure_skip_verify_with_a_bad_certificate" => assert_eq!(auth_commands, 1, "{name}"),
        _ => {}
    }
    if row.test_email && row.expect != Expect::Ready {
        assert!(peer.count("connect") == 1, "{name}: one connection");
    }
}

/// The README's troubleshooting table explains every reason this table produces.
#[test]
fn readme_troubleshooting_lists_every_reason_of_the_table() {
    let names: Vec<&str> = table().iter().map(|(n, _)| *n).collect();
    assert!(TRANSIENT.iter().all(|t| names.contains(t)), "TRANSIENT names rows of the table");
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let troubleshooting = readme.split("## Troubleshooting").nth(1).expect("a Troubleshooting section");
    for (name, row) in table() {
        let reason = match row.expect {
            Expect::Ready => continue,
            Expect::Fails(_, r) | Expect::TestEmailFails(_, r) => r,
        };
        let anchor = format!("<a id=\"reason-{}\"></a>`{reason}`", reason.as_str().to_lowercase());
        assert!(troubleshooting.contains(&anchor), "{name}: README's troubleshooting table lacks {reason}");
    }
}

/// `429` with `Retry-After: 30`: the second check within those 30 s answers with the same error and sends no
/// request (the endpoint is not hammered); the message says how long it waits.
#[tokio::test]
async fn token_429_retry_after_is_honoured() {
    let row = Row { peer: Peer::TokenPath("/fault/429"), ..ROW };
    let run = start(row.peer);
    let plan = plan(&row, &run);
    let tokens = TokenCache::new();
    let first = check_within_budget(&plan, &tokens, None).await.outcome.expect_err("429");
    let second = check_within_budget(&plan, &tokens, None).await.outcome.expect_err("still waiting");
    assert_eq!(first, second, "the same failure, no new request");
    assert!(second.message.contains("no token request is sent before then"), "{}", second.message);
    let server = run.oauth.as_ref().unwrap();
    let asked = server.events().iter().filter(|e| e["event"] == "fault").count();
    assert_eq!(asked, 1, "one request to the endpoint: {:?}", server.events());
    assert_eq!(tokens.token_requests(), 1);
}

/// The row "a name resolving to several addresses, the first refuses and the second works": `localhost` with two
/// addresses, run through `smtp-operator check` (the same validation and engine) under a private mount namespace
/// whose `/etc/hosts` holds the two lines Debian ships for it (`127.0.0.1 localhost`, `::1 localhost`), so the
/// system resolver (getaddrinfo, as in production) returns both whatever this machine's own hosts file says. The
/// peer listens only on the LAST address the resolver returns, so the first refuses: Ready within the budget,
/// the connection at the peer on that address, authenticated over TLS verified for the name `localhost`.
#[test]
fn dns_several_addresses_the_first_refuses_the_second_works() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n::1 localhost\n").unwrap();
    let resolve = "import socket; print('\\n'.join(a[4][0] for a in socket.getaddrinfo('localhost', 25, type=socket.SOCK_STREAM)))";
    let out = in_private_hosts(&hosts, &["python3", "-c", resolve]);
    let addrs: Vec<&str> = out.lines().collect();
    assert!(
        addrs.len() >= 2,
        "the row needs `localhost` to resolve to several addresses, but with /etc/hosts holding \
         `127.0.0.1 localhost` and `::1 localhost` the system resolver returned only {addrs:?} (is IPv6 off on \
         this machine's loopback? `ip -6 addr show lo` must list ::1); the row cannot run here and does not pass"
    );
    let (first, last) = (addrs[0], *addrs.last().unwrap());
    let auth = ["--auth", "plain", "--user", USER, "--password", PASSWORD];
    let peer = SmtpPeer::start(&[&["--host", last, "--tls", "starttls"][..], &auth].concat());
    let first_addr = SocketAddr::new(first.parse().unwrap(), peer.port);
    let refused = std::net::TcpStream::connect_timeout(&first_addr, Duration::from_secs(2)).map(|_| ()).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused, "the first address {first_addr} refuses");

    let manifest = format!(
        "apiVersion: smtp-operator.io/v1alpha1\nkind: SmtpSettings\nmetadata: {{name: several}}\nspec:\n  server: localhost\n  \
         port: {}\n  from: alerts@example.com\n  tls: {{mode: StartTLS, caBundle: {{configMapKeyRef: {{name: ca, key: ca.crt}}}}}}\n  \
         auth: {{type: Basic, basic: {{username: {USER}, passwordSecretRef: {{name: creds, key: password}}}}}}\n  \
         check: {{timeout: {}s}}\n",
        peer.port,
        BUDGET.as_secs()
    );
    let (file, ca, pw) = (dir.path().join("s.yaml"), dir.path().join("ca.pem"), dir.path().join("pw"));
    std::fs::write(&file, manifest).unwrap();
    std::fs::write(&ca, peer.ca_pem()).unwrap();
    std::fs::write(&pw, PASSWORD).unwrap();
    let (ca, pw) = (format!("ca={}", ca.display()), format!("creds={}", pw.display()));
    let bin = env!("CARGO_BIN_EXE_smtp-operator");
    let args = [bin, "check", "-f", file.to_str().unwrap(), "--secret-file", &pw, "--configmap-file", &ca];
    let report = in_private_hosts(&hosts, &args);

    let last_addr = SocketAddr::new(last.parse().unwrap(), peer.port);
    assert!(report.contains(&format!("Connected to: {last_addr}")), "dialled the last address:\n{report}");
    assert!(report.contains("Authenticated with: PLAIN"), "{report}");
    let ms: f64 = report
        .lines()
        .find_map(|l| l.strip_prefix("Result: Succeeded in ")?.strip_suffix(" ms")?.parse().ok())
        .unwrap_or_else(|| panic!("Ready:\n{report}"));
    assert!(ms <= BUDGET.as_secs_f64() * 1000.0, "within the budget of {BUDGET:?}: {ms} ms");
    let connects = peer.events_of("connect");
    assert_eq!(connects.len(), 1, "one connection at the peer: {connects:?}");
    assert_eq!(peer.count("auth"), 1);
    for s in secrets() {
        assert!(!report.contains(&s) && !peer.events_raw().contains(&s), "a credential leaked");
    }
}

/// Runs `cmd` with `hosts` mounted over `/etc/hosts` in a private mount namespace (`unshare -m`, needs root like
/// the suite's node; the mount ends with the command) and returns its stdout; panics when it failed.
fn in_private_hosts(hosts: &std::path::Path, cmd: &[&str]) -> String {
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", "mount --bind \"$0\" /etc/hosts && exec \"$@\""])
        .arg(hosts)
        .args(cmd)
        .output()
        .expect("run unshare (util-linux)");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "{cmd:?} with a private /etc/hosts failed ({}); this row needs `unshare --mount` and `mount --bind` \
         (root, as scripts/test runs):\n{stdout}\n{stderr}",
        out.status
    );
    stdout.into_owned()
}
