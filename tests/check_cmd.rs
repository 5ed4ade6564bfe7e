//! `smtp-operator check`: the same engine without a cluster, against a real aiosmtpd peer.

mod support;

use std::process::Command;

use support::smtp_peer::SmtpPeer;

fn spec(port: u16) -> String {
    format!(
        "apiVersion: smtp-operator.io/v1alpha1\nkind: SmtpSettings\nmetadata: {{name: t}}\nspec:\n  server: 127.0.0.1\n  \
         port: {port}\n  from: 'Alerts <alerts@example.com>'\n  tls: {{mode: StartTLS, caBundle: {{configMapKeyRef: {{name: ca, key: ca.crt}}}}}}\n  \
         auth: {{type: Basic, basic: {{username: u, passwordSecretRef: {{name: creds, key: password}}}}}}\n  \
         testEmail: {{to: [ops@example.com]}}\n"
    )
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_smtp-operator")).arg("check").args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// `check -f` of `manifest` with the peer's CA as ConfigMap `ca` and `password` as Secret `creds`, files in `dir`.
fn run_manifest(dir: &std::path::Path, manifest: &str, peer: &SmtpPeer, password: &str) -> (i32, String, String) {
    let (file, ca, pw) = (dir.join("settings.yaml"), dir.join("ca.pem"), dir.join("pw"));
    std::fs::write(&file, manifest).unwrap();
    std::fs::write(&ca, peer.ca_pem()).unwrap();
    std::fs::write(&pw, password).unwrap();
    let (creds, ca) = (format!("creds={}", pw.display()), format!("ca={}", ca.display()));
    run(&["-f", file.to_str().unwrap(), "--secret-file", &creds, "--configmap-file", &ca])
}

/// The report's step times (`  <step> ok  <ms> ms`, one decimal) add up to its `Result: ... in <ms> ms`, up to
/// the rounding of each printed figure.
#[track_caller]
fn assert_steps_add_up(out: &str) {
    let ms = |s: &str| s.trim().strip_suffix(" ms").and_then(|v| v.parse::<f64>().ok());
    let steps: Vec<f64> = out.lines().filter_map(|l| ms(l.trim_start().split_once(" ok ")?.1)).collect();
    let total = out.lines().find_map(|l| ms(l.strip_prefix("Result: Succeeded in ")?)).expect("a total");
    assert!(steps.len() >= 10, "every step is reported: {out}");
    let sum: f64 = steps.iter().sum();
    let rounding = 0.05 * (steps.len() + 1) as f64 + 1e-9;
    assert!((sum - total).abs() <= rounding, "steps add up to {sum:.2} ms, the total is {total} ms:\n{out}");
}

#[test]
fn check_command_reports_and_exits_by_result() {
    let peer =
        SmtpPeer::start(&["--tls", "starttls", "--auth", "plain,login", "--user", "u", "--password", "right-pw"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.yaml");
    std::fs::write(&file, spec(peer.port)).unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, peer.ca_pem()).unwrap();
    let good = dir.path().join("good");
    std::fs::write(&good, "right-pw").unwrap();
    let bad = dir.path().join("bad");
    std::fs::write(&bad, "wrong-pw").unwrap();
    let (f, ca) = (file.to_str().unwrap(), format!("ca={}", ca.display()));

    let (code, out, _) = run(&[
        "-f",
        f,
        "--secret-file",
        &format!("creds={}", good.display()),
        "--configmap-file",
        &ca,
        "--send-test-email",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("Result: Succeeded")
            && out.contains("TLS version: 1.3")
            && out.contains("Authenticated with: PLAIN"),
        "{out}"
    );
    assert!(out.contains("Test email accepted: 250"), "{out}");
    assert_steps_add_up(&out);
    assert!(out.contains("Certificate: CN=localhost (issuer CN=smtp-operator test CA, DNS localhost)"), "{out}");
    assert!(!out.contains("Warning ("), "a 90-day certificate warns of nothing: {out}");
    assert_eq!(peer.count("message"), 1);

    let (code, out, _) = run(&["-f", f, "--secret-file", &format!("creds={}", bad.display()), "--configmap-file", &ca]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("Result: Failed (AuthenticationFailed)") && out.contains("535"), "{out}");
    assert!(!out.contains("wrong-pw") && !out.contains("Authenticated with"), "{out}");

    let (code, _, err) = run(&["-f", f, "--secret-file", &format!("creds={}", good.display())]);
    assert_eq!(code, 2);
    assert!(err.contains("--configmap-file ca=PATH"), "{err}");
}

#[test]
fn check_command_output_is_clean_against_a_hostile_server() {
    const PW: &str = "hunter2-check-cmd-5e1f";
    let peer = SmtpPeer::start(&[
        "--tls",
        "starttls",
        "--auth",
        "plain",
        "--user",
        "u",
        "--password",
        PW,
        "--hostile",
        "--hostile-bytes",
        "50000",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run_manifest(dir.path(), &spec(peer.port), &peer, PW);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("Result: Failed (AuthenticationFailed)") && out.contains("<redacted>"), "{out}");
    // a terminal shows nothing the server chose: no escape, no bare CR, no bidi or zero-width character
    for c in ['\x1b', '\r', '\x01', '\u{202e}', '\u{2066}', '\u{200b}', '\u{feff}'] {
        assert!(!out.contains(c) && !err.contains(c), "{c:?} in {out:?}");
    }
    assert!(out.lines().all(|l| l.chars().count() < 2000), "{out}");
    assert!(!out.contains(PW) && !out.contains("hunter2"), "{out}");
}

#[test]
fn check_command_reads_a_cluster_smtp_settings_and_prints_early_warnings_without_failing() {
    let peer = SmtpPeer::start(&[
        "--tls",
        "starttls",
        "--auth",
        "plain",
        "--user",
        "u",
        "--password",
        "right-pw",
        "--cert-days",
        "3",
        "--auth-before-tls",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let manifest =
        spec(peer.port).replace("kind: SmtpSettings", "kind: ClusterSmtpSettings") + "  allowedNamespaces: {}\n";
    let (code, out, err) = run_manifest(dir.path(), &manifest, &peer, "right-pw");
    assert_eq!(code, 0, "warnings do not fail the check: {out}{err}");
    assert!(out.contains("Result: Succeeded"), "{out}");
    assert!(out.contains("Warning (CertificateExpiresSoon): the server's certificate (CN=localhost"), "{out}");
    assert!(out.contains("Warning (AuthOverPlaintextOffered)"), "{out}");
}
