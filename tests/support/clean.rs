//! What a hostile peer's text must never leave behind in a report, a status, an event or a log
//! (docs/security.md, "one sanitizer"): shared by tests/sanitize.rs (the engine) and tests/e2e_hostile.rs
//! (through the operator).
#![allow(dead_code)]

/// Characters the hostile peers send that must never come out (listed here, not taken from the code under
/// test).
pub const HOSTILE: &[char] =
    &['\x1b', '\r', '\n', '\x01', '\x7f', '\u{202e}', '\u{202c}', '\u{2066}', '\u{2069}', '\u{200b}', '\u{feff}'];

/// How long a clean text may be: what the sanitizer promises is counted in characters, what the API server
/// stores (condition messages, event notes) in bytes.
#[derive(Clone, Copy, Debug)]
pub enum Limit {
    Chars(usize),
    Bytes(usize),
}

/// `text` holds no hostile character, no control character, none of the credential forms in `secrets`, and
/// is within `limit`.
#[track_caller]
pub fn assert_clean(what: &str, text: &str, secrets: &[String], limit: Limit) {
    assert!(
        !text.chars().any(|c| HOSTILE.contains(&c) || c.is_control()),
        "{what} has a control or format character: {text:?}"
    );
    for form in secrets {
        assert!(!text.contains(form.as_str()), "{what} carries a form of a credential: {text:?}");
    }
    let (len, max, unit) = match limit {
        Limit::Chars(max) => (text.chars().count(), max, "chars"),
        Limit::Bytes(max) => (text.len(), max, "bytes"),
    };
    assert!(len <= max, "{what} is {len} {unit} long (at most {max})");
}
