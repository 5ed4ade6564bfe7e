//! The one sanitizer for everything a peer says: SMTP replies, the token endpoint's `error` and
//! `error_description`, TLS and connection error text, and every failure message built around them.
//!
//! Order matters (docs/security.md): first strip C0/C1 control characters and Unicode format characters
//! (category Cf: bidi overrides and isolates, zero-width characters, the BOM, …), so a secret split by one
//! (`hun\x01ter2`) is whole again; then mask every credential form; then cap the length.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::{Credentials, SecretValue, credentials};

/// What replaces a masked credential.
pub const REDACTED: &str = "<redacted>";
/// Longest text looked at; anything after is dropped before the work starts (a peer may send megabytes).
const MAX_INPUT_CHARS: usize = 64 * 1024;
/// Values shorter than this are not masked: they would mangle ordinary words and carry next to no information.
const MIN_NEEDLE_LEN: usize = 4;

/// Unicode format characters (general category Cf), as ranges.
const FORMAT_CHARS: &[(char, char)] = &[
    ('\u{00AD}', '\u{00AD}'),
    ('\u{0600}', '\u{0605}'),
    ('\u{061C}', '\u{061C}'),
    ('\u{06DD}', '\u{06DD}'),
    ('\u{070F}', '\u{070F}'),
    ('\u{0890}', '\u{0891}'),
    ('\u{08E2}', '\u{08E2}'),
    ('\u{180E}', '\u{180E}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{2064}'),
    ('\u{2066}', '\u{206F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFF9}', '\u{FFFB}'),
    ('\u{110BD}', '\u{110BD}'),
    ('\u{110CD}', '\u{110CD}'),
    ('\u{13430}', '\u{1343F}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0001}', '\u{E0001}'),
    ('\u{E0020}', '\u{E007F}'),
];

/// True for characters that never appear in a report: C0/C1 controls, DEL, and format (Cf) characters.
pub fn is_stripped(c: char) -> bool {
    c.is_control() || FORMAT_CHARS.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
}

/// Removes every [`is_stripped`] character.
pub fn strip(text: &str) -> String {
    text.chars().filter(|&c| !is_stripped(c)).collect()
}

/// Truncates to `max` characters, marking the cut with "…".
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(max).collect();
    t.push('…');
    t
}

/// Masks the credentials of one check (or one token request) in peer text. Needles are zeroed on drop.
#[derive(Default)]
pub struct Sanitizer {
    needles: Vec<String>,
}

impl Sanitizer {
    /// Masks the given secret values: raw, form-urlencoded and base64 (what a peer may echo back).
    pub fn for_secrets<'a>(secrets: impl IntoIterator<Item = &'a SecretValue>) -> Self {
        let mut s = Sanitizer::default();
        for v in secrets {
            s.add(v.expose());
            if let Some(text) = v.expose_str() {
                s.add_str(url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>());
            }
            s.add_str(B64.encode(v.expose()));
        }
        s.sort();
        s
    }

    /// Masks every wire form of `c` ([`credentials::wire_forms`]).
    pub fn for_credentials(c: &Credentials) -> Self {
        let mut s = Sanitizer::default();
        for v in credentials::wire_forms(c) {
            s.add(v.expose());
        }
        s.sort();
        s
    }

    fn add(&mut self, bytes: &[u8]) {
        // a value that is not UTF-8 cannot appear in text as is; its base64 forms are added separately
        if let Ok(text) = std::str::from_utf8(bytes) {
            self.add_str(text.to_owned());
        }
    }

    fn add_str(&mut self, text: String) {
        // the needle as it reads after stripping, so a secret containing a control character is still found
        let n = strip(&text);
        let mut raw = text.into_bytes();
        raw.iter_mut().for_each(|b| *b = 0);
        if n.len() >= MIN_NEEDLE_LEN && !self.needles.contains(&n) {
            self.needles.push(n);
        }
    }

    fn sort(&mut self) {
        // longest first: a base64 payload is masked whole, not around a shorter value inside it
        self.needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
    }

    /// Masks the credentials in text that is already stripped.
    fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for n in &self.needles {
            if out.contains(n.as_str()) {
                out = out.replace(n.as_str(), REDACTED);
            }
        }
        out
    }

    /// Strip, then redact, then cap at `max_chars`.
    pub fn clean(&self, text: &str, max_chars: usize) -> String {
        let bounded: String = text.chars().take(MAX_INPUT_CHARS).collect();
        truncate(&self.redact(&strip(&bounded)), max_chars)
    }
}

impl Drop for Sanitizer {
    fn drop(&mut self) {
        for n in &mut self.needles {
            let mut bytes = std::mem::take(n).into_bytes();
            bytes.iter_mut().for_each(|b| *b = 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pw(p: &str) -> Credentials {
        Credentials::Password { username: "alice".into(), password: SecretValue::new(p), mechanisms: vec![] }
    }

    #[test]
    fn strips_controls_and_format_characters() {
        let cases = [
            ("plain text", "plain text"),
            ("\x1b[31mred\x1b[0m", "[31mred[0m"),
            ("a\r\nb\tc\x7f\u{85}d", "abcd"),
            ("\u{202E}evil\u{202C} \u{2066}x\u{2069}", "evil x"),
            ("zero\u{200B}width\u{FEFF}\u{00AD}", "zerowidth"),
            ("tag\u{E0041}s", "tags"),
            ("é ü 漢字 🙂", "é ü 漢字 🙂"),
        ];
        for (input, want) in cases {
            assert_eq!(strip(input), want, "{input:?}");
        }
    }

    #[test]
    fn strips_before_redacting_then_caps() {
        let s = Sanitizer::for_credentials(&pw("hunter2-x"));
        assert_eq!(s.clean("535 bad hun\x01ter2-x", 300), "535 bad <redacted>");
        assert_eq!(s.clean("hun\u{200B}ter2\u{202E}-x!", 300), "<redacted>!");
        let plain = B64.encode(b"\0alice\0hunter2-x");
        let split = format!("{}\r\n{}", &plain[..5], &plain[5..]);
        assert_eq!(s.clean(&split, 300), REDACTED);
        // redaction happens before the cap: a secret at the cut is never half shown
        let text = format!("{}hunter2-x", "a".repeat(295));
        let out = s.clean(&text, 300);
        assert!(!out.contains("hunter"), "{out}");
        let long = "x".repeat(1_000_000);
        assert_eq!(s.clean(&long, 300).chars().count(), 301);
    }

    #[test]
    fn token_secrets_are_masked_in_every_form() {
        let s = Sanitizer::for_secrets([&SecretValue::new("p@ss word+1")]);
        assert_eq!(s.clean("a p@ss word+1 b p%40ss+word%2B1", 300), "a <redacted> b <redacted>");
        assert_eq!(s.clean(&B64.encode("p@ss word+1"), 300), REDACTED);
        assert_eq!(Sanitizer::for_secrets([&SecretValue::new("ab")]).clean("abc", 300), "abc");
    }

    #[test]
    fn xoauth2_forms_are_masked() {
        let c = Credentials::XOAuth2 { username: "bob".into(), token: SecretValue::new("ya29.token-value") };
        let s = Sanitizer::for_credentials(&c);
        assert_eq!(s.clean("got ya29.token-value", 300), "got <redacted>");
        let payload = credentials::xoauth2_payload("bob", &SecretValue::new("ya29.token-value"));
        assert_eq!(s.clean(payload.expose_str().unwrap(), 300), REDACTED);
    }
}
