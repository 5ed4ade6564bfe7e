//! The chart ships the CRD in its `crds/` directory; it must be exactly the repository's `crds/smtpsettings.yaml`
//! (which is the output of `smtp-operator crd`).

use std::path::Path;

#[test]
fn chart_crd_is_identical_to_repo_crd() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let repo = std::fs::read(root.join("crds/smtpsettings.yaml")).expect("crds/smtpsettings.yaml");
    let chart = std::fs::read(root.join("charts/smtp-operator/crds/smtpsettings.yaml"))
        .expect("charts/smtp-operator/crds/smtpsettings.yaml");
    assert!(!repo.is_empty(), "crds/smtpsettings.yaml is empty");
    assert!(
        repo == chart,
        "charts/smtp-operator/crds/smtpsettings.yaml differs from crds/smtpsettings.yaml: \
         copy it with `cp crds/smtpsettings.yaml charts/smtp-operator/crds/`"
    );
}

#[test]
fn chart_app_version_matches_crate_version() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let chart = std::fs::read_to_string(root.join("charts/smtp-operator/Chart.yaml")).unwrap();
    let app = chart
        .lines()
        .find_map(|l| l.strip_prefix("appVersion:"))
        .map(|v| v.trim().trim_matches('"').to_string())
        .expect("appVersion in Chart.yaml");
    assert_eq!(app, env!("CARGO_PKG_VERSION"), "Chart.yaml appVersion must equal the crate version");
}
