//! Server replies as they appear in reports: code + text, lines joined, credentials masked, control characters
//! stripped, truncated.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::{Credentials, Reply};

/// Longest reply text kept (characters).
pub(crate) const MAX_REPLY_CHARS: usize = 300;

/// Masks credential material a server might echo back (the secret itself and the base64 forms the engine sent).
#[derive(Default)]
pub(crate) struct Redactor {
    needles: Vec<String>,
}

impl Redactor {
    pub(crate) fn for_credentials(c: &Credentials) -> Self {
        let mut needles = Vec::new();
        match c {
            Credentials::None => {}
            Credentials::Password { username, password, .. } => {
                let p = password.expose();
                needles.push(B64.encode(p));
                let mut plain = vec![0u8];
                plain.extend_from_slice(username.as_bytes());
                plain.push(0);
                plain.extend_from_slice(p);
                needles.push(B64.encode(&plain));
                plain.iter_mut().for_each(|b| *b = 0);
                if let Some(s) = password.expose_str() {
                    needles.push(s.to_owned());
                }
            }
            Credentials::XOAuth2 { username, token } => {
                if let Some(s) = token.expose_str() {
                    needles.push(s.to_owned());
                    needles.push(super::sasl::xoauth2_payload(username, token).expose_str().unwrap_or("").to_owned());
                }
                needles.push(B64.encode(token.expose()));
            }
        }
        // very short values would mask ordinary words; they cannot be told apart from reply text anyway
        needles.retain(|n| n.len() >= 4);
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        Redactor { needles }
    }

    pub(crate) fn apply(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for n in &self.needles {
            if out.contains(n.as_str()) {
                out = out.replace(n.as_str(), "<redacted>");
            }
        }
        out
    }
}

impl Drop for Redactor {
    fn drop(&mut self) {
        for n in &mut self.needles {
            let mut bytes = std::mem::take(n).into_bytes();
            bytes.iter_mut().for_each(|b| *b = 0);
        }
    }
}

/// Joins reply lines with a space, masks credentials, drops control characters, truncates.
pub(crate) fn clean_text<'a>(lines: impl IntoIterator<Item = &'a str>, redactor: &Redactor) -> String {
    let joined = lines.into_iter().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ");
    let masked = redactor.apply(&joined);
    let clean: String = masked.chars().filter(|c| !c.is_control()).collect();
    truncate(&clean, MAX_REPLY_CHARS)
}

/// Truncates to `max` characters, marking the cut with "…".
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(max).collect();
    t.push('…');
    t
}

/// A reply for reports.
pub(crate) fn reply<'a>(code: u16, lines: impl IntoIterator<Item = &'a str>, redactor: &Redactor) -> Reply {
    Reply { code, text: clean_text(lines, redactor) }
}

/// "535 5.7.8 text" (or just the code when there is no text).
pub(crate) fn display(r: &Reply) -> String {
    if r.text.is_empty() { r.code.to_string() } else { format!("{} {}", r.code, r.text) }
}

/// Cleans raw bytes read from the server (for messages about unparseable replies).
pub(crate) fn clean_raw(bytes: &[u8], redactor: &Redactor) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(4 * MAX_REPLY_CHARS)]);
    clean_text(s.lines(), redactor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::SecretValue;

    #[test]
    fn joins_strips_and_truncates() {
        let r = Redactor::default();
        assert_eq!(clean_text(["5.7.8 bad", "  second\tline\u{7} "], &r), "5.7.8 bad secondline");
        let long = "x".repeat(1000);
        let t = clean_text([long.as_str()], &r);
        assert_eq!(t.chars().count(), MAX_REPLY_CHARS + 1);
        assert!(t.ends_with('…'));
        // multi-byte characters are cut on a character boundary
        let wide = "é".repeat(400);
        assert_eq!(clean_text([wide.as_str()], &r).chars().count(), MAX_REPLY_CHARS + 1);
        assert_eq!(display(&Reply { code: 250, text: String::new() }), "250");
        assert_eq!(display(&Reply { code: 535, text: "no".into() }), "535 no");
    }

    #[test]
    fn echoed_credentials_are_masked() {
        let c = Credentials::Password {
            username: "alice".into(),
            password: SecretValue::new("hunter2-distinctive"),
            mechanisms: vec![],
        };
        let r = Redactor::for_credentials(&c);
        let plain_b64 = B64.encode(b"\0alice\0hunter2-distinctive");
        let t = clean_text([format!("535 bad hunter2-distinctive {plain_b64}").as_str()], &r);
        assert!(!t.contains("hunter2"), "{t}");
        assert!(!t.contains(&plain_b64), "{t}");
        assert!(t.contains("<redacted>"));

        let x = Credentials::XOAuth2 { username: "bob".into(), token: SecretValue::new("ya29.token-value") };
        let r = Redactor::for_credentials(&x);
        assert_eq!(r.apply("got ya29.token-value"), "got <redacted>");
    }
}
