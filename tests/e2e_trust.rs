//! End to end for trust (docs/security.md, docs/oauth2.md): the operator PROCESS against the real kube-apiserver,
//! the real Authlib authorization server (`tests/peers/oauth_server.py`), a real Postfix + Dovecot (`scripts/mta`)
//! that checks every XOAUTH2 login by introspection at Authlib, and an aiosmtpd peer that logs every AUTH it sees.
//!
//! - The access token is bound to the SMTP server: an edited `server` (or `subject`) gets no token request and
//!   no XOAUTH2 line; with the Secret's consent it goes Ready.
//! - The token cache shares one token between copies of a secret in several namespaces, next to a wrong copy.
//! - IPv6 forms carrying a denied IPv4 address are refused before anything is dialled.
//!
//! Token requests and XOAUTH2 logins are counted AT THE PEERS (their event files). The tests run one at a time
//! (one of them runs an operator for every namespace, which would also check the others' resources).

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use smtp_operator::api::{CheckResult, SmtpSettings};

use support::kube::{TestNamespace, client};
use support::oauth::{Mta, OAuthServer};
use support::operator::*;
use support::smtp_peer::SmtpPeer;

const USER: &str = "alerts@example.test";
const CC_SECRET: &str = "trust-cc-secret-Distinct-5e8a1f";
const WRONG_SECRET: &str = "trust-wrong-secret-Distinct-0c4b7d";
const DOVECOT_SECRET: &str = "trust-dovecot-Distinct-93f1";
const JWT_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const SERVERS: &str = "smtp-operator.io/allowed-servers";
const SUBJECTS: &str = "smtp-operator.io/allowed-subjects";

/// One test at a time (see the module comment).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn clients() -> Value {
    json!({"clients": [
        {"client_id": "cc-app", "client_secret": CC_SECRET, "token_endpoint_auth_method": "client_secret_post",
         "grant_types": ["client_credentials"], "user": USER, "scope": "smtp.send"},
        {"client_id": "jwt-app", "token_endpoint_auth_method": "none", "grant_types": [JWT_GRANT],
         "subjects": [USER, "boss@example.test"], "jwt_key": true},
        {"client_id": "dovecot", "client_secret": DOVECOT_SECRET, "token_endpoint_auth_method": "client_secret_basic",
         "grant_types": [], "introspect": true}
    ]})
}

/// `host:port` of the token endpoint, as the annotation lists it.
fn token_entry(oauth: &OAuthServer) -> String {
    let url = url::Url::parse(&oauth.token_url).expect("token URL");
    format!("{}:{}", url.host_str().expect("host"), url.port().expect("port"))
}

fn operator_args(ports: &[u16], token_port: u16, extra: &[&str]) -> Vec<String> {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    let mut args: Vec<String> = [
        "--denied-cidrs=",
        "--allowed-ports",
        &ports.join(","),
        "--allowed-token-ports",
        &token_port.to_string(),
        "--min-check-interval",
        "1s",
        "--namespace-check-rate",
        "600/m",
        "--global-check-rate",
        "6000/m",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn start_operator(args: &[String]) -> Operator {
    Operator::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// One ConfigMap key trusting the given PEM files (every peer makes its own CA).
async fn ca_config_map(client: &kube::Client, ns: &str, pems: &[&std::path::Path]) {
    let bundle: Vec<String> = pems.iter().map(|p| std::fs::read_to_string(p).expect("CA PEM")).collect();
    create_config_map(client, ns, "peer-ca", &[("ca.crt", &bundle.join("\n"))]).await;
}

fn spec(port: u16, oauth2: Value) -> Value {
    json!({
        "server": "127.0.0.1",
        "port": port,
        "from": USER,
        "tls": {"mode": "StartTLS", "caBundle": {"configMapKeyRef": {"name": "peer-ca", "key": "ca.crt"}}},
        "auth": {"type": "OAuth2", "oauth2": oauth2},
    })
}

fn cc_oauth2(oauth: &OAuthServer) -> Value {
    json!({
        "username": USER, "grant": "ClientCredentials", "tokenUrl": oauth.token_url, "clientId": "cc-app",
        "clientSecretRef": {"name": "cc", "key": "client-secret"}, "scopes": ["smtp.send"],
    })
}

async fn patch_spec(client: &kube::Client, ns: &str, name: &str, spec: Value) -> SmtpSettings {
    let api: Api<SmtpSettings> = Api::namespaced(client.clone(), ns);
    api.patch(name, &PatchParams::default(), &Patch::Merge(json!({"spec": spec}))).await.expect("patch spec")
}

async fn annotate_secret(client: &kube::Client, ns: &str, name: &str, key: &str, value: &str) {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let patch = json!({"metadata": {"annotations": {key: value}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await.expect("annotate secret");
}

/// Waits for `Valid=False reason` for the object's current generation.
async fn wait_invalid(client: &kube::Client, ns: &str, obj: &SmtpSettings, reason: &str) -> String {
    let generation = obj.metadata.generation;
    let name = obj.metadata.name.as_deref().expect("name");
    let o = wait_for(client, ns, name, 60, |o| {
        condition(o, "Valid").is_some_and(|c| c.status == "False" && c.reason == reason)
            && o.status.as_ref().and_then(|s| s.observed_generation) == generation
    })
    .await;
    condition(&o, "Valid").expect("Valid").message
}

/// XOAUTH2 logins the MTA checked with an active token (Dovecot introspects every one at Authlib).
fn active_introspections(oauth: &OAuthServer) -> usize {
    oauth.events().iter().filter(|e| e["event"] == "introspect" && e["active"] == true).count()
}

#[tokio::test]
async fn an_edited_server_gets_no_token_and_no_xoauth2_line() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "trust-server").await;
    let oauth = OAuthServer::start(&clients());
    let mta = Mta::start(&oauth, "dovecot", DOVECOT_SECRET);
    // the editor's own server: accepts TLS and offers every mechanism, logs every AUTH it sees
    let rogue = SmtpPeer::start(&["--tls", "starttls", "--auth", "plain,login,xoauth2", "--xoauth2-token", "x"]);
    let rogue_ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(rogue_ca.path(), rogue.ca_pem()).unwrap();
    ca_config_map(&client, ns.name(), &[&mta.ca_path, &oauth.ca_path, rogue_ca.path()]).await;
    let args = operator_args(&[mta.submission_port, rogue.port], oauth.port, &["--watch-namespace", ns.name()]);
    let _operator = start_operator(&args);

    // bound to the token endpoint only: what sufficed before the access token was bound to the SMTP server
    let token = token_entry(&oauth);
    create_secret(&client, ns.name(), "cc", &[("client-secret", CC_SECRET.as_bytes())], &[(SERVERS, &token)]).await;
    let obj = create_smtp(&client, ns.name(), "alerts", spec(rogue.port, cc_oauth2(&oauth))).await;
    let message = wait_invalid(&client, ns.name(), &obj, "CredentialsNotBoundToServer").await;
    let rogue_entry = format!("127.0.0.1:{}", rogue.port);
    let command = format!("kubectl annotate --overwrite secret cc -n {} '{SERVERS}={token}, {rogue_entry}'", ns.name());
    assert!(message.ends_with(&command), "the message gives the exact command with both entries: {message}");
    assert_eq!(oauth.token_requests("cc-app"), 0, "no token was requested");
    assert_eq!(rogue.events(), Vec::<Value>::new(), "the editor's server saw nothing at all");

    // the owner binds the Secret to the token endpoint and the real server: Ready
    let mta_entry = format!("127.0.0.1:{}", mta.submission_port);
    annotate_secret(&client, ns.name(), "cc", SERVERS, &format!("{token}, {mta_entry}")).await;
    patch_spec(&client, ns.name(), "alerts", json!({"port": mta.submission_port})).await;
    wait_condition(&client, ns.name(), "alerts", "Ready", "True", Some("CheckSucceeded"), 120).await;
    assert_eq!((oauth.tokens_issued("cc-app"), active_introspections(&oauth)), (1, 1));

    // the editor moves the server again: refused, with a cached token at hand
    let obj = patch_spec(&client, ns.name(), "alerts", json!({"port": rogue.port})).await;
    let message = wait_invalid(&client, ns.name(), &obj, "CredentialsNotBoundToServer").await;
    assert!(message.contains(&format!("may not be sent to {rogue_entry}")), "{message}");
    assert_eq!(rogue.count("auth_command") + rogue.count("auth") + rogue.count("ehlo"), 0, "{:?}", rogue.events());
    assert_eq!(rogue.events(), Vec::<Value>::new(), "the editor's server saw nothing at all");
    assert_eq!(oauth.token_requests("cc-app"), 1, "no further token request");
    ns.cleanup().await;
}

#[tokio::test]
async fn an_edited_subject_gets_no_token_and_no_xoauth2_line() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "trust-subject").await;
    let oauth = OAuthServer::start(&clients());
    let mta = Mta::start(&oauth, "dovecot", DOVECOT_SECRET);
    ca_config_map(&client, ns.name(), &[&mta.ca_path, &oauth.ca_path]).await;
    let args = operator_args(&[mta.submission_port], oauth.port, &["--watch-namespace", ns.name()]);
    let _operator = start_operator(&args);

    let (key_pem, _) = oauth.keys["jwt-app"].clone();
    let key = std::fs::read(&key_pem).unwrap();
    let servers = format!("{}, 127.0.0.1:{}", token_entry(&oauth), mta.submission_port);
    create_secret(&client, ns.name(), "sa", &[("key.pem", &key)], &[(SERVERS, &servers), (SUBJECTS, USER)]).await;
    let oauth2 = json!({
        "username": USER, "grant": "JwtBearer", "tokenUrl": oauth.token_url, "clientId": "jwt-app",
        "privateKeyRef": {"name": "sa", "key": "key.pem"}, "subject": USER, "scopes": ["smtp.send"],
    });
    create_smtp(&client, ns.name(), "alerts", spec(mta.submission_port, oauth2)).await;
    wait_condition(&client, ns.name(), "alerts", "Ready", "True", Some("CheckSucceeded"), 120).await;
    assert_eq!((oauth.tokens_issued("jwt-app"), active_introspections(&oauth)), (1, 1));

    // the editor acts as another user of the domain (Authlib would issue that token)
    let obj =
        patch_spec(&client, ns.name(), "alerts", json!({"auth": {"oauth2": {"subject": "boss@example.test"}}})).await;
    let message = wait_invalid(&client, ns.name(), &obj, "SubjectNotAllowed").await;
    let command =
        format!("kubectl annotate --overwrite secret sa -n {} '{SUBJECTS}={USER}, boss@example.test'", ns.name());
    assert!(message.ends_with(&command), "{message}");
    assert_eq!(oauth.token_requests("jwt-app"), 1, "no token for the new subject");
    let introspections = oauth.events().iter().filter(|e| e["event"] == "introspect").count();
    assert_eq!(introspections, 1, "no XOAUTH2 login reached the server after the edit");

    // the owner allows that user: a token is requested for it
    annotate_secret(&client, ns.name(), "sa", SUBJECTS, &format!("{USER}, boss@example.test")).await;
    wait_condition(&client, ns.name(), "alerts", "Valid", "True", None, 60).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while oauth.tokens_issued("jwt-app") < 2 {
        assert!(Instant::now() < deadline, "no token for the allowed subject: {:?}", oauth.events());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ns.cleanup().await;
}

/// Copies of one client secret in three namespaces share one token; a fourth namespace with a wrong copy asks
/// on every check and evicts nothing. 5 checks each (the first, then 4 on request).
#[tokio::test]
async fn copies_of_a_secret_share_one_token_and_a_wrong_copy_evicts_nothing() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    install_crd(&client).await;
    let oauth = OAuthServer::start(&clients());
    let mta = Mta::start(&oauth, "dovecot", DOVECOT_SECRET);
    let mut namespaces = Vec::new();
    let servers = format!("{}, 127.0.0.1:{}", token_entry(&oauth), mta.submission_port);
    for (i, secret) in [CC_SECRET, CC_SECRET, CC_SECRET, WRONG_SECRET].iter().enumerate() {
        let ns = TestNamespace::new(&client, &format!("trust-cache-{i}")).await;
        ca_config_map(&client, ns.name(), &[&mta.ca_path, &oauth.ca_path]).await;
        create_secret(&client, ns.name(), "cc", &[("client-secret", secret.as_bytes())], &[(SERVERS, &servers)]).await;
        namespaces.push(ns);
    }
    // one operator for all of them: the cache is per process
    let _operator = start_operator(&operator_args(&[mta.submission_port], oauth.port, &[]));
    for ns in &namespaces {
        create_smtp(&client, ns.name(), "alerts", spec(mta.submission_port, cc_oauth2(&oauth))).await;
    }
    let inputs =
        |o: &SmtpSettings| o.status.as_ref().and_then(|s| s.last_check.as_ref()).and_then(|l| l.inputs.clone());
    let mut last = Vec::new();
    for ns in &namespaces {
        last.push(wait_for(&client, ns.name(), "alerts", 120, |o| inputs(o).is_some()).await);
    }
    for round in 1..5 {
        for ns in &namespaces {
            annotate_smtp(&client, ns.name(), "alerts", "smtp-operator.io/check-requested-at", &round.to_string())
                .await;
        }
        for (i, ns) in namespaces.iter().enumerate() {
            let old = inputs(&last[i]);
            last[i] = wait_for(&client, ns.name(), "alerts", 60, |o| inputs(o).is_some() && inputs(o) != old).await;
        }
        let results: Vec<(CheckResult, String)> = last
            .iter()
            .map(|o| {
                o.status.as_ref().and_then(|s| s.last_check.as_ref()).map(|l| (l.result, l.reason.clone())).unwrap()
            })
            .collect();
        assert_eq!(
            results,
            [
                (CheckResult::Succeeded, "Succeeded".to_string()),
                (CheckResult::Succeeded, "Succeeded".to_string()),
                (CheckResult::Succeeded, "Succeeded".to_string()),
                (CheckResult::Failed, "TokenRequestFailed".to_string()),
            ],
            "round {round}"
        );
    }
    assert_eq!(oauth.tokens_issued("cc-app"), 1, "one token for the good credential, 15 checks");
    assert_eq!(oauth.token_requests("cc-app"), 1 + 5, "the wrong copy asks once per check, never in a loop");
    for ns in namespaces {
        ns.cleanup().await;
    }
}

/// `spec.server` an IPv6 literal carrying 127.0.0.1 (NAT64, 6to4, Teredo): `DestinationNotAllowed` with the
/// default denylist, nothing dialled.
#[tokio::test]
async fn ipv6_forms_of_a_denied_ipv4_address_are_refused() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "trust-embedded").await;
    let _operator = Operator::start(&["--watch-namespace", ns.name(), "--denied-cidrs", "default"]);
    for (name, server) in [
        ("nat64", "64:ff9b::127.0.0.1"),
        ("sixtofour", "2002:7f00:1::"),
        ("teredo", "2001:0:4136:e378:8000:63bf:80ff:fffe"),
    ] {
        let spec = json!({"server": server, "port": 587, "from": USER, "tls": {"mode": "None"}});
        let obj = create_smtp(&client, ns.name(), name, spec).await;
        let message = wait_invalid(&client, ns.name(), &obj, "DestinationNotAllowed").await;
        assert!(message.contains("carries the IPv4 address 127.0.0.1"), "{name}: {message}");
        let obj: SmtpSettings = Api::namespaced(client.clone(), ns.name()).get(name).await.unwrap();
        assert!(obj.status.as_ref().and_then(|s| s.last_check.as_ref()).is_none(), "{name}: nothing was checked");
        assert_ne!(condition(&obj, "Connected").map(|c| c.status), Some("True".to_string()), "{name}");
    }
    ns.cleanup().await;
}
