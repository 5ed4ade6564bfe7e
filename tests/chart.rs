//! The chart ships the CRDs in its `crds/` directory; each must be exactly the repository's `crds/` file
//! (which is the output of `smtp-operator crd`).

use std::path::Path;

#[test]
fn chart_crd_is_identical_to_repo_crd() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in ["smtpsettings.yaml", "smtprelays.yaml"] {
        let repo = std::fs::read(root.join("crds").join(file)).unwrap_or_else(|e| panic!("crds/{file}: {e}"));
        let chart = std::fs::read(root.join("charts/smtp-operator/crds").join(file))
            .unwrap_or_else(|e| panic!("charts/smtp-operator/crds/{file}: {e}"));
        assert!(!repo.is_empty(), "crds/{file} is empty");
        assert!(
            repo == chart,
            "charts/smtp-operator/crds/{file} differs from crds/{file}: copy it with `cp crds/{file} charts/smtp-operator/crds/`"
        );
    }
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
