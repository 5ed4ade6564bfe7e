//! One sanitizer for everything a peer says (docs/security.md): a hostile SMTP peer and a hostile token
//! endpoint (ANSI escapes, CR/LF, bidi overrides, zero-width characters, the password echoed split by a control
//! character, about 1 MB of text) leave the report clean: no control or format character, no credential in any
//! form, bounded length.

mod support;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::json;
use smtp_operator::engine::token::{ClientAuth, Grant, TokenRequest, request_token};
use smtp_operator::engine::{
    self, CheckRequest, Credentials, DialPolicy, PasswordMechanism, Reason, SecretValue, Step, TlsMode, TlsOptions,
    TlsVersion,
};
use support::clean::{Limit, assert_clean};
use support::oauth::OAuthServer;
use support::smtp_peer::SmtpPeer;

const USER: &str = "alice@example.com";
const PASSWORD: &str = "hunter2-sanitize-91c3";
const CLIENT_SECRET: &str = "client-secret-sanitize-77ab";

fn password_forms() -> Vec<String> {
    vec![
        PASSWORD.to_owned(),
        B64.encode(PASSWORD),
        B64.encode(format!("\0{USER}\0{PASSWORD}")),
        // the split form must not survive as the password either once the control character is gone
        PASSWORD.replacen("hun", "hun\x01", 1),
    ]
}

fn hostile_request(peer: &SmtpPeer, mechanism: PasswordMechanism) -> CheckRequest {
    CheckRequest {
        server: "127.0.0.1".into(),
        port: peer.port,
        tls: TlsOptions {
            mode: TlsMode::StartTls,
            min_version: TlsVersion::V1_2,
            extra_roots: vec![peer.ca_der()],
            insecure_skip_verify: false,
        },
        credentials: Credentials::Password {
            username: USER.into(),
            password: SecretValue::new(PASSWORD),
            mechanisms: vec![mechanism],
        },
        helo_name: "sanitize-test.local".into(),
        timeout: Duration::from_secs(20),
        policy: DialPolicy::default(),
        test_message: None,
    }
}

fn hostile_peer(bytes: &str) -> SmtpPeer {
    SmtpPeer::start(&[
        "--tls",
        "starttls",
        "--auth",
        "plain,login",
        "--user",
        USER,
        "--password",
        PASSWORD,
        "--hostile",
        "--hostile-bytes",
        bytes,
    ])
}

async fn check(peer: &SmtpPeer, mechanism: PasswordMechanism) -> engine::Report {
    let r = tokio::time::timeout(Duration::from_secs(60), engine::run(&hostile_request(peer, mechanism)))
        .await
        .expect("the check finished");
    assert_clean("report", &format!("{r:?}"), &password_forms()[..3], Limit::Chars(usize::MAX));
    r
}

#[tokio::test]
async fn hostile_smtp_reply_is_stripped_redacted_and_capped() {
    // 50 KB: a complete 535 reply, quoted in the report
    let peer = hostile_peer("50000");
    for mechanism in [PasswordMechanism::Plain, PasswordMechanism::Login] {
        let r = check(&peer, mechanism).await;
        let f = r.outcome.clone().expect_err("the hostile peer refuses AUTH");
        assert_eq!((f.step, f.reason), (Step::Auth, Reason::AuthenticationFailed), "{f:?}");
        let reply = f.reply.clone().expect("the 535 reply");
        assert_eq!(reply.code, 535);
        assert_clean("reply", &reply.text, &password_forms(), Limit::Chars(301));
        assert_clean("message", &f.message, &password_forms(), Limit::Chars(2000));
        // what was said is still there, cleaned: the echoes became <redacted>, the text around them readable
        assert!(reply.text.contains("you said <redacted>"), "{}", reply.text);
        assert!(reply.text.contains("you sent <redacted>"), "{}", reply.text);
        assert!(reply.text.contains("ALERT") && reply.text.contains("evil bidi"), "{}", reply.text);
    }
    assert_eq!(peer.events_of("auth").iter().filter(|e| e["hostile"] == true).count(), 2);

    // 1 MB: more than an SMTP reply may be; the report quotes its cleaned start
    let peer = hostile_peer("1000000");
    let r = check(&peer, PasswordMechanism::Plain).await;
    let f = r.outcome.clone().expect_err("the hostile peer refuses AUTH");
    assert_eq!((f.step, f.reason), (Step::Auth, Reason::ProtocolError), "{f:?}");
    assert_clean("message", &f.message, &password_forms(), Limit::Chars(2000));
    assert!(f.message.contains("you said <redacted>"), "{}", f.message);
}

#[tokio::test]
async fn hostile_token_endpoint_error_is_stripped_redacted_and_capped() {
    let server = OAuthServer::start(&json!({"clients": [
        {"client_id": "c", "client_secret": CLIENT_SECRET, "token_endpoint_auth_method": "client_secret_post",
         "grant_types": ["client_credentials"], "user": USER}]}));
    let req = TokenRequest {
        token_url: format!("{}/hostile", server.url),
        client_id: "c".into(),
        grant: Grant::ClientCredentials { client_secret: SecretValue::new(CLIENT_SECRET) },
        scopes: vec![],
        client_auth: ClientAuth::RequestBody,
        extra_roots: vec![server.ca_der.clone()],
        timeout: Duration::from_secs(20),
        policy: DialPolicy::default(),
    };
    let e = request_token(&req).await.expect_err("the endpoint answers 401");
    assert_eq!((e.step, e.reason), (Step::Token, Reason::TokenRequestFailed));
    let forms = vec![CLIENT_SECRET.to_owned(), CLIENT_SECRET.replacen("cli", "cli\x01", 1)];
    assert_clean("token error", &e.message, &forms, Limit::Chars(1001));
    assert!(e.message.contains("secret=<redacted>"), "{}", e.message);
    assert!(e.message.contains("invalid_client") && e.message.contains("HTTP 401"), "{}", e.message);
}
