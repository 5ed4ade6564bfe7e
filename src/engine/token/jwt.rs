//! RFC 7523 JWT bearer assertions: RS256 (RSASSA-PKCS1-v1_5 with SHA-256) signed with ring.
//!
//! The key comes from a PEM PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1 (`BEGIN RSA PRIVATE KEY`) block, or from a
//! Google service-account JSON key file (its `private_key` field holds such a PEM).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde::Serialize;

use crate::engine::SecretValue;

/// Lifetime of an assertion (`exp - iat`).
pub const ASSERTION_LIFETIME_SECS: u64 = 300;

/// The `grant_type` of the JWT bearer grant.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Why a key could not be used. Never contains key material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyError(pub String);

/// Loads an RSA key pair from PEM (PKCS#8 or PKCS#1) or a service-account JSON key.
pub fn load_key(key: &SecretValue) -> Result<RsaKeyPair, KeyError> {
    let text = key
        .expose_str()
        .ok_or_else(|| KeyError("the private key is not UTF-8 text (expected PEM or service-account JSON)".into()))?;
    let trimmed = text.trim_start();
    let pem: SecretValue = if trimmed.starts_with('{') {
        #[derive(serde::Deserialize)]
        struct ServiceAccount {
            private_key: Option<String>,
        }
        let sa: ServiceAccount = serde_json::from_str(trimmed).map_err(|e| {
            // serde_json errors name line/column and the kind of problem, not the text
            KeyError(format!("the service-account JSON is not valid (line {}, column {})", e.line(), e.column()))
        })?;
        SecretValue::new(
            sa.private_key.ok_or_else(|| KeyError("the service-account JSON has no \"private_key\" field".into()))?,
        )
    } else {
        SecretValue::new(text.as_bytes())
    };

    let mut reader = pem.expose();
    let mut saw_other = false;
    loop {
        match rustls_pemfile::read_one(&mut reader) {
            Ok(Some(rustls_pemfile::Item::Pkcs8Key(k))) => {
                return RsaKeyPair::from_pkcs8(k.secret_pkcs8_der())
                    .map_err(|e| KeyError(format!("the PKCS#8 private key is not a usable RSA key ({e})")));
            }
            Ok(Some(rustls_pemfile::Item::Pkcs1Key(k))) => {
                return RsaKeyPair::from_der(k.secret_pkcs1_der())
                    .map_err(|e| KeyError(format!("the PKCS#1 private key is not a usable RSA key ({e})")));
            }
            Ok(Some(rustls_pemfile::Item::Sec1Key(_))) => {
                return Err(KeyError("the private key is an EC key; only RSA keys (RS256) are supported".into()));
            }
            Ok(Some(_)) => saw_other = true,
            Ok(None) => break,
            Err(_) => return Err(KeyError("the private key PEM is malformed".into())),
        }
    }
    Err(KeyError(if saw_other {
        "the PEM holds no private key block (expected BEGIN PRIVATE KEY or BEGIN RSA PRIVATE KEY)".into()
    } else {
        "no PEM private key found (expected PEM PKCS#8/PKCS#1 or a service-account JSON key)".into()
    }))
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'a str,
    typ: &'a str,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    sub: &'a str,
    aud: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    iat: u64,
    exp: u64,
}

/// Builds and signs an assertion: iss = `client_id`, sub = `subject` (omitted when empty), aud = `token_url`,
/// scope = scopes joined by spaces (omitted when none), iat = `now`, exp = `now` + 300 s.
pub fn assertion(
    key: &RsaKeyPair,
    client_id: &str,
    subject: &str,
    token_url: &str,
    scopes: &[String],
    now_unix: u64,
) -> Result<SecretValue, KeyError> {
    let header = serde_json::to_vec(&Header { alg: "RS256", typ: "JWT" }).map_err(|_| KeyError("encoding".into()))?;
    let claims = Claims {
        iss: client_id,
        sub: subject,
        aud: token_url,
        scope: if scopes.is_empty() { None } else { Some(scopes.join(" ")) },
        iat: now_unix,
        exp: now_unix + ASSERTION_LIFETIME_SECS,
    };
    let claims = serde_json::to_vec(&claims).map_err(|_| KeyError("encoding".into()))?;
    let mut signing_input = URL_SAFE_NO_PAD.encode(header);
    signing_input.push('.');
    signing_input.push_str(&URL_SAFE_NO_PAD.encode(claims));
    let mut sig = vec![0u8; key.public().modulus_len()];
    key.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), signing_input.as_bytes(), &mut sig)
        .map_err(|_| KeyError("signing the assertion failed".into()))?;
    signing_input.push('.');
    signing_input.push_str(&URL_SAFE_NO_PAD.encode(sig));
    Ok(SecretValue::new(signing_input))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_keys_are_rejected_without_echoing_them() {
        for bad in [
            "hunter2-not-a-key",
            "{\"type\":\"service_account\"}",
            "{not json hunter2",
            "-----BEGIN PRIVATE KEY-----\nhunter2\n-----END PRIVATE KEY-----\n",
        ] {
            let e = load_key(&SecretValue::new(bad)).unwrap_err();
            assert!(!e.0.contains("hunter2"), "{}", e.0);
        }
    }
}
