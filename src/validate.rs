//! Validate (pure) and build: from a spec and the objects it references to a check plan, or a precise
//! `Valid=False` reason. No I/O here: the controller dereferences from the API, `smtp-operator check` from
//! files, and both hand the result to [`validate`].

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use crate::api::{self, AuthType, BasicMechanism, KeyRef, OAuth2Grant, SmtpSettingsSpec};
use crate::engine::token::{self, TokenRequest};
use crate::engine::{
    CheckRequest, Credentials, DialPolicy, IpNet, PasswordMechanism, Reason, SecretValue, TlsMode, TlsOptions,
    TlsVersion,
};
use crate::policy::{self, Host};

/// Kind of a referenced object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RefKind {
    Secret,
    ConfigMap,
}

impl RefKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RefKind::Secret => "Secret",
            RefKind::ConfigMap => "ConfigMap",
        }
    }
}

/// What a referenced value is used for (decides where it may be sent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Password,
    ClientSecret,
    RefreshToken,
    PrivateKey,
    CaBundle,
}

impl Purpose {
    fn describe(self) -> &'static str {
        match self {
            Purpose::Password => "SMTP password",
            Purpose::ClientSecret => "OAuth2 client secret",
            Purpose::RefreshToken => "OAuth2 refresh token",
            Purpose::PrivateKey => "OAuth2 private key",
            Purpose::CaBundle => "CA bundle",
        }
    }
}

/// One reference from the spec to a key of a Secret or ConfigMap in the same namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    pub kind: RefKind,
    pub name: String,
    pub key: String,
    pub purpose: Purpose,
}

/// A dereferenced Secret or ConfigMap (values as bytes; ConfigMap `data` and `binaryData` merged).
#[derive(Clone, Default)]
pub struct RefObject {
    pub data: BTreeMap<String, Vec<u8>>,
    pub annotations: BTreeMap<String, String>,
    pub resource_version: String,
}

/// The referenced objects that exist, by (kind, name). Absent = not found.
#[derive(Clone, Default)]
pub struct Referenced {
    pub objects: BTreeMap<(RefKind, String), RefObject>,
}

impl Referenced {
    /// A stable description of what was read: `Secret/name@rv` for each reference (`absent` when missing).
    pub fn versions(&self, refs: &[Reference]) -> Vec<String> {
        let mut out: Vec<String> = refs
            .iter()
            .map(|r| {
                let rv = self
                    .objects
                    .get(&(r.kind, r.name.clone()))
                    .map(|o| o.resource_version.as_str())
                    .unwrap_or("absent");
                format!("{}/{}@{}", r.kind.as_str(), r.name, rv)
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// Operator-wide policy that validation applies.
#[derive(Clone, Debug)]
pub struct Options {
    /// SMTP ports a check may dial (empty = any).
    pub allowed_ports: Vec<u16>,
    /// Ports a token URL may use (empty = any).
    pub allowed_token_ports: Vec<u16>,
    /// Resolved addresses that may not be dialled.
    pub denied: Vec<IpNet>,
    /// Enforce `smtp-operator.io/allowed-servers` on Secrets.
    pub require_secret_binding: bool,
    /// Name sent in EHLO.
    pub helo_name: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            allowed_ports: vec![],
            allowed_token_ports: vec![],
            denied: vec![],
            require_secret_binding: false,
            helo_name: "smtp-operator.local".into(),
        }
    }
}

/// OAuth2 settings with their secrets resolved, ready for the token client.
#[derive(Clone, Debug)]
pub struct OAuthPlan {
    /// The mailbox sent as `user=` in XOAUTH2.
    pub username: String,
    pub request: TokenRequest,
    /// Identifies the Secret versions used, so a rotated Secret invalidates cached tokens.
    pub secret_version: String,
}

/// What a valid spec turns into.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The check to run. For OAuth2, `credentials` is filled in once the token is obtained.
    pub request: CheckRequest,
    pub oauth: Option<OAuthPlan>,
    /// Periodic re-check interval (`None` = only on change).
    pub interval: Option<Duration>,
    /// Parsed `from` address (without display name).
    pub from_address: String,
}

/// Why a spec cannot be checked: `Valid=False` with this reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub reason: Reason,
    pub message: String,
}

impl Invalid {
    fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self { reason, message: message.into() }
    }
}

/// Every Secret/ConfigMap key the spec references, in a stable order.
pub fn references(spec: &SmtpSettingsSpec) -> Vec<Reference> {
    let mut out = Vec::new();
    let mut push =
        |kind, r: &KeyRef, purpose| out.push(Reference { kind, name: r.name.clone(), key: r.key.clone(), purpose });
    if let Some(ca) = &spec.tls.ca_bundle {
        if let Some(r) = &ca.secret_key_ref {
            push(RefKind::Secret, r, Purpose::CaBundle);
        }
        if let Some(r) = &ca.config_map_key_ref {
            push(RefKind::ConfigMap, r, Purpose::CaBundle);
        }
    }
    match spec.auth.type_ {
        AuthType::None => {}
        AuthType::Basic => {
            if let Some(b) = &spec.auth.basic {
                push(RefKind::Secret, &b.password_secret_ref, Purpose::Password);
            }
        }
        AuthType::OAuth2 => {
            if let Some(o) = &spec.auth.oauth2 {
                let needs_secret = matches!(o.grant, OAuth2Grant::ClientCredentials | OAuth2Grant::RefreshToken);
                if let (true, Some(r)) = (needs_secret, &o.client_secret_ref) {
                    push(RefKind::Secret, r, Purpose::ClientSecret);
                }
                if let (OAuth2Grant::RefreshToken, Some(r)) = (o.grant, &o.refresh_token_ref) {
                    push(RefKind::Secret, r, Purpose::RefreshToken);
                }
                if let (OAuth2Grant::JwtBearer, Some(r)) = (o.grant, &o.private_key_ref) {
                    push(RefKind::Secret, r, Purpose::PrivateKey);
                }
            }
        }
    }
    out
}

/// Parses `from` (`addr` or `Name <addr>`, RFC 5322 via lettre) and returns the bare address.
pub fn parse_from(from: &str) -> Result<String, String> {
    lettre::message::Mailbox::from_str(from.trim()).map(|m| m.email.to_string()).map_err(|e| format!("{e}"))
}

/// Parses PEM certificates into DER; errors when there is none or one is malformed.
pub fn parse_ca_bundle(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut reader = std::io::BufReader::new(pem);
    let mut out = Vec::new();
    for item in rustls_pemfile::certs(&mut reader) {
        match item {
            Ok(der) => out.push(der.as_ref().to_vec()),
            Err(e) => return Err(format!("malformed PEM: {e}")),
        }
    }
    if out.is_empty() {
        return Err("no PEM certificate (-----BEGIN CERTIFICATE-----) found".into());
    }
    for der in &out {
        let cert = rustls::pki_types::CertificateDer::from(der.as_slice());
        if let Err(e) = webpki::anchor_from_trusted_cert(&cert) {
            return Err(format!("a certificate could not be parsed: {e:?}"));
        }
    }
    Ok(out)
}

fn lookup<'a>(referenced: &'a Referenced, r: &Reference) -> Result<&'a [u8], Invalid> {
    let Some(obj) = referenced.objects.get(&(r.kind, r.name.clone())) else {
        let reason = match r.kind {
            RefKind::Secret => Reason::SecretNotFound,
            RefKind::ConfigMap => Reason::ConfigMapNotFound,
        };
        return Err(Invalid::new(
            reason,
            format!(
                "{} {:?} (for the {}) was not found in this namespace; create it, the resource is re-checked \
                 as soon as it exists",
                r.kind.as_str(),
                r.name,
                r.purpose.describe()
            ),
        ));
    };
    let Some(value) = obj.data.get(&r.key) else {
        let reason = match r.kind {
            RefKind::Secret => Reason::SecretKeyNotFound,
            RefKind::ConfigMap => Reason::ConfigMapKeyNotFound,
        };
        let keys: Vec<&str> = obj.data.keys().map(String::as_str).take(20).collect();
        return Err(Invalid::new(
            reason,
            format!(
                "{} {:?} has no key {:?} (for the {}); it has: [{}]",
                r.kind.as_str(),
                r.name,
                r.key,
                r.purpose.describe(),
                keys.join(", ")
            ),
        ));
    };
    Ok(value)
}

fn secret_value(referenced: &Referenced, r: &Reference) -> Result<SecretValue, Invalid> {
    let bytes = lookup(referenced, r)?;
    if bytes.is_empty() {
        return Err(Invalid::new(
            Reason::InvalidSecretValue,
            format!("key {:?} of Secret {:?} (the {}) is empty", r.key, r.name, r.purpose.describe()),
        ));
    }
    Ok(SecretValue::new(bytes.to_vec()))
}

/// Validates a spec against what it references and the operator's policy, and builds the check plan.
pub fn validate(
    spec: &SmtpSettingsSpec,
    namespace: &str,
    referenced: &Referenced,
    options: &Options,
) -> Result<Plan, Invalid> {
    let port = u16::try_from(spec.port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| Invalid::new(Reason::InvalidSpec, format!("port {} is outside 1-65535", spec.port)))?;
    // Policy first: a refused port or address costs no DNS and no connection.
    if !options.allowed_ports.is_empty() && !options.allowed_ports.contains(&port) {
        return Err(Invalid::new(
            Reason::PortNotAllowed,
            format!(
                "port {port} is not in the operator's allowed SMTP ports ({}); use one of them or ask the \
                 cluster admin to extend --allowed-ports",
                join_ports(&options.allowed_ports)
            ),
        ));
    }
    let host =
        policy::normalize_host(&spec.server).map_err(|e| Invalid::new(Reason::InvalidSpec, format!("server: {e}")))?;
    if let Some(ip) = host.ip().filter(|ip| policy::is_denied(&options.denied, *ip)) {
        return Err(Invalid::new(
            Reason::DestinationNotAllowed,
            format!(
                "server {:?} is the address {ip}, which the operator may not connect to (--denied-cidrs)",
                spec.server
            ),
        ));
    }
    let from_address = parse_from(&spec.from).map_err(|e| {
        Invalid::new(
            Reason::InvalidFromAddress,
            format!(
                "from {:?} is not a valid address ({e}); use alerts@example.com or 'Name <alerts@example.com>'",
                spec.from
            ),
        )
    })?;
    if let Some(t) = &spec.test_email {
        for r in &t.to {
            if let Err(e) = lettre::Address::from_str(&r.0) {
                return Err(Invalid::new(
                    Reason::InvalidSpec,
                    format!("testEmail.to entry {:?} is not a valid address ({e})", r.0),
                ));
            }
        }
    }
    let timeout = crate::duration::parse(&spec.check.timeout)
        .map_err(|e| Invalid::new(Reason::InvalidSpec, format!("check.timeout: {e}")))?;
    if timeout < Duration::from_secs(1) || timeout > Duration::from_secs(300) {
        return Err(Invalid::new(Reason::InvalidSpec, "check.timeout must be between 1s and 5m"));
    }
    let interval = crate::duration::parse(&spec.check.interval)
        .map_err(|e| Invalid::new(Reason::InvalidSpec, format!("check.interval: {e}")))?;
    if spec.auth.type_ != AuthType::None && spec.tls.mode == api::TlsMode::None {
        return Err(Invalid::new(
            Reason::InvalidSpec,
            "auth requires TLS: with tls.mode None the credentials would cross the network in clear text",
        ));
    }

    let refs = references(spec);
    // Secret binding: every credential may go only where its Secret allows.
    let token_dest = match (&spec.auth.type_, &spec.auth.oauth2) {
        (AuthType::OAuth2, Some(o)) => Some(token_destination(&o.token_url, options)?),
        _ => None,
    };
    if options.require_secret_binding {
        for r in refs.iter().filter(|r| r.kind == RefKind::Secret && r.purpose != Purpose::CaBundle) {
            let (dest_host, dest_port) = match (r.purpose, &token_dest) {
                (Purpose::Password, _) => (&host, port),
                (_, Some((h, p))) => (h, *p),
                _ => continue,
            };
            check_binding(referenced, r, dest_host, dest_port, namespace)?;
        }
    }
    // the CA bundle first: a broken bundle is reported even when a credential is missing too
    let mut extra_roots = Vec::new();
    for r in refs.iter().filter(|r| r.purpose == Purpose::CaBundle) {
        let pem = lookup(referenced, r)?;
        extra_roots = parse_ca_bundle(pem).map_err(|e| {
            Invalid::new(
                Reason::InvalidCABundle,
                format!(
                    "tls.caBundle ({} {:?} key {:?}) is not a usable PEM bundle: {e}",
                    r.kind.as_str(),
                    r.name,
                    r.key
                ),
            )
        })?;
    }

    let credentials_ref = |purpose: Purpose| refs.iter().find(|r| r.purpose == purpose);
    let mut oauth = None;
    let credentials = match spec.auth.type_ {
        AuthType::None => Credentials::None,
        AuthType::Basic => {
            let b = spec
                .auth
                .basic
                .as_ref()
                .ok_or_else(|| Invalid::new(Reason::InvalidSpec, "auth.type Basic requires auth.basic"))?;
            let r = credentials_ref(Purpose::Password).expect("references() lists the password");
            let password = secret_value(referenced, r)?;
            let mechanisms = b
                .mechanisms
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|m| match m {
                    BasicMechanism::Plain => PasswordMechanism::Plain,
                    BasicMechanism::Login => PasswordMechanism::Login,
                })
                .collect();
            Credentials::Password { username: b.username.clone(), password, mechanisms }
        }
        AuthType::OAuth2 => {
            let o = spec
                .auth
                .oauth2
                .as_ref()
                .ok_or_else(|| Invalid::new(Reason::InvalidSpec, "auth.type OAuth2 requires auth.oauth2"))?;
            if !o.token_url.starts_with("https://") {
                return Err(Invalid::new(Reason::InvalidSpec, "auth.oauth2.tokenUrl must be an https:// URL"));
            }
            let need = |p: Purpose, what: &str| {
                credentials_ref(p)
                    .ok_or_else(|| Invalid::new(Reason::InvalidSpec, format!("grant {:?} requires {what}", o.grant)))
                    .and_then(|r| secret_value(referenced, r))
            };
            let grant = match o.grant {
                OAuth2Grant::ClientCredentials => {
                    token::Grant::ClientCredentials { client_secret: need(Purpose::ClientSecret, "clientSecretRef")? }
                }
                OAuth2Grant::RefreshToken => token::Grant::RefreshToken {
                    client_secret: need(Purpose::ClientSecret, "clientSecretRef")?,
                    refresh_token: need(Purpose::RefreshToken, "refreshTokenRef")?,
                },
                OAuth2Grant::JwtBearer => token::Grant::JwtBearer {
                    private_key: need(Purpose::PrivateKey, "privateKeyRef")?,
                    subject: o.subject.clone().unwrap_or_default(),
                },
            };
            let secret_refs: Vec<Reference> = refs.iter().filter(|r| r.purpose != Purpose::CaBundle).cloned().collect();
            oauth = Some(OAuthPlan {
                username: o.username.clone(),
                request: TokenRequest {
                    token_url: o.token_url.clone(),
                    client_id: o.client_id.clone(),
                    grant,
                    scopes: o.scopes.clone(),
                    client_auth: match o.client_auth_method {
                        api::ClientAuthMethod::RequestBody => token::ClientAuth::RequestBody,
                        api::ClientAuthMethod::BasicAuth => token::ClientAuth::BasicAuth,
                    },
                    extra_roots: extra_roots.clone(),
                    timeout,
                    policy: DialPolicy {
                        allowed_ports: options.allowed_token_ports.clone(),
                        denied: options.denied.clone(),
                    },
                },
                secret_version: referenced.versions(&secret_refs).join(","),
            });
            // filled in with the access token before the check runs
            Credentials::None
        }
    };

    let request = CheckRequest {
        // the normalised form: punycode for international names, the plain address for IP literals
        server: host.to_string(),
        port,
        tls: TlsOptions {
            mode: match spec.tls.mode {
                api::TlsMode::None => TlsMode::None,
                api::TlsMode::StartTLS => TlsMode::StartTls,
                api::TlsMode::ImplicitTLS => TlsMode::ImplicitTls,
            },
            min_version: match spec.tls.min_version {
                api::TlsMinVersion::V1_2 => TlsVersion::V1_2,
                api::TlsMinVersion::V1_3 => TlsVersion::V1_3,
            },
            extra_roots,
            insecure_skip_verify: spec.tls.insecure_skip_verify,
        },
        credentials,
        helo_name: options.helo_name.clone(),
        timeout,
        policy: DialPolicy { allowed_ports: options.allowed_ports.clone(), denied: options.denied.clone() },
        test_message: None,
    };
    Ok(Plan { request, oauth, interval: (!interval.is_zero()).then_some(interval), from_address })
}

/// The token endpoint's host and port, checked against the token-port allowlist and the denied addresses.
fn token_destination(token_url: &str, options: &Options) -> Result<(Host, u16), Invalid> {
    let url = url::Url::parse(token_url).map_err(|e| {
        Invalid::new(Reason::InvalidSpec, format!("auth.oauth2.tokenUrl {token_url:?} is not a URL: {e}"))
    })?;
    if url.scheme() != "https" {
        return Err(Invalid::new(Reason::InvalidSpec, "auth.oauth2.tokenUrl must be an https:// URL"));
    }
    let port = url.port_or_known_default().unwrap_or(443);
    if !options.allowed_token_ports.is_empty() && !options.allowed_token_ports.contains(&port) {
        return Err(Invalid::new(
            Reason::PortNotAllowed,
            format!(
                "tokenUrl port {port} is not in the operator's allowed token ports ({}); ask the cluster admin to \
                 extend --allowed-token-ports",
                join_ports(&options.allowed_token_ports)
            ),
        ));
    }
    let raw_host = url.host_str().unwrap_or_default();
    let host = policy::normalize_host(raw_host)
        .map_err(|e| Invalid::new(Reason::InvalidSpec, format!("auth.oauth2.tokenUrl host: {e}")))?;
    if let Some(ip) = host.ip().filter(|ip| policy::is_denied(&options.denied, *ip)) {
        return Err(Invalid::new(
            Reason::DestinationNotAllowed,
            format!("tokenUrl host is the address {ip}, which the operator may not connect to (--denied-cidrs)"),
        ));
    }
    Ok((host, port))
}

/// Refuses a Secret whose `smtp-operator.io/allowed-servers` does not list the destination.
fn check_binding(
    referenced: &Referenced,
    r: &Reference,
    host: &Host,
    port: u16,
    namespace: &str,
) -> Result<(), Invalid> {
    let Some(obj) = referenced.objects.get(&(r.kind, r.name.clone())) else {
        return Ok(()); // reported as SecretNotFound where the value is needed
    };
    let existing = obj.annotations.get(policy::ALLOWED_SERVERS_ANNOTATION).map(String::as_str);
    let allowed = existing.map(|v| policy::parse_allowed_servers(v).0).unwrap_or_default();
    if policy::allows(&allowed, host, port) {
        return Ok(());
    }
    Err(Invalid::new(
        Reason::CredentialsNotBoundToServer,
        format!(
            "the {} is not sent: {}",
            r.purpose.describe(),
            policy::credentials_not_bound_message(&r.name, namespace, host, port, existing)
        ),
    ))
}

fn join_ports(ports: &[u16]) -> String {
    ports.iter().map(u16::to_string).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> SmtpSettingsSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn basic() -> SmtpSettingsSpec {
        spec(
            "server: smtp.example.com\nport: 587\nfrom: 'Alerts <alerts@example.com>'\n\
             auth: {type: Basic, basic: {username: u, passwordSecretRef: {name: creds, key: password}}}\n",
        )
    }

    fn with_secret(name: &str, key: &str, value: &[u8]) -> Referenced {
        let mut r = Referenced::default();
        r.objects.insert(
            (RefKind::Secret, name.into()),
            RefObject {
                data: [(key.to_string(), value.to_vec())].into(),
                resource_version: "7".into(),
                ..Default::default()
            },
        );
        r
    }

    #[test]
    fn basic_spec_builds_a_password_check() {
        let plan = validate(&basic(), "ns", &with_secret("creds", "password", b"pw"), &Options::default()).unwrap();
        assert_eq!(plan.from_address, "alerts@example.com");
        assert_eq!(plan.request.port, 587);
        assert_eq!(plan.request.tls.mode, TlsMode::StartTls);
        assert_eq!(plan.request.timeout, Duration::from_secs(30));
        assert_eq!(plan.interval, Some(Duration::from_secs(1800)));
        match &plan.request.credentials {
            Credentials::Password { username, password, mechanisms } => {
                assert_eq!(username, "u");
                assert_eq!(password.expose(), b"pw");
                assert!(mechanisms.is_empty());
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn missing_secret_key_and_empty_value_have_precise_reasons() {
        let e = validate(&basic(), "ns", &Referenced::default(), &Options::default()).unwrap_err();
        assert_eq!(e.reason, Reason::SecretNotFound);
        assert!(e.message.contains("\"creds\""), "{}", e.message);
        let e = validate(&basic(), "ns", &with_secret("creds", "other", b"x"), &Options::default()).unwrap_err();
        assert_eq!(e.reason, Reason::SecretKeyNotFound);
        assert!(e.message.contains("other"), "lists existing keys: {}", e.message);
        let e = validate(&basic(), "ns", &with_secret("creds", "password", b""), &Options::default()).unwrap_err();
        assert_eq!(e.reason, Reason::InvalidSecretValue);
    }

    #[test]
    fn from_is_parsed_as_rfc5322() {
        let mut s = basic();
        s.from = "Alerts <not an address>".into();
        let e = validate(&s, "ns", &with_secret("creds", "password", b"pw"), &Options::default()).unwrap_err();
        assert_eq!(e.reason, Reason::InvalidFromAddress);
    }

    #[test]
    fn port_outside_allowlist_is_refused_before_anything_else() {
        let opts = Options { allowed_ports: vec![25, 587], ..Default::default() };
        let mut s = basic();
        s.port = 2526;
        let e = validate(&s, "ns", &Referenced::default(), &opts).unwrap_err();
        assert_eq!(e.reason, Reason::PortNotAllowed);
        assert!(e.message.contains("25,587"));
    }

    #[test]
    fn ca_bundle_that_is_not_pem_is_invalid() {
        let mut s = basic();
        s.tls.ca_bundle = Some(api::CaBundleSource {
            secret_key_ref: None,
            config_map_key_ref: Some(KeyRef { name: "ca".into(), key: "ca.crt".into() }),
        });
        let mut r = with_secret("creds", "password", b"pw");
        r.objects.insert(
            (RefKind::ConfigMap, "ca".into()),
            RefObject { data: [("ca.crt".to_string(), b"hello".to_vec())].into(), ..Default::default() },
        );
        let e = validate(&s, "ns", &r, &Options::default()).unwrap_err();
        assert_eq!(e.reason, Reason::InvalidCABundle);
        let garbage = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        r.objects.get_mut(&(RefKind::ConfigMap, "ca".into())).unwrap().data.insert("ca.crt".into(), garbage.to_vec());
        let e = validate(&s, "ns", &r, &Options::default()).unwrap_err();
        assert_eq!(e.reason, Reason::InvalidCABundle);
    }

    #[test]
    fn secret_binding_is_enforced_for_the_exact_destination() {
        let opts = Options { require_secret_binding: true, ..Default::default() };
        let mut r = with_secret("creds", "password", b"pw");
        let e = validate(&basic(), "mail", &r, &opts).unwrap_err();
        assert_eq!(e.reason, Reason::CredentialsNotBoundToServer);
        assert!(e.message.contains("kubectl annotate secret creds -n mail"), "{}", e.message);
        assert!(e.message.contains("smtp.example.com:587"), "{}", e.message);
        let obj = r.objects.get_mut(&(RefKind::Secret, "creds".into())).unwrap();
        obj.annotations.insert(policy::ALLOWED_SERVERS_ANNOTATION.into(), "smtp.example.com:465".into());
        assert_eq!(validate(&basic(), "mail", &r, &opts).unwrap_err().reason, Reason::CredentialsNotBoundToServer);
        let obj = r.objects.get_mut(&(RefKind::Secret, "creds".into())).unwrap();
        obj.annotations
            .insert(policy::ALLOWED_SERVERS_ANNOTATION.into(), " SMTP.example.com:587 , other.example ".into());
        assert!(validate(&basic(), "mail", &r, &opts).is_ok());
        // moving the server elsewhere without the Secret's consent is refused again
        let mut moved = basic();
        moved.server = "evil.example.net".into();
        assert_eq!(validate(&moved, "mail", &r, &opts).unwrap_err().reason, Reason::CredentialsNotBoundToServer);
    }

    #[test]
    fn denied_ip_literals_are_refused_in_any_form() {
        let opts = Options { denied: policy::default_denied(), ..Default::default() };
        for server in ["127.0.0.1", "0x7f.1", "2130706433", "127.1", "[::ffff:127.0.0.1]", "169.254.169.254", "::1"] {
            let mut s = basic();
            s.server = server.into();
            let e = validate(&s, "ns", &with_secret("creds", "password", b"pw"), &opts).unwrap_err();
            assert_eq!(e.reason, Reason::DestinationNotAllowed, "{server}");
        }
        let mut s = basic();
        s.server = "smtp.bücher.example".into();
        let plan = validate(&s, "ns", &with_secret("creds", "password", b"pw"), &opts).unwrap();
        assert_eq!(plan.request.server, "smtp.xn--bcher-kva.example", "punycode is dialled and verified");
    }

    #[test]
    fn versions_describe_what_was_read() {
        let refs = references(&basic());
        assert_eq!(with_secret("creds", "password", b"pw").versions(&refs), vec!["Secret/creds@7"]);
        assert_eq!(Referenced::default().versions(&refs), vec!["Secret/creds@absent"]);
    }
}
