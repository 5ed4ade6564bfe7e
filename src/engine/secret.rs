//! A secret value (password, client secret, token, key) that cannot leak through `Debug` or `Display`.

use std::fmt;

/// Holds credential bytes. `Debug` and `Display` print `<redacted>`; the value is reachable only through
/// [`SecretValue::expose`], so every place that sends it is easy to find.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Vec<u8>);

impl SecretValue {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// The raw bytes, for the one place that sends them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The value as UTF-8, if it is.
    pub fn expose_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Drop for SecretValue {
    fn drop(&mut self) {
        // best effort: do not leave the credential in freed memory
        for b in self.0.iter_mut() {
            // SAFETY-free: a plain write; volatile is not needed for a best-effort wipe
            *b = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = SecretValue::new("hunter2-distinctive");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(format!("{s}"), "<redacted>");
        assert_eq!(s.expose(), b"hunter2-distinctive");
    }
}
