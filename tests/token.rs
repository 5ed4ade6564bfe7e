//! The token client and cache against a real Authlib authorization server (tests/peers/oauth_server.py).

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use smtp_operator::engine::token::{
    AccessToken, ClientAuth, Grant, TokenCache, TokenError, TokenRequest, request_token,
};
use smtp_operator::engine::{DialPolicy, IpNet, Reason, SecretValue, Step};
use support::oauth::OAuthServer;

const POST_SECRET: &str = "post-secret-7f3a9c";
const BASIC_SECRET: &str = "basic-secret-b81e2d";
const REFRESH_TOKEN: &str = "refresh-token-5d0c44";
const USER: &str = "alerts@example.test";

fn clients() -> Value {
    json!({"clients": [
        {"client_id": "post-client", "client_secret": POST_SECRET, "token_endpoint_auth_method": "client_secret_post",
         "grant_types": ["client_credentials", "refresh_token"], "user": USER, "refresh_tokens": [REFRESH_TOKEN],
         "scope": "smtp.send mail.read"},
        {"client_id": "basic-client", "client_secret": BASIC_SECRET, "token_endpoint_auth_method": "client_secret_basic",
         "grant_types": ["client_credentials", "refresh_token"], "user": USER, "refresh_tokens": ["basic-refresh-1"]},
        {"client_id": "short-client", "client_secret": BASIC_SECRET, "token_endpoint_auth_method": "client_secret_basic",
         "grant_types": ["client_credentials"], "user": USER, "expires_in": 2},
        {"client_id": "jwt-client", "token_endpoint_auth_method": "none",
         "grant_types": ["urn:ietf:params:oauth:grant-type:jwt-bearer"], "subjects": [USER], "jwt_key": true},
        {"client_id": "other-jwt-client", "token_endpoint_auth_method": "none",
         "grant_types": ["urn:ietf:params:oauth:grant-type:jwt-bearer"], "subjects": [USER], "jwt_key": true}
    ]})
}

fn loopback_policy() -> DialPolicy {
    // the peer runs on loopback; the production default denies it
    DialPolicy { allowed_ports: vec![], denied: vec![] }
}

fn cc(server: &OAuthServer, client: &str, secret: &str, auth: ClientAuth) -> TokenRequest {
    TokenRequest {
        token_url: server.token_url.clone(),
        client_id: client.into(),
        grant: Grant::ClientCredentials { client_secret: SecretValue::new(secret) },
        scopes: vec![],
        client_auth: auth,
        extra_roots: vec![server.ca_der.clone()],
        timeout: Duration::from_secs(10),
        policy: loopback_policy(),
    }
}

fn jwt(server: &OAuthServer, client: &str, key_file: &std::path::Path) -> TokenRequest {
    TokenRequest {
        grant: Grant::JwtBearer {
            private_key: SecretValue::new(std::fs::read(key_file).unwrap()),
            subject: USER.into(),
        },
        ..cc(server, client, "", ClientAuth::RequestBody)
    }
}

/// The error must carry none of these values.
fn assert_clean(e: &TokenError, secrets: &[&str]) {
    eprintln!("{:?} {:?}: {}", e.step, e.reason, e.message);
    for s in secrets {
        assert!(!e.message.contains(s), "message leaks a secret: {}", e.message);
    }
    assert!(!format!("{e:?}").contains("-----BEGIN"), "message leaks key material");
}

fn assert_token(t: &AccessToken, expires: u64) {
    assert!(t.token.expose().len() >= 20, "an access token");
    assert_eq!(t.expires_in, Some(Duration::from_secs(expires)));
}

#[tokio::test]
async fn client_credentials_with_request_body_and_scopes() {
    let s = OAuthServer::start(&clients());
    let mut req = cc(&s, "post-client", POST_SECRET, ClientAuth::RequestBody);
    req.scopes = vec!["smtp.send".into(), "mail.read".into()];
    let t = request_token(&req).await.expect("token");
    assert_token(&t, 3600);
    assert_eq!(s.tokens_issued("post-client"), 1);
    // the endpoint's certificate as presented (for status.lastCheck.tokenEndpointCertificate)
    let leaf = t.certificates.first().expect("the token endpoint's certificate");
    assert_eq!((leaf.subject.as_str(), leaf.issuer.as_str()), ("CN=localhost", "CN=smtp-operator test CA"));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!(leaf.not_after > now + 30 * 86_400, "notAfter {} is the test CA's 90 days", leaf.not_after);
    assert!(!s.events_text().contains(POST_SECRET));
    assert!(!s.events_text().contains(t.token.expose_str().unwrap()), "peer must not log tokens either");
}

#[tokio::test]
async fn client_credentials_with_basic_auth() {
    let s = OAuthServer::start(&clients());
    let t = request_token(&cc(&s, "basic-client", BASIC_SECRET, ClientAuth::BasicAuth)).await.expect("token");
    assert_token(&t, 3600);
    assert_eq!(s.tokens_issued("basic-client"), 1);
}

#[tokio::test]
async fn refresh_token_grant_with_both_client_auth_methods() {
    let s = OAuthServer::start(&clients());
    let mut req = cc(&s, "post-client", POST_SECRET, ClientAuth::RequestBody);
    req.grant = Grant::RefreshToken {
        client_secret: SecretValue::new(POST_SECRET),
        refresh_token: SecretValue::new(REFRESH_TOKEN),
    };
    assert_token(&request_token(&req).await.expect("token"), 3600);
    let mut req = cc(&s, "basic-client", BASIC_SECRET, ClientAuth::BasicAuth);
    req.grant = Grant::RefreshToken {
        client_secret: SecretValue::new(BASIC_SECRET),
        refresh_token: SecretValue::new("basic-refresh-1"),
    };
    assert_token(&request_token(&req).await.expect("token"), 3600);
    let ev = s.events();
    let grants: Vec<&str> = ev.iter().filter(|e| e["event"] == "token").map(|e| e["grant"].as_str().unwrap()).collect();
    assert_eq!(grants, ["refresh_token", "refresh_token"]);

    // a refresh token of another client is refused
    let mut req = cc(&s, "post-client", POST_SECRET, ClientAuth::RequestBody);
    req.grant = Grant::RefreshToken {
        client_secret: SecretValue::new(POST_SECRET),
        refresh_token: SecretValue::new("basic-refresh-1"),
    };
    let e = request_token(&req).await.unwrap_err();
    assert_eq!(e.reason, Reason::TokenRequestFailed);
    assert!(e.message.contains("invalid_grant"), "{}", e.message);
    assert_clean(&e, &[POST_SECRET, "basic-refresh-1"]);
}

#[tokio::test]
async fn jwt_bearer_with_pkcs8_pem_and_service_account_json() {
    let s = OAuthServer::start(&clients());
    let (pem, sa) = s.keys["jwt-client"].clone();
    assert_token(&request_token(&jwt(&s, "jwt-client", &pem)).await.expect("token from PEM"), 3600);
    assert_token(&request_token(&jwt(&s, "jwt-client", &sa)).await.expect("token from JSON key"), 3600);
    let ev = s.events();
    assert!(
        ev.iter()
            .filter(|e| e["event"] == "token")
            .all(|e| e["grant"] == "urn:ietf:params:oauth:grant-type:jwt-bearer" && e["result"] == "ok")
    );
    assert_eq!(s.tokens_issued("jwt-client"), 2);
}

#[tokio::test]
async fn jwt_bearer_signed_with_the_wrong_key_is_refused() {
    let s = OAuthServer::start(&clients());
    let (other_key, _) = s.keys["other-jwt-client"].clone();
    let e = request_token(&jwt(&s, "jwt-client", &other_key)).await.unwrap_err();
    assert_eq!((e.step, e.reason), (Step::Token, Reason::TokenRequestFailed));
    assert!(e.message.contains("invalid_grant"), "{}", e.message);
    assert!(!e.message.contains("eyJ"), "no assertion in the message: {}", e.message);
    assert_clean(&e, &[]);

    // a subject the client may not act for
    let (key, _) = s.keys["jwt-client"].clone();
    let mut req = jwt(&s, "jwt-client", &key);
    req.grant = Grant::JwtBearer {
        private_key: SecretValue::new(std::fs::read(&key).unwrap()),
        subject: "ceo@example.test".into(),
    };
    let e = request_token(&req).await.unwrap_err();
    assert_eq!(e.reason, Reason::TokenRequestFailed);
    assert!(!e.message.contains("eyJ"), "{}", e.message);

    // not a key at all: refused before sending
    let mut req = jwt(&s, "jwt-client", &key);
    req.grant = Grant::JwtBearer { private_key: SecretValue::new("hunter2-not-a-key"), subject: USER.into() };
    let e = request_token(&req).await.unwrap_err();
    assert_eq!(e.reason, Reason::InvalidSecretValue);
    assert_clean(&e, &["hunter2"]);
    assert_eq!(s.token_requests("jwt-client"), 2, "the unusable key sent nothing");
}

#[tokio::test]
async fn wrong_client_secret_is_invalid_client() {
    let s = OAuthServer::start(&clients());
    let wrong = "wrong-secret-0d9f1e";
    let e = request_token(&cc(&s, "post-client", wrong, ClientAuth::RequestBody)).await.unwrap_err();
    assert_eq!((e.step, e.reason), (Step::Token, Reason::TokenRequestFailed));
    assert!(e.message.contains("invalid_client"), "{}", e.message);
    assert!(e.message.contains("HTTP 4"), "status in message: {}", e.message);
    assert_clean(&e, &[wrong, POST_SECRET]);
    assert_eq!(s.token_requests("post-client"), 1);
    assert_eq!(s.tokens_issued("post-client"), 0);
    assert!(!s.events_text().contains(wrong));
}

#[tokio::test]
async fn wrong_client_auth_method_against_strict_clients() {
    let s = OAuthServer::start(&clients());
    // secret right, method wrong, both ways round
    let e = request_token(&cc(&s, "post-client", POST_SECRET, ClientAuth::BasicAuth)).await.unwrap_err();
    assert_eq!(e.reason, Reason::TokenRequestFailed);
    assert!(e.message.contains("invalid_client"), "{}", e.message);
    assert_clean(&e, &[POST_SECRET]);
    let e = request_token(&cc(&s, "basic-client", BASIC_SECRET, ClientAuth::RequestBody)).await.unwrap_err();
    assert_eq!(e.reason, Reason::TokenRequestFailed);
    assert!(e.message.contains("invalid_client"), "{}", e.message);
    assert_clean(&e, &[BASIC_SECRET]);
    assert_eq!(s.tokens_issued("post-client") + s.tokens_issued("basic-client"), 0);
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let s = OAuthServer::start(&clients());
    let mut req = cc(&s, "post-client", POST_SECRET, ClientAuth::RequestBody);
    req.token_url = s.redirect_url.clone();
    let e = request_token(&req).await.unwrap_err();
    assert_eq!(e.reason, Reason::TokenRequestFailed);
    assert!(e.message.contains("302"), "{}", e.message);
    assert!(e.message.contains("127.0.0.1"), "names the Location host: {}", e.message);
    assert!(e.message.contains("not followed"), "{}", e.message);
    assert_clean(&e, &[POST_SECRET]);
    assert_eq!(s.http_paths(), ["/redirect"], "the redirect target was never requested");
}

#[tokio::test]
async fn plain_http_is_refused_before_connecting() {
    let s = OAuthServer::start(&clients());
    let mut req = cc(&s, "post-client", POST_SECRET, ClientAuth::RequestBody);
    req.token_url = s.token_url.replacen("https://", "http://", 1);
    let e = request_token(&req).await.unwrap_err();
    assert_eq!(e.reason, Reason::TokenRequestFailed);
    assert!(e.message.contains("https"), "{}", e.message);
    assert!(s.http_paths().is_empty());
}

#[tokio::test]
async fn port_not_allowed_sends_nothing() {
    let s = OAuthServer::start(&clients());
    let mut req = cc(&s, "post-client", POST_SECRET, ClientAuth::RequestBody);
    req.policy.allowed_ports = vec![443];
    let e = request_token(&req).await.unwrap_err();
    assert_eq!((e.step, e.reason), (Step::Policy, Reason::PortNotAllowed));
    assert!(e.message.contains(&s.port.to_string()), "{}", e.message);
    // the cache passes the refusal through and does not count it as sent to the endpoint's benefit
    let cache = TokenCache::new();
    let e = cache.get(&req).await.unwrap_err();
    assert_eq!(e.reason, Reason::PortNotAllowed);
    assert!(s.http_paths().is_empty(), "no request reached the peer");

    req.policy.allowed_ports = vec![s.port];
    request_token(&req).await.expect("allowed port works");
}

#[tokio::test]
async fn denied_destination_sends_nothing() {
    let s = OAuthServer::start(&clients());
    for url in [s.token_url.clone(), s.token_url.replacen("127.0.0.1", "localhost", 1)] {
        let mut req = cc(&s, "post-client", POST_SECRET, ClientAuth::RequestBody);
        req.token_url = url;
        req.policy.denied = vec![
            IpNet { addr: "127.0.0.0".parse().unwrap(), prefix: 8 },
            IpNet { addr: "::1".parse().unwrap(), prefix: 128 },
        ];
        let e = request_token(&req).await.unwrap_err();
        assert_eq!((e.step, e.reason), (Step::Policy, Reason::DestinationNotAllowed), "{}", e.message);
    }
    assert!(s.http_paths().is_empty(), "no request reached the peer");
}

#[tokio::test]
async fn host_name_is_verified_and_untrusted_ca_is_refused() {
    let s = OAuthServer::start(&clients());
    // by name: resolved once, dialled on the checked address, verified as "localhost"
    let mut req = cc(&s, "post-client", POST_SECRET, ClientAuth::RequestBody);
    req.token_url = s.token_url.replacen("127.0.0.1", "localhost", 1);
    request_token(&req).await.expect("token via host name");

    let mut req = cc(&s, "post-client", POST_SECRET, ClientAuth::RequestBody);
    req.extra_roots = vec![];
    let e = request_token(&req).await.unwrap_err();
    assert_eq!(e.reason, Reason::TokenRequestFailed);
    assert!(e.message.contains("TLS") && e.message.to_lowercase().contains("certificate"), "{}", e.message);
    assert_clean(&e, &[POST_SECRET]);
    assert_eq!(s.http_paths(), ["/token"], "only the trusted request reached HTTP");
}

#[tokio::test]
async fn cache_reuses_a_token_within_its_lifetime() {
    let s = OAuthServer::start(&clients());
    let cache = TokenCache::new();
    let req = cc(&s, "post-client", POST_SECRET, ClientAuth::RequestBody);
    let first = cache.get(&req).await.expect("token");
    for _ in 0..5 {
        let t = cache.clone().get(&req).await.expect("token");
        assert_eq!(t.token, first.token);
    }
    assert_eq!(s.token_requests("post-client"), 1, "exactly one request at the server");
    assert_eq!((cache.token_requests(), cache.cache_hits()), (1, 5));
}

#[tokio::test]
async fn cache_fetches_again_after_a_short_lifetime() {
    let s = OAuthServer::start(&clients());
    let cache = TokenCache::new();
    let req = cc(&s, "short-client", BASIC_SECRET, ClientAuth::BasicAuth);
    let a = cache.get(&req).await.expect("token");
    assert_eq!(a.expires_in, Some(Duration::from_secs(2)));
    cache.get(&req).await.expect("token");
    assert_eq!(s.token_requests("short-client"), 1);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let b = cache.get(&req).await.expect("token");
    assert_ne!(a.token, b.token);
    assert_eq!(s.token_requests("short-client"), 2, "a new token after expiry");
}

#[tokio::test]
async fn cache_keys_by_the_credential_value_not_by_where_it_came_from() {
    let s = OAuthServer::start(&clients());
    let cache = TokenCache::new();
    // the same value (e.g. copies of one Secret in several namespaces): one request
    let req = cc(&s, "post-client", POST_SECRET, ClientAuth::RequestBody);
    let good = cache.get(&req).await.expect("token");
    cache.get(&req.clone()).await.expect("token");
    assert_eq!(s.token_requests("post-client"), 1);
    // a wrong value: fails every time (failures are not cached) and evicts nothing
    let bad = cc(&s, "post-client", "rotated-wrong-9a8b", ClientAuth::RequestBody);
    assert!(cache.get(&bad).await.is_err());
    assert!(cache.get(&bad).await.is_err());
    assert_eq!(cache.get(&req).await.expect("token").token, good.token, "the good token stays");
    assert_eq!(s.token_requests("post-client"), 3);
    assert_eq!(cache.len(), 1, "the failed entry is not kept");
}

#[tokio::test]
async fn cache_concurrent_requests_share_one_fetch() {
    let s = OAuthServer::start(&clients());
    let cache = TokenCache::new();
    let req = cc(&s, "basic-client", BASIC_SECRET, ClientAuth::BasicAuth);
    let get = || {
        let (cache, req) = (cache.clone(), req.clone());
        async move { cache.get(&req).await }
    };
    let r = tokio::join!(get(), get(), get(), get(), get(), get(), get(), get(), get(), get());
    let all = [r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7, r.8, r.9];
    let first = all[0].as_ref().expect("token").token.clone();
    assert!(all.iter().all(|t| t.as_ref().expect("token").token == first));
    assert_eq!(s.token_requests("basic-client"), 1, "one request for ten concurrent callers");
    assert_eq!((cache.token_requests(), cache.cache_hits()), (1, 9));

    // also across tasks on the multi-threaded runtime
    let handles: Vec<_> = (0..10)
        .map(|_| {
            let (cache, mut req) = (cache.clone(), req.clone());
            req.scopes = vec!["x".into()];
            tokio::spawn(async move { cache.get(&req).await.map(|t| t.token) })
        })
        .collect();
    for h in handles {
        h.await.unwrap().expect("token");
    }
    assert_eq!(s.token_requests("basic-client"), 2);
}

// ---- the real consumer: Dovecot (behind Postfix) validating the token by RFC 7662 introspection

mod smtp {
    //! Just enough SMTP for AUTH XOAUTH2 over STARTTLS (the engine's SMTP session is tested elsewhere).
    use std::sync::Arc;
    use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

    pub async fn reply<S: AsyncRead + AsyncWrite + Unpin>(s: &mut BufReader<S>) -> (u16, String) {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(std::time::Duration::from_secs(20), s.read_line(&mut line))
                .await
                .expect("reply in time")
                .expect("read");
            assert!(n > 0, "connection closed");
            text.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return (line[..3].parse().expect("reply code"), text);
            }
        }
    }

    pub async fn cmd<S: AsyncRead + AsyncWrite + Unpin>(s: &mut BufReader<S>, line: &str) -> (u16, String) {
        s.get_mut().write_all(format!("{line}\r\n").as_bytes()).await.expect("write");
        reply(s).await
    }

    /// STARTTLS session on `port`; returns the code of `AUTH XOAUTH2` for (user, token), after answering a 334
    /// challenge with an empty line as RFC 7628 / the XOAUTH2 spec require, plus the EHLO text after TLS.
    pub async fn xoauth2(port: u16, ca_der: Vec<u8>, user: &str, token: &str) -> (u16, String) {
        use base64::Engine as _;
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
        let mut s = BufReader::new(tcp);
        assert_eq!(reply(&mut s).await.0, 220);
        assert_eq!(cmd(&mut s, "EHLO client.example.test").await.0, 250);
        assert_eq!(cmd(&mut s, "STARTTLS").await.0, 220);
        let mut roots = rustls::RootCertStore::empty();
        roots.add(rustls::pki_types::CertificateDer::from(ca_der)).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect("localhost".try_into().unwrap(), s.into_inner())
            .await
            .expect("TLS");
        let mut s = BufReader::new(tls);
        let (code, ehlo) = cmd(&mut s, "EHLO client.example.test").await;
        assert_eq!(code, 250);
        assert!(ehlo.contains("XOAUTH2"), "XOAUTH2 offered after TLS: {ehlo}");
        let ir =
            base64::engine::general_purpose::STANDARD.encode(format!("user={user}\x01auth=Bearer {token}\x01\x01"));
        let (mut code, mut text) = cmd(&mut s, &format!("AUTH XOAUTH2 {ir}")).await;
        if code == 334 {
            (code, text) = cmd(&mut s, "").await;
        }
        let _ = cmd(&mut s, "QUIT").await;
        (code, text)
    }
}

#[tokio::test]
async fn xoauth2_token_from_authlib_is_accepted_by_dovecot_introspection() {
    let mut conf = clients();
    conf["clients"].as_array_mut().unwrap().push(json!({
        "client_id": "dovecot", "client_secret": "dovecot-introspect-3c1f", "token_endpoint_auth_method": "client_secret_basic",
        "grant_types": [], "introspect": true
    }));
    let s = OAuthServer::start(&conf);
    let mta = support::oauth::Mta::start(&s, "dovecot", "dovecot-introspect-3c1f");
    let mta_ca = support::oauth::pem_cert_der(&mta.ca_path);
    let cache = TokenCache::new();

    for (name, req) in [
        ("client_credentials", cc(&s, "post-client", POST_SECRET, ClientAuth::RequestBody)),
        ("jwt_bearer", jwt(&s, "jwt-client", &s.keys["jwt-client"].0.clone())),
    ] {
        let token = cache.get(&req).await.expect("token");
        let (code, text) =
            smtp::xoauth2(mta.submission_port, mta_ca.clone(), USER, token.token.expose_str().unwrap()).await;
        assert_eq!(code, 235, "{name}: Dovecot accepts the token: {text}");
        // the same token for another mailbox is refused (introspection names the token's user)
        let (code, _) =
            smtp::xoauth2(mta.submission_port, mta_ca.clone(), "ceo@example.test", token.token.expose_str().unwrap())
                .await;
        assert_eq!(code, 535, "{name}: token bound to its user");
    }
    let (code, _) = smtp::xoauth2(mta.submission_port, mta_ca.clone(), USER, "not-a-token-at-all").await;
    assert_eq!(code, 535, "an unknown token is refused");

    let ev = s.events();
    let introspections: Vec<&Value> = ev.iter().filter(|e| e["event"] == "introspect").collect();
    assert!(introspections.iter().any(|e| e["active"] == true && e["client"] == "dovecot"));
    assert!(introspections.iter().any(|e| e["active"] == false));
    assert_eq!(cache.token_requests(), 2);
}

/// The whole path through the engine: token from Authlib, then the engine's own SMTP session (STARTTLS and
/// implicit TLS) authenticating at Postfix via Dovecot, with a test email delivered to the Maildir.
#[tokio::test]
async fn engine_check_with_xoauth2_and_password_against_postfix_and_dovecot() {
    use smtp_operator::engine::{self, CheckRequest, Credentials, TestMessage, TlsMode, TlsOptions, TlsVersion};

    let mut conf = clients();
    conf["clients"].as_array_mut().unwrap().push(json!({
        "client_id": "dovecot", "client_secret": "dovecot-introspect-3c1f", "token_endpoint_auth_method": "client_secret_basic",
        "grant_types": [], "introspect": true
    }));
    let s = OAuthServer::start(&conf);
    let mta = support::oauth::Mta::start(&s, "dovecot", "dovecot-introspect-3c1f");
    let cache = TokenCache::new();
    let token = cache.get(&cc(&s, "post-client", POST_SECRET, ClientAuth::RequestBody)).await.expect("token");

    let check = |port: u16, mode: TlsMode, credentials: Credentials, subject: &str| CheckRequest {
        server: "127.0.0.1".into(),
        port,
        tls: TlsOptions {
            mode,
            min_version: TlsVersion::V1_2,
            extra_roots: vec![support::oauth::pem_cert_der(&mta.ca_path)],
            insecure_skip_verify: false,
        },
        credentials,
        helo_name: "token-test.example.test".into(),
        timeout: Duration::from_secs(10),
        policy: DialPolicy::default(),
        test_message: Some(TestMessage {
            from: format!("Alerts <{USER}>"),
            to: vec![USER.into()],
            subject: subject.into(),
            body: "sent by tests/token.rs".into(),
        }),
    };

    let r = engine::run(&check(
        mta.submission_port,
        TlsMode::StartTls,
        Credentials::XOAuth2 { username: USER.into(), token: token.token.clone() },
        "xoauth2-starttls",
    ))
    .await;
    assert!(r.succeeded(), "{:?}", r.outcome);
    assert_eq!(r.auth_mechanism.as_deref(), Some("XOAUTH2"));
    assert!(r.server_mechanisms.iter().any(|m| m == "XOAUTH2"), "{:?}", r.server_mechanisms);

    let r = engine::run(&check(
        mta.smtps_port,
        TlsMode::ImplicitTls,
        Credentials::Password {
            username: mta.user.clone(),
            password: SecretValue::new(mta.password.clone()),
            mechanisms: vec![],
        },
        "plain-implicit-tls",
    ))
    .await;
    assert!(r.succeeded(), "{:?}", r.outcome);
    assert_eq!(r.auth_mechanism.as_deref(), Some("PLAIN"));

    let r = engine::run(&check(
        mta.submission_port,
        TlsMode::StartTls,
        Credentials::XOAuth2 { username: USER.into(), token: SecretValue::new("expired-or-forged-token-77") },
        "must-not-arrive",
    ))
    .await;
    let f = r.outcome.expect_err("a forged token is refused");
    assert_eq!(f.reason, Reason::AuthenticationFailed, "{f:?}");
    assert!(!f.message.contains("expired-or-forged-token-77"));

    // Postfix hands the message to virtual(8) asynchronously: wait (bounded) for both deliveries
    let mut delivered = Vec::new();
    for _ in 0..100 {
        delivered = mta.delivered();
        if delivered.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let subjects: Vec<bool> = ["xoauth2-starttls", "plain-implicit-tls", "must-not-arrive"]
        .iter()
        .map(|s| delivered.iter().any(|m| m.contains(&format!("Subject: {s}"))))
        .collect();
    assert_eq!(subjects, [true, true, false], "delivered: {delivered:?}");
}

#[tokio::test]
async fn oversized_answers_are_refused() {
    let s = OAuthServer::start(&clients());
    let mut req = cc(&s, "post-client", POST_SECRET, ClientAuth::RequestBody);
    req.token_url = format!("{}/huge", s.url);
    let e = request_token(&req).await.unwrap_err();
    assert_eq!(e.reason, Reason::TokenRequestFailed);
    assert!(e.message.contains("exceeds"), "{}", e.message);
    assert_eq!(s.http_paths(), ["/huge"]);
}

#[tokio::test]
async fn a_silent_endpoint_times_out() {
    // a real socket that accepts and then says nothing (no TLS server hello)
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let req = TokenRequest {
        token_url: format!("https://127.0.0.1:{port}/token"),
        client_id: "c".into(),
        grant: Grant::ClientCredentials { client_secret: SecretValue::new(POST_SECRET) },
        scopes: vec![],
        client_auth: ClientAuth::RequestBody,
        extra_roots: vec![],
        timeout: Duration::from_millis(500),
        policy: loopback_policy(),
    };
    let e = request_token(&req).await.unwrap_err();
    assert_eq!((e.step, e.reason), (Step::Token, Reason::TokenRequestFailed));
    // the phase is named: TCP was accepted, the TLS handshake never finished
    assert!(e.message.contains("TLS handshake") && e.message.contains("did not finish within"), "{}", e.message);
    assert_clean(&e, &[POST_SECRET]);
    holder.abort();
}
