//! The sanitizer end to end through the operator (docs/security.md, "one sanitizer"): a hostile SMTP server
//! answers AUTH with about 1 MB (more than any SMTP reply may be, so the check fails as ProtocolError) of ANSI
//! escapes, bare CR, bidi overrides, zero-width characters and the
//! password echoed back (split by a control character, and as the client's base64). What the operator makes of
//! it — the conditions, `status.lastCheck`, the Warning event and its own log — is clean: no control or format
//! character, no form of the password, bounded length. The same for a hostile OAuth2 token endpoint, whose
//! `error` and `error_description` carry ANSI escapes, CR/LF, bidi overrides and the client secret echoed split
//! by a control character. (The engine-level cases are in tests/sanitize.rs.)

mod support;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use serde_json::json;
use support::clean::{HOSTILE, Limit, assert_clean};
use support::oauth::OAuthServer;
use support::operator::*;
use support::scenario::Scenario;

const USER: &str = "alerts";
const PASSWORD: &str = "pw-Hostile-e2e-4c1d8a";
const CLIENT_SECRET: &str = "hostile-client-secret-e2e-6d2f";

fn password_forms() -> Vec<String> {
    vec![
        PASSWORD.to_owned(),
        B64.encode(PASSWORD),
        B64.encode(format!("\0{USER}\0{PASSWORD}")),
        PASSWORD.replacen("pw-", "pw-\x01", 1),
    ]
}

fn client_secret_forms() -> Vec<String> {
    vec![CLIENT_SECRET.to_owned(), B64.encode(CLIENT_SECRET), CLIENT_SECRET.replacen("hos", "hos\x01", 1)]
}

/// Everything the operator made of a failed check: every condition, the status, the events, its log.
#[track_caller]
fn assert_all_clean(
    obj: &smtp_operator::api::SmtpSettings,
    events: &[(String, String, String)],
    log: &str,
    secrets: &[String],
) {
    for c in obj.status.as_ref().expect("status").conditions.iter() {
        assert_clean(&format!("condition {}", c.type_), &c.message, secrets, Limit::Bytes(1024));
    }
    let status = serde_json::to_string(obj.status.as_ref().unwrap()).unwrap();
    for form in secrets {
        assert!(!status.contains(form.as_str()), "status carries a form of a credential: {status}");
    }
    for (_, reason, note) in events {
        assert_clean(&format!("event {reason}"), note, secrets, Limit::Bytes(1000));
    }
    for form in secrets {
        assert!(!log.contains(form.as_str()), "the operator log carries a form of a credential");
    }
    // JSON log lines: a control character would show as its escape, a format character as itself
    for line in log.lines() {
        let escaped = ["\\u001b", "\\u0001"].iter().any(|e| line.contains(e));
        assert!(!escaped && !line.chars().any(|c| HOSTILE.contains(&c)), "a hostile character in the log: {line:?}");
    }
}

#[tokio::test]
async fn a_hostile_servers_reply_reaches_conditions_events_and_logs_clean() {
    let peer = ["--tls", "starttls", "--auth", "plain,login", "--user", USER, "--password", PASSWORD, "--hostile"];
    let mut s = Scenario::new("e2e-hostile", &peer).await;
    s.basic_credentials(PASSWORD, true).await;
    s.start_operator(&[]);
    s.create("mail", s.basic_spec()).await;

    // a 1 MB reply is more than an SMTP reply may be: the check fails as ProtocolError, quoting the start of it
    let obj = s.wait_condition("mail", "Ready", "False", Some("ProtocolError")).await;
    assert!(s.peer.count("auth") >= 1, "the hostile peer saw no AUTH: {}", s.peer.events_raw());
    let ready = condition(&obj, "Ready").expect("Ready condition");
    assert!(ready.message.contains("535"), "the reply code stays in the message: {:?}", ready.message);
    assert!(ready.message.contains("<redacted>"), "the echoed password is masked: {:?}", ready.message);
    let events = s.wait_event("mail", "Warning", "ProtocolError").await;
    let log = s.op().log_text();
    assert_all_clean(&obj, &events, &log, &password_forms());
    s.finish().await;
}

#[tokio::test]
async fn a_hostile_token_endpoints_answer_reaches_conditions_events_and_logs_clean() {
    let clients = json!({"clients": [
        {"client_id": "cc-app", "client_secret": CLIENT_SECRET, "token_endpoint_auth_method": "client_secret_post",
         "grant_types": ["client_credentials"], "user": "alerts@example.com", "scope": "smtp.send"}
    ]});
    let oauth = OAuthServer::start(&clients);
    let mut s = Scenario::new("e2e-hostile-token", &["--tls", "starttls"]).await;
    let mut hostile = url::Url::parse(&oauth.token_url).expect("token URL");
    hostile.set_path("/hostile");
    let token_host = format!("{}:{}", hostile.host_str().expect("host"), oauth.port);
    let servers = format!("{token_host}, 127.0.0.1:{}", s.peer.port);
    let secret = [("client-secret", CLIENT_SECRET.as_bytes())];
    create_secret(&s.client, s.ns(), "cc", &secret, &[("smtp-operator.io/allowed-servers", &servers)]).await;
    let ca = std::fs::read_to_string(&oauth.ca_path).expect("CA PEM");
    create_config_map(&s.client, s.ns(), "peer-ca", &[("ca.crt", &ca)]).await;
    s.start_operator(&["--allowed-token-ports", &oauth.port.to_string()]);
    let spec = json!({
        "server": "127.0.0.1", "port": s.peer.port, "from": "alerts@example.com",
        "tls": {"mode": "StartTLS", "caBundle": {"configMapKeyRef": {"name": "peer-ca", "key": "ca.crt"}}},
        "auth": {"type": "OAuth2", "oauth2": {
            "username": "alerts@example.com", "grant": "ClientCredentials", "tokenUrl": hostile.as_str(),
            "clientId": "cc-app", "clientSecretRef": {"name": "cc", "key": "client-secret"}, "scopes": ["smtp.send"]}},
    });
    s.create("mail", spec).await;

    let obj = s.wait_condition("mail", "Ready", "False", Some("TokenRequestFailed")).await;
    let ready = condition(&obj, "Ready").expect("Ready condition");
    assert!(ready.message.contains("invalid_client"), "the endpoint's error stays in the message: {:?}", ready.message);
    assert!(
        oauth.http_paths().iter().any(|p| p == "/hostile"),
        "the hostile endpoint was asked: {:?}",
        oauth.http_paths()
    );
    assert_eq!(s.peer.events(), Vec::<serde_json::Value>::new(), "no SMTP dial without a token");
    let events = s.wait_event("mail", "Warning", "TokenRequestFailed").await;
    let log = s.op().log_text();
    assert_all_clean(&obj, &events, &log, &client_secret_forms());
    s.finish().await;
}
