//! The `SmtpSettings` custom resource (API group `smtp-operator.io/v1alpha1`), the public API that docs/api.md
//! describes field by field. Every field carries a doc comment: it becomes the CRD description that
//! `kubectl explain` prints (paragraph line breaks are joined by `crate::crdgen`). What the structural schema and CEL can refuse at `kubectl apply` is declared here;
//! the rest (full RFC 5322 parse of `from`, CA PEM parse, …) is checked by [`crate::validate`].

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of every resource of this operator.
pub const GROUP: &str = "smtp-operator.io";
/// Annotation on an SmtpSettings: a new value asks for an immediate check.
pub const CHECK_REQUESTED_AT: &str = "smtp-operator.io/check-requested-at";
/// Annotation on an SmtpSettings: a new value sends one test email.
pub const TEST_EMAIL_REQUESTED_AT: &str = "smtp-operator.io/test-email-requested-at";
/// Annotation on a Secret: the destinations its values may be sent to.
pub const ALLOWED_SERVERS: &str = "smtp-operator.io/allowed-servers";
/// Annotation on a Secret holding a JwtBearer private key: the users (`subject`, and `username` when it differs)
/// the key may act as, e.g. `alerts@example.com, *@mail.example.com`.
pub const ALLOWED_SUBJECTS: &str = "smtp-operator.io/allowed-subjects";

/// Desired outgoing-mail (SMTP) settings. The operator validates them, reads the referenced Secrets from the same
/// namespace, checks the mail server for real (connect, TLS, AUTH, optionally a test email) and reports the
/// result in `status.conditions` and events.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "smtp-operator.io",
    version = "v1alpha1",
    kind = "SmtpSettings",
    plural = "smtpsettings",
    singular = "smtpsettings",
    shortname = "smtp",
    category = "mail",
    namespaced,
    status = "SmtpSettingsStatus",
    printcolumn = r#"{"name":"Server","type":"string","jsonPath":".spec.server"}"#,
    printcolumn = r#"{"name":"Port","type":"integer","jsonPath":".spec.port"}"#,
    printcolumn = r#"{"name":"Auth","type":"string","jsonPath":".spec.auth.type"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Last Check","type":"date","jsonPath":".status.lastCheck.time"}"#,
    printcolumn = r#"{"name":"Degraded","type":"string","jsonPath":".status.conditions[?(@.type==\"Degraded\")].reason","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.auth) || !has(self.auth.type) || self.auth.type == 'None' || !has(self.tls) || !has(self.tls.mode) || self.tls.mode != 'None'",
        "message": "auth requires TLS: with tls.mode None the credentials would cross the network in clear text; use StartTLS or ImplicitTLS",
        "fieldPath": ".tls.mode",
        "reason": "FieldValueForbidden"
    }
]))]
pub struct SmtpSettingsSpec {
    /// Host name or IP literal of the SMTP server (no scheme, port, path or spaces), e.g. `smtp.office365.com`.
    /// The name is used for TLS SNI and certificate verification; the address actually dialled is the one
    /// resolved and checked by the operator.
    #[schemars(length(min = 1, max = 253))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "isIP(self) || (self.startsWith('[') && self.endsWith(']') && isIP(self.substring(1, size(self) - 1))) || self.matches('^[\\\\p{L}\\\\p{N}_]([\\\\p{L}\\\\p{N}_.-]*[\\\\p{L}\\\\p{N}_])?\\\\.?$')",
        "message": "server must be a host name or an IP literal, without scheme, port, path, user or spaces (e.g. smtp.example.com or 192.0.2.10)"
    }]))]
    pub server: String,

    /// TCP port of the SMTP server: usually 587 (StartTLS submission), 465 (ImplicitTLS) or 25 (relay).
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,

    /// Envelope and header sender of test emails: a bare address (`alerts@example.com`) or
    /// `Display Name <alerts@example.com>`.
    #[schemars(length(min = 3, max = 998))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.matches('^[^<>@\\\\s]+@[^<>@\\\\s]+$') || self.matches('^[^<>]*<[^<>@\\\\s]+@[^<>@\\\\s]+>\\\\s*$')",
        "message": "from must be an address (alerts@example.com) or 'Display Name <alerts@example.com>'"
    }]))]
    pub from: String,

    /// Transport security towards the SMTP server.
    #[serde(default)]
    pub tls: TlsSpec,

    /// How the operator authenticates to the SMTP server.
    #[serde(default)]
    pub auth: AuthSpec,

    /// When and how strictly the server is checked.
    #[serde(default)]
    pub check: CheckSpec,

    /// Recipients of on-demand test emails (annotation `smtp-operator.io/test-email-requested-at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_email: Option<TestEmailSpec>,
}

/// One mail configuration for the whole cluster (cluster-scoped; the pattern of cert-manager's `ClusterIssuer`):
/// the same `spec` and `status` as `SmtpSettings`, checked the same way, plus `allowedNamespaces`, the namespaces
/// whose objects (e.g. an `SmtpRelay`'s `settingsRef`) may use it without ever seeing its credentials. Its Secret
/// and ConfigMap references resolve in the operator's cluster resource namespace (`--cluster-resource-namespace`,
/// default: the operator's own namespace), with the same Secret binding rules.
///
/// Disabled when the operator watches one namespace only (the chart's namespaced install,
/// `watchNamespace`): such an operator neither checks ClusterSmtpSettings nor resolves references to them.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "smtp-operator.io",
    version = "v1alpha1",
    kind = "ClusterSmtpSettings",
    plural = "clustersmtpsettings",
    singular = "clustersmtpsettings",
    shortname = "csmtp",
    category = "mail",
    status = "SmtpSettingsStatus",
    printcolumn = r#"{"name":"Server","type":"string","jsonPath":".spec.server"}"#,
    printcolumn = r#"{"name":"Port","type":"integer","jsonPath":".spec.port"}"#,
    printcolumn = r#"{"name":"Auth","type":"string","jsonPath":".spec.auth.type"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Last Check","type":"date","jsonPath":".status.lastCheck.time"}"#,
    printcolumn = r#"{"name":"Degraded","type":"string","jsonPath":".status.conditions[?(@.type==\"Degraded\")].reason","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSmtpSettingsSpec {
    /// Every field of an SmtpSettings spec, with the same meaning.
    #[serde(flatten)]
    pub settings: SmtpSettingsSpec,

    /// The namespaces whose objects may reference these settings, by their labels (e.g.
    /// `matchLabels: {kubernetes.io/metadata.name: billing}`). Absent: none may; `{}`: every namespace. A
    /// reference from a namespace it does not select is refused with `Valid=False NamespaceNotAllowed` on the
    /// referencing object, and nothing is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_namespaces: Option<LabelSelector>,
}

/// Transport security.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// `StartTLS` (plain connect, then the STARTTLS command; a server that does not offer it fails the check),
    /// `ImplicitTLS` (TLS from the first byte, usually port 465) or `None` (plain text; only without auth).
    #[serde(default)]
    pub mode: TlsMode,

    /// Lowest TLS version accepted: "1.2" or "1.3".
    #[serde(default)]
    pub min_version: TlsMinVersion,

    /// Extra trust anchors (PEM) from a Secret or ConfigMap of the same namespace, trusted in addition to the
    /// public web PKI roots, for the SMTP server and the OAuth2 token endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<CaBundleSource>,

    /// Skip certificate verification. Allowed for lab setups, but reported on every check (a Warning event
    /// `InsecureSkipVerify` and a note in the Ready condition message).
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// TLS mode.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum TlsMode {
    /// No TLS at all (plain text). Not allowed together with authentication.
    None,
    /// Plain connect, then STARTTLS; required, never a silent plain-text fallback.
    #[default]
    StartTLS,
    /// TLS from the first byte (SMTPS, usually port 465).
    ImplicitTLS,
}

/// Lowest accepted TLS version.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum TlsMinVersion {
    /// TLS 1.2 or newer.
    #[default]
    #[serde(rename = "1.2")]
    V1_2,
    /// TLS 1.3 only.
    #[serde(rename = "1.3")]
    V1_3,
}

/// Where a PEM CA bundle comes from: exactly one of `secretKeyRef` and `configMapKeyRef`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.secretKeyRef) != has(self.configMapKeyRef)",
    "message": "caBundle needs exactly one of secretKeyRef and configMapKeyRef"
}]))]
pub struct CaBundleSource {
    /// A key of a Secret in the resource's namespace holding PEM certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<KeyRef>,
    /// A key of a ConfigMap in the resource's namespace holding PEM certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<KeyRef>,
}

/// A key of a Secret or ConfigMap in the resource's own namespace (references never cross namespaces).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub struct KeyRef {
    /// Name of the Secret or ConfigMap in the same namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside its `data`.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Authentication towards the SMTP server.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.type != 'Basic' || has(self.basic)", "message": "auth.type Basic requires auth.basic"},
    {"rule": "self.type != 'OAuth2' || has(self.oauth2)", "message": "auth.type OAuth2 requires auth.oauth2"},
    {"rule": "!has(self.basic) || self.type == 'Basic'", "message": "auth.basic is only allowed with auth.type Basic"},
    {"rule": "!has(self.oauth2) || self.type == 'OAuth2'", "message": "auth.oauth2 is only allowed with auth.type OAuth2"}
]))]
pub struct AuthSpec {
    /// `None` (no AUTH), `Basic` (SASL PLAIN/LOGIN with a password) or `OAuth2` (SASL XOAUTH2 with a token).
    #[serde(default, rename = "type")]
    pub type_: AuthType,
    /// Username and password (from a Secret) for `type: Basic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic: Option<BasicAuth>,
    /// OAuth 2.0 client settings for `type: OAuth2` (SASL XOAUTH2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<OAuth2Auth>,
}

/// Authentication type.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum AuthType {
    /// No authentication (e.g. an internal relay on port 25).
    #[default]
    None,
    /// SASL PLAIN or LOGIN with username and password.
    Basic,
    /// SASL XOAUTH2 with an access token from an OAuth 2.0 token endpoint.
    OAuth2,
}

/// Basic (password) authentication.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BasicAuth {
    /// The SMTP username, often the mailbox address.
    #[schemars(length(min = 1, max = 320))]
    pub username: String,
    /// The password: a key of a Secret in the same namespace. The Secret must allow this server in its
    /// `smtp-operator.io/allowed-servers` annotation.
    pub password_secret_ref: KeyRef,
    /// SASL mechanisms the operator may use, in order of preference. Default: what the server offers, PLAIN
    /// first, then LOGIN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2))]
    pub mechanisms: Option<Vec<BasicMechanism>>,
}

/// A SASL mechanism for password authentication.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum BasicMechanism {
    /// SASL PLAIN (RFC 4616).
    Plain,
    /// The LOGIN mechanism (username and password in two steps).
    Login,
}

/// OAuth 2.0 authentication (SASL XOAUTH2).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.grant != 'ClientCredentials' || has(self.clientSecretRef)", "message": "grant ClientCredentials requires clientSecretRef"},
    {"rule": "self.grant != 'RefreshToken' || (has(self.clientSecretRef) && has(self.refreshTokenRef))", "message": "grant RefreshToken requires clientSecretRef and refreshTokenRef"},
    {"rule": "self.grant != 'JwtBearer' || (has(self.privateKeyRef) && has(self.subject))", "message": "grant JwtBearer requires privateKeyRef and subject"}
]))]
pub struct OAuth2Auth {
    /// The mailbox sent as `user=` in XOAUTH2, e.g. `alerts@example.com`.
    #[schemars(length(min = 1, max = 320))]
    pub username: String,
    /// `ClientCredentials` (Microsoft 365 app-only), `RefreshToken` (consumer Gmail) or `JwtBearer`
    /// (RFC 7523; Google Workspace service account with domain-wide delegation).
    #[serde(default)]
    pub grant: OAuth2Grant,
    /// The token endpoint; must be `https://`. Redirects are never followed.
    #[schemars(length(min = 9, max = 2048))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.startsWith('https://') && isURL(self)",
        "message": "tokenUrl must be an https:// URL"
    }]))]
    pub token_url: String,
    /// The OAuth 2.0 client id (for JwtBearer: the service account's email, used as `iss`).
    #[schemars(length(min = 1, max = 512))]
    pub client_id: String,
    /// The client secret (ClientCredentials, RefreshToken): a key of a Secret in the same namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_ref: Option<KeyRef>,
    /// The refresh token (RefreshToken): a key of a Secret in the same namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_ref: Option<KeyRef>,
    /// The RSA private key signing the JWT assertion (JwtBearer): PEM PKCS#8, or a Google service-account JSON
    /// key file whose `private_key` is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_ref: Option<KeyRef>,
    /// JwtBearer (required there): the user to act as (the JWT `sub`, Google domain-wide delegation). The Secret
    /// of `privateKeyRef` must list it in its `smtp-operator.io/allowed-subjects` annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 320))]
    pub subject: Option<String>,
    /// Scopes requested, joined by spaces, e.g. `https://outlook.office365.com/.default` or
    /// `https://mail.google.com/`.
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub scopes: Vec<String>,
    /// How the client authenticates at the token endpoint: `RequestBody` (client_secret_post, default) or
    /// `BasicAuth` (client_secret_basic).
    #[serde(default)]
    pub client_auth_method: ClientAuthMethod,
}

/// OAuth 2.0 grant.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum OAuth2Grant {
    /// `grant_type=client_credentials` (Microsoft 365 app-only access).
    #[default]
    ClientCredentials,
    /// `grant_type=refresh_token` (consumer Gmail and other user-consented apps).
    RefreshToken,
    /// RFC 7523 JWT bearer assertion signed with RS256 (Google Workspace service accounts).
    JwtBearer,
}

/// Client authentication at the token endpoint.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum ClientAuthMethod {
    /// client_id and client_secret in the form body (client_secret_post).
    #[default]
    RequestBody,
    /// HTTP Basic authentication header (client_secret_basic, RFC 6749 §2.3.1).
    BasicAuth,
}

/// When and how strictly the server is checked.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckSpec {
    /// Periodic re-check, a Go-style duration (`30m`, `1h30m`); `0s` checks only when something changed.
    #[serde(default = "default_interval")]
    #[schemars(length(min = 2, max = 32), regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"))]
    pub interval: String,
    /// Bound for every single network step (connect, TLS handshake, each server reply, the token request),
    /// a Go-style duration between 1s and 5m.
    #[serde(default = "default_timeout")]
    #[schemars(length(min = 2, max = 32), regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "duration(self) >= duration('1s') && duration(self) <= duration('5m')",
        "message": "check.timeout must be between 1s and 5m"
    }]))]
    pub timeout: String,
}

fn default_interval() -> String {
    "30m".into()
}
fn default_timeout() -> String {
    "30s".into()
}

impl Default for CheckSpec {
    fn default() -> Self {
        Self { interval: default_interval(), timeout: default_timeout() }
    }
}

/// On-demand test emails.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct TestEmailSpec {
    /// Recipient addresses (at most 50).
    #[schemars(length(min = 1, max = 50))]
    pub to: Vec<Recipient>,
}

/// One recipient address.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(transparent)]
pub struct Recipient(#[schemars(length(min = 3, max = 320), regex(pattern = r"^[^<>@\s]+@[^<>@\s]+$"))] pub String);

/// Observed state, written by the operator.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SmtpSettingsStatus {
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Valid`, `Connected`, `Authenticated`, the summary `Ready`, and `Degraded` (an early warning while the
    /// check passes: `CertificateExpiresSoon`, `AuthOverPlaintextOffered`, `BasicAuthDeprecated`).
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The last check that ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check: Option<LastCheck>,
    /// When the next periodic check is due (absent with `check.interval: 0s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_check_time: Option<String>,
    /// The last handled test-email request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_email: Option<TestEmailStatus>,
}

/// Result of the last check.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastCheck {
    /// When it ran (RFC 3339).
    pub time: String,
    /// `Succeeded` or `Failed`.
    pub result: CheckResult,
    /// The reason of the failing step, else `Succeeded`.
    pub reason: String,
    /// How long the whole check took.
    pub duration_milliseconds: i64,
    /// The negotiated TLS version, when TLS was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_version: Option<String>,
    /// The SASL mechanism used, when auth ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_mechanism: Option<String>,
    /// AUTH mechanisms the server advertised.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub server_mechanisms: Vec<String>,
    /// The SMTP server's leaf certificate, when the check got as far as the TLS handshake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateStatus>,
    /// OAuth2: the token endpoint's leaf certificate, as presented when the access token in use was fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_certificate: Option<CertificateStatus>,
    /// What the check covered: a digest of the generation, the referenced Secret/ConfigMap resourceVersions
    /// and the `check-requested-at` value. While it matches, the cached result stands and nothing is dialled,
    /// also after an operator restart. (Extension to the contract.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<String>,
}

/// A certificate a server presented (for the early warnings).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateStatus {
    /// The subject, e.g. `CN=smtp.example.com, O=Example`.
    pub subject: String,
    /// The issuer, e.g. `CN=R11, O=Let's Encrypt, C=US`.
    pub issuer: String,
    /// The DNS names of its subjectAltName extension.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_names: Vec<String>,
    /// When it expires (RFC 3339).
    pub not_after: String,
}

/// Outcome of a check.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum CheckResult {
    /// Every step passed.
    #[default]
    Succeeded,
    /// A step failed; see `reason`.
    Failed,
}

/// The last handled test-email request.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestEmailStatus {
    /// The `smtp-operator.io/test-email-requested-at` value this answers.
    pub request: String,
    /// `Sent`, `Failed`, `Deferred`, `Sending` or `Unknown` (see docs/api.md).
    pub result: TestEmailResult,
    /// When it was handled (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// The server's final reply, or why it failed.
    #[serde(default)]
    pub message: String,
}

/// Outcome of a test email.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum TestEmailResult {
    /// The server accepted the message.
    #[default]
    Sent,
    /// A step failed; see `message`.
    Failed,
    /// Waiting for the rate limit; it will be sent.
    Deferred,
    /// Recorded just before the message is handed to the server, so that it is never sent twice.
    Sending,
    /// The operator stopped while sending (restart, crash or leader change): whether it was delivered is
    /// unknown, and it is not sent again.
    Unknown,
}
