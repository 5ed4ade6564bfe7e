//! The CRD: `crds/` is exactly `smtp-operator crd`; the real kube-apiserver refuses every bad spec of the table
//! with the expected message and accepts every example in `examples/`.

mod support;

use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

use support::kube::{TestNamespace, client};
use support::operator::install_crd;

#[test]
fn crds_dir_is_the_generated_crd() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let mut files: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    files.sort();
    let generated = smtp_operator::crdgen::crds();
    assert_eq!(files, generated.iter().map(|(f, _)| f.to_string()).collect::<Vec<_>>(), "one file per CRD");
    let mut all = String::new();
    for (file, yaml) in generated {
        let on_disk = std::fs::read_to_string(dir.join(file)).unwrap();
        assert!(on_disk == yaml, "crds/{file} is stale: regenerate it from `cargo run -- crd` (one file per CRD)");
        all.push_str(&on_disk);
    }
    // in file-name order, as `cat crds/*.yaml` and `kubectl apply -f crds/` read them
    assert_eq!(all, smtp_operator::crdgen::crd_yaml(), "crds/*.yaml concatenated is the `crd` output");
}

fn smtp_api(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("smtp-operator.io", "v1alpha1", "SmtpSettings");
    Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk_with_plural(&gvk, "smtpsettings"))
}

fn cluster_smtp_api(client: &kube::Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("smtp-operator.io", "v1alpha1", "ClusterSmtpSettings");
    Api::all_with(client.clone(), &ApiResource::from_gvk_with_plural(&gvk, "clustersmtpsettings"))
}

fn object(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "smtp-operator.io/v1alpha1",
        "kind": "SmtpSettings",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .unwrap()
}

fn good() -> Value {
    json!({
        "server": "smtp.example.com",
        "port": 587,
        "from": "Alerts <alerts@example.com>",
        "auth": {"type": "Basic", "basic": {"username": "u", "passwordSecretRef": {"name": "s", "key": "password"}}},
    })
}

fn with(mut base: Value, pointer: &str, value: Value) -> Value {
    let (parent, last) = pointer.rsplit_once('/').unwrap();
    let mut target = &mut base;
    for part in parent.split('/').filter(|p| !p.is_empty()) {
        if target.get(part).is_none() {
            target[part] = json!({});
        }
        target = target.get_mut(part).unwrap();
    }
    if value.is_null() {
        target.as_object_mut().unwrap().remove(last);
    } else {
        target[last] = value;
    }
    base
}

#[tokio::test]
async fn apiserver_refuses_bad_specs_with_clear_messages() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "crd-bad").await;
    let api = smtp_api(&client, ns.name());
    let oauth = json!({"type": "OAuth2", "oauth2": {"username": "a@example.com", "grant": "ClientCredentials",
        "tokenUrl": "https://login.example.com/token", "clientId": "id",
        "clientSecretRef": {"name": "o", "key": "client-secret"}}});
    let jwt = json!({"type": "OAuth2", "oauth2": {"username": "a@example.com", "grant": "JwtBearer",
        "tokenUrl": "https://oauth2.example.com/token", "clientId": "sa@example.iam",
        "privateKeyRef": {"name": "o", "key": "key.json"}, "subject": "a@example.com"}});
    let table: Vec<(&str, Value, &str)> = vec![
        ("port zero", with(good(), "/port", json!(0)), "should be greater than or equal to 1"),
        ("port too big", with(good(), "/port", json!(70000)), "should be less than or equal to 65535"),
        (
            "server with scheme",
            with(good(), "/server", json!("smtp://mail.example.com")),
            "server must be a host name or an IP literal",
        ),
        (
            "server with port",
            with(good(), "/server", json!("mail.example.com:587")),
            "server must be a host name or an IP literal",
        ),
        (
            "server with space",
            with(good(), "/server", json!("mail example.com")),
            "server must be a host name or an IP literal",
        ),
        (
            "server with path",
            with(good(), "/server", json!("mail.example.com/x")),
            "server must be a host name or an IP literal",
        ),
        ("tls 1.1", with(good(), "/tls/minVersion", json!("1.1")), "supported values: \"1.2\", \"1.3\""),
        ("basic without section", with(good(), "/auth/basic", Value::Null), "auth.type Basic requires auth.basic"),
        (
            "oauth2 without section",
            json!({"server": "s.example.com", "port": 587, "from": "a@example.com", "auth": {"type": "OAuth2"}}),
            "auth.type OAuth2 requires auth.oauth2",
        ),
        (
            "none with basic",
            with(good(), "/auth/type", json!("None")),
            "auth.basic is only allowed with auth.type Basic",
        ),
        ("auth without tls", with(good(), "/tls/mode", json!("None")), "auth requires TLS"),
        (
            "oauth2 http token url",
            with(
                with(good(), "/auth", oauth.clone()),
                "/auth/oauth2/tokenUrl",
                json!("http://login.example.com/token"),
            ),
            "tokenUrl must be an https:// URL",
        ),
        (
            "client credentials without secret",
            with(with(good(), "/auth", oauth.clone()), "/auth/oauth2/clientSecretRef", Value::Null),
            "grant ClientCredentials requires clientSecretRef",
        ),
        (
            "refresh without token ref",
            with(with(good(), "/auth", oauth.clone()), "/auth/oauth2/grant", json!("RefreshToken")),
            "grant RefreshToken requires clientSecretRef and refreshTokenRef",
        ),
        (
            "jwt without key",
            with(with(good(), "/auth", oauth.clone()), "/auth/oauth2/grant", json!("JwtBearer")),
            "grant JwtBearer requires privateKeyRef and subject",
        ),
        (
            "jwt with key but without subject",
            with(with(good(), "/auth", jwt.clone()), "/auth/oauth2/subject", Value::Null),
            "grant JwtBearer requires privateKeyRef and subject",
        ),
        (
            "jwt with empty subject",
            with(with(good(), "/auth", jwt.clone()), "/auth/oauth2/subject", json!("")),
            "spec.auth.oauth2.subject",
        ),
        (
            // never on the wire: the CRD asks for the IPv4 address itself
            "ipv4-mapped literal",
            with(good(), "/server", json!("::ffff:127.0.0.1")),
            "server must be a host name or an IP literal",
        ),
        ("from without address", with(good(), "/from", json!("Platform Alerts")), "from must be an address"),
        (
            "from with two addresses",
            with(good(), "/from", json!("a@example.com b@example.com")),
            "from must be an address",
        ),
        ("bad interval", with(good(), "/check/interval", json!("5 minutes")), "spec.check.interval"),
        ("timeout too long", with(good(), "/check/timeout", json!("10m")), "check.timeout must be between 1s and 5m"),
        (
            "ca bundle with both refs",
            with(
                good(),
                "/tls/caBundle",
                json!({"secretKeyRef": {"name": "a", "key": "b"}, "configMapKeyRef": {"name": "a", "key": "b"}}),
            ),
            "caBundle needs exactly one of secretKeyRef and configMapKeyRef",
        ),
        ("recipient not an address", with(good(), "/testEmail", json!({"to": ["ops"]})), "spec.testEmail.to[0]"),
        (
            "unknown auth type",
            with(good(), "/auth/type", json!("Kerberos")),
            "supported values: \"None\", \"Basic\", \"OAuth2\"",
        ),
    ];
    assert!(table.len() >= 12);
    let pp = PostParams { dry_run: true, ..Default::default() };
    let mut failures = Vec::new();
    for (i, (what, spec, expected)) in table.iter().enumerate() {
        match api.create(&pp, &object(&format!("bad-{i}"), spec.clone())).await {
            Ok(_) => failures.push(format!("{what}: accepted")),
            Err(kube::Error::Api(e)) => {
                if !e.message.contains(expected) {
                    failures.push(format!("{what}: message {:?} lacks {expected:?}", e.message));
                }
            }
            Err(e) => failures.push(format!("{what}: unexpected error {e}")),
        }
    }
    // the good spec and variants that must pass
    for (what, spec) in [
        ("good", good()),
        ("ipv4 literal", with(good(), "/server", json!("192.0.2.10"))),
        ("ipv6 literal", with(good(), "/server", json!("2001:db8::1"))),
        ("idn host", with(good(), "/server", json!("smtp.bücher.example"))),
        ("bare from", with(good(), "/from", json!("alerts@example.com"))),
        (
            "no auth without tls",
            json!({"server": "relay.example.com", "port": 25, "from": "a@example.com", "tls": {"mode": "None"}}),
        ),
        ("oauth2", with(good(), "/auth", oauth.clone())),
        ("jwt with subject", with(good(), "/auth", jwt.clone())),
        // IPv6 forms carrying an IPv4 address are real IPv6 destinations: the operator's policy judges them by
        // the IPv4 address they carry (see docs/security.md)
        ("nat64 literal", with(good(), "/server", json!("64:ff9b::127.0.0.1"))),
        ("6to4 literal", with(good(), "/server", json!("2002:7f00:1::"))),
        ("teredo literal", with(good(), "/server", json!("2001:0:4136:e378:8000:63bf:80ff:fffe"))),
    ] {
        if let Err(e) = api.create(&pp, &object(&format!("good-{}", what.replace(' ', "-")), spec)).await {
            failures.push(format!("{what}: refused: {e}"));
        }
    }
    ns.cleanup().await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn every_example_is_accepted() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "crd-examples").await;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut count = 0;
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("examples/").flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries.into_iter().filter(|p| p.extension().is_some_and(|e| e == "yaml")) {
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(doc).unwrap();
            if value.is_null() {
                continue;
            }
            let mut obj: DynamicObject = serde_yaml::from_value(value).unwrap();
            let api = match obj.types.as_ref().map(|t| t.kind.as_str()) {
                Some("SmtpSettings") => smtp_api(&client, ns.name()),
                Some("ClusterSmtpSettings") => cluster_smtp_api(&client),
                Some("SmtpRelay") => {
                    obj.metadata.namespace = Some(ns.name().to_string());
                    let gvk = GroupVersionKind::gvk("smtp-operator.io", "v1alpha1", "SmtpRelay");
                    Api::namespaced_with(
                        client.clone(),
                        ns.name(),
                        &ApiResource::from_gvk_with_plural(&gvk, "smtprelays"),
                    )
                }
                _ => continue,
            };
            api.create(&PostParams { dry_run: true, ..Default::default() }, &obj)
                .await
                .unwrap_or_else(|e| panic!("{} refused: {e}", path.display()));
            count += 1;
        }
    }
    ns.cleanup().await;
    assert!(count >= 3, "examples/ lacks SmtpSettings, ClusterSmtpSettings or SmtpRelay ({count} objects)");
}

use serde::Deserialize;
