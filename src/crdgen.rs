//! The CustomResourceDefinitions as `smtp-operator crd` prints them; `crds/` holds each one in its own file
//! ([`crds`]), and their concatenation in that order is exactly the printed output.

use kube::CustomResourceExt;
use serde_json::Value;

use crate::api::{ClusterSmtpSettings, SmtpSettings};
use crate::relay::api::SmtpRelay;

/// Each CRD as (file name under `crds/`, YAML document with a leading `---`). Descriptions come from doc
/// comments, which wrap at 120 columns; the line breaks inside a paragraph are joined so that `kubectl explain`
/// flows the text to the terminal's width (blank lines between paragraphs stay).
pub fn crds() -> Vec<(&'static str, String)> {
    let doc = |crd| {
        let mut v = serde_json::to_value(crd).expect("a CRD always serializes");
        unwrap_descriptions(&mut v);
        format!("---\n{}", serde_yaml::to_string(&v).expect("a CRD always serializes"))
    };
    // by file name, so that `cat crds/*.yaml` is exactly the `crd` output
    vec![
        ("clustersmtpsettings.yaml", doc(ClusterSmtpSettings::crd())),
        ("smtprelays.yaml", doc(SmtpRelay::crd())),
        ("smtpsettings.yaml", doc(SmtpSettings::crd())),
    ]
}

/// Every CRD YAML document, concatenated.
pub fn crd_yaml() -> String {
    crds().into_iter().map(|(_, y)| y).collect()
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
        for (_, yaml) in crds() {
            let crd: Value = serde_yaml::from_str(&yaml).unwrap();
            walk(&crd, &mut found);
        }
        assert!(found > 50, "only {found} descriptions");
    }
}
