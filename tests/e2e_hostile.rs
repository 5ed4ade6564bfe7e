//! The sanitizer end to end through the operator (docs/security.md, "one sanitizer"): a hostile SMTP server
//! answers AUTH with about 1 MB (more than any SMTP reply may be, so the check fails as ProtocolError) of ANSI
//! escapes, bare CR, bidi overrides, zero-width characters and the
//! password echoed back (split by a control character, and as the client's base64). What the operator makes of
//! it — the conditions, `status.lastCheck`, the Warning event and its own log — is clean: no control or format
//! character, no form of the password, bounded length. (The engine-level cases, token endpoint included, are in
//! tests/sanitize.rs.)

mod support;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use support::operator::*;
use support::scenario::Scenario;

const USER: &str = "alerts";
const PASSWORD: &str = "pw-Hostile-e2e-4c1d8a";

/// What the hostile peer sends that must never come out (listed here, not taken from the code under test).
const HOSTILE: &[char] =
    &['\x1b', '\r', '\n', '\x01', '\x7f', '\u{202e}', '\u{202c}', '\u{2066}', '\u{2069}', '\u{200b}', '\u{feff}'];

fn password_forms() -> Vec<String> {
    vec![
        PASSWORD.to_owned(),
        B64.encode(PASSWORD),
        B64.encode(format!("\0{USER}\0{PASSWORD}")),
        PASSWORD.replacen("pw-", "pw-\x01", 1),
    ]
}

#[track_caller]
fn assert_clean(what: &str, text: &str, max_bytes: usize) {
    assert!(
        !text.chars().any(|c| HOSTILE.contains(&c) || c.is_control()),
        "{what} has a control or format character: {text:?}"
    );
    for form in password_forms() {
        assert!(!text.contains(&form), "{what} carries a form of the password: {text:?}");
    }
    assert!(text.len() <= max_bytes, "{what} is {} bytes long", text.len());
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
    for c in obj.status.as_ref().expect("status").conditions.iter() {
        assert_clean(&format!("condition {}", c.type_), &c.message, 1024);
    }
    let status = serde_json::to_string(obj.status.as_ref().unwrap()).unwrap();
    for form in password_forms() {
        assert!(!status.contains(&form), "status carries a form of the password: {status}");
    }

    let events = s.wait_event("mail", "Warning", "ProtocolError").await;
    for (_, reason, note) in &events {
        assert_clean(&format!("event {reason}"), note, 1000);
    }
    let log = s.op().log_text();
    for form in password_forms() {
        assert!(!log.contains(&form), "the operator log carries a form of the password");
    }
    // JSON log lines: a control character would show as its escape, a format character as itself
    for line in log.lines() {
        let escaped = ["\\u001b", "\\u0001"].iter().any(|e| line.contains(e));
        assert!(!escaped && !line.chars().any(|c| HOSTILE.contains(&c)), "a hostile character in the log: {line:?}");
    }
    s.finish().await;
}
