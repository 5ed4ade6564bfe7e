//! Every wire form of a credential, built in one place: the SASL payloads (PLAIN, LOGIN, XOAUTH2) the engine
//! sends, and the same list for the sanitizer, which masks any of them a peer echoes back.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::{Credentials, SecretValue};

/// One command line with credential material; zeroed on drop. `Display` writes the line plus CRLF (what
/// lettre's `command` sends).
pub(crate) struct SecretLine(String);

impl SecretLine {
    pub(crate) fn new(line: String) -> Self {
        SecretLine(line)
    }

    /// Length of the line including CRLF.
    pub(crate) fn wire_len(&self) -> usize {
        self.0.len() + 2
    }
}

impl fmt::Display for SecretLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\r\n", self.0)
    }
}

impl Drop for SecretLine {
    fn drop(&mut self) {
        let mut b = std::mem::take(&mut self.0).into_bytes();
        b.iter_mut().for_each(|x| *x = 0);
    }
}

/// A plain command line without credentials.
pub(crate) struct Line(pub(crate) &'static str);

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\r\n", self.0)
    }
}

/// Base64 of `raw`, then `raw` is wiped.
fn encode_and_wipe(mut raw: Vec<u8>) -> SecretValue {
    let out = SecretValue::new(B64.encode(&raw));
    raw.iter_mut().for_each(|b| *b = 0);
    out
}

/// Base64 of a secret (LOGIN's password line, and a form the sanitizer masks).
pub(crate) fn b64(value: &[u8]) -> SecretValue {
    encode_and_wipe(value.to_vec())
}

/// The XOAUTH2 initial response: base64 of `user=<username>\x01auth=Bearer <token>\x01\x01`.
pub(crate) fn xoauth2_payload(username: &str, token: &SecretValue) -> SecretValue {
    let mut raw = Vec::with_capacity(username.len() + token.expose().len() + 20);
    raw.extend_from_slice(b"user=");
    raw.extend_from_slice(username.as_bytes());
    raw.extend_from_slice(b"\x01auth=Bearer ");
    raw.extend_from_slice(token.expose());
    raw.extend_from_slice(b"\x01\x01");
    encode_and_wipe(raw)
}

/// PLAIN: base64 of `\0username\0password` (no authorisation identity).
pub(crate) fn plain_payload(username: &str, password: &SecretValue) -> SecretValue {
    let mut raw = Vec::with_capacity(username.len() + password.expose().len() + 2);
    raw.push(0);
    raw.extend_from_slice(username.as_bytes());
    raw.push(0);
    raw.extend_from_slice(password.expose());
    encode_and_wipe(raw)
}

/// Every form of the credentials that goes on the wire, plus the raw secret: what must never come back in a
/// report. The username alone is not secret and is not listed.
pub(crate) fn wire_forms(c: &Credentials) -> Vec<SecretValue> {
    match c {
        Credentials::None => vec![],
        Credentials::Password { username, password, .. } => {
            vec![password.clone(), b64(password.expose()), plain_payload(username, password)]
        }
        Credentials::XOAuth2 { username, token } => {
            vec![token.clone(), b64(token.expose()), xoauth2_payload(username, token)]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xoauth2_encoding() {
        let p =
            xoauth2_payload("someuser@example.com", &SecretValue::new("ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"));
        // the example from Google's XOAUTH2 documentation
        assert_eq!(
            p.expose_str().unwrap(),
            "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
        );
    }

    #[test]
    fn plain_encoding() {
        let p = plain_payload("tim", &SecretValue::new("tanstaaftanstaaf"));
        assert_eq!(p.expose_str().unwrap(), B64.encode(b"\0tim\0tanstaaftanstaaf"));
    }

    #[test]
    fn wire_forms_cover_what_sasl_sends() {
        let pw = Credentials::Password { username: "u".into(), password: SecretValue::new("pw"), mechanisms: vec![] };
        let forms: Vec<String> = wire_forms(&pw).iter().map(|v| v.expose_str().unwrap().to_owned()).collect();
        assert_eq!(forms, ["pw", &B64.encode("pw"), &B64.encode("\0u\0pw")]);
        assert!(wire_forms(&Credentials::None).is_empty());
    }
}
