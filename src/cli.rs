//! The command line (docs/api.md, "flags"): `run`, `crd`, `check`. Every `run` flag can also be set by an environment
//! variable `SMTP_OPERATOR_<FLAG>` (e.g. `SMTP_OPERATOR_ALLOWED_PORTS`), which the Helm chart uses.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Kubernetes operator that manages and verifies outgoing-mail (SMTP) settings.
#[derive(Parser, Debug)]
#[command(name = "smtp-operator", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum Command {
    /// Run the controller (the container's entrypoint). Uses the usual kubeconfig / in-cluster config.
    Run(RunArgs),
    /// Print the CustomResourceDefinition YAML (`crds/` in the repository holds exactly this output).
    Crd,
    /// Check one SmtpSettings manifest without a cluster: same engine and reasons, human report on stdout,
    /// exit status 0 only when the check passed.
    Check(CheckArgs),
    /// Serve SMTP submission for one SmtpRelay, passing each message synchronously to its SmtpSettings'
    /// server (the relay pods' entrypoint; outside a cluster it uses the kubeconfig). See docs/relay.md.
    Relay(RelayArgs),
}

/// Flags of `smtp-operator relay`: which SmtpRelay, where to listen, and `run`'s policy flags.
#[derive(Args, Debug, Clone)]
pub struct RelayArgs {
    /// Namespace of the SmtpRelay.
    #[arg(long, env = "SMTP_RELAY_NAMESPACE")]
    pub namespace: String,

    /// Name of the SmtpRelay.
    #[arg(long, env = "SMTP_RELAY_NAME")]
    pub name: String,

    /// Address to listen on for SMTP (default: all addresses, port `spec.listen.port`).
    #[arg(long, env = "SMTP_RELAY_LISTEN_ADDR")]
    pub listen_addr: Option<String>,

    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, env = "SMTP_RELAY_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: String,

    /// The policy flags, with the same meaning as for `run` (the operator passes its own on).
    #[command(flatten)]
    pub policy: PolicyArgs,

    /// Where the Secrets and ConfigMaps of a referenced ClusterSmtpSettings live (the operator passes its own
    /// `--cluster-resource-namespace`); without it a `settingsRef` of kind ClusterSmtpSettings is refused.
    #[arg(long, env = "SMTP_OPERATOR_CLUSTER_RESOURCE_NAMESPACE")]
    pub cluster_resource_namespace: Option<String>,
}

/// Flags of `smtp-operator run`.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,

    /// Per resource: no two checks closer than this.
    #[arg(long, env = "SMTP_OPERATOR_MIN_CHECK_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub min_check_interval: Duration,

    /// Checks per namespace (`N/s`, `N/m`, `N/h`; burst = N).
    #[arg(long, env = "SMTP_OPERATOR_NAMESPACE_CHECK_RATE", default_value = "10/m")]
    pub namespace_check_rate: String,

    /// Checks for the whole operator (`N/s`, `N/m`, `N/h`; burst = N).
    #[arg(long, env = "SMTP_OPERATOR_GLOBAL_CHECK_RATE", default_value = "60/m")]
    pub global_check_rate: String,

    /// Limit the operator to one namespace (default: all namespaces).
    #[arg(long, env = "SMTP_OPERATOR_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,

    /// Lease-based leader election; the Lease is named `smtp-operator`.
    #[arg(long, env = "SMTP_OPERATOR_LEADER_ELECT", default_value_t = false, action = clap::ArgAction::Set,
        num_args = 0..=1, require_equals = false, default_missing_value = "true")]
    pub leader_elect: bool,

    /// Namespace of the Lease (default: the pod's namespace from POD_NAMESPACE, else the ServiceAccount's
    /// namespace file, else `default`).
    #[arg(long, env = "SMTP_OPERATOR_LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,

    /// This pod's name (the chart sets `POD_NAME` from the downward API): the leader identity, the event
    /// reporter instance and the EHLO name.
    #[arg(long, env = "POD_NAME", hide = true)]
    pub pod_name: Option<String>,

    /// This pod's namespace (the chart sets `POD_NAMESPACE` from the downward API).
    #[arg(long, env = "POD_NAMESPACE", hide = true)]
    pub pod_namespace: Option<String>,

    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, env = "SMTP_OPERATOR_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: String,

    /// Per-object series `smtp_operator_ready{namespace,name,kind,reason}` and
    /// `smtp_operator_last_check_timestamp_seconds` (two series per object); `false` keeps only the aggregates.
    #[arg(long, env = "SMTP_OPERATOR_PER_OBJECT_METRICS", default_value_t = true, action = clap::ArgAction::Set,
        num_args = 0..=1, require_equals = false, default_missing_value = "true")]
    pub per_object_metrics: bool,

    /// Where the Secret and ConfigMap references of ClusterSmtpSettings resolve (default: the operator's own
    /// namespace, found as for `--leader-election-namespace`).
    #[arg(long, env = "SMTP_OPERATOR_CLUSTER_RESOURCE_NAMESPACE")]
    pub cluster_resource_namespace: Option<String>,

    /// Serve ClusterSmtpSettings (default: only when watching every namespace, i.e. without
    /// `--watch-namespace`; the namespaced install has no cluster-wide RBAC). Extension.
    #[arg(long, env = "SMTP_OPERATOR_CLUSTER_SETTINGS", action = clap::ArgAction::Set, num_args = 0..=1,
        require_equals = false, default_missing_value = "true")]
    pub cluster_settings: Option<bool>,

    /// Early warning: `Degraded=True CertificateExpiresSoon` when a server certificate (leaf or chain) expires
    /// within this window (`14d`, or a Go-style duration such as `336h`).
    #[arg(long, env = "SMTP_OPERATOR_CERTIFICATE_WARNING_WINDOW", default_value = "14d")]
    pub certificate_warning_window: String,

    /// Objects reconciled (and checked) at the same time, per kind; each still gets one status write. The
    /// rate limits bound the checks regardless.
    #[arg(long, env = "SMTP_OPERATOR_CONCURRENCY", default_value_t = 16,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,

    /// Name of this cluster, used in test-email bodies (extension).
    #[arg(long, env = "SMTP_OPERATOR_CLUSTER_NAME", default_value = "kubernetes")]
    pub cluster_name: String,
}

/// Flags of `smtp-operator check`.
#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    /// The SmtpSettings manifest (YAML or JSON).
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,

    /// A Secret's key from a file: `NAME=PATH` makes every `{name: NAME, key: K}` reference read
    /// `PATH` (a file; for a directory, the file `PATH/K`). Repeatable.
    #[arg(long = "secret-file", value_name = "NAME=PATH")]
    pub secret_files: Vec<String>,

    /// A ConfigMap's key from a file, same form as `--secret-file`. Repeatable.
    #[arg(long = "configmap-file", value_name = "NAME=PATH")]
    pub configmap_files: Vec<String>,

    /// Also send a test email to `spec.testEmail.to`.
    #[arg(long)]
    pub send_test_email: bool,
}

/// The security policy flags, shared by `run` and `relay` (docs/api.md, "flags"; src/policy/).
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct PolicyArgs {
    /// SMTP ports a check (or a relay, upstream) may connect to (comma separated; `a-b` ranges allowed). Others:
    /// `Valid=False PortNotAllowed`, no connection made.
    #[arg(long, env = "SMTP_OPERATOR_ALLOWED_PORTS", default_value = "25,465,587,2525")]
    pub allowed_ports: String,

    /// Ports a `tokenUrl` may use. Others: `Valid=False PortNotAllowed`, no request made.
    #[arg(long, env = "SMTP_OPERATOR_ALLOWED_TOKEN_PORTS", default_value = "443")]
    pub allowed_token_ports: String,

    /// Resolved addresses a check or a relay (SMTP or token endpoint) may not connect to, comma-separated CIDRs.
    /// `default` = loopback, link-local (incl. cloud metadata), unspecified and their IPv4-mapped forms;
    /// an empty value denies nothing.
    #[arg(long, env = "SMTP_OPERATOR_DENIED_CIDRS", default_value = "default")]
    pub denied_cidrs: String,

    /// Enforce the `smtp-operator.io/allowed-servers` annotation on referenced Secrets.
    #[arg(long, env = "SMTP_OPERATOR_REQUIRE_SECRET_BINDING", default_value_t = true, action = clap::ArgAction::Set,
        num_args = 0..=1, require_equals = false, default_missing_value = "true")]
    pub require_secret_binding: bool,
}

impl PolicyArgs {
    /// The parsed policy; a flag that does not parse is an error naming it.
    pub fn security_policy(
        &self,
        helo_name: String,
        cluster_resource_namespace: Option<String>,
    ) -> anyhow::Result<crate::validate::SecurityPolicy> {
        use crate::policy;
        let ports = |flag: &str, v: &str| {
            policy::parse_port_list(v).map(|l| l.ports()).map_err(|e| anyhow::anyhow!("{flag} {v:?}: {e}"))
        };
        Ok(crate::validate::SecurityPolicy {
            allowed_ports: ports("--allowed-ports", &self.allowed_ports)?,
            allowed_token_ports: ports("--allowed-token-ports", &self.allowed_token_ports)?,
            denied: policy::parse_cidr_list(&self.denied_cidrs)
                .map_err(|e| anyhow::anyhow!("--denied-cidrs {:?}: {e}", self.denied_cidrs))?,
            require_secret_binding: self.require_secret_binding,
            helo_name,
            cluster_resource_namespace,
        })
    }
}

/// Parses a Go-style duration for clap.
fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::duration::parse(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> RunArgs {
        let cli = Cli::try_parse_from(["smtp-operator", "run"].iter().chain(args)).expect("parses");
        match cli.command {
            Command::Run(a) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn boolean_flags_work_bare_and_with_a_value() {
        let a = run(&["--leader-elect", "--leader-election-namespace", "ops", "--require-secret-binding"]);
        assert!(a.leader_elect && a.policy.require_secret_binding);
        assert_eq!(a.leader_election_namespace.as_deref(), Some("ops"));
        assert!(!run(&["--leader-elect=false"]).leader_elect);
        assert!(!run(&["--require-secret-binding", "false"]).policy.require_secret_binding);
        assert!(run(&["--leader-elect", "true"]).leader_elect);
        assert!(!run(&[]).leader_elect && run(&[]).policy.require_secret_binding);
    }

    #[test]
    fn per_object_metrics_default_on_and_can_be_turned_off() {
        assert!(run(&[]).per_object_metrics);
        assert!(!run(&["--per-object-metrics=false"]).per_object_metrics);
        assert!(run(&["--per-object-metrics"]).per_object_metrics);
    }

    #[test]
    fn concurrency_defaults_to_16_and_refuses_0() {
        assert_eq!(run(&[]).concurrency, 16);
        assert_eq!(run(&["--concurrency", "64"]).concurrency, 64);
        for bad in ["0", "1025", "-1", "many"] {
            let r = Cli::try_parse_from(["smtp-operator", "run", "--concurrency", bad]);
            assert!(r.is_err(), "--concurrency {bad} accepted");
        }
    }
}
