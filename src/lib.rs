//! smtp-operator: manages outgoing-mail (SMTP) settings as Kubernetes custom resources.
//!
//! - [`api`]: the `SmtpSettings` resource (the public contract).
//! - [`crdgen`]: the CRD as YAML (`smtp-operator crd`, `crds/`).
pub mod api;
pub mod crdgen;
pub mod engine;
