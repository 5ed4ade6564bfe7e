//! The check engine against real SMTP servers (aiosmtpd peers from `tests/peers/smtp_peer.py`).
//! Each test asserts the engine's reason/step and what the server saw.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use smtp_operator::engine::{
    self, CheckRequest, Credentials, DialPolicy, IpNet, PasswordMechanism, Reason, Report, SecretValue, Step,
    TestMessage, TlsMode, TlsOptions, TlsVersion,
};
use support::smtp_peer::SmtpPeer;

const USER: &str = "alice@example.com";
const PASSWORD: &str = "correct-horse-battery-staple";
const TOKEN: &str = "ya29.test-access-token-distinctive";

fn request(port: u16, mode: TlsMode) -> CheckRequest {
    CheckRequest {
        server: "127.0.0.1".into(),
        port,
        tls: TlsOptions { mode, min_version: TlsVersion::V1_2, extra_roots: vec![], insecure_skip_verify: false },
        credentials: Credentials::None,
        helo_name: "engine-test.local".into(),
        timeout: Duration::from_secs(10),
        policy: DialPolicy::default(),
        test_message: None,
    }
}

fn trusted(peer: &SmtpPeer, mode: TlsMode) -> CheckRequest {
    let mut r = request(peer.port, mode);
    r.tls.extra_roots = vec![peer.ca_der()];
    r
}

fn password(mechanisms: Vec<PasswordMechanism>, pw: &str) -> Credentials {
    Credentials::Password { username: USER.into(), password: SecretValue::new(pw), mechanisms }
}

fn xoauth2(token: &str) -> Credentials {
    Credentials::XOAuth2 { username: USER.into(), token: SecretValue::new(token) }
}

fn peer_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--user", USER, "--password", PASSWORD, "--xoauth2-token", TOKEN];
    v.extend_from_slice(extra);
    v
}

/// Runs the engine with an outer bound, so a hang fails the test instead of blocking it.
async fn run(req: &CheckRequest) -> Report {
    tokio::time::timeout(Duration::from_secs(60), engine::run(req)).await.expect("the engine finished")
}

#[track_caller]
fn assert_ok(r: &Report) {
    assert!(r.succeeded(), "expected success, got {:?}", r.outcome);
    assert_eq!(r.last_step, Step::Quit);
}

#[track_caller]
fn assert_failed(r: &Report, step: Step, reason: Reason) -> engine::Failure {
    let f = r.outcome.clone().expect_err("expected a failure");
    assert_eq!((f.step, f.reason), (step, reason), "failure: {f:?}");
    assert_eq!(r.last_step, step);
    f
}

/// Only the test email failed: the check itself passed and the failure is in `test_email`.
#[track_caller]
fn assert_test_email_failed(r: &Report, step: Step, reason: Reason) -> engine::Failure {
    assert_ok(r);
    let f = r.test_email_failure().cloned().expect("a failed test email");
    assert_eq!((f.step, f.reason), (step, reason), "failure: {f:?}");
    f
}

/// No credential in any text the report or the peer log carries.
#[track_caller]
fn assert_no_secret(r: &Report, peer: &SmtpPeer) {
    let text = format!("{r:?}");
    for s in [PASSWORD, TOKEN] {
        assert!(!text.contains(s), "secret in report: {text}");
        assert!(!peer.events_raw().contains(s), "secret in peer events");
    }
}

#[tokio::test]
async fn starttls_plain_succeeds_and_reports_tls_and_mechanisms() {
    let peer = SmtpPeer::start(&peer_args(&["--tls", "starttls", "--auth", "plain,login"]));
    let mut req = trusted(&peer, TlsMode::StartTls);
    req.credentials = password(vec![], PASSWORD);
    let r = run(&req).await;
    assert_ok(&r);
    assert_eq!(r.tls_version.as_deref(), Some("1.3"));
    assert_eq!(r.server_mechanisms, ["LOGIN", "PLAIN"]);
    assert_eq!(r.auth_mechanism.as_deref(), Some("PLAIN"), "PLAIN first by default");
    assert_eq!(r.peer, Some(SocketAddr::from(([127, 0, 0, 1], peer.port))));
    let steps: Vec<Step> = r.step_durations.iter().map(|(s, _)| *s).collect();
    for s in [Step::Connect, Step::Greeting, Step::Ehlo, Step::StartTls, Step::Auth, Step::Quit] {
        assert!(steps.contains(&s), "{s} missing in {steps:?}");
    }
    let auths = peer.events_of("auth");
    assert_eq!(auths.len(), 1);
    assert_eq!(auths[0]["mechanism"], "PLAIN");
    assert_eq!(auths[0]["user"], USER);
    assert_eq!(auths[0]["success"], true);
    let ehlos = peer.events_of("ehlo");
    assert_eq!(ehlos.len(), 2);
    assert_eq!(ehlos[1]["tls"], true);
    assert_eq!(peer.count("quit"), 1);
    assert_eq!(peer.count("message"), 0);
    assert_no_secret(&r, &peer);
}

#[tokio::test]
async fn implicit_tls_login_succeeds() {
    let peer = SmtpPeer::start(&peer_args(&["--tls", "implicit", "--auth", "login"]));
    let mut req = trusted(&peer, TlsMode::ImplicitTls);
    req.credentials = password(vec![PasswordMechanism::Login], PASSWORD);
    let r = run(&req).await;
    assert_ok(&r);
    assert_eq!(r.tls_version.as_deref(), Some("1.3"));
    assert_eq!(r.auth_mechanism.as_deref(), Some("LOGIN"));
    assert_eq!(r.server_mechanisms, ["LOGIN"]);
    let auths = peer.events_of("auth");
    assert_eq!(auths.len(), 1);
    assert_eq!((auths[0]["mechanism"].as_str(), auths[0]["success"].as_bool()), (Some("LOGIN"), Some(true)));
    assert_no_secret(&r, &peer);
}

#[tokio::test]
async fn plain_connection_without_tls_succeeds() {
    let peer = SmtpPeer::start(&peer_args(&["--tls", "none", "--auth", "plain"]));
    let mut req = request(peer.port, TlsMode::None);
    req.credentials = password(vec![], PASSWORD);
    let r = run(&req).await;
    assert_ok(&r);
    assert_eq!(r.tls_version, None);
    assert_eq!(peer.events_of("auth")[0]["success"], true);
}

#[tokio::test]
async fn private_ca_is_untrusted_until_added_to_extra_roots() {
    let peer = SmtpPeer::start(&peer_args(&["--tls", "starttls", "--ca", "private", "--auth", "plain"]));
    let mut req = request(peer.port, TlsMode::StartTls);
    req.credentials = password(vec![], PASSWORD);
    let r = run(&req).await;
    let f = assert_failed(&r, Step::StartTls, Reason::CertificateNotTrusted);
    assert!(f.message.contains("spec.tls.caBundle"), "{}", f.message);
    assert_eq!(peer.count("auth_command"), 0, "no AUTH over an untrusted connection");

    req.tls.extra_roots = vec![peer.ca_der()];
    assert_ok(&run(&req).await);
    assert_eq!(peer.count("auth"), 1);
}

#[tokio::test]
async fn certificate_for_another_name_is_a_name_mismatch() {
    let peer = SmtpPeer::start(&peer_args(&["--tls", "implicit", "--wrong-name", "--auth", "plain"]));
    let mut req = trusted(&peer, TlsMode::ImplicitTls);
    req.credentials = password(vec![], PASSWORD);
    let r = run(&req).await;
    assert_failed(&r, Step::Tls, Reason::CertificateNameMismatch);
    assert_eq!(peer.count("auth_command"), 0);
}

#[tokio::test]
async fn insecure_skip_verify_accepts_an_untrusted_wrong_name_certificate() {
    let peer = SmtpPeer::start(&peer_args(&["--tls", "starttls", "--wrong-name", "--auth", "plain"]));
    let mut req = request(peer.port, TlsMode::StartTls);
    req.tls.insecure_skip_verify = true;
    req.credentials = password(vec![], PASSWORD);
    let r = run(&req).await;
    assert_ok(&r);
    assert_eq!(peer.events_of("auth")[0]["success"], true);
}

#[tokio::test]
async fn tls12_only_server_fails_min_13_and_passes_min_12() {
    let peer = SmtpPeer::start(&peer_args(&["--tls", "implicit", "--tls-max", "1.2"]));
    let mut req = trusted(&peer, TlsMode::ImplicitTls);
    req.tls.min_version = TlsVersion::V1_3;
    let r = run(&req).await;
    let f = assert_failed(&r, Step::Tls, Reason::TlsVersionNotSupported);
    assert!(f.message.contains("minVersion"), "{}", f.message);
    assert_eq!(peer.count("ehlo"), 0);

    req.tls.min_version = TlsVersion::V1_2;
    let r = run(&req).await;
    assert_ok(&r);
    assert_eq!(r.tls_version.as_deref(), Some("1.2"));
    assert_eq!(peer.count("ehlo"), 1);
}

#[tokio::test]
async fn missing_starttls_stops_before_auth() {
    let peer = SmtpPeer::start(&peer_args(&["--tls", "starttls", "--no-starttls", "--auth", "plain,login"]));
    let mut req = trusted(&peer, TlsMode::StartTls);
    req.credentials = password(vec![], PASSWORD);
    let r = run(&req).await;
    assert_failed(&r, Step::StartTls, Reason::StartTlsNotOffered);
    assert_eq!(r.tls_version, None);
    assert_eq!(peer.count("auth_command"), 0, "no plain-text fallback");
    assert_eq!(peer.count("auth"), 0);
    assert_eq!(peer.count("mail_from"), 0);
}

#[tokio::test]
async fn wrong_password_is_authentication_failed_with_535() {
    let peer = SmtpPeer::start(&peer_args(&["--tls", "starttls", "--auth", "plain"]));
    let mut req = trusted(&peer, TlsMode::StartTls);
    req.credentials = password(vec![], "wrong-password-distinctive");
    let r = run(&req).await;
    let f = assert_failed(&r, Step::Auth, Reason::AuthenticationFailed);
    assert_eq!(f.reply.as_ref().map(|r| r.code), Some(535));
    assert!(f.message.contains("535"), "{}", f.message);
    assert!(!format!("{r:?}").contains("wrong-password-distinctive"));
    let auths = peer.events_of("auth");
    assert_eq!(auths.len(), 1);
    assert_eq!(auths[0]["success"], false);
    assert!(!peer.events_raw().contains("wrong-password-distinctive"));
}

#[tokio::test]
async fn restricted_mechanism_the_server_lacks_is_not_offered() {
    let peer = SmtpPeer::start(&peer_args(&["--tls", "starttls", "--auth", "plain"]));
    let mut req = trusted(&peer, TlsMode::StartTls);
    req.credentials = password(vec![PasswordMechanism::Login], PASSWORD);
    let r = run(&req).await;
    let f = assert_failed(&r, Step::Auth, Reason::AuthMechanismNotOffered);
    assert!(f.message.contains("PLAIN"), "the message lists the offer: {}", f.message);
    assert_eq!(r.server_mechanisms, ["PLAIN"]);
    assert_eq!(peer.count("auth_command"), 0);
}

fn test_message(to: &[&str]) -> TestMessage {
    TestMessage {
        from: "Platform Alerts <alerts@example.com>".into(),
        to: to.iter().map(|s| s.to_string()).collect(),
        subject: "smtp-operator test email".into(),
        body: "This is a test email.\n.\nSent by the engine tests.".into(),
    }
}

#[tokio::test]
async fn test_email_arrives_once_with_the_right_envelope_and_headers() {
    let peer = SmtpPeer::start(&peer_args(&["--tls", "starttls", "--auth", "plain"]));
    let mut req = trusted(&peer, TlsMode::StartTls);
    req.credentials = password(vec![], PASSWORD);
    req.test_message = Some(test_message(&["ops@example.com"]));
    let r = run(&req).await;
    assert_ok(&r);
    let reply = r.test_email.clone().expect("a test email outcome").expect("final DATA reply");
    assert!(reply.starts_with("250 "), "{reply}");
    assert!(reply.contains("queued as TEST1"), "{reply}");
    let msgs = peer.events_of("message");
    assert_eq!(msgs.len(), 1, "exactly one message");
    let m = &msgs[0];
    assert_eq!(m["mail_from"], "alerts@example.com");
    assert_eq!(m["rcpt_tos"], serde_json::json!(["ops@example.com"]));
    assert_eq!(m["subject"], "smtp-operator test email");
    assert!(m["header_from"].as_str().unwrap().contains("Platform Alerts"), "{m}");
    assert!(m["header_to"].as_str().unwrap().contains("ops@example.com"), "{m}");
    assert!(!m["date"].as_str().unwrap().is_empty());
    assert!(m["message_id"].as_str().unwrap().starts_with('<'));
    // the lone "." line was dot-stuffed on the wire and restored by the server
    assert!(m["body"].as_str().unwrap().contains("\n.\n") || m["body"].as_str().unwrap().contains("\r\n.\r\n"), "{m}");
    assert_eq!(peer.events_of("mail_from")[0]["authenticated"], true);
}

#[tokio::test]
async fn rejected_recipient_is_recipient_rejected() {
    let peer =
        SmtpPeer::start(&peer_args(&["--tls", "starttls", "--auth", "plain", "--reject-rcpt", "nobody@example.com"]));
    let mut req = trusted(&peer, TlsMode::StartTls);
    req.credentials = password(vec![], PASSWORD);
    req.test_message = Some(test_message(&["ops@example.com", "nobody@example.com"]));
    let r = run(&req).await;
    let f = assert_test_email_failed(&r, Step::RcptTo, Reason::RecipientRejected);
    assert!(f.message.contains("nobody@example.com"), "{}", f.message);
    assert_eq!(f.reply.as_ref().map(|r| r.code), Some(550));
    assert_eq!(peer.count("rcpt_to"), 2);
    assert_eq!(peer.count("message"), 0);
}

#[tokio::test]
async fn rejected_sender_and_message_are_reported() {
    let peer = SmtpPeer::start(&peer_args(&["--tls", "none", "--reject-mail"]));
    let mut req = request(peer.port, TlsMode::None);
    req.test_message = Some(test_message(&["ops@example.com"]));
    let f = assert_test_email_failed(&run(&req).await, Step::MailFrom, Reason::SenderRejected);
    assert_eq!(f.reply.as_ref().map(|r| r.code), Some(553));
    assert_eq!(peer.count("rcpt_to"), 0);

    let peer = SmtpPeer::start(&peer_args(&["--tls", "none", "--reject-data"]));
    let mut req = request(peer.port, TlsMode::None);
    req.test_message = Some(test_message(&["ops@example.com"]));
    let f = assert_test_email_failed(&run(&req).await, Step::Data, Reason::MessageRejected);
    assert_eq!(f.reply.as_ref().map(|r| r.code), Some(554));
    assert_eq!(peer.count("message"), 1);
}

#[tokio::test]
async fn closed_port_is_connection_refused() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let r = run(&request(port, TlsMode::StartTls)).await;
    assert_failed(&r, Step::Connect, Reason::ConnectionRefused);
}

#[tokio::test]
async fn port_outside_allowed_ports_makes_no_connection() {
    let peer = SmtpPeer::start(&peer_args(&["--tls", "none"]));
    let mut req = request(peer.port, TlsMode::None);
    req.policy.allowed_ports = vec![25, 465, 587];
    let r = run(&req).await;
    let f = assert_failed(&r, Step::Policy, Reason::PortNotAllowed);
    assert!(f.message.contains(&peer.port.to_string()), "{}", f.message);
    assert_eq!(r.peer, None);
    assert_eq!(peer.count("connect"), 0);

    req.policy.allowed_ports = vec![peer.port];
    assert_ok(&run(&req).await);
    assert_eq!(peer.count("connect"), 1);
}

#[tokio::test]
async fn denied_destination_makes_no_connection() {
    let peer = SmtpPeer::start(&peer_args(&["--tls", "none"]));
    let mut req = request(peer.port, TlsMode::None);
    req.policy.denied = vec![IpNet { addr: "127.0.0.0".parse().unwrap(), prefix: 8 }];
    let r = run(&req).await;
    let f = assert_failed(&r, Step::Policy, Reason::DestinationNotAllowed);
    assert!(f.message.contains("127.0.0.1"), "{}", f.message);
    assert_eq!(r.peer, None);
    assert_eq!(peer.count("connect"), 0);

    // the same through a host name that resolves to loopback
    req.server = "localhost".into();
    req.policy.denied.push(IpNet { addr: "::1".parse().unwrap(), prefix: 128 });
    assert_failed(&run(&req).await, Step::Policy, Reason::DestinationNotAllowed);
    assert_eq!(peer.count("connect"), 0);
}

#[tokio::test]
async fn silent_server_times_out_at_greeting() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = std::thread::spawn(move || {
        // accept and say nothing; keep the socket open until the engine gives up
        let (s, _) = listener.accept().unwrap();
        std::thread::sleep(Duration::from_secs(5));
        drop(s);
    });
    let mut req = request(port, TlsMode::StartTls);
    req.timeout = Duration::from_secs(1);
    let r = tokio::time::timeout(Duration::from_secs(30), engine::run(&req)).await.expect("bounded by the timeout");
    let f = assert_failed(&r, Step::Greeting, Reason::ConnectionTimedOut);
    assert!(f.message.contains("greeting"), "{}", f.message);
    let _ = held.join();
}

#[tokio::test]
async fn greeting_554_is_server_rejected() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(b"554-5.7.1 mail.example.com: your address is on a block list\r\n554 5.7.1 go away\r\n").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        buf
    });
    let r = run(&request(port, TlsMode::StartTls)).await;
    let f = assert_failed(&r, Step::Greeting, Reason::ServerRejected);
    assert_eq!(f.reply.as_ref().map(|r| r.code), Some(554));
    assert!(f.message.contains("block list") && f.message.contains("go away"), "{}", f.message);
    let sent = server.join().unwrap();
    assert!(!String::from_utf8_lossy(&sent).contains("EHLO"), "no EHLO after a refused greeting");
}

#[tokio::test]
async fn endless_reply_line_is_a_protocol_error() {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let writer = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let chunk = vec![b'2'; 64 * 1024];
        // 16 MiB without a line end, unless the client hangs up first
        for _ in 0..256 {
            if s.write_all(&chunk).is_err() {
                return true;
            }
        }
        false
    });
    let r = run(&request(port, TlsMode::None)).await;
    assert_failed(&r, Step::Greeting, Reason::ProtocolError);
    assert!(writer.join().unwrap(), "the engine hung up instead of reading everything");
}

#[tokio::test]
async fn xoauth2_succeeds() {
    let peer = SmtpPeer::start(&peer_args(&["--tls", "implicit", "--auth", "xoauth2,plain"]));
    let mut req = trusted(&peer, TlsMode::ImplicitTls);
    req.credentials = xoauth2(TOKEN);
    let r = run(&req).await;
    assert_ok(&r);
    assert_eq!(r.auth_mechanism.as_deref(), Some("XOAUTH2"));
    assert_eq!(r.server_mechanisms, ["PLAIN", "XOAUTH2"]);
    let auths = peer.events_of("auth");
    assert_eq!(auths.len(), 1);
    assert_eq!((auths[0]["mechanism"].as_str(), auths[0]["user"].as_str()), (Some("XOAUTH2"), Some(USER)));
    assert_eq!(auths[0]["success"], true);
    assert_no_secret(&r, &peer);
}

#[tokio::test]
async fn xoauth2_bad_token_reports_the_decoded_error() {
    let peer = SmtpPeer::start(&peer_args(&["--tls", "starttls", "--auth", "xoauth2"]));
    let mut req = trusted(&peer, TlsMode::StartTls);
    req.credentials = xoauth2("expired-token-distinctive");
    let r = run(&req).await;
    let f = assert_failed(&r, Step::Auth, Reason::AuthenticationFailed);
    assert_eq!(f.reply.as_ref().map(|r| r.code), Some(535));
    assert!(f.message.contains("status 401"), "{}", f.message);
    assert!(f.message.contains("schemes Bearer"), "{}", f.message);
    assert!(!format!("{r:?}").contains("expired-token-distinctive"));
    assert_eq!(peer.events_of("auth")[0]["success"], false);
}

#[tokio::test]
async fn long_xoauth2_token_uses_the_empty_challenge() {
    let token: String = "t".repeat(3000);
    let peer = SmtpPeer::start(&[
        "--tls",
        "starttls",
        "--auth",
        "xoauth2",
        "--user",
        USER,
        "--xoauth2-token",
        &token,
        "--max-line",
        "1000",
    ]);
    let mut req = trusted(&peer, TlsMode::StartTls);
    req.credentials = xoauth2(&token);
    let r = run(&req).await;
    assert_ok(&r);
    assert_eq!(peer.count("auth_command"), 1, "one AUTH command, the response on its own line");
    assert_eq!(peer.events_of("auth")[0]["success"], true);
}

#[tokio::test]
async fn inline_xoauth2_refused_as_too_long_is_retried_with_the_empty_challenge() {
    // inline line ~ 350 bytes: under 512, over the server's 200
    let token: String = "k".repeat(230);
    let peer = SmtpPeer::start(&[
        "--tls",
        "none",
        "--auth",
        "xoauth2",
        "--user",
        USER,
        "--xoauth2-token",
        &token,
        "--max-line",
        "200",
    ]);
    let mut req = request(peer.port, TlsMode::None);
    req.credentials = xoauth2(&token);
    let r = run(&req).await;
    assert_ok(&r);
    assert_eq!(peer.count("auth_command"), 1, "the inline form never reached AUTH (500 line too long)");
    assert_eq!(peer.events_of("auth")[0]["success"], true);
}
