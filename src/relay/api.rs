//! The `SmtpRelay` custom resource (API group `smtp-operator.io/v1alpha1`): a synchronous SMTP submission relay
//! the operator runs for apps that only speak username/password SMTP. Reference: docs/relay.md.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A submission relay in front of an SmtpSettings: apps authenticate with a username and password (the
/// generated `<name>-relay-credentials` Secret or `clients`), the relay sends their mail upstream with the
/// settings' own authentication (Basic or OAuth2 XOAUTH2) and answers with the upstream's own reply. No queue:
/// a message is accepted only when the upstream accepted it.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "smtp-operator.io",
    version = "v1alpha1",
    kind = "SmtpRelay",
    plural = "smtprelays",
    singular = "smtprelay",
    shortname = "smtprelay",
    category = "mail",
    namespaced,
    status = "SmtpRelayStatus",
    printcolumn = r#"{"name":"Settings","type":"string","jsonPath":".spec.settingsRef.name"}"#,
    printcolumn = r#"{"name":"Endpoint","type":"string","jsonPath":".status.endpoint"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SmtpRelaySpec {
    /// The settings whose server, TLS and authentication the relay uses upstream.
    pub settings_ref: SettingsRef,
    /// Relay pods (a PodDisruptionBudget keeps one available when more than one).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 20))]
    pub replicas: i32,
    /// Where and how the relay listens for apps.
    #[serde(default)]
    pub listen: ListenSpec,
    /// Envelope and header From addresses apps may use: `alerts@example.com` or `*@example.com`. Empty: the
    /// settings' `from` address only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub senders: Vec<SenderPattern>,
    /// Per-message and per-client limits.
    #[serde(default)]
    pub limits: LimitsSpec,
    /// Extra client accounts besides the generated one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub clients: Vec<ClientSpec>,
}

fn default_replicas() -> i32 {
    1
}

/// A sender address or `*@domain`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(transparent)]
pub struct SenderPattern(
    #[schemars(length(min = 3, max = 320), regex(pattern = r"^(\*|[^<>@\s*]+)@[^<>@\s*]+$"))] pub String,
);

/// Reference to the settings object the relay sends through.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SettingsRef {
    /// `SmtpSettings` (same namespace, the default) or `ClusterSmtpSettings`.
    #[serde(default)]
    pub kind: SettingsKind,
    /// Name of the settings object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Kind of the referenced settings.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum SettingsKind {
    /// An SmtpSettings in the relay's namespace.
    #[default]
    SmtpSettings,
    /// A cluster-scoped ClusterSmtpSettings.
    ClusterSmtpSettings,
}

/// The relay's listener.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListenSpec {
    /// TCP port apps connect to (the Service port and the container port).
    #[serde(default = "default_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Transport security towards the apps.
    #[serde(default)]
    pub tls: ListenTls,
}

impl Default for ListenSpec {
    fn default() -> Self {
        Self { port: default_port(), tls: ListenTls::default() }
    }
}

fn default_port() -> i32 {
    587
}

/// TLS towards the apps. With `StartTLS`, AUTH is offered only after STARTTLS.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.mode != 'StartTLS' || has(self.certificateSecretRef)",
    "message": "tls.mode StartTLS needs tls.certificateSecretRef (a kubernetes.io/tls Secret, e.g. cert-manager's)"
}]))]
pub struct ListenTls {
    /// `None` (plain text; for in-cluster traffic only) or `StartTLS`.
    #[serde(default)]
    pub mode: ListenTlsMode,
    /// A `kubernetes.io/tls` Secret (`tls.crt`, `tls.key`) in the relay's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_secret_ref: Option<NameRef>,
}

/// TLS mode of the listener.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ListenTlsMode {
    /// Plain text.
    #[default]
    None,
    /// STARTTLS offered; AUTH only after it.
    StartTLS,
}

/// A Secret in the relay's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct NameRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Limits; each has a safe default.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LimitsSpec {
    /// Largest message accepted (bytes, as sent after DATA); larger: `552 5.3.4`.
    #[serde(default = "default_max_bytes")]
    #[schemars(range(min = 1024, max = 157286400))]
    pub max_message_bytes: i64,
    /// Recipients per message; more: `452 4.5.3`.
    #[serde(default = "default_max_rcpt")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_recipients: i32,
    /// Messages per minute per client address; more: `450 4.7.0`.
    #[serde(default = "default_rate")]
    #[schemars(range(min = 1, max = 100000))]
    pub messages_per_minute: i32,
}

impl Default for LimitsSpec {
    fn default() -> Self {
        Self {
            max_message_bytes: default_max_bytes(),
            max_recipients: default_max_rcpt(),
            messages_per_minute: default_rate(),
        }
    }
}

fn default_max_bytes() -> i64 {
    26_214_400
}
fn default_max_rcpt() -> i32 {
    100
}
fn default_rate() -> i32 {
    120
}

/// An extra client account.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientSpec {
    /// The login name.
    #[schemars(length(min = 1, max = 256))]
    pub username: String,
    /// Its password: a key of a Secret in the relay's namespace.
    pub password_secret_ref: crate::api::KeyRef,
}

/// Observed state, written by the operator.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SmtpRelayStatus {
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: the upstream settings are Ready and the relay pods are available.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// `host:port` apps connect to (the Service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The generated credentials Secret (`username`, `password`, `host`, `port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
}

/// Name of the generated credentials Secret of relay `name`.
pub fn credentials_secret_name(name: &str) -> String {
    format!("{name}-relay-credentials")
}
