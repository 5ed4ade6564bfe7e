//! Server replies as they appear in reports: code + text, lines joined by a space, then through the
//! [`Sanitizer`] (controls and format characters stripped, credentials masked, length capped).

use super::Reply;
use super::sanitize::Sanitizer;

/// Longest reply text kept (characters).
pub(crate) const MAX_REPLY_CHARS: usize = 300;

/// Joins reply lines with a space and sanitizes the result.
pub(crate) fn clean_text<'a>(lines: impl IntoIterator<Item = &'a str>, sanitizer: &Sanitizer) -> String {
    let joined = lines.into_iter().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ");
    sanitizer.clean(&joined, MAX_REPLY_CHARS)
}

/// A reply for reports.
pub(crate) fn reply<'a>(code: u16, lines: impl IntoIterator<Item = &'a str>, sanitizer: &Sanitizer) -> Reply {
    Reply { code, text: clean_text(lines, sanitizer) }
}

/// "535 5.7.8 text" (or just the code when there is no text).
pub(crate) fn display(r: &Reply) -> String {
    if r.text.is_empty() { r.code.to_string() } else { format!("{} {}", r.code, r.text) }
}

/// Cleans raw bytes read from the server (for messages about unparseable replies).
pub(crate) fn clean_raw(bytes: &[u8], sanitizer: &Sanitizer) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(4 * MAX_REPLY_CHARS)]);
    clean_text(s.lines(), sanitizer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Credentials, SecretValue};
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as B64;

    #[test]
    fn joins_strips_and_truncates() {
        let r = Sanitizer::default();
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
        let r = Sanitizer::for_credentials(&c);
        let plain_b64 = B64.encode(b"\0alice\0hunter2-distinctive");
        let t = clean_text([format!("535 bad hunter2-distinctive {plain_b64}").as_str()], &r);
        assert!(!t.contains("hunter2"), "{t}");
        assert!(!t.contains(&plain_b64), "{t}");
        assert!(t.contains("<redacted>"));
    }
}
