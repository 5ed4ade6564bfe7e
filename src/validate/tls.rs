//! TLS settings: mode, minimum version, verification, and the extra trust anchors of `tls.caBundle` (trusted
//! for the SMTP server and for the OAuth2 token endpoint).

use crate::api::{self, SmtpSettingsSpec};
use crate::engine::{Reason, TlsMode, TlsOptions, TlsVersion};

use super::{Invalid, Purpose, Reference, Referenced, lookup};

/// The engine's TLS options for the spec, with the CA bundle parsed.
pub(super) fn options(
    spec: &SmtpSettingsSpec,
    refs: &[Reference],
    referenced: &Referenced,
) -> Result<TlsOptions, Invalid> {
    let mut extra_roots = Vec::new();
    for r in refs.iter().filter(|r| r.purpose == Purpose::CaBundle) {
        let pem = lookup(referenced, r)?;
        extra_roots = parse_ca_bundle(pem).map_err(|e| {
            Invalid::new(
                Reason::InvalidCABundle,
                format!(
                    "tls.caBundle ({} {:?} key {:?}) is not a usable PEM bundle: {e}",
                    r.kind.as_str(),
                    r.name,
                    r.key
                ),
            )
        })?;
    }
    Ok(TlsOptions {
        mode: match spec.tls.mode {
            api::TlsMode::None => TlsMode::None,
            api::TlsMode::StartTLS => TlsMode::StartTls,
            api::TlsMode::ImplicitTLS => TlsMode::ImplicitTls,
        },
        min_version: match spec.tls.min_version {
            api::TlsMinVersion::V1_2 => TlsVersion::V1_2,
            api::TlsMinVersion::V1_3 => TlsVersion::V1_3,
        },
        extra_roots,
        insecure_skip_verify: spec.tls.insecure_skip_verify,
    })
}

/// Parses PEM certificates into DER; errors when there is none or one is malformed.
pub fn parse_ca_bundle(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut reader = std::io::BufReader::new(pem);
    let mut out = Vec::new();
    for item in rustls_pemfile::certs(&mut reader) {
        match item {
            Ok(der) => out.push(der.as_ref().to_vec()),
            Err(e) => return Err(format!("malformed PEM: {e}")),
        }
    }
    if out.is_empty() {
        return Err("no PEM certificate (-----BEGIN CERTIFICATE-----) found".into());
    }
    for der in &out {
        let cert = rustls::pki_types::CertificateDer::from(der.as_slice());
        if let Err(e) = webpki::anchor_from_trusted_cert(&cert) {
            return Err(format!("a certificate could not be parsed: {e:?}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::{RefKind, RefObject, references};

    fn spec(tls: &str) -> SmtpSettingsSpec {
        serde_yaml::from_str(&format!("server: s.example\nport: 587\nfrom: a@example.com\ntls: {tls}\n")).unwrap()
    }

    #[test]
    fn modes_versions_and_bundles() {
        let ca = |value: &[u8]| {
            let mut r = Referenced::default();
            r.objects.insert(
                (RefKind::ConfigMap, "ca".into()),
                RefObject { data: [("ca.crt".to_string(), value.to_vec())].into(), ..Default::default() },
            );
            r
        };
        let with_ca = "{caBundle: {configMapKeyRef: {name: ca, key: ca.crt}}}";
        let garbage = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        type Case = (&'static str, Referenced, Result<(TlsMode, TlsVersion, bool), Reason>);
        let cases: &[Case] = &[
            ("{}", Referenced::default(), Ok((TlsMode::StartTls, TlsVersion::V1_2, false))),
            (
                "{mode: ImplicitTLS, minVersion: '1.3'}",
                Referenced::default(),
                Ok((TlsMode::ImplicitTls, TlsVersion::V1_3, false)),
            ),
            (
                "{mode: None, insecureSkipVerify: true}",
                Referenced::default(),
                Ok((TlsMode::None, TlsVersion::V1_2, true)),
            ),
            (with_ca, Referenced::default(), Err(Reason::ConfigMapNotFound)),
            (with_ca, ca(b"hello"), Err(Reason::InvalidCABundle)),
            (with_ca, ca(garbage), Err(Reason::InvalidCABundle)),
        ];
        for (tls, referenced, want) in cases {
            let s = spec(tls);
            let got = options(&s, &references(&s), referenced)
                .map(|o| (o.mode, o.min_version, o.insecure_skip_verify))
                .map_err(|e| e.reason);
            assert_eq!(&got, want, "{tls}");
        }
    }
}
