//! Shared helpers for the integration tests (`mod support;` in each test file).
#![allow(dead_code)]

pub mod clean;
pub mod kube;
pub mod node;
pub mod oauth;
pub mod operator;
pub mod plane;
pub mod process;
pub mod rbac;
pub mod relay;
pub mod scenario;
pub mod smtp_peer;
