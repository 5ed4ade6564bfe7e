//! The CustomResourceDefinitions as `smtp-operator crd` prints them; `crds/` holds each one in its own file
//! ([`crds`]), and their concatenation in that order is exactly the printed output.

use kube::CustomResourceExt;

use crate::api::SmtpSettings;
use crate::relay::api::SmtpRelay;

/// Each CRD as (file name under `crds/`, YAML document with a leading `---`).
pub fn crds() -> Vec<(&'static str, String)> {
    let doc = |crd| format!("---\n{}", serde_yaml::to_string(&crd).expect("a CRD always serializes"));
    vec![("smtpsettings.yaml", doc(SmtpSettings::crd())), ("smtprelays.yaml", doc(SmtpRelay::crd()))]
}

/// Every CRD YAML document, concatenated.
pub fn crd_yaml() -> String {
    crds().into_iter().map(|(_, y)| y).collect()
}
