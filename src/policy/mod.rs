//! Pure building blocks of the security rules (docs/security.md): no Kubernetes calls, no network.
//!
//! - [`net`]: CIDRs (`--denied-cidrs`), the default denylist, port lists (`--allowed-ports`,
//!   `--allowed-token-ports`).
//! - [`host`]: normalisation of `spec.server` and the `tokenUrl` host (IDNA → punycode, IP literals in every
//!   form a resolver accepts), so allow/deny decisions compare canonical forms.
//! - [`binding`]: the Secret annotation `smtp-operator.io/allowed-servers`, matching, and the human message
//!   for `CredentialsNotBoundToServer`.
//! - [`subjects`]: the Secret annotation `smtp-operator.io/allowed-subjects` (the users a JwtBearer key may act
//!   as) and the message for `SubjectNotAllowed`.
//! - [`selector`]: `ClusterSmtpSettings.spec.allowedNamespaces` on a namespace's labels, and the message for
//!   `NamespaceNotAllowed`.
//!
//! The rate limits of checks live in [`crate::ratelimit`].

pub mod binding;
pub mod host;
pub mod net;
pub mod selector;
pub mod subjects;

pub use binding::{
    ALLOWED_SERVERS_ANNOTATION, AllowedServers, EntryError, HostPattern, ServerPattern, allows,
    credentials_not_bound_message, parse_allowed_servers,
};
pub use host::{Host, HostError, normalize_host};
pub use net::{
    CidrError, IpNet, PortList, PortListError, default_denied, embedded_ipv4, is_denied, parse_cidr_list,
    parse_port_list,
};
pub use subjects::{
    ALLOWED_SUBJECTS_ANNOTATION, SubjectPattern, parse_allowed_subjects, subject_allowed, subject_not_allowed_message,
};
