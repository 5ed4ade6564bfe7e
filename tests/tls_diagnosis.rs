//! Precise TLS diagnosis: a server that speaks only TLS 1.2, checked with `minVersion: "1.3"`, is reported as
//! `TlsVersionNotSupported` also when it just closes the connection instead of sending an alert (a diagnostic
//! handshake that also allows TLS 1.2 tells the version it would have used). Against aiosmtpd and Postfix.

mod support;

use std::time::Duration;

use smtp_operator::engine::{
    self, CheckRequest, Credentials, DialPolicy, Reason, Report, Step, TlsMode, TlsOptions, TlsVersion,
};
use support::oauth::{Mta, pem_cert_der};
use support::smtp_peer::SmtpPeer;

fn request(port: u16, mode: TlsMode, min_version: TlsVersion, ca: Vec<u8>) -> CheckRequest {
    CheckRequest {
        server: "127.0.0.1".into(),
        port,
        tls: TlsOptions {
            mode,
            min_version,
            extra_roots: if ca.is_empty() { vec![] } else { vec![ca] },
            insecure_skip_verify: false,
        },
        credentials: Credentials::None,
        helo_name: "tls-diagnosis.local".into(),
        timeout: Duration::from_secs(15),
        policy: DialPolicy::default(),
        test_message: None,
    }
}

async fn run(req: &CheckRequest) -> Report {
    tokio::time::timeout(Duration::from_secs(60), engine::run(req)).await.expect("the check finished")
}

#[track_caller]
fn assert_version_not_supported(r: &Report, step: Step) -> String {
    let f = r.outcome.clone().expect_err("TLS 1.3 cannot be negotiated");
    assert_eq!((f.step, f.reason), (step, Reason::TlsVersionNotSupported), "{f:?}");
    assert!(f.message.contains("minVersion"), "{}", f.message);
    f.message
}

#[tokio::test]
async fn closed_without_alert_is_diagnosed_as_tls_version_not_supported() {
    for (mode, step, tls_flag) in
        [(TlsMode::ImplicitTls, Step::Tls, "implicit"), (TlsMode::StartTls, Step::StartTls, "starttls")]
    {
        let peer = SmtpPeer::start(&["--tls", tls_flag, "--tls-max", "1.2", "--tls-no-alert"]);
        let r = run(&request(peer.port, mode, TlsVersion::V1_3, peer.ca_der())).await;
        let message = assert_version_not_supported(&r, step);
        assert!(message.contains("would have used TLS 1.2"), "{message}");
        // exactly one diagnostic connection, and nothing sent after its handshake (no EHLO over TLS)
        assert_eq!(peer.count("connect"), 2, "{tls_flag}");
        let over_tls = peer.events_of("ehlo").iter().filter(|e| e["tls"] == true).count();
        assert_eq!(over_tls, 0, "{tls_flag}: {:?}", peer.events_of("ehlo"));
        assert_eq!(r.tls_version, None, "nothing was negotiated for the check itself");
    }
}

#[tokio::test]
async fn a_server_that_closes_whatever_is_offered_stays_tls_handshake_failed() {
    // a real socket that accepts and closes at once: the diagnostic handshake fails too, so nothing is claimed
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = tokio::spawn(async move {
        let mut n = 0;
        while let Ok(Ok((sock, _))) = tokio::time::timeout(Duration::from_secs(3), listener.accept()).await {
            drop(sock);
            n += 1;
        }
        n
    });
    let r = run(&request(port, TlsMode::ImplicitTls, TlsVersion::V1_3, vec![])).await;
    let f = r.outcome.clone().expect_err("no TLS at all");
    assert_eq!((f.step, f.reason), (Step::Tls, Reason::TlsHandshakeFailed), "{f:?}");
    assert_eq!(accepted.await.unwrap(), 2, "the check and one diagnostic handshake");
}

#[tokio::test]
async fn postfix_limited_to_tls_12() {
    let mta = Mta::start_with_args(&["--tls-max", "1.2"]);
    let ca = pem_cert_der(&mta.ca_path);
    for (port, mode, step) in
        [(mta.submission_port, TlsMode::StartTls, Step::StartTls), (mta.smtps_port, TlsMode::ImplicitTls, Step::Tls)]
    {
        let r = run(&request(port, mode, TlsVersion::V1_3, ca.clone())).await;
        assert_version_not_supported(&r, step);
        let r = run(&request(port, mode, TlsVersion::V1_2, ca.clone())).await;
        assert!(r.succeeded(), "{:?}", r.outcome);
        assert_eq!(r.tls_version.as_deref(), Some("1.2"));
    }
}
