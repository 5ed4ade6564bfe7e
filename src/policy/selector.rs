//! `ClusterSmtpSettings.spec.allowedNamespaces` (docs/api.md): which namespaces may reference a
//! ClusterSmtpSettings, decided on the namespace's labels (pure). Absent selects none, `{}` every namespace;
//! otherwise the Kubernetes label-selector rules (`matchLabels` and every `matchExpressions` entry must hold). An
//! operator this code does not know selects nothing, so a typo never opens the settings to everyone.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

/// Whether `selector` selects a namespace with `labels`.
pub fn selects(selector: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    let Some(selector) = selector else { return false };
    let labels_match = selector.match_labels.iter().flatten().all(|(k, v)| labels.get(k).is_some_and(|have| have == v));
    labels_match && selector.match_expressions.iter().flatten().all(|r| requirement(r, labels))
}

fn requirement(r: &LabelSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let value = labels.get(&r.key);
    let values = r.values.as_deref().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        _ => false,
    }
}

/// The message of `Valid=False NamespaceNotAllowed`.
pub fn namespace_not_allowed_message(settings: &str, namespace: &str) -> String {
    format!(
        "ClusterSmtpSettings {settings:?} does not allow namespace {namespace:?}: its spec.allowedNamespaces does not \
         select this namespace's labels (absent allows none, {{}} all); nothing is sent. Ask the owners of the \
         ClusterSmtpSettings to add the namespace, or reference other settings"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn namespace_selector_table() {
        let labels: BTreeMap<String, String> = [("kubernetes.io/metadata.name", "billing"), ("team", "payments")]
            .map(|(k, v)| (k.into(), v.into()))
            .into();
        #[rustfmt::skip]
        let cases = [
            ("absent selects none", None, false),
            ("{} selects all", Some(json!({})), true),
            ("matchLabels hit", Some(json!({"matchLabels": {"team": "payments"}})), true),
            ("matchLabels by name", Some(json!({"matchLabels": {"kubernetes.io/metadata.name": "billing"}})), true),
            ("matchLabels other value", Some(json!({"matchLabels": {"team": "web"}})), false),
            ("matchLabels missing key", Some(json!({"matchLabels": {"tier": "gold"}})), false),
            ("all labels must hold", Some(json!({"matchLabels": {"team": "payments", "tier": "gold"}})), false),
            ("In", Some(json!({"matchExpressions": [{"key": "team", "operator": "In", "values": ["web", "payments"]}]})), true),
            ("In other", Some(json!({"matchExpressions": [{"key": "team", "operator": "In", "values": ["web"]}]})), false),
            ("In missing key", Some(json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["gold"]}]})), false),
            ("NotIn", Some(json!({"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["web"]}]})), true),
            ("NotIn hit", Some(json!({"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["payments"]}]})), false),
            ("NotIn missing key", Some(json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["gold"]}]})), true),
            ("Exists", Some(json!({"matchExpressions": [{"key": "team", "operator": "Exists"}]})), true),
            ("Exists missing", Some(json!({"matchExpressions": [{"key": "tier", "operator": "Exists"}]})), false),
            ("DoesNotExist", Some(json!({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]})), true),
            ("DoesNotExist present", Some(json!({"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]})), false),
            ("unknown operator selects nothing", Some(json!({"matchExpressions": [{"key": "team", "operator": "in", "values": ["payments"]}]})), false),
            ("labels and expressions both", Some(json!({"matchLabels": {"team": "payments"},
                "matchExpressions": [{"key": "tier", "operator": "Exists"}]})), false),
        ];
        for (name, selector, want) in cases {
            let selector: Option<LabelSelector> = selector.map(|s| serde_json::from_value(s).unwrap());
            assert_eq!(selects(selector.as_ref(), &labels), want, "{name}");
        }
    }
}
