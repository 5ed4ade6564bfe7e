//! What the early warnings need from a server's certificates (docs/api.md, "Early warnings"): subject,
//! issuer, DNS names (SAN) and notAfter, read from the DER the TLS handshake presented. A small DER reader of
//! exactly these fields (the chain itself was already verified by rustls/webpki); anything it cannot read
//! gives `None`, never an error of the check. Every string is cleaned by [`super::sanitize::strip`]: a
//! certificate is peer input like any reply.

use super::sanitize;

/// Longest subject / issuer / DNS name kept.
const MAX_TEXT: usize = 256;
/// Most DNS names kept per certificate.
const MAX_NAMES: usize = 20;

/// One certificate as the status shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateInfo {
    /// The subject as `CN=…, O=…` (the attribute types this reader knows; others are left out).
    pub subject: String,
    pub issuer: String,
    /// `dNSName` entries of the subjectAltName extension, in order.
    pub dns_names: Vec<String>,
    /// notAfter in Unix seconds.
    pub not_after: i64,
}

/// A DER element: tag and content.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The elements of a constructed value, in order.
fn children(mut input: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut out = Vec::new();
    while !input.is_empty() {
        let (tag, content, rest) = element(input)?;
        out.push((tag, content));
        input = rest;
    }
    Some(out)
}

/// Reads one DER certificate; `None` when it is not one this reader understands.
pub fn parse(der: &[u8]) -> Option<CertificateInfo> {
    let (0x30, cert, _) = element(der)? else { return None };
    let (0x30, tbs, _) = element(cert)? else { return None };
    let fields = children(tbs)?;
    // an explicit version [0] shifts the fields by one
    let skip = usize::from(fields.first()?.0 == 0xa0);
    let field = |i: usize| fields.get(skip + i).copied();
    let issuer = name(field(2)?.1)?;
    let validity = children(field(3)?.1)?;
    let not_after = time(*validity.get(1)?)?;
    let subject = name(field(4)?.1)?;
    let dns_names = fields.iter().find(|(tag, _)| *tag == 0xa3).and_then(|(_, ext)| san(ext)).unwrap_or_default();
    Some(CertificateInfo { subject, issuer, dns_names, not_after })
}

const OID_NAMES: &[(&[u8], &str)] = &[
    (&[0x55, 0x04, 0x03], "CN"),
    (&[0x55, 0x04, 0x0a], "O"),
    (&[0x55, 0x04, 0x0b], "OU"),
    (&[0x55, 0x04, 0x06], "C"),
    (&[0x55, 0x04, 0x08], "ST"),
    (&[0x55, 0x04, 0x07], "L"),
];

/// A Name (SEQUENCE OF RDN SET OF AttributeTypeAndValue) as `CN=a, O=b`, in the order encoded.
fn name(content: &[u8]) -> Option<String> {
    let mut parts = Vec::new();
    for (_, rdn) in children(content)? {
        for (_, atv) in children(rdn)? {
            let atv = children(atv)?;
            let (Some((0x06, oid)), Some((_, value))) = (atv.first().copied(), atv.get(1).copied()) else {
                continue;
            };
            if let Some((_, short)) = OID_NAMES.iter().find(|(o, _)| *o == oid) {
                parts.push(format!("{short}={}", text(value)));
            }
        }
    }
    Some(sanitize::truncate(&parts.join(", "), MAX_TEXT))
}

fn text(bytes: &[u8]) -> String {
    sanitize::truncate(&sanitize::strip(&String::from_utf8_lossy(bytes)), MAX_TEXT)
}

/// The dNSName entries of the subjectAltName extension (in `[3] { SEQUENCE OF Extension }`).
fn san(explicit: &[u8]) -> Option<Vec<String>> {
    let (0x30, list, _) = element(explicit)? else { return None };
    for (_, ext) in children(list)? {
        let parts = children(ext)?;
        if parts.first() != Some(&(0x06, &[0x55, 0x1d, 0x11][..])) {
            continue;
        }
        let (_, octets) = parts.last()?;
        let (0x30, names, _) = element(octets)? else { return None };
        let dns = children(names)?.into_iter().filter(|(tag, _)| *tag == 0x82).map(|(_, v)| text(v));
        return Some(dns.take(MAX_NAMES).collect());
    }
    None
}

/// UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime (YYYYMMDDHHMMSSZ) to Unix seconds.
fn time((tag, content): (u8, &[u8])) -> Option<i64> {
    let s = std::str::from_utf8(content).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 if s.len() == 12 => {
            let yy: i64 = s[..2].parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &s[2..])
        }
        0x18 if s.len() == 14 => (s[..4].parse().ok()?, &s[4..]),
        _ => return None,
    };
    let n = |i: usize| rest.get(i..i + 2)?.parse::<i64>().ok();
    let (month, day, hour, minute, second) = (n(0)?, n(2)?, n(4)?, n(6)?, n(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `openssl req -x509 … -subj "/CN=mail.example.com/O=Example Mail" -addext
    /// "subjectAltName=DNS:mail.example.com,DNS:smtp.example.com,IP:127.0.0.1"`, notAfter 2027-01-01T16:13:12Z.
    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB7zCCAZagAwIBAgIUKZuNumh1G8owy92yABuOqenGZWUwCgYIKoZIzj0EAwIw\nMjEZMBcGA1UEAwwQbWFpbC5leGFtcGxlLmNvbTEVMBMGA1UECgwMRXhhbXBsZSBN\nYWlsMB4XDTI2MTIwMjE2MTMxMloXDTI3MDEwMTE2MTMxMlowMjEZMBcGA1UEAwwQ\nbWFpbC5leGFtcGxlLmNvbTEVMBMGA1UECgwMRXhhbXBsZSBNYWlsMFkwEwYHKoZI\nzj0CAQYIKoZIzj0DAQcDQgAEkx2xyJNA/Efo7BAKfvpOM9zn8bbQPx/bVS8whgDk\nDJxp6ahhr+lruCHRzrG3hc0qFEEQPK2jrB5EoZp4HHNHFqOBiTCBhjAdBgNVHQ4E\nFgQUzmLzOckdC3gLAvTcAdG3mo9hHBowHwYDVR0jBBgwFoAUzmLzOckdC3gLAvTc\nAdG3mo9hHBowDwYDVR0TAQH/BAUwAwEB/zAzBgNVHREELDAqghBtYWlsLmV4YW1w\nbGUuY29tghBzbXRwLmV4YW1wbGUuY29thwR/AAABMAoGCCqGSM49BAMCA0cAMEQC\nIBl/rEtuTCR+1m1++2j5xAHthUJO9LIzOEYdVBSjFgajAiBMhd+LtOT3oxYh1iVJ\nsrDnXvqGphsRCvNvqEOmBsms5w==\n-----END CERTIFICATE-----";

    #[test]
    fn reads_subject_issuer_names_and_not_after() {
        let der = rustls_pemfile::certs(&mut PEM.as_bytes()).next().unwrap().unwrap();
        let info = parse(&der).expect("parsed");
        assert_eq!(info.subject, "CN=mail.example.com, O=Example Mail");
        assert_eq!(info.issuer, info.subject);
        assert_eq!(info.dns_names, ["mail.example.com", "smtp.example.com"]);
        assert_eq!(info.not_after, 1_798_819_992);
    }

    #[test]
    fn times_in_both_encodings() {
        assert_eq!(time((0x17, b"700101000000Z")), Some(0));
        assert_eq!(time((0x17, b"261202161106Z")), Some(1_796_227_866));
        assert_eq!(time((0x18, b"20261202161106Z")), Some(1_796_227_866));
        assert_eq!(time((0x18, b"20000229000000Z")), Some(951_782_400));
        assert_eq!(time((0x17, b"991231235959Z")), Some(946_684_799));
        for bad in [&b"2612021611Z"[..], b"261302161106Z", b"261202161106", b"2612021611xxZ"] {
            assert_eq!(time((0x17, bad)), None, "{bad:?}");
        }
    }

    #[test]
    fn garbage_is_none_not_a_panic() {
        for bad in [&b""[..], b"\x30", b"\x30\x84\xff\xff\xff\xff", b"\x30\x03\x30\x01", b"\x04\x00"] {
            assert_eq!(parse(bad), None);
        }
    }
}
