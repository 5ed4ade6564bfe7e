//! Validate (pure) and build: from a spec and the objects it references to a check plan, or a precise
//! `Valid=False` reason. No I/O here: the controller dereferences from the API, `smtp-operator check` from
//! files, and both hand the result to [`validate`].

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use crate::api::{self, AuthType, KeyRef, OAuth2Grant, SmtpSettingsSpec};
use crate::engine::token::TokenRequest;
use crate::engine::{CheckRequest, DialPolicy, IpNet, Reason, SecretValue};

mod credentials;
mod destination;
mod tls;

pub use tls::parse_ca_bundle;

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

/// The operator-wide security policy that validation applies (from the `run` flags; see docs/security.md).
#[derive(Clone, Debug)]
pub struct SecurityPolicy {
    /// SMTP ports a check may dial (empty = any).
    pub allowed_ports: Vec<u16>,
    /// Ports a token URL may use (empty = any).
    pub allowed_token_ports: Vec<u16>,
    /// Resolved addresses that may not be dialled.
    pub denied: Vec<IpNet>,
    /// Enforce `smtp-operator.io/allowed-servers` (and `allowed-subjects`) on Secrets.
    pub require_secret_binding: bool,
    /// Name sent in EHLO.
    pub helo_name: String,
    /// Where the references of ClusterSmtpSettings resolve; `None`: ClusterSmtpSettings are not served (the
    /// operator watches one namespace), so references to them are refused.
    pub cluster_resource_namespace: Option<String>,
}

impl Default for SecurityPolicy {
    fn default() -> Self {
        Self {
            allowed_ports: vec![],
            allowed_token_ports: vec![],
            denied: vec![],
            require_secret_binding: false,
            helo_name: "smtp-operator.local".into(),
            cluster_resource_namespace: None,
        }
    }
}

impl SecurityPolicy {
    /// The dial policy of SMTP connections.
    fn smtp_dial(&self) -> DialPolicy {
        DialPolicy { allowed_ports: self.allowed_ports.clone(), denied: self.denied.clone() }
    }

    /// The dial policy of token requests.
    fn token_dial(&self) -> DialPolicy {
        DialPolicy { allowed_ports: self.allowed_token_ports.clone(), denied: self.denied.clone() }
    }
}

/// OAuth2 settings with their secrets resolved, ready for the token client.
#[derive(Clone, Debug)]
pub struct OAuthPlan {
    /// The mailbox sent as `user=` in XOAUTH2.
    pub username: String,
    pub request: TokenRequest,
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
    pub(crate) fn new(reason: Reason, message: impl Into<String>) -> Self {
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

pub(crate) fn lookup<'a>(referenced: &'a Referenced, r: &Reference) -> Result<&'a [u8], Invalid> {
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

pub(crate) fn secret_value(referenced: &Referenced, r: &Reference) -> Result<SecretValue, Invalid> {
    let bytes = lookup(referenced, r)?;
    if bytes.is_empty() {
        return Err(Invalid::new(
            Reason::InvalidSecretValue,
            format!("key {:?} of Secret {:?} (the {}) is empty", r.key, r.name, r.purpose.describe()),
        ));
    }
    Ok(SecretValue::new(bytes.to_vec()))
}

/// Validates a spec against what it references and the operator's policy, and builds the check plan. The
/// order is the order of the report: destination (policy first: a refused port or address costs no DNS and no
/// connection), the spec's own fields, Secret binding, TLS (a broken CA bundle is reported even when a
/// credential is missing too), then the credentials.
pub fn validate(
    spec: &SmtpSettingsSpec,
    namespace: &str,
    referenced: &Referenced,
    policy: &SecurityPolicy,
) -> Result<Plan, Invalid> {
    let server = destination::smtp(spec, policy)?;
    let fields = check_fields(spec)?;
    let refs = references(spec);
    let token = match (&spec.auth.type_, &spec.auth.oauth2) {
        (AuthType::OAuth2, Some(o)) => Some(destination::token(&o.token_url, policy)?),
        _ => None,
    };
    if policy.require_secret_binding {
        credentials::bind_secrets(spec, &refs, referenced, namespace, &server, token.as_ref())?;
    }
    let tls = tls::options(spec, &refs, referenced)?;
    let ctx = credentials::Context { refs: &refs, referenced, extra_roots: &tls.extra_roots, timeout: fields.timeout };
    let (credentials, oauth) = credentials::build(spec, &ctx, policy)?;
    let request = CheckRequest {
        // the normalised form: punycode for international names, the plain address for IP literals
        server: server.host.to_string(),
        port: server.port,
        tls,
        credentials,
        helo_name: policy.helo_name.clone(),
        timeout: fields.timeout,
        policy: policy.smtp_dial(),
        test_message: None,
    };
    let interval = (!fields.interval.is_zero()).then_some(fields.interval);
    Ok(Plan { request, oauth, interval, from_address: fields.from_address })
}

/// The spec's own fields that need more than the CRD's schema: `from`, `testEmail.to`, `check`, and auth
/// only over TLS.
struct Fields {
    from_address: String,
    timeout: Duration,
    interval: Duration,
}

fn check_fields(spec: &SmtpSettingsSpec) -> Result<Fields, Invalid> {
    let from_address = parse_from(&spec.from).map_err(|e| {
        Invalid::new(
            Reason::InvalidFromAddress,
            format!(
                "from {:?} is not a valid address ({e}); use alerts@example.com or 'Name <alerts@example.com>'",
                spec.from
            ),
        )
    })?;
    for r in spec.test_email.iter().flat_map(|t| &t.to) {
        if let Err(e) = lettre::Address::from_str(&r.0) {
            let message = format!("testEmail.to entry {:?} is not a valid address ({e})", r.0);
            return Err(Invalid::new(Reason::InvalidSpec, message));
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
    Ok(Fields { from_address, timeout, interval })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Credentials, TlsMode};
    use crate::policy;

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
        let plan =
            validate(&basic(), "ns", &with_secret("creds", "password", b"pw"), &SecurityPolicy::default()).unwrap();
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
        let e = validate(&basic(), "ns", &Referenced::default(), &SecurityPolicy::default()).unwrap_err();
        assert_eq!(e.reason, Reason::SecretNotFound);
        assert!(e.message.contains("\"creds\""), "{}", e.message);
        let e = validate(&basic(), "ns", &with_secret("creds", "other", b"x"), &SecurityPolicy::default()).unwrap_err();
        assert_eq!(e.reason, Reason::SecretKeyNotFound);
        assert!(e.message.contains("other"), "lists existing keys: {}", e.message);
        let e =
            validate(&basic(), "ns", &with_secret("creds", "password", b""), &SecurityPolicy::default()).unwrap_err();
        assert_eq!(e.reason, Reason::InvalidSecretValue);
    }

    #[test]
    fn from_is_parsed_as_rfc5322() {
        let mut s = basic();
        s.from = "Alerts <not an address>".into();
        let e = validate(&s, "ns", &with_secret("creds", "password", b"pw"), &SecurityPolicy::default()).unwrap_err();
        assert_eq!(e.reason, Reason::InvalidFromAddress);
    }

    #[test]
    fn port_outside_allowlist_is_refused_before_anything_else() {
        let opts = SecurityPolicy { allowed_ports: vec![25, 587], ..Default::default() };
        let mut s = basic();
        s.port = 2526;
        let e = validate(&s, "ns", &Referenced::default(), &opts).unwrap_err();
        assert_eq!(e.reason, Reason::PortNotAllowed);
        assert!(e.message.contains("25,587"));
    }

    #[test]
    fn secret_binding_is_enforced_for_the_exact_destination() {
        let opts = SecurityPolicy { require_secret_binding: true, ..Default::default() };
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
    fn versions_describe_what_was_read() {
        let refs = references(&basic());
        assert_eq!(with_secret("creds", "password", b"pw").versions(&refs), vec!["Secret/creds@7"]);
        assert_eq!(Referenced::default().versions(&refs), vec!["Secret/creds@absent"]);
    }
}
