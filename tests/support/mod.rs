#![allow(dead_code)]
pub mod kube;
pub mod operator;
pub mod smtp_peer;
pub mod oauth;
