//! `spec.check.timeout` is the budget of the whole check (docs/operations.md): fault tests per phase against
//! real peers, each ending within timeout + 1 s with the step named in the failure.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;
use smtp_operator::engine::token::{ClientAuth, Grant, TokenCache, TokenRequest};
use smtp_operator::engine::{
    self, CheckRequest, Credentials, DialPolicy, Reason, Report, SecretValue, Step, TlsMode, TlsOptions, TlsVersion,
};
use smtp_operator::validate::{OAuthPlan, Plan};
use support::oauth::OAuthServer;
use support::smtp_peer::SmtpPeer;

const BUDGET: Duration = Duration::from_secs(3);
const SECRET: &str = "budget-secret-4b1d7e";

fn request(server: &str, port: u16, mode: TlsMode) -> CheckRequest {
    CheckRequest {
        server: server.into(),
        port,
        tls: TlsOptions { mode, min_version: TlsVersion::V1_2, extra_roots: vec![], insecure_skip_verify: false },
        credentials: Credentials::None,
        helo_name: "budget-test.local".into(),
        timeout: BUDGET,
        policy: DialPolicy::default(),
        test_message: None,
    }
}

/// Runs `f`, asserting it ends within the budget plus one second; returns what it returned.
async fn within_budget<F: Future<Output = Report>>(f: F) -> Report {
    let started = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(60), f).await.expect("the check finished");
    let took = started.elapsed();
    assert!(took <= BUDGET + Duration::from_secs(1), "took {took:?}, budget {BUDGET:?}: {:?}", r.outcome);
    r
}

#[track_caller]
fn assert_failed(r: &Report, step: Step, reason: Reason) -> String {
    let f = r.outcome.clone().expect_err("expected a failure");
    assert_eq!((f.step, f.reason), (step, reason), "failure: {f:?}");
    f.message
}

/// A listener with backlog 0 whose accept queue holds one connection nobody accepts: further SYNs are dropped,
/// so a connect to it hangs like one to a black-holed address. Returns the address and what must stay alive.
fn black_hole(ip: &str) -> (SocketAddr, Vec<std::net::TcpStream>, tokio::net::TcpListener) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let filler = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("the queue takes one");
    (addr, vec![filler], listener)
}

#[tokio::test]
async fn greeting_that_drips_one_byte_per_second_ends_within_the_budget() {
    let peer = SmtpPeer::start(&["--greeting-drip", "1"]);
    let r = within_budget(engine::run(&request("127.0.0.1", peer.port, TlsMode::None))).await;
    let message = assert_failed(&r, Step::Greeting, Reason::ConnectionTimedOut);
    assert!(message.contains("3s") && message.contains("greeting"), "{message}");
    assert_eq!(peer.count("connect"), 1);
}

#[tokio::test]
async fn black_holed_address_ends_within_the_budget() {
    let (addr, _keep, _listener) = black_hole("127.0.0.2");
    let r = within_budget(engine::run(&request("127.0.0.2", addr.port(), TlsMode::StartTls))).await;
    let message = assert_failed(&r, Step::Connect, Reason::ConnectionTimedOut);
    assert!(message.contains(&addr.to_string()), "{message}");
}

fn token_plan(token_url: String, ca: Vec<u8>) -> Plan {
    let token = TokenRequest {
        token_url,
        client_id: "post-client".into(),
        grant: Grant::ClientCredentials { client_secret: SecretValue::new(SECRET) },
        scopes: vec![],
        client_auth: ClientAuth::RequestBody,
        extra_roots: vec![ca],
        timeout: BUDGET,
        policy: DialPolicy::default(),
    };
    // the SMTP side is never reached: the token request uses up the budget
    Plan {
        request: request("127.0.0.1", 9, TlsMode::StartTls),
        oauth: Some(OAuthPlan { username: "alerts@example.test".into(), request: token }),
        interval: None,
        from_address: "alerts@example.test".into(),
    }
}

#[tokio::test]
async fn token_endpoint_that_never_answers_ends_within_the_budget() {
    let server = OAuthServer::start(&json!({"clients": [
        {"client_id": "post-client", "client_secret": SECRET, "token_endpoint_auth_method": "client_secret_post",
         "grant_types": ["client_credentials"], "user": "alerts@example.test"}]}));
    // the request is read, the answer never comes: the headers phase is named
    let plan = token_plan(format!("{}/hang", server.url), server.ca_der.clone());
    let r = within_budget(smtp_operator::check::run(&plan, &TokenCache::new(), None)).await;
    let message = assert_failed(&r, Step::Token, Reason::TokenRequestFailed);
    assert!(message.contains("no response headers"), "{message}");
    assert!(server.events().iter().any(|e| e["event"] == "hang"), "the endpoint got the request");
    assert!(!message.contains(SECRET), "{message}");
    // (TCP accepted, TLS never started: the TLS phase is named — tests/token.rs a_silent_endpoint_times_out)
}

#[tokio::test]
async fn a_timeout_during_the_test_email_fails_only_the_test_email() {
    let peer = SmtpPeer::start(&["--tls", "none", "--stall-data"]);
    let mut req = request("127.0.0.1", peer.port, TlsMode::None);
    req.test_message = Some(engine::TestMessage {
        from: "alerts@example.com".into(),
        to: vec!["ops@example.com".into()],
        subject: "budget".into(),
        body: "budget".into(),
    });
    let r = within_budget(engine::run(&req)).await;
    // Ready reflects connect/TLS/AUTH: the connectivity check passed
    assert!(r.succeeded(), "{:?}", r.outcome);
    let f = r.test_email_failure().expect("the test email failed");
    assert_eq!((f.step, f.reason), (Step::Data, Reason::ConnectionTimedOut), "{f:?}");
    assert_eq!(peer.count("message"), 1, "the server got the message and never answered");
}
