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

/// The helm binary (scripts/build-helm builds it once and caches it outside the repository).
fn helm() -> std::path::PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(root.join("scripts/build-helm"))
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run scripts/build-helm");
    assert!(out.status.success(), "scripts/build-helm failed");
    String::from_utf8(out.stdout).expect("utf-8").lines().last().expect("helm path").trim().into()
}

/// The value of `--denied-cidrs=` in the Deployment `helm template` renders with `args`.
fn rendered_denied_cidrs(helm: &Path, args: &[&str]) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(helm)
        .current_dir(root)
        .args(["template", "smtp-operator", "charts/smtp-operator", "--show-only", "templates/deployment.yaml"])
        .args(args)
        .output()
        .expect("run helm template");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "helm template {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let flags: Vec<&str> = text.lines().filter_map(|l| l.split_once("- \"--denied-cidrs=")).map(|(_, v)| v).collect();
    assert_eq!(flags.len(), 1, "exactly one --denied-cidrs flag with {args:?}:\n{text}");
    flags[0].trim_end_matches('"').to_string()
}

/// Adding a range in `deniedCidrs` never drops the default protection; only `deniedCidrsReplaceDefaults: true`
/// does. The rendered flag is parsed with the operator's own parser.
#[test]
fn chart_denied_cidrs_extend_the_defaults_unless_replacing_is_explicit() {
    use smtp_operator::policy::{is_denied, parse_cidr_list};
    let helm = helm();
    let cases: &[(&[&str], &str, bool)] = &[
        (&[], "default", true),
        (&["--set", "deniedCidrs={10.0.0.0/8}"], "default,10.0.0.0/8", true),
        (&["--values", "tests/chart/values-full.yaml"], "default,10.0.0.0/8,169.254.0.0/16,fd00::/8", true),
        (&["--set", "deniedCidrs=10.0.0.0/8\\,fd00::/8"], "default,10.0.0.0/8,fd00::/8", true),
        (&["--set", "deniedCidrs={10.0.0.0/8}", "--set", "deniedCidrsReplaceDefaults=true"], "10.0.0.0/8", false),
        (&["--set", "deniedCidrsReplaceDefaults=true"], "", false),
    ];
    for (args, want, defaults_kept) in cases {
        let got = rendered_denied_cidrs(&helm, args);
        assert_eq!(&got, want, "{args:?}");
        let denied = parse_cidr_list(&got).unwrap_or_else(|e| panic!("{args:?}: the operator refuses {got:?}: {e}"));
        for default in ["127.0.0.1", "169.254.169.254", "::1", "64:ff9b::7f00:1"] {
            let ip = default.parse().unwrap();
            assert_eq!(is_denied(&denied, ip), *defaults_kept, "{args:?}: {default}");
        }
        if got.contains("10.0.0.0/8") {
            assert!(is_denied(&denied, "10.1.2.3".parse().unwrap()), "{args:?}");
        }
    }
}
