//! The CustomResourceDefinition as `smtp-operator crd` prints it; `crds/smtpsettings.yaml` holds exactly this.

use kube::CustomResourceExt;

use crate::api::SmtpSettings;

/// The CRD YAML document (with a leading `---`).
pub fn crd_yaml() -> String {
    let crd = SmtpSettings::crd();
    format!("---\n{}", serde_yaml::to_string(&crd).expect("the CRD always serializes"))
}
