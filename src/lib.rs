//! smtp-operator: manages outgoing-mail (SMTP) settings as Kubernetes custom resources.
//!
//! - [`api`]: the `SmtpSettings` resource (the public contract).
//! - [`crdgen`]: the CRD as YAML (`smtp-operator crd`, `crds/`).
//! - [`policy`]: security building blocks (CIDRs, ports, host normalisation, Secret binding).
//! - [`ratelimit`]: per-resource, per-namespace and global check rate limits.
pub mod api;
pub mod crdgen;
pub mod engine;
pub mod policy;
pub mod ratelimit;
