//! `smtp-operator check -f settings.yaml --secret-file NAME=PATH…`: one check without a cluster, using the
//! same validation and engine as the controller; a human report on stdout (with the server's certificate and the
//! early warnings, which do not change the exit status); exit 0 only when it passed. The manifest may be an
//! SmtpSettings or a ClusterSmtpSettings.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::api::{ClusterSmtpSettings, SmtpSettings, SmtpSettingsSpec};
use crate::cli::CheckArgs;
use crate::engine::{self, TestMessage};
use crate::validate::{self, RefKind, RefObject, Referenced, SecurityPolicy};

/// Runs the `check` subcommand.
pub async fn run(args: CheckArgs) -> ExitCode {
    match check(&args).await {
        Ok(report_ok) => {
            if report_ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn parse_mapping(s: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = s.split_once('=').ok_or_else(|| format!("{s:?}: expected NAME=PATH"))?;
    if name.is_empty() || path.is_empty() {
        return Err(format!("{s:?}: expected NAME=PATH"));
    }
    Ok((name.to_string(), PathBuf::from(path)))
}

fn read_value(path: &Path, key: &str) -> Result<Vec<u8>, String> {
    let file = if path.is_dir() { path.join(key) } else { path.to_path_buf() };
    std::fs::read(&file).map_err(|e| format!("reading {}: {e}", file.display()))
}

/// The spec (and namespace) of an SmtpSettings or ClusterSmtpSettings manifest.
fn read_manifest(file: &Path) -> Result<(SmtpSettingsSpec, Option<String>), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("reading {}: {e}", file.display()))?;
    let kind = serde_yaml::from_str::<serde_yaml::Value>(&text).ok().and_then(|v| v["kind"].as_str().map(String::from));
    if kind.as_deref() == Some("ClusterSmtpSettings") {
        let obj: ClusterSmtpSettings =
            serde_yaml::from_str(&text).map_err(|e| format!("{} is not a ClusterSmtpSettings: {e}", file.display()))?;
        return Ok((obj.spec.settings, None));
    }
    let obj: SmtpSettings =
        serde_yaml::from_str(&text).map_err(|e| format!("{} is not an SmtpSettings: {e}", file.display()))?;
    Ok((obj.spec, obj.metadata.namespace))
}

async fn check(args: &CheckArgs) -> Result<bool, String> {
    let (spec, namespace) = read_manifest(&args.file)?;
    let refs = validate::references(&spec);
    let mut referenced = Referenced::default();
    for (kind, list) in [(RefKind::Secret, &args.secret_files), (RefKind::ConfigMap, &args.configmap_files)] {
        for m in list {
            let (name, path) = parse_mapping(m)?;
            let mut o = RefObject { resource_version: "file".into(), ..Default::default() };
            for r in refs.iter().filter(|r| r.kind == kind && r.name == name) {
                if let Ok(v) = read_value(&path, &r.key) {
                    o.data.insert(r.key.clone(), v);
                }
            }
            referenced.objects.insert((kind, name), o);
        }
    }
    // without a cluster, every referenced object must come from a flag: say which one is missing
    for r in &refs {
        if !referenced.objects.contains_key(&(r.kind, r.name.clone())) {
            let flag = match r.kind {
                RefKind::Secret => "--secret-file",
                RefKind::ConfigMap => "--configmap-file",
            };
            return Err(format!(
                "the spec references {} {:?} (key {:?}); pass it with {flag} {}=PATH (a file with the value, or a \
                 directory holding a file per key)",
                r.kind.as_str(),
                r.name,
                r.key,
                r.name
            ));
        }
    }
    let options = SecurityPolicy::default();
    println!("Checking {}:{} ({:?}, auth {:?})", spec.server, spec.port, spec.tls.mode, spec.auth.type_);
    let plan = match validate::validate(&spec, namespace.as_deref().unwrap_or("default"), &referenced, &options) {
        Ok(p) => p,
        Err(invalid) => {
            println!("  Valid: False ({})\n  {}", invalid.reason, invalid.message);
            println!("Result: Failed ({})", invalid.reason);
            return Ok(false);
        }
    };
    let mut message = None;
    if args.send_test_email {
        let to: Vec<String> =
            spec.test_email.as_ref().map(|t| t.to.iter().map(|r| r.0.clone()).collect()).unwrap_or_default();
        if to.is_empty() {
            return Err("--send-test-email needs spec.testEmail.to".into());
        }
        message = Some(TestMessage {
            from: spec.from.clone(),
            to,
            subject: "smtp-operator test email (smtp-operator check)".into(),
            body: "This is a test email sent by `smtp-operator check`.\n".into(),
        });
    }
    let report = crate::check::run(&plan, &crate::engine::token::TokenCache::new(), message).await;
    print_report(&report);
    print_warnings(&report, &spec);
    // a requested test email that failed fails the command, though the connectivity check passed
    Ok(report.succeeded() && report.test_email_failure().is_none())
}

/// The certificates seen and the early warnings (`Degraded` in the cluster), with the default window of `run`.
fn print_warnings(report: &engine::Report, spec: &SmtpSettingsSpec) {
    for (what, chain) in
        [("Certificate", &report.certificates), ("Token endpoint certificate", &report.token_certificates)]
    {
        if let Some(c) = chain.first() {
            let names = if c.dns_names.is_empty() { String::new() } else { format!(", DNS {}", c.dns_names.join(" ")) };
            let until = crate::warnings::rfc3339(c.not_after);
            println!("  {what}: {} (issuer {}{names}), valid until {until}", c.subject, c.issuer);
        }
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let window = crate::warnings::parse_window(DEFAULT_WINDOW).unwrap_or_default();
    let facts =
        crate::warnings::Facts { spec, window, window_text: DEFAULT_WINDOW, now: i64::try_from(now).unwrap_or(0) };
    for f in crate::warnings::findings(report, &facts) {
        println!("  Warning ({}): {}", f.warning.as_str(), f.message);
    }
}

/// `run`'s default `--certificate-warning-window`.
const DEFAULT_WINDOW: &str = "14d";

fn print_report(report: &engine::Report) {
    if let Some(peer) = report.peer {
        println!("  Connected to: {peer}");
    }
    let failed = report.outcome.as_ref().err();
    let mut steps = report.step_durations.as_slice();
    // the failing step is timed too; it is printed as FAILED below, not as ok
    if let (Some(f), Some(((last, _), rest))) = (failed, steps.split_last())
        && *last == f.step
    {
        steps = rest;
    }
    for (step, d) in steps {
        println!("  {:<10} ok  {} ms", step.as_str(), millis(*d));
    }
    if let Some(v) = &report.tls_version {
        println!("  TLS version: {v}");
    }
    if !report.server_mechanisms.is_empty() {
        println!("  Server AUTH mechanisms: {}", report.server_mechanisms.join(" "));
    }
    // the mechanism tried is recorded even when AUTH failed; report it as used only when AUTH passed
    if let Some(m) = report.auth_mechanism.as_ref().filter(|_| failed.is_none_or(|f| f.step > engine::Step::Auth)) {
        println!("  Authenticated with: {m}");
    }
    match &report.test_email {
        Some(Ok(r)) => println!("  Test email accepted: {r}"),
        Some(Err(f)) => println!("  Test email FAILED at {}: {}", f.step.as_str(), crate::status::failure_message(f)),
        None => {}
    }
    match &report.outcome {
        Ok(()) => println!("Result: Succeeded in {} ms", millis(report.duration)),
        Err(f) => {
            println!("  {:<10} FAILED  {}", f.step.as_str(), crate::status::failure_message(f));
            println!("Result: Failed ({}) in {} ms", f.reason, millis(report.duration));
        }
    }
}

/// Milliseconds with one decimal: the steps are timed back to back, so printed this way they add up to the
/// total (whole milliseconds, each rounded down, lost up to 1 ms per step).
fn millis(d: std::time::Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}
