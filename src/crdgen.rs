//! The CustomResourceDefinition as `smtp-operator crd` prints it; `crds/smtpsettings.yaml` holds exactly this.

use kube::CustomResourceExt;
use serde_json::Value;

use crate::api::SmtpSettings;

/// The CRD YAML document (with a leading `---`). Descriptions come from the doc comments of `crate::api`,
/// which wrap at 120 columns; the line breaks inside a paragraph are joined so that `kubectl explain` flows
/// the text to the terminal's width (blank lines between paragraphs stay).
pub fn crd_yaml() -> String {
    let mut crd = serde_json::to_value(SmtpSettings::crd()).expect("the CRD always serializes");
    unwrap_descriptions(&mut crd);
    format!("---\n{}", serde_yaml::to_string(&crd).expect("the CRD always serializes"))
}

/// Joins the single line breaks of every `description` (not the paragraph breaks).
fn unwrap_descriptions(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                match child {
                    Value::String(s) if k == "description" => *s = unwrap_paragraphs(s),
                    _ => unwrap_descriptions(child),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(unwrap_descriptions),
        _ => {}
    }
}

fn unwrap_paragraphs(s: &str) -> String {
    s.split("\n\n")
        .map(|p| p.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_have_no_line_breaks_inside_a_paragraph() {
        assert_eq!(unwrap_paragraphs("a b\nc d.\n\nnext\n para"), "a b c d.\n\nnext para");
        let crd: Value = serde_yaml::from_str(&crd_yaml()).unwrap();
        let mut found = 0;
        fn walk(v: &Value, found: &mut usize) {
            match v {
                Value::Object(m) => m.iter().for_each(|(k, c)| match c {
                    Value::String(s) if k == "description" => {
                        *found += 1;
                        assert!(!s.replace("\n\n", "").contains('\n'), "line break inside {s:?}");
                    }
                    _ => walk(c, found),
                }),
                Value::Array(a) => a.iter().for_each(|c| walk(c, found)),
                _ => {}
            }
        }
        walk(&crd, &mut found);
        assert!(found > 50, "only {found} descriptions");
    }
}
