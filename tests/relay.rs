//! The relay end to end (issue 12): `smtp-operator relay` as a real process against the real kube-apiserver,
//! reading its SmtpRelay, SmtpSettings and Secrets from there, in front of real upstreams: Postfix + Dovecot
//! with XOAUTH2 checked by introspection at the Authlib server, the same Postfix with Basic auth, and the
//! aiosmtpd peer (`tests/peers/smtp_peer.py`) whose event log shows exactly what reached the upstream.
//! Clients: swaks, Python smtplib, and a raw line-level dialog for the protocol abuse cases.

mod support;

use serde_json::{Value, json};

use support::kube::{TestNamespace, client};
use support::oauth::{Mta, OAuthServer};
use support::operator::*;
use support::relay::*;
use support::smtp_peer::SmtpPeer;

const USER: &str = "alerts@example.test";
const APP_USER: &str = "app";
const APP_PASSWORD: &str = "relay-client-pw-Distinct-5c1e";
const UPSTREAM_PASSWORD: &str = "upstream-pw-Distinct-8a42";
const CC_SECRET: &str = "cc-secret-Distinct-relay-31d0";
const DOVECOT_SECRET: &str = "dovecot-introspect-Distinct-relay-77b2";

/// The generated-credentials Secret as the operator writes it (keys username, password, host, port).
async fn credentials(client: &kube::Client, ns: &str, relay: &str) {
    let name = format!("{relay}-relay-credentials");
    let host = format!("{relay}.{ns}.svc");
    create_secret(
        client,
        ns,
        &name,
        &[
            ("username", APP_USER.as_bytes()),
            ("password", APP_PASSWORD.as_bytes()),
            ("host", host.as_bytes()),
            ("port", b"587"),
        ],
        &[],
    )
    .await;
}

async fn create_relay(client: &kube::Client, ns: &str, name: &str, spec: Value) {
    let api: kube::Api<smtp_operator::relay::api::SmtpRelay> = kube::Api::namespaced(client.clone(), ns);
    let obj = serde_json::from_value(json!({
        "apiVersion": "smtp-operator.io/v1alpha1", "kind": "SmtpRelay", "metadata": {"name": name}, "spec": spec,
    }))
    .expect("valid SmtpRelay");
    api.create(&Default::default(), &obj).await.expect("create SmtpRelay");
}

/// An SmtpSettings with Basic auth at the aiosmtpd peer (STARTTLS, its CA trusted through a ConfigMap).
async fn basic_settings_at_peer(client: &kube::Client, ns: &str, name: &str, peer: &SmtpPeer) {
    let ca = String::from_utf8(peer.ca_pem()).unwrap();
    create_config_map(client, ns, &format!("{name}-ca"), &[("ca.crt", &ca)]).await;
    create_secret(
        client,
        ns,
        &format!("{name}-password"),
        &[("password", UPSTREAM_PASSWORD.as_bytes())],
        &[("smtp-operator.io/allowed-servers", "127.0.0.1")],
    )
    .await;
    create_smtp(client, ns, name, json!({
        "server": "127.0.0.1", "port": peer.port, "from": format!("Alerts <{USER}>"),
        "tls": {"mode": "StartTLS", "caBundle": {"configMapKeyRef": {"name": format!("{name}-ca"), "key": "ca.crt"}}},
        "auth": {"type": "Basic", "basic": {"username": USER, "passwordSecretRef": {"name": format!("{name}-password"), "key": "password"}}},
    }))
    .await;
}

fn basic_peer(extra: &[&str]) -> SmtpPeer {
    let mut args = vec!["--tls", "starttls", "--auth", "plain,login", "--user", USER, "--password", UPSTREAM_PASSWORD];
    args.extend_from_slice(extra);
    SmtpPeer::start(&args)
}

fn subjects(peer: &SmtpPeer) -> Vec<String> {
    peer.events_of("message").iter().map(|e| e["subject"].as_str().unwrap_or_default().to_string()).collect()
}

fn metric(body: &str, series: &str) -> f64 {
    body.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or(0.0)
}

/// A full transaction on a logged-in dialog up to the final reply of DATA.
fn send_message(d: &mut Dialog, from: &str, to: &str, message: &[u8]) -> String {
    let r = d.cmd(&format!("MAIL FROM:<{from}>"));
    if !r.starts_with('2') {
        return r;
    }
    let r = d.cmd(&format!("RCPT TO:<{to}>"));
    if !r.starts_with('2') {
        return r;
    }
    let r = d.cmd("DATA");
    assert!(r.starts_with("354"), "{r}");
    d.raw(message);
    d.reply()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_and_bad_input_get_the_contract_replies_and_nothing_reaches_the_upstream() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "relay-policy").await;
    let peer = basic_peer(&["--reject-rcpt", "nobody@example.test"]);
    basic_settings_at_peer(&client, ns.name(), "upstream", &peer).await;
    credentials(&client, ns.name(), "mail").await;
    create_relay(
        &client,
        ns.name(),
        "mail",
        json!({
            "settingsRef": {"name": "upstream"},
            "senders": [USER, "*@apps.example.test"],
            "limits": {"maxMessageBytes": 20000, "maxRecipients": 2, "messagesPerMinute": 8},
        }),
    )
    .await;
    let port = peer.port.to_string();
    let relay = RelayProcess::start(ns.name(), "mail", &["--denied-cidrs=", "--allowed-ports", &port]);
    let addr = relay.addr.clone();

    // EHLO: the extensions; AUTH offered (listen.tls None); no command before AUTH
    let mut d = Dialog::connect(&addr);
    assert!(d.greeting.starts_with("220 "), "{}", d.greeting);
    let ehlo = d.cmd("EHLO client.test");
    for ext in ["PIPELINING", "SIZE 20000", "8BITMIME", "ENHANCEDSTATUSCODES", "AUTH PLAIN LOGIN"] {
        assert!(ehlo.contains(ext), "EHLO lacks {ext}: {ehlo}");
    }
    assert!(!ehlo.contains("STARTTLS"), "no certificate, no STARTTLS: {ehlo}");
    let r = d.cmd(&format!("MAIL FROM:<{USER}>"));
    assert!(r.starts_with("530 5.7.0"), "before AUTH: {r}");
    let r = d.login(APP_USER, "wrong-password");
    assert!(r.starts_with("535 5.7.8"), "wrong password: {r}");
    assert!(d.cmd(&format!("AUTH PLAIN {}", b64(&format!("\0{APP_USER}\0{APP_PASSWORD}")))).starts_with("235"));

    // envelope sender not allowed
    let r = d.cmd("MAIL FROM:<evil@example.com>");
    assert!(r.starts_with("550 5.7.1"), "envelope sender: {r}");
    // SIZE over the limit is refused at MAIL
    let r = d.cmd(&format!("MAIL FROM:<{USER}> SIZE=50000"));
    assert!(r.starts_with("552 5.3.4"), "declared size: {r}");
    // too many recipients; the upstream's own 550 for a recipient reaches the client as is
    assert!(d.cmd(&format!("MAIL FROM:<{USER}>")).starts_with("250"));
    let r = d.cmd("RCPT TO:<nobody@example.test>");
    assert!(r.starts_with("550 5.1.1") && r.contains("User unknown"), "upstream 550 passes through: {r}");
    assert!(d.cmd("RCPT TO:<a@example.test>").starts_with("250"));
    let r = d.cmd("RCPT TO:<c@example.test>");
    assert!(r.starts_with("452 4.5.3"), "third recipient over maxRecipients 2: {r}");
    assert!(d.cmd("RSET").starts_with("250"));

    // header From not allowed (envelope fine)
    let msg = b"From: Evil <evil@example.com>\r\nSubject: header-from-refused\r\n\r\nbody\r\n.\r\n";
    let r = send_message(&mut d, "x@apps.example.test", "a@example.test", msg);
    assert!(r.starts_with("550 5.7.1"), "header From: {r}");
    // over maxMessageBytes: refused after the end of data, the rest read and dropped
    let mut big = format!("From: {USER}\r\nSubject: too-big\r\n\r\n").into_bytes();
    for _ in 0..500 {
        big.extend_from_slice(&[b'x'; 98]);
        big.extend_from_slice(b"\r\n");
    }
    big.extend_from_slice(b".\r\n");
    let r = send_message(&mut d, USER, "a@example.test", &big);
    assert!(r.starts_with("552 5.3.4"), "message size: {r}");
    // a command line over the limit
    let r = d.cmd(&format!("NOOP {}", "y".repeat(5000)));
    assert!(r.starts_with("500 5.5.2"), "long line: {r}");
    // bare LF line endings are normalized: the upstream gets proper lines and the same end of data
    let msg = format!("From: {USER}\nSubject: bare-lf\n\nline one\nline two\n.\n");
    let r = send_message(&mut d, USER, "a@example.test", msg.as_bytes());
    assert_eq!(r, "250 2.0.0 OK queued as TEST1", "the upstream's own final reply");
    assert!(d.cmd("QUIT").starts_with("221"));

    // swaks: an allowed message goes through; a refused sender gets 550 5.7.1 at the client
    let (ok, out) = swaks(
        &addr,
        APP_USER,
        APP_PASSWORD,
        &["--from", USER, "--to", "a@example.test", "--header", "Subject: via-swaks"],
    );
    assert!(
        ok && out.contains("<~  250 2.0.0 OK queued as TEST1") || out.contains("<-  250 2.0.0 OK queued as TEST1"),
        "{out}"
    );
    let (ok, out) = swaks(&addr, APP_USER, APP_PASSWORD, &["--from", "other@example.com", "--to", "a@example.test"]);
    assert!(!ok && out.contains("<** 550 5.7.1"), "{out}");
    // smtplib (AUTH LOGIN): sent; and the upstream's 550 for a recipient as the exception's code
    let v = smtplib_send(&addr, APP_USER, APP_PASSWORD, USER, "a@example.test", "via-smtplib");
    assert_eq!(v["ok"], true, "{v}");
    let v = smtplib_send(&addr, APP_USER, APP_PASSWORD, USER, "nobody@example.test", "never");
    assert_eq!((v["error"].as_str(), v["code"].as_i64()), (Some("SMTPRecipientsRefused"), Some(550)), "{v}");

    // per-client rate (127.0.0.3 has its own budget of 8 per minute)
    let mut d = Dialog::connect_from(&addr, Some("127.0.0.3"));
    assert!(d.login(APP_USER, APP_PASSWORD).starts_with("235"));
    let mut replies = Vec::new();
    for _ in 0..9 {
        replies.push(d.cmd(&format!("MAIL FROM:<{USER}>")));
        d.cmd("RSET");
    }
    assert!(replies[..8].iter().all(|r| r.starts_with("250")), "{replies:?}");
    assert!(replies[8].starts_with("450 4.7.0"), "9th message in the minute: {replies:?}");

    // failed logins: delayed, then locked out per address (127.0.0.2), others unaffected
    let mut d = Dialog::connect_from(&addr, Some("127.0.0.2"));
    d.cmd("EHLO locked.test");
    for i in 0..5 {
        let r = d.cmd(&format!("AUTH PLAIN {}", b64(&format!("\0{APP_USER}\0guess{i}"))));
        assert!(r.starts_with("535 5.7.8"), "{r}");
    }
    let r = d.cmd(&format!("AUTH PLAIN {}", b64(&format!("\0{APP_USER}\0{APP_PASSWORD}"))));
    assert!(r.starts_with("454 4.7.0"), "locked out even with the right password: {r}");
    let mut other = Dialog::connect(&addr);
    assert!(other.login(APP_USER, APP_PASSWORD).starts_with("235"), "127.0.0.1 is not locked out");

    // a pipelining flood is answered up to a bound, then the session is closed
    let mut d = Dialog::connect(&addr);
    d.raw("NOOP\r\n".repeat(1000).as_bytes());
    let mut answered = 0;
    let last = loop {
        let r = d.reply();
        if !r.starts_with("250") {
            break r;
        }
        answered += 1;
    };
    assert!(last.starts_with("421 4.7.0") && answered < 1000, "flood after {answered}: {last}");
    assert_eq!(d.reply(), "", "closed after 421");
    assert!(Dialog::connect(&addr).greeting.starts_with("220"), "the relay still serves");

    // what the upstream saw: only the allowed messages; no refused sender, recipient or message
    let subjects = subjects(&peer);
    assert_eq!(subjects, ["bare-lf", "via-swaks", "via-smtplib"], "{}", peer.events_raw());
    let bare = &peer.events_of("message")[0];
    assert_eq!(bare["body"], "line one\r\nline two\r\n", "bare LF became CRLF upstream: {bare}");
    let froms: Vec<Value> = peer.events_of("mail_from").iter().map(|e| e["address"].clone()).collect();
    assert!(!froms.iter().any(|a| a == "evil@example.com" || a == "other@example.com"), "{froms:?}");
    assert!(!peer.events_of("rcpt_to").iter().any(|e| e["address"] == "c@example.test"), "third recipient not sent");
    assert!(peer.events_of("auth").iter().all(|e| e["mechanism"] == "PLAIN"), "{}", peer.events_raw());

    let (code, body) = http_get(&relay.metrics_addr, "/metrics");
    assert_eq!(code, 200);
    assert!(metric(&body, r#"smtp_relay_messages_total{result="sent",class="2xx"}"#) >= 3.0, "{body}");
    assert!(metric(&body, r#"smtp_relay_messages_total{result="refused_sender",class="5xx"}"#) >= 3.0, "{body}");
    assert!(metric(&body, r#"smtp_relay_messages_total{result="rate_limited",class="4xx"}"#) >= 1.0, "{body}");
    assert!(metric(&body, r#"smtp_relay_auth_failures_total{reason="bad_credentials"}"#) >= 6.0, "{body}");
    assert!(body.contains("smtp_relay_upstream_duration_seconds_bucket"), "{body}");
    let log = relay.log_text();
    for secret in [APP_PASSWORD, UPSTREAM_PASSWORD, &b64(&format!("\0{APP_USER}\0{APP_PASSWORD}"))] {
        assert!(!log.contains(secret), "relay log leaks a credential");
        assert!(!body.contains(secret));
    }
    drop(relay);
    ns.cleanup().await;
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_dies_after_data_leaves_the_client_with_a_4xx() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "relay-drop").await;
    let peer = basic_peer(&["--drop-after-data"]);
    basic_settings_at_peer(&client, ns.name(), "upstream", &peer).await;
    credentials(&client, ns.name(), "mail").await;
    create_relay(&client, ns.name(), "mail", json!({"settingsRef": {"name": "upstream"}})).await;
    let port = peer.port.to_string();
    let relay = RelayProcess::start(ns.name(), "mail", &["--denied-cidrs=", "--allowed-ports", &port]);

    let mut d = logged_in(&relay.addr);
    let msg = format!("From: {USER}\r\nSubject: dropped\r\n\r\nbody\r\n.\r\n");
    let r = send_message(&mut d, USER, "a@example.test", msg.as_bytes());
    assert!(r.starts_with("451 4.4.2"), "never a 250 when the upstream did not answer: {r}");
    assert_eq!(peer.count("message"), 1, "the upstream got the message but never accepted it");
    // the session goes on: the next transaction opens a new upstream session
    let r = d.cmd(&format!("MAIL FROM:<{USER}>"));
    assert!(r.starts_with("250"), "{r}");
    // swaks sees the failure as a temporary one (exit status non-zero, 4xx after the message)
    let (ok, out) = swaks(&relay.addr, APP_USER, APP_PASSWORD, &["--from", USER, "--to", "a@example.test"]);
    assert!(!ok && out.contains("<** 451 4.4.2"), "{out}");
    drop(relay);
    ns.cleanup().await;
}

/// Authlib's clients: the relay's app (client credentials) and Dovecot's introspection client.
fn oauth_clients() -> Value {
    json!({"clients": [
        {"client_id": "relay-app", "client_secret": CC_SECRET, "token_endpoint_auth_method": "client_secret_post",
         "grant_types": ["client_credentials"], "user": USER, "scope": "smtp.send"},
        {"client_id": "dovecot", "client_secret": DOVECOT_SECRET, "token_endpoint_auth_method": "client_secret_basic",
         "grant_types": [], "introspect": true}
    ]})
}

fn delivered_with(mta: &Mta, subject: &str) -> bool {
    mta.delivered().iter().any(|m| m.contains(&format!("Subject: {subject}")))
}

/// The two real upstreams of the Postfix tests and a relay in front of each: `mail` → SmtpSettings `office`
/// (XOAUTH2, token from Authlib, checked by Dovecot through introspection) and `legacy` → SmtpSettings `legacy`
/// (Basic), both at the same Postfix submission port with STARTTLS.
struct PostfixRelays {
    oauth: OAuthServer,
    mta: Mta,
    relay: RelayProcess,
    legacy: RelayProcess,
}

async fn postfix_relays(client: &kube::Client, ns: &TestNamespace) -> PostfixRelays {
    let oauth = OAuthServer::start(&oauth_clients());
    let mta = Mta::start(&oauth, "dovecot", DOVECOT_SECRET);
    let mut bundle = std::fs::read_to_string(&mta.ca_path).unwrap();
    bundle.push('\n');
    bundle.push_str(&std::fs::read_to_string(&oauth.ca_path).unwrap());
    create_config_map(client, ns.name(), "peer-ca", &[("ca.crt", &bundle)]).await;
    let bound = [("smtp-operator.io/allowed-servers", "127.0.0.1")];
    create_secret(client, ns.name(), "oauth", &[("client-secret", CC_SECRET.as_bytes())], &bound).await;
    create_secret(client, ns.name(), "basic", &[("password", mta.password.as_bytes())], &bound).await;
    let tls = json!({"mode": "StartTLS", "caBundle": {"configMapKeyRef": {"name": "peer-ca", "key": "ca.crt"}}});
    create_smtp(
        client,
        ns.name(),
        "office",
        json!({
            "server": "127.0.0.1", "port": mta.submission_port, "from": USER, "tls": tls,
            "auth": {"type": "OAuth2", "oauth2": {
                "username": USER, "grant": "ClientCredentials", "tokenUrl": oauth.token_url, "clientId": "relay-app",
                "clientSecretRef": {"name": "oauth", "key": "client-secret"}, "scopes": ["smtp.send"]}},
        }),
    )
    .await;
    create_smtp(client, ns.name(), "legacy", json!({
        "server": "127.0.0.1", "port": mta.submission_port, "from": USER, "tls": tls,
        "auth": {"type": "Basic", "basic": {"username": mta.user, "passwordSecretRef": {"name": "basic", "key": "password"}}},
    }))
    .await;
    for (relay, settings) in [("mail", "office"), ("legacy", "legacy")] {
        credentials(client, ns.name(), relay).await;
        create_relay(client, ns.name(), relay, json!({"settingsRef": {"name": settings}})).await;
    }
    let flags = |smtp: u16, token: u16| {
        vec![
            "--denied-cidrs=".to_string(),
            "--allowed-ports".into(),
            smtp.to_string(),
            "--allowed-token-ports".into(),
            token.to_string(),
        ]
    };
    let f = flags(mta.submission_port, oauth.port);
    let f: Vec<&str> = f.iter().map(String::as_str).collect();
    let relay = RelayProcess::start(ns.name(), "mail", &f);
    let legacy = RelayProcess::start(ns.name(), "legacy", &f);

    PostfixRelays { oauth, mta, relay, legacy }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_and_smtplib_send_through_the_relay_to_postfix_with_xoauth2_and_with_basic() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "relay-postfix").await;
    let PostfixRelays { oauth, mta, relay, legacy } = postfix_relays(&client, &ns).await;

    // XOAUTH2 upstream: swaks (AUTH PLAIN) and smtplib (AUTH LOGIN); the client hears Postfix's own 250
    let (ok, out) = swaks(
        &relay.addr,
        APP_USER,
        APP_PASSWORD,
        &["--from", USER, "--to", USER, "--header", "Subject: relay-xoauth2-swaks"],
    );
    assert!(ok, "{out}\n{}", relay.log_text());
    assert!(out.contains("250 2.0.0 Ok: queued as"), "Postfix's own reply reaches the client: {out}");
    let v = smtplib_send(&relay.addr, APP_USER, APP_PASSWORD, USER, USER, "relay-xoauth2-smtplib");
    assert_eq!(v["ok"], true, "{v}\n{}", relay.log_text());
    wait_until(30, "both messages in the Maildir", || {
        delivered_with(&mta, "relay-xoauth2-swaks") && delivered_with(&mta, "relay-xoauth2-smtplib")
    });
    // the token came from Authlib once, Dovecot checked the one XOAUTH2 login there, and smtplib's message
    // went over the upstream session swaks's left in the pool
    let tokens: Vec<Value> = oauth.events().into_iter().filter(|e| e["event"] == "token").collect();
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    assert_eq!((tokens[0]["client"].as_str(), tokens[0]["result"].as_str()), (Some("relay-app"), Some("ok")));
    let active = oauth.events().iter().filter(|e| e["event"] == "introspect" && e["active"] == true).count();
    assert_eq!(active, 1, "XOAUTH2 logins checked by introspection: {}", oauth.events_text());
    let (_, metrics) = http_get(&relay.metrics_addr, "/metrics");
    assert_eq!(metric(&metrics, "smtp_relay_upstream_sessions_total{source=\"pooled\"}"), 1.0, "{metrics}");
    assert_eq!(metric(&metrics, "smtp_relay_token_requests_total{result=\"Succeeded\"}"), 1.0, "{metrics}");

    // Basic upstream through the second relay
    let (ok, out) = swaks(
        &legacy.addr,
        APP_USER,
        APP_PASSWORD,
        &["--from", USER, "--to", USER, "--header", "Subject: relay-basic-swaks"],
    );
    assert!(ok && out.contains("250 2.0.0 Ok: queued as"), "{out}\n{}", legacy.log_text());
    wait_until(30, "the Basic message in the Maildir", || delivered_with(&mta, "relay-basic-swaks"));

    for (log, what) in [(relay.log_text(), "OAuth2 relay"), (legacy.log_text(), "Basic relay")] {
        for secret in [APP_PASSWORD, CC_SECRET, mta.password.as_str()] {
            assert!(!log.contains(secret), "{what} log leaks a credential");
        }
    }
    drop((relay, legacy));
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_starttls_configured_auth_is_offered_only_after_starttls() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "relay-tls").await;
    let peer = basic_peer(&[]);
    basic_settings_at_peer(&client, ns.name(), "upstream", &peer).await;
    credentials(&client, ns.name(), "mail").await;
    tls_secret(&client, ns.name(), "relay-tls", "IP:127.0.0.1").await;
    create_relay(
        &client,
        ns.name(),
        "mail",
        json!({
            "settingsRef": {"name": "upstream"},
            "listen": {"port": 587, "tls": {"mode": "StartTLS", "certificateSecretRef": {"name": "relay-tls"}}},
        }),
    )
    .await;
    let port = peer.port.to_string();
    let mut relay = RelayProcess::start(ns.name(), "mail", &["--denied-cidrs=", "--allowed-ports", &port]);

    let mut d = Dialog::connect(&relay.addr);
    let ehlo = d.cmd("EHLO client.test");
    assert!(ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"), "before TLS: {ehlo}");
    let r = d.cmd(&format!("AUTH PLAIN {}", b64(&format!("\0{APP_USER}\0{APP_PASSWORD}"))));
    assert!(r.starts_with("538 5.7.11"), "AUTH before STARTTLS: {r}");
    let r = d.cmd(&format!("MAIL FROM:<{USER}>"));
    assert!(r.starts_with("530 5.7.0"), "{r}");
    // STARTTLS with a pipelined command behind it is refused (no command injection into the TLS session)
    let mut d = Dialog::connect(&relay.addr);
    d.cmd("EHLO client.test");
    d.raw(b"STARTTLS\r\nMAIL FROM:<x@example.test>\r\n");
    assert!(d.reply().starts_with("554 5.5.1"), "pipelined after STARTTLS");

    // smtplib with STARTTLS: AUTH LOGIN inside TLS, message delivered upstream
    let v = smtplib_send_with(&relay.addr, APP_USER, APP_PASSWORD, USER, "a@example.test", "over-starttls", true);
    assert_eq!(v["ok"], true, "{v}\n{}", relay.log_text());
    assert_eq!(subjects(&peer), ["over-starttls"]);

    // SIGTERM: an idle client is told 421 at once and the relay exits cleanly
    let mut idle = Dialog::connect(&relay.addr);
    assert!(idle.cmd("EHLO idle.test").starts_with("250"));
    let status = relay.terminate().expect("relay stopped within the grace period");
    assert!(status.success(), "{status:?}\n{}", relay.log_text());
    assert!(idle.reply().starts_with("421 4.3.2"), "idle session told to come back");
    ns.cleanup().await;
}

/// Headers and the first half of a body, as a client writes them after `354` (no end-of-data yet).
fn half_message(subject: &str) -> String {
    format!("From: {USER}\r\nTo: a@example.test\r\nSubject: {subject}\r\n\r\nfirst half\r\n")
}

/// A namespace with the SmtpRelay `mail` in front of a Basic-auth aiosmtpd peer, and the relay's policy flags.
async fn relay_at_basic_peer(prefix: &str) -> (TestNamespace, SmtpPeer, Vec<String>) {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, prefix).await;
    let peer = basic_peer(&[]);
    basic_settings_at_peer(&client, ns.name(), "upstream", &peer).await;
    credentials(&client, ns.name(), "mail").await;
    create_relay(&client, ns.name(), "mail", json!({"settingsRef": {"name": "upstream"}})).await;
    let flags = vec!["--denied-cidrs=".into(), "--allowed-ports".into(), peer.port.to_string()];
    (ns, peer, flags)
}

/// A whole message: [`half_message`], the rest and the end of data.
fn whole_message(subject: &str) -> String {
    format!("{}second half\r\n.\r\n", half_message(subject))
}

/// A new client session, logged in with the generated credentials.
fn logged_in(addr: &str) -> Dialog {
    let mut d = Dialog::connect(addr);
    assert!(d.login(APP_USER, APP_PASSWORD).starts_with("235"));
    d
}

/// MAIL, RCPT, DATA and the first half of the body of a message: the transaction is then in flight.
fn begin_message(d: &mut Dialog, subject: &str) {
    assert!(d.cmd(&format!("MAIL FROM:<{USER}>")).starts_with("250"));
    assert!(d.cmd("RCPT TO:<a@example.test>").starts_with("250"));
    assert!(d.cmd("DATA").starts_with("354"));
    d.raw(half_message(subject).as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_or_stopped_mid_transaction_loses_no_accepted_message_and_sends_none_twice() {
    let (ns, peer, flags) = relay_at_basic_peer("relay-kill").await;
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut relay = RelayProcess::start(ns.name(), "mail", &flags);

    // one message accepted, then SIGKILL while the next one's body is on its way
    let mut d = logged_in(&relay.addr);
    let done = whole_message("accepted-before-kill");
    assert!(send_message(&mut d, USER, "a@example.test", done.as_bytes()).starts_with("250"));
    begin_message(&mut d, "in-flight-at-kill");
    let disconnects = peer.count("disconnect");
    relay.child.kill().expect("SIGKILL the relay");
    relay.child.wait().unwrap();
    assert_eq!(d.reply(), "", "the client never hears 250 for the interrupted message (it will retry)");
    wait_until(30, "the upstream to see the relay's connection end", || peer.count("disconnect") > disconnects);
    assert_eq!(subjects(&peer), ["accepted-before-kill"], "the half message was discarded upstream");

    // the app retries on a new relay process: the message arrives once
    let mut relay = RelayProcess::start(ns.name(), "mail", &flags);
    let mut d = logged_in(&relay.addr);
    let retry = whole_message("in-flight-at-kill");
    assert!(send_message(&mut d, USER, "a@example.test", retry.as_bytes()).starts_with("250"));

    // SIGTERM mid-body: the transaction in flight is finished and accepted, then the session is closed
    begin_message(&mut d, "in-flight-at-sigterm");
    support::process::sigterm(&relay.child);
    wait_until(30, "the relay to stop listening", || std::net::TcpStream::connect(&relay.addr).is_err());
    d.raw(b"second half\r\n.\r\n");
    assert!(d.reply().starts_with("250"), "the message in flight at SIGTERM is completed");
    assert!(d.cmd("NOOP").starts_with("421 4.3.2"), "then the session is told to come back");
    let status = relay.terminate().expect("relay stopped within the grace period");
    assert!(status.success(), "{status:?}\n{}", relay.log_text());
    assert_eq!(subjects(&peer), ["accepted-before-kill", "in-flight-at-kill", "in-flight-at-sigterm"]);
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_connect_per_message_share_pooled_upstream_sessions() {
    let (ns, peer, flags) = relay_at_basic_peer("relay-pool").await;
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let relay = RelayProcess::start(ns.name(), "mail", &flags);

    // three clients one after the other, each its own connection (like swaks, Alertmanager, most mailers)
    for i in 0..3 {
        let subject = format!("pooled-{i}");
        let (ok, out) = swaks(
            &relay.addr,
            APP_USER,
            APP_PASSWORD,
            &["--from", USER, "--to", "a@example.test", "--header", &format!("Subject: {subject}")],
        );
        assert!(ok, "{out}\n{}", relay.log_text());
    }
    // a client that leaves with a transaction open: its session is reset before it is pooled
    let mut d = logged_in(&relay.addr);
    assert!(d.cmd(&format!("MAIL FROM:<{USER}>")).starts_with("250"));
    assert!(d.cmd("RCPT TO:<left@example.test>").starts_with("250"));
    assert!(d.cmd("QUIT").starts_with("221"));
    wait_until(30, "the abandoned transaction reset upstream", || peer.count("rset") >= 1);
    let (ok, out) = swaks(&relay.addr, APP_USER, APP_PASSWORD, &["--from", USER, "--to", "b@example.test"]);
    assert!(ok, "{out}");

    assert_eq!(peer.count("connect"), 1, "one upstream connection carried all five client sessions");
    assert_eq!(peer.count("auth"), 1, "one upstream AUTH");
    let msgs = peer.events_of("message");
    assert_eq!(msgs.len(), 4);
    assert_eq!(msgs[3]["rcpt_tos"], json!(["b@example.test"]), "the abandoned recipient did not carry over");
    let (_, metrics) = http_get(&relay.metrics_addr, "/metrics");
    assert_eq!(metric(&metrics, "smtp_relay_upstream_sessions_total{source=\"opened\"}"), 1.0, "{metrics}");
    assert_eq!(metric(&metrics, "smtp_relay_upstream_sessions_total{source=\"pooled\"}"), 4.0, "{metrics}");
    drop(relay);
    ns.cleanup().await;
}

/// Alertmanager's configuration: one email receiver per relay (AUTH PLAIN with the relay's generated
/// credentials, as its docs show), routed by the alert's `relay` label, sent at once.
fn alertmanager_config(mail: &str, legacy: &str) -> String {
    let receiver = |name: &str, addr: &str| {
        format!(
            "- name: {name}\n  email_configs:\n  - to: {USER}\n    from: {USER}\n    smarthost: {addr}\n    auth_username: {APP_USER}\n    auth_password: {APP_PASSWORD}\n    require_tls: false\n    headers: {{Subject: 'am-{name}-{{{{ .CommonLabels.alertname }}}}'}}\n"
        )
    };
    format!(
        "route:\n  receiver: mail\n  group_by: [alertname, relay]\n  group_wait: 0s\n  routes:\n  - matchers: ['relay=\"legacy\"']\n    receiver: legacy\nreceivers:\n{}{}",
        receiver("mail", mail),
        receiver("legacy", legacy),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_sends_through_the_relay_to_postfix_with_xoauth2_and_with_basic() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "relay-am").await;
    let PostfixRelays { oauth, mta, relay, legacy } = postfix_relays(&client, &ns).await;
    let am = Alertmanager::start(&alertmanager_config(&relay.addr, &legacy.addr));
    am.post_alerts(&json!([
        {"labels": {"alertname": "RelayXOAuth2", "relay": "mail", "severity": "critical"}},
        {"labels": {"alertname": "RelayBasic", "relay": "legacy", "severity": "critical"}},
    ]));
    wait_until(60, "both alert emails in the Maildir", || {
        delivered_with(&mta, "am-mail-RelayXOAuth2") && delivered_with(&mta, "am-legacy-RelayBasic")
    });
    // Alertmanager spoke AUTH PLAIN to the relay; the relay spoke XOAUTH2 upstream with a token from Authlib
    // that Dovecot introspected, and Basic through the second relay
    let token_ok = |e: &Value| e["event"] == "token" && e["result"] == "ok" && e["client"] == "relay-app";
    assert_eq!(oauth.events().iter().filter(|e| token_ok(e)).count(), 1, "{}", oauth.events_text());
    assert!(oauth.events().iter().any(|e| e["event"] == "introspect" && e["active"] == true));
    assert!(relay.log_text().contains("message relayed"), "{}", relay.log_text());
    assert!(legacy.log_text().contains("message relayed"), "{}", legacy.log_text());
    let failures = am.log_text().lines().filter(|l| l.contains("Notify for alerts failed")).count();
    assert_eq!(failures, 0, "{}", am.log_text());
    drop((am, relay, legacy));
    ns.cleanup().await;
}
