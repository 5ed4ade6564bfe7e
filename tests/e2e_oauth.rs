//! End to end for OAuth2 (issue 4): the operator PROCESS against the real kube-apiserver, a real Authlib
//! authorization server (`tests/peers/oauth_server.py`) and a real Postfix + Dovecot (`scripts/mta`) that
//! validates XOAUTH2 tokens by RFC 7662 introspection at that same Authlib server.
//!
//! Each test has its own namespace, peers and operator (`--watch-namespace`), so the counts it asserts (token
//! requests and introspections at the Authlib server, connections at the SMTP peer) are its own.
//! Token requests are counted AT THE SERVER (its events file), not by the operator's own bookkeeping.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use smtp_operator::api::{CheckResult, SmtpSettings, TestEmailResult};

use support::kube::{TestNamespace, client};
use support::oauth::{Mta, OAuthServer};
use support::operator::*;
use support::smtp_peer::SmtpPeer;

/// The mailbox every app's tokens are for (the MTA's user; Dovecot compares it with the introspected `username`).
const USER: &str = "alerts@example.test";
const CC_SECRET: &str = "cc-secret-Distinct-41f7e2";
const RT_SECRET: &str = "rt-secret-Distinct-9b03aa";
const REFRESH_TOKEN: &str = "refresh-token-Distinct-c55e18";
const STRICT_SECRET: &str = "strict-secret-Distinct-7d21c4";
const WRONG_SECRET: &str = "wrong-secret-Distinct-e0b9f3";
const DOVECOT_SECRET: &str = "dovecot-introspect-Distinct-2a6d";
const JWT_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The apps (clients) the Authlib peer knows, one per grant, plus Dovecot's introspection client.
fn clients() -> Value {
    json!({"clients": [
        {"client_id": "cc-app", "client_secret": CC_SECRET, "token_endpoint_auth_method": "client_secret_post",
         "grant_types": ["client_credentials"], "user": USER, "scope": "smtp.send"},
        {"client_id": "rt-app", "client_secret": RT_SECRET, "token_endpoint_auth_method": "client_secret_basic",
         "grant_types": ["refresh_token"], "user": USER, "refresh_tokens": [REFRESH_TOKEN]},
        {"client_id": "jwt-app", "token_endpoint_auth_method": "none", "grant_types": [JWT_GRANT],
         "subjects": [USER], "jwt_key": true},
        // accepts only client_secret_basic (the peer's clients are strict about their method)
        {"client_id": "strict-basic-app", "client_secret": STRICT_SECRET, "token_endpoint_auth_method": "client_secret_basic",
         "grant_types": ["client_credentials"], "user": USER},
        {"client_id": "dovecot", "client_secret": DOVECOT_SECRET, "token_endpoint_auth_method": "client_secret_basic",
         "grant_types": [], "introspect": true}
    ]})
}

/// Authlib, plus Postfix + Dovecot introspecting at it.
fn peers() -> (OAuthServer, Mta) {
    let oauth = OAuthServer::start(&clients());
    let mta = Mta::start(&oauth, "dovecot", DOVECOT_SECRET);
    (oauth, mta)
}

/// The operator for one test namespace; loopback peers need `--denied-cidrs=` and their ports allowed.
fn start_operator(ns: &str, smtp_port: u16, token_port: u16) -> Operator {
    let (smtp_port, token_port) = (smtp_port.to_string(), token_port.to_string());
    Operator::start(&[
        "--watch-namespace",
        ns,
        "--denied-cidrs=",
        "--allowed-ports",
        &smtp_port,
        "--allowed-token-ports",
        &token_port,
        "--min-check-interval",
        "1s",
        "--namespace-check-rate",
        "600/m",
    ])
}

/// One ConfigMap key trusting both test CAs: the SMTP server's and the token endpoint's (they differ: each
/// peer makes its own CA). `tls.caBundle` is used for both destinations.
async fn ca_config_map(client: &kube::Client, ns: &str, smtp_ca: &[u8], oauth: &OAuthServer) {
    let mut bundle = String::from_utf8(smtp_ca.to_vec()).unwrap();
    bundle.push('\n');
    bundle.push_str(&std::fs::read_to_string(&oauth.ca_path).unwrap());
    create_config_map(client, ns, "peer-ca", &[("ca.crt", &bundle)]).await;
}

/// A Secret bound to the token endpoint and the SMTP server (both on 127.0.0.1, any port: the places its values
/// and the access token obtained with them may go), whose JwtBearer key may act as [`USER`].
async fn oauth_secret(client: &kube::Client, ns: &str, name: &str, data: &[(&str, &[u8])]) {
    let annotations = [("smtp-operator.io/allowed-servers", "127.0.0.1"), ("smtp-operator.io/allowed-subjects", USER)];
    create_secret(client, ns, name, data, &annotations).await;
}

fn spec(smtp_port: u16, oauth2: Value) -> Value {
    json!({
        "server": "127.0.0.1",
        "port": smtp_port,
        "from": format!("Platform Alerts <{USER}>"),
        "tls": {"mode": "StartTLS", "caBundle": {"configMapKeyRef": {"name": "peer-ca", "key": "ca.crt"}}},
        "auth": {"type": "OAuth2", "oauth2": oauth2},
        "testEmail": {"to": [USER]},
    })
}

fn cc_oauth2(oauth: &OAuthServer, secret: &str) -> Value {
    json!({
        "username": USER, "grant": "ClientCredentials", "tokenUrl": oauth.token_url, "clientId": "cc-app",
        "clientSecretRef": {"name": secret, "key": "client-secret"}, "scopes": ["smtp.send"],
        "clientAuthMethod": "RequestBody",
    })
}

/// Token requests the Authlib server handled for `client` (any result), by grant type.
fn grants_seen(oauth: &OAuthServer, client: &str) -> Vec<String> {
    oauth
        .events()
        .iter()
        .filter(|e| e["event"] == "token" && e["client"] == client)
        .map(|e| format!("{}:{}", e["grant"].as_str().unwrap_or_default(), e["result"].as_str().unwrap_or_default()))
        .collect()
}

/// Successful introspections at the Authlib server (= XOAUTH2 logins Dovecot checked with an active token).
fn active_introspections(oauth: &OAuthServer) -> usize {
    oauth.events().iter().filter(|e| e["event"] == "introspect" && e["active"] == true).count()
}

/// The value of one sample line of the Prometheus exposition (`name{labels}` exactly as printed).
fn metric(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Everything the operator wrote where people look: events (whole objects) and the SmtpSettings (status).
async fn published_text(client: &kube::Client, ns: &str) -> String {
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    let smtp: Api<SmtpSettings> = Api::namespaced(client.clone(), ns);
    let e = events.list(&ListParams::default()).await.expect("list events");
    let s = smtp.list(&ListParams::default()).await.expect("list SmtpSettings");
    format!("{}\n{}", serde_json::to_string(&e.items).unwrap(), serde_json::to_string(&s.items).unwrap())
}

/// Runs of `[A-Za-z0-9_-]` of exactly 43 characters: the shape of the peer's access tokens
/// (`secrets.token_urlsafe(32)`), which the tests never see, so they look for the shape instead.
fn token_shaped(text: &str, except: &[&str]) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .filter(|w| w.len() == 43 && !except.iter().any(|x| x.contains(*w)))
        .map(str::to_string)
        .collect()
}

/// No credential of any kind in `text`: the given secret values, no bearer token or XOAUTH2 initial response,
/// no JWT (assertion), no access-token-shaped string.
fn assert_no_credentials(what: &str, text: &str, secrets: &[&str], except: &[&str]) {
    for s in secrets {
        assert!(!text.contains(s), "{what} contains the secret value {s:?}");
    }
    assert!(!text.contains("Bearer "), "{what} contains a bearer token");
    assert!(!text.contains("auth=Bearer"), "{what} contains an XOAUTH2 response");
    // base64 of "user=alerts@example.test\x01auth=Bearer " starts with this (the XOAUTH2 initial response)
    assert!(!text.contains("dXNlcj1hbGVydHNAZXhhbXBsZS50ZXN0"), "{what} contains an XOAUTH2 initial response");
    assert!(!text.contains("eyJ"), "{what} contains a JWT (assertion or token)");
    let shaped = token_shaped(text, except);
    assert!(shaped.is_empty(), "{what} contains access-token-shaped strings: {shaped:?}");
}

/// A line from the middle of a PEM body (to look for key material in logs).
fn pem_body_line(pem: &str) -> String {
    pem.lines().nth(2).expect("a PEM body line").to_string()
}

/// The operator's log lines about checks (for assertion messages).
fn check_lines(op: &Operator) -> String {
    op.log_text()
        .lines()
        .filter(|l| ["check finished", "check deferred", "reconcile failed", "token"].iter().any(|w| l.contains(w)))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn wait_checked_again(client: &kube::Client, ns: &str, name: &str, before: &SmtpSettings) -> SmtpSettings {
    let inputs =
        |o: &SmtpSettings| o.status.as_ref().and_then(|s| s.last_check.as_ref()).and_then(|l| l.inputs.clone());
    let old = inputs(before);
    wait_for(client, ns, name, 60, |o| inputs(o) != old).await
}

#[tokio::test]
async fn every_grant_goes_ready_with_xoauth2_at_postfix_and_dovecot() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "oauth-grants").await;
    let (oauth, mta) = peers();
    ca_config_map(&client, ns.name(), &std::fs::read(&mta.ca_path).unwrap(), &oauth).await;
    let (_, sa_json_path) = oauth.keys["jwt-app"].clone();
    let sa_json = std::fs::read_to_string(&sa_json_path).unwrap();
    let private_key: String = serde_json::from_str::<Value>(&sa_json).unwrap()["private_key"].as_str().unwrap().into();
    oauth_secret(&client, ns.name(), "cc", &[("client-secret", CC_SECRET.as_bytes())]).await;
    oauth_secret(
        &client,
        ns.name(),
        "rt",
        &[("client-secret", RT_SECRET.as_bytes()), ("refresh-token", REFRESH_TOKEN.as_bytes())],
    )
    .await;
    oauth_secret(&client, ns.name(), "sa", &[("key.json", sa_json.as_bytes())]).await;
    let op = start_operator(ns.name(), mta.submission_port, oauth.port);

    create_smtp(&client, ns.name(), "client-credentials", spec(mta.submission_port, cc_oauth2(&oauth, "cc"))).await;
    create_smtp(&client, ns.name(), "refresh-token", spec(mta.submission_port, json!({
        "username": USER, "grant": "RefreshToken", "tokenUrl": oauth.token_url, "clientId": "rt-app",
        "clientSecretRef": {"name": "rt", "key": "client-secret"}, "refreshTokenRef": {"name": "rt", "key": "refresh-token"},
        "clientAuthMethod": "BasicAuth",
    })))
    .await;
    // Google-style: the whole service-account JSON key in the Secret, the service account as issuer
    create_smtp(&client, ns.name(), "jwt-bearer", spec(mta.submission_port, json!({
        "username": USER, "grant": "JwtBearer", "tokenUrl": oauth.token_url, "clientId": "jwt-app",
        "privateKeyRef": {"name": "sa", "key": "key.json"}, "subject": USER, "scopes": ["https://mail.google.com/"],
    })))
    .await;

    for (name, app, grant) in [
        ("client-credentials", "cc-app", "client_credentials"),
        ("refresh-token", "rt-app", "refresh_token"),
        ("jwt-bearer", "jwt-app", JWT_GRANT),
    ] {
        let obj = wait_condition(&client, ns.name(), name, "Ready", "True", Some("CheckSucceeded"), 60).await;
        let lc = obj.status.as_ref().unwrap().last_check.clone().unwrap();
        assert_eq!(lc.result, CheckResult::Succeeded, "{name}");
        assert_eq!(lc.auth_mechanism.as_deref(), Some("XOAUTH2"), "{name}: authenticated with XOAUTH2");
        assert!(lc.server_mechanisms.iter().any(|m| m == "XOAUTH2"), "{name}: {:?}", lc.server_mechanisms);
        assert!(lc.tls_version.is_some(), "{name}: STARTTLS negotiated");
        // the early warnings see both endpoints' certificates (the test CA's, valid 90 days: no warning)
        let token_cert = lc.token_endpoint_certificate.as_ref().expect("status.lastCheck.tokenEndpointCertificate");
        assert_eq!(token_cert.issuer, "CN=smtp-operator test CA", "{name}");
        assert!(token_cert.dns_names.iter().any(|n| n == "localhost"), "{name}: {token_cert:?}");
        assert!(lc.certificate.is_some(), "{name}: the SMTP server's certificate");
        assert_eq!(condition(&obj, "Degraded").unwrap().reason, "NoWarnings", "{name}");
        let auth = condition(&obj, "Authenticated").unwrap();
        assert_eq!((auth.status.as_str(), auth.reason.as_str()), ("True", "Authenticated"), "{name}");
        assert_eq!(condition(&obj, "Connected").unwrap().status, "True", "{name}");
        // the token came from the Authlib server, by this grant, exactly once
        assert_eq!(grants_seen(&oauth, app), [format!("{grant}:ok")], "{name}");
    }
    // every login was checked by Dovecot at the Authlib server (active token, for the mailbox)
    let introspections: Vec<Value> = oauth.events().into_iter().filter(|e| e["event"] == "introspect").collect();
    assert_eq!(introspections.len(), 3, "one check each: {introspections:?}\n{}", check_lines(&op));
    assert!(introspections.iter().all(|e| e["active"] == true && e["username"] == USER && e["client"] == "dovecot"));

    // a test email through XOAUTH2 reaches the Maildir
    tokio::time::sleep(Duration::from_millis(1200)).await; // past --min-check-interval 1s
    annotate_smtp(&client, ns.name(), "client-credentials", "smtp-operator.io/test-email-requested-at", "t1").await;
    let obj = wait_for(&client, ns.name(), "client-credentials", 60, |o| {
        o.status.as_ref().and_then(|s| s.test_email.as_ref()).is_some_and(|t| {
            t.request == "t1" && !matches!(t.result, TestEmailResult::Deferred | TestEmailResult::Sending)
        })
    })
    .await;
    let te = obj.status.unwrap().test_email.unwrap();
    assert_eq!(te.result, TestEmailResult::Sent, "{te:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !mta.delivered().iter().any(|m| m.contains("Subject: smtp-operator test email")) {
        assert!(Instant::now() < deadline, "test email not delivered: {:?}", mta.delivered());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(grants_seen(&oauth, "cc-app").len(), 1, "the test email reused the cached token");

    // no credential anywhere: operator debug log, events, status
    let log = op.log_text();
    assert!(log.contains("check finished"), "operator log has the checks: {log}");
    let secrets = [CC_SECRET, RT_SECRET, REFRESH_TOKEN, &pem_body_line(&private_key)];
    let ns_name = ns.name().to_string();
    assert_no_credentials("operator log", &log, &secrets, &[&ns_name]);
    assert_no_credentials("events and status", &published_text(&client, ns.name()).await, &secrets, &[&ns_name]);
    delete_all_smtp(&client, ns.name()).await;
    ns.cleanup().await;
}

#[tokio::test]
async fn token_endpoint_refusals_are_token_request_failed_and_nothing_is_dialled() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "oauth-refused").await;
    let oauth = OAuthServer::start(&clients());
    // an SMTP server that counts connections: a failed token request must not lead to one
    let smtp = SmtpPeer::start(&["--tls", "starttls", "--auth", "xoauth2", "--xoauth2-token", "never-issued-token"]);
    ca_config_map(&client, ns.name(), &smtp.ca_pem(), &oauth).await;
    oauth_secret(&client, ns.name(), "wrong", &[("client-secret", WRONG_SECRET.as_bytes())]).await;
    oauth_secret(&client, ns.name(), "strict", &[("client-secret", STRICT_SECRET.as_bytes())]).await;
    let op = start_operator(ns.name(), smtp.port, oauth.port);

    // the right app, the wrong secret
    create_smtp(&client, ns.name(), "wrong-secret", spec(smtp.port, cc_oauth2(&oauth, "wrong"))).await;
    // the right secret, but client_secret_post for an app that accepts only client_secret_basic
    create_smtp(&client, ns.name(), "wrong-method", spec(smtp.port, json!({
        "username": USER, "grant": "ClientCredentials", "tokenUrl": oauth.token_url, "clientId": "strict-basic-app",
        "clientSecretRef": {"name": "strict", "key": "client-secret"}, "clientAuthMethod": "RequestBody",
    })))
    .await;

    for (name, app, secret) in
        [("wrong-secret", "cc-app", WRONG_SECRET), ("wrong-method", "strict-basic-app", STRICT_SECRET)]
    {
        let obj = wait_condition(&client, ns.name(), name, "Ready", "False", Some("TokenRequestFailed"), 60).await;
        let auth = condition(&obj, "Authenticated").unwrap();
        assert_eq!((auth.status.as_str(), auth.reason.as_str()), ("False", "TokenRequestFailed"), "{name}");
        assert!(auth.message.contains("invalid_client"), "{name}: the server's error in the message: {}", auth.message);
        assert!(!auth.message.contains(secret), "{name}: secret in the message");
        assert_ne!(condition(&obj, "Connected").unwrap().status, "True", "{name}: no connection without a token");
        assert_eq!(obj.status.as_ref().unwrap().last_check.as_ref().unwrap().result, CheckResult::Failed);
        assert_eq!(grants_seen(&oauth, app), ["client_credentials:error"], "{name}: one refused request at the server");
        wait_event(&client, ns.name(), name, "Warning", "TokenRequestFailed").await;
    }
    // the failure is not cached as a token and nothing reached the SMTP server
    assert_eq!(smtp.count("connect"), 0, "the SMTP server saw a connection: {:?}", smtp.events());
    assert!(oauth.events().iter().all(|e| e["event"] != "token" || e["result"] == "error"));

    let (code, body) = http_get(&op.metrics_addr(), "/metrics");
    assert_eq!(code, 200);
    assert_eq!(metric(&body, r#"smtp_operator_token_requests_total{result="Failed"}"#), Some(2.0), "{body}");
    assert_eq!(
        metric(&body, r#"smtp_operator_token_requests_total{result="Succeeded"}"#).unwrap_or(0.0),
        0.0,
        "{body}"
    );
    assert_eq!(
        metric(&body, r#"smtp_operator_checks_total{result="Failed",reason="TokenRequestFailed",class="permanent"}"#),
        Some(2.0),
        "{body}"
    );

    let secrets = [WRONG_SECRET, STRICT_SECRET, CC_SECRET];
    let ns_name = ns.name().to_string();
    assert_no_credentials("operator log", &op.log_text(), &secrets, &[&ns_name]);
    assert_no_credentials("events and status", &published_text(&client, ns.name()).await, &secrets, &[&ns_name]);
    assert!(!body.contains(WRONG_SECRET) && !body.contains(STRICT_SECRET));
    delete_all_smtp(&client, ns.name()).await;
    ns.cleanup().await;
}

#[tokio::test]
async fn a_token_the_mta_refuses_is_authentication_failed_and_not_reused() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "oauth-refusedtoken").await;
    let (oauth, mta) = peers();
    ca_config_map(&client, ns.name(), &std::fs::read(&mta.ca_path).unwrap(), &oauth).await;
    oauth_secret(&client, ns.name(), "cc", &[("client-secret", CC_SECRET.as_bytes())]).await;
    let op = start_operator(ns.name(), mta.submission_port, oauth.port);

    // a valid token, but for alerts@: logging in as another mailbox is refused by Dovecot after introspection
    let mut oauth2 = cc_oauth2(&oauth, "cc");
    oauth2["username"] = json!("ceo@example.test");
    create_smtp(&client, ns.name(), "mail", spec(mta.submission_port, oauth2)).await;
    let obj = wait_condition(&client, ns.name(), "mail", "Ready", "False", Some("AuthenticationFailed"), 60).await;
    assert_eq!(condition(&obj, "Connected").unwrap().status, "True", "TLS and EHLO passed");
    let auth = condition(&obj, "Authenticated").unwrap();
    assert_eq!((auth.status.as_str(), auth.reason.as_str()), ("False", "AuthenticationFailed"));
    assert!(auth.message.contains("535"), "the server's reply in the message: {}", auth.message);
    let lc = obj.status.as_ref().unwrap().last_check.clone().unwrap();
    assert_eq!(lc.result, CheckResult::Failed);
    assert!(lc.server_mechanisms.iter().any(|m| m == "XOAUTH2"), "{:?}", lc.server_mechanisms);
    assert_eq!(grants_seen(&oauth, "cc-app"), ["client_credentials:ok"], "the token itself was issued");
    wait_event(&client, ns.name(), "mail", "Warning", "AuthenticationFailed").await;

    // a refused token is dropped from the cache: the next check fetches a fresh one
    tokio::time::sleep(Duration::from_millis(1200)).await;
    annotate_smtp(&client, ns.name(), "mail", "smtp-operator.io/check-requested-at", "again").await;
    let obj = wait_checked_again(&client, ns.name(), "mail", &obj).await;
    assert_eq!(condition(&obj, "Ready").unwrap().reason, "AuthenticationFailed");
    assert_eq!(
        grants_seen(&oauth, "cc-app"),
        ["client_credentials:ok", "client_credentials:ok"],
        "a new token after the refusal"
    );

    let (_, body) = http_get(&op.metrics_addr(), "/metrics");
    assert_eq!(metric(&body, r#"smtp_operator_token_requests_total{result="Succeeded"}"#), Some(2.0), "{body}");
    assert_eq!(metric(&body, "smtp_operator_token_cache_hits_total"), Some(0.0), "{body}");
    let ns_name = ns.name().to_string();
    assert_no_credentials("operator log", &op.log_text(), &[CC_SECRET], &[&ns_name]);
    assert_no_credentials("events and status", &published_text(&client, ns.name()).await, &[CC_SECRET], &[&ns_name]);
    delete_all_smtp(&client, ns.name()).await;
    ns.cleanup().await;
}

#[tokio::test]
async fn checks_share_one_token_until_the_secret_is_rotated() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "oauth-cache").await;
    let (oauth, mta) = peers();
    ca_config_map(&client, ns.name(), &std::fs::read(&mta.ca_path).unwrap(), &oauth).await;
    oauth_secret(&client, ns.name(), "cc", &[("client-secret", CC_SECRET.as_bytes())]).await;
    let op = start_operator(ns.name(), mta.submission_port, oauth.port);

    // two SmtpSettings sharing one app (same Secret, same client): one token for both
    create_smtp(&client, ns.name(), "a", spec(mta.submission_port, cc_oauth2(&oauth, "cc"))).await;
    create_smtp(&client, ns.name(), "b", spec(mta.submission_port, cc_oauth2(&oauth, "cc"))).await;
    let mut objs = Vec::new();
    for name in ["a", "b"] {
        objs.push(wait_condition(&client, ns.name(), name, "Ready", "True", None, 60).await);
    }
    // two more checks of each, inside the token's lifetime (3600 s)
    for round in ["r1", "r2"] {
        tokio::time::sleep(Duration::from_millis(1200)).await; // past --min-check-interval 1s
        for (i, name) in ["a", "b"].iter().enumerate() {
            annotate_smtp(&client, ns.name(), name, "smtp-operator.io/check-requested-at", round).await;
            objs[i] = wait_checked_again(&client, ns.name(), name, &objs[i]).await;
            assert_eq!(condition(&objs[i], "Ready").unwrap().status, "True", "{name} {round}");
        }
    }
    assert_eq!(active_introspections(&oauth), 6, "six XOAUTH2 logins checked by Dovecot");
    assert_eq!(
        grants_seen(&oauth, "cc-app"),
        ["client_credentials:ok"],
        "exactly one token request at the server\n{}\n{}",
        oauth.events_text(),
        check_lines(&op)
    );
    let (code, body) = http_get(&op.metrics_addr(), "/metrics");
    assert_eq!(code, 200);
    assert_eq!(metric(&body, r#"smtp_operator_token_requests_total{result="Succeeded"}"#), Some(1.0), "{body}");
    assert_eq!(metric(&body, r#"smtp_operator_token_requests_total{result="Failed"}"#).unwrap_or(0.0), 0.0, "{body}");
    assert_eq!(metric(&body, "smtp_operator_token_cache_hits_total"), Some(5.0), "{body}");

    // rotation: the Secret now holds a wrong value. The cached token must not hide it: a new request with
    // the new value, refused by the server, for both resources (one shared request again).
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns.name());
    let rotate = |value: &'static str| {
        let secrets = secrets.clone();
        async move {
            secrets
                .patch("cc", &PatchParams::default(), &Patch::Merge(json!({"stringData": {"client-secret": value}})))
                .await
                .expect("rotate the Secret");
        }
    };
    tokio::time::sleep(Duration::from_millis(1200)).await;
    rotate(WRONG_SECRET).await;
    for name in ["a", "b"] {
        let obj = wait_condition(&client, ns.name(), name, "Ready", "False", Some("TokenRequestFailed"), 60).await;
        assert!(condition(&obj, "Authenticated").unwrap().message.contains("invalid_client"));
    }
    let seen = grants_seen(&oauth, "cc-app");
    assert_eq!(seen[0], "client_credentials:ok");
    assert!(seen.len() >= 2 && seen[1..].iter().all(|g| g == "client_credentials:error"), "{seen:?}");
    let failed_requests = seen.len() - 1;

    // rotated back to the good value: the token cached for that value (the cache is keyed by the value, not the
    // Secret version) serves both resources, which are Ready again without a new request
    tokio::time::sleep(Duration::from_millis(1200)).await;
    rotate(CC_SECRET).await;
    for name in ["a", "b"] {
        wait_condition(&client, ns.name(), name, "Ready", "True", None, 60).await;
    }
    let seen = grants_seen(&oauth, "cc-app");
    assert_eq!(seen.len(), 1 + failed_requests, "the wrong value evicted nothing: {seen:?}");
    assert_eq!(active_introspections(&oauth), 8);
    let (_, body) = http_get(&op.metrics_addr(), "/metrics");
    assert_eq!(metric(&body, r#"smtp_operator_token_requests_total{result="Succeeded"}"#), Some(1.0), "{body}");
    assert_eq!(
        metric(&body, r#"smtp_operator_token_requests_total{result="Failed"}"#),
        Some(failed_requests as f64),
        "{body}"
    );
    assert_eq!(metric(&body, "smtp_operator_token_cache_hits_total"), Some(7.0), "{body}");

    let ns_name = ns.name().to_string();
    assert_no_credentials("operator log", &op.log_text(), &[CC_SECRET, WRONG_SECRET], &[&ns_name]);
    assert_no_credentials(
        "events and status",
        &published_text(&client, ns.name()).await,
        &[CC_SECRET, WRONG_SECRET],
        &[&ns_name],
    );
    assert!(!body.contains(CC_SECRET));
    delete_all_smtp(&client, ns.name()).await;
    ns.cleanup().await;
}
