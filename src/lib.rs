//! smtp-operator: manages outgoing-mail (SMTP) settings as Kubernetes custom resources.
//!
//! - [`api`]: the `SmtpSettings` resource (the public contract).
//! - [`engine`]: the SMTP check engine; knows nothing about Kubernetes.
//! - [`validate`]: pure validation of a spec and what it references, building the check plan.
//! - [`controller`]: the reconciler (dereference → validate → decide → check → status → events).
//! - [`conditions`]: condition building and merging.
//! - [`cli`], [`crdgen`], [`check_cmd`], [`telemetry`], [`duration`]: the binary's pieces.
//! - [`crdgen`]: the CRD as YAML (`smtp-operator crd`, `crds/`).
//! - [`vocabulary`]: the contract's steps, condition kinds and reasons.
//! - [`policy`]: security building blocks (CIDRs, ports, host normalisation, Secret binding).
//! - [`ratelimit`]: per-resource, per-namespace and global check rate limits.
//! - [`warnings`]: the early warnings of a passing check (condition `Degraded`).
//! - [`relay`]: the SMTP relay (`smtp-operator relay`) and its `SmtpRelay` resource.
pub mod api;
pub mod check;
pub mod check_cmd;
pub mod cli;
pub mod conditions;
pub mod controller;
pub mod crdgen;
pub mod duration;
pub mod engine;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod policy;
pub mod ratelimit;
pub mod relay;
pub mod status;
pub mod telemetry;
pub mod validate;
pub mod vocabulary;
pub mod warnings;
