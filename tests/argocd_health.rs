//! Runs the Argo CD health check of the chart (`charts/smtp-operator/argocd/health.lua`) against the sample
//! SmtpSettings in `tests/argocd/cases/` with Debian's lua5.4 (`tests/argocd/run` installs it when missing).

use std::path::Path;
use std::process::Command;

#[test]
fn argocd_health_script_matches_every_case() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(root.join("tests/argocd/run"))
        .current_dir(root)
        .output()
        .expect("tests/argocd/run could not be started");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tests/argocd/run failed ({}):\n{stdout}\n{stderr}", out.status);
    // every case file ran, none failed
    let cases = std::fs::read_dir(root.join("tests/argocd/cases"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "json"))
        .count();
    assert!(cases >= 6, "expected at least 6 cases, found {cases}");
    assert!(stdout.contains(&format!("argocd-health: {cases} passed, 0 failed")), "unexpected summary:\n{stdout}");
}
