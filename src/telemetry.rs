//! Logging: JSON lines when stderr is not a terminal (containers, CI), human-readable otherwise; level from
//! `RUST_LOG` (default `info`). Logs go to stderr so `smtp-operator crd`/`check` output stays clean.

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Installs the global subscriber. Safe to call once per process.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    if std::io::stderr().is_terminal() {
        registry.with(fmt::layer().with_writer(std::io::stderr).with_target(false)).init();
    } else {
        registry
            .with(fmt::layer().json().flatten_event(true).with_current_span(true).with_writer(std::io::stderr))
            .init();
    }
}
