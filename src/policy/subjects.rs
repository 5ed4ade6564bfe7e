//! The Secret annotation `smtp-operator.io/allowed-subjects` (docs/security.md, "Secret binding"): for a
//! JwtBearer private key (Google domain-wide delegation lets the key's holder act as any user of the domain),
//! the users the key may act as: `subject`, and `username` when it differs.
//!
//! Syntax: entries separated by commas and/or whitespace; each is an address (`alerts@example.com`) or
//! `*@domain` (every user of exactly that domain, not of its subdomains). Compared case-insensitively (mail
//! providers treat addresses so). `*`, `*@*`, entries without `@` and other wildcards are invalid and skipped.

use super::binding::shell_quote;

/// The annotation on a Secret holding a JwtBearer key that lists the users it may act as.
pub const ALLOWED_SUBJECTS_ANNOTATION: &str = crate::api::ALLOWED_SUBJECTS;

/// One valid entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubjectPattern {
    /// Exactly this address (lower case).
    Address(String),
    /// `*@domain`: any user of this domain (lower case).
    Domain(String),
}

impl SubjectPattern {
    pub fn matches(&self, subject: &str) -> bool {
        let subject = subject.trim().to_ascii_lowercase();
        match self {
            SubjectPattern::Address(a) => *a == subject,
            SubjectPattern::Domain(d) => {
                subject.rsplit_once('@').is_some_and(|(local, domain)| !local.is_empty() && domain == d)
            }
        }
    }
}

/// Parses the annotation value: the valid entries, and the invalid ones with why (never fatal as a whole).
pub fn parse_allowed_subjects(value: &str) -> (Vec<SubjectPattern>, Vec<String>) {
    let mut patterns = Vec::new();
    let mut errors = Vec::new();
    for entry in value.split(|c: char| c == ',' || c.is_whitespace()).filter(|e| !e.is_empty()) {
        match parse_entry(entry) {
            Ok(p) if !patterns.contains(&p) => patterns.push(p),
            Ok(_) => {}
            Err(why) => errors.push(format!("{:?}: {why}", entry.chars().take(256).collect::<String>())),
        }
    }
    (patterns, errors)
}

fn parse_entry(entry: &str) -> Result<SubjectPattern, &'static str> {
    let lower = entry.to_ascii_lowercase();
    let Some((local, domain)) = lower.rsplit_once('@') else {
        return Err("not an address (user@domain or *@domain)");
    };
    if local.is_empty() || domain.is_empty() || domain.contains('*') || !domain.contains('.') {
        return Err("give user@domain or *@domain with a full domain name");
    }
    match local {
        "*" => Ok(SubjectPattern::Domain(domain.to_string())),
        l if l.contains('*') => Err("'*' is only allowed as the whole user part, as in *@example.com"),
        _ => Ok(SubjectPattern::Address(lower)),
    }
}

/// True when `patterns` allow acting as `subject`.
pub fn subject_allowed(patterns: &[SubjectPattern], subject: &str) -> bool {
    patterns.iter().any(|p| p.matches(subject))
}

/// The message of `Valid=False SubjectNotAllowed`: names the Secret, the users, and the exact `kubectl annotate`
/// command that allows them (appending to the existing list). One line, deterministic, no Secret value.
pub fn subject_not_allowed_message(secret: &str, namespace: &str, missing: &[&str], existing: Option<&str>) -> String {
    let users = missing.join(", ");
    let key = ALLOWED_SUBJECTS_ANNOTATION;
    let (state, overwrite, mut entries) = match existing {
        None => (format!("it has no {key} annotation"), "", Vec::new()),
        Some(v) => (
            format!("its {key} annotation does not list {}", if missing.len() > 1 { "them" } else { "it" }),
            "--overwrite ",
            v.split(|c: char| c == ',' || c.is_whitespace())
                .filter(|e| !e.is_empty() && !e.chars().any(char::is_control))
                .take(100)
                .collect(),
        ),
    };
    entries.extend(missing.iter().copied());
    format!(
        "the private key of Secret {secret:?} may not act as {users}: {state}. If the key may act as {users}, whoever \
         owns the Secret allows it with: kubectl annotate {overwrite}secret {} -n {} {}",
        shell_quote(secret),
        shell_quote(namespace),
        shell_quote(&format!("{key}={}", entries.join(", "))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_table() {
        let (p, errors) =
            parse_allowed_subjects("alerts@example.com, *@Mail.Example.com\n bad, *, *@*, a*@x.com, u@com");
        assert_eq!(
            p,
            [SubjectPattern::Address("alerts@example.com".into()), SubjectPattern::Domain("mail.example.com".into())]
        );
        assert_eq!(errors.len(), 5, "{errors:?}");
        let cases = [
            ("alerts@example.com", true),
            ("ALERTS@Example.COM", true),
            ("boss@example.com", false),
            ("anyone@mail.example.com", true),
            ("anyone@sub.mail.example.com", false),
            ("@mail.example.com", false),
            ("mail.example.com", false),
            ("", false),
        ];
        for (subject, want) in cases {
            assert_eq!(subject_allowed(&p, subject), want, "{subject:?}");
        }
    }

    #[test]
    fn message_gives_a_command_that_allows_the_users() {
        let m = subject_not_allowed_message("sa-key", "mail", &["boss@example.com"], None);
        assert!(
            m.ends_with("kubectl annotate secret sa-key -n mail smtp-operator.io/allowed-subjects=boss@example.com"),
            "{m}"
        );
        let m = subject_not_allowed_message("sa-key", "mail", &["a@x.example", "b@x.example"], Some("c@x.example"));
        let value = m.rsplit_once("allowed-subjects=").unwrap().1.trim_end_matches('\'');
        let (p, errors) = parse_allowed_subjects(value);
        assert!(errors.is_empty() && m.contains("--overwrite"), "{m}");
        for u in ["a@x.example", "b@x.example", "c@x.example"] {
            assert!(subject_allowed(&p, u), "{u}: {m}");
        }
    }
}
