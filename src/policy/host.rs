//! Normalisation of a destination host (`spec.server`, the host of `tokenUrl`, annotation entries), so every
//! allow/deny decision compares one canonical form:
//!
//! 1. Surrounding whitespace is trimmed; inner whitespace, schemes, paths, user info and ports are errors.
//! 2. `[v6]` and bare IPv6 literals become [`Host::Ip`] (zone ids are rejected). IPv4-mapped IPv6
//!    (`::ffff:a.b.c.d`) becomes the IPv4 address it carries.
//! 3. Everything else goes through IDNA (UTS #46 ToASCII: case folding, width folding, punycode), with the
//!    characters a host name may contain: letters, digits, `-`, `.`, `_` and non-ASCII letters. Labels must
//!    not start or end with `-`; lengths are checked (label ≤ 63, name ≤ 253). One trailing dot is removed.
//! 4. The ASCII result is checked for an IPv4 literal written the way `inet_aton` and the WHATWG URL parser
//!    accept it — 1 to 4 dot-separated numbers, each decimal, octal (`0` prefix) or hex (`0x` prefix), the last
//!    one filling the remaining bytes: `127.1`, `0x7f.1`, `0177.0.0.1`, `2130706433` all are 127.0.0.1 — and
//!    returns [`Host::Ip`] for it. Because this runs after IDNA, full-width digits and ideographic dots
//!    (`１２７。０。０。１`) are caught too. A name whose last label is numeric but which is not a valid IPv4
//!    literal (`1.2.3.256`, `foo.123`, `08`) is rejected, as the URL standard does: no resolver treats it as
//!    a normal name consistently.
//!
//! The result for a name is the punycode (ASCII) form, so a look-alike Unicode name never equals the ASCII
//! name it imitates (`pаypal.com` with a Cyrillic `а` becomes `xn--pypal-4ve.com`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};

/// A normalised destination host.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    /// An IP literal (IPv4-mapped IPv6 is stored as IPv4).
    Ip(IpAddr),
    /// A DNS name: lower-case ASCII (punycode for international names), no trailing dot.
    Name(String),
}

impl Host {
    /// The form to put in front of `:port` (IPv6 in brackets).
    pub fn with_port(&self, port: u16) -> String {
        match self {
            Host::Ip(IpAddr::V6(a)) => format!("[{a}]:{port}"),
            other => format!("{other}:{port}"),
        }
    }

    /// The IP address, for an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::Ip(a) => Some(*a),
            Host::Name(_) => None,
        }
    }
}

impl fmt::Display for Host {
    /// IP literals unbracketed, names in their ASCII form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(a) => write!(f, "{a}"),
            Host::Name(n) => f.write_str(n),
        }
    }
}

/// Why a host was rejected; `reason` is a human sentence (no trailing period) naming the problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a valid host: {reason}")]
pub struct HostError {
    /// The input (truncated to 256 characters).
    pub input: String,
    pub reason: String,
}

fn err(input: &str, reason: impl Into<String>) -> HostError {
    let input: String = input.chars().take(256).collect();
    HostError { input, reason: reason.into() }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// ASCII characters (besides letters, digits, `-`, `.`) a host name may not contain; `_` is allowed because
/// real host names (e.g. in corporate DNS) use it. Space and control characters are denied as "glyphless".
const DENY: AsciiDenyList = AsciiDenyList::new(true, "!\"#$%&'()*+,/:;<=>?@[\\]^`{|}~");

/// Normalises a host; see the [module documentation](self).
pub fn normalize_host(input: &str) -> Result<Host, HostError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(err(input, "it is empty"));
    }
    if s.chars().any(char::is_whitespace) {
        return Err(err(input, "it contains whitespace"));
    }
    if s.contains("://") {
        return Err(err(input, "give only the host name, without a scheme such as smtp://"));
    }
    if s.contains('/') {
        return Err(err(input, "give only the host name, without a path"));
    }
    if s.contains('@') {
        return Err(err(input, "give only the host name, without a user name"));
    }
    if let Some(inner) = s.strip_prefix('[') {
        let Some(inner) = inner.strip_suffix(']') else {
            return Err(err(input, "a bracketed IPv6 address must end with ']' and carry no port"));
        };
        return match inner.parse::<Ipv6Addr>() {
            Ok(a) => Ok(Host::Ip(canonical(IpAddr::V6(a)))),
            Err(_) if inner.contains('%') => Err(err(input, "IPv6 zone ids are not supported")),
            Err(_) => Err(err(input, "the text between the brackets is not an IPv6 address")),
        };
    }
    if s.contains(':') {
        return match s.parse::<Ipv6Addr>() {
            Ok(a) => Ok(Host::Ip(canonical(IpAddr::V6(a)))),
            Err(_) if s.contains('%') => Err(err(input, "IPv6 zone ids are not supported")),
            Err(_) if s.matches(':').count() == 1 => {
                Err(err(input, "give the host without a port (the port is a separate setting)"))
            }
            Err(_) => Err(err(input, "it contains ':' but is not an IPv6 address")),
        };
    }

    let ascii = Uts46::new()
        .to_ascii(s.as_bytes(), DENY, Hyphens::CheckFirstLast, DnsLength::VerifyAllowRootDot)
        .map_err(|_| {
            err(
                input,
                "not a valid host name after IDNA processing (allowed: letters, digits, '-', '_' and '.'; \
                 labels 1-63 characters, not starting or ending with '-'; at most 253 characters)",
            )
        })?;
    let name = ascii.strip_suffix('.').unwrap_or(&ascii);
    if name.is_empty() {
        return Err(err(input, "it is empty"));
    }
    if name.split('.').any(str::is_empty) {
        return Err(err(input, "it contains an empty label (two dots in a row)"));
    }

    if ends_in_a_number(name) {
        return match parse_ipv4_lenient(name) {
            Some(a) => Ok(Host::Ip(IpAddr::V4(a))),
            None => Err(err(
                input,
                "its last label is a number but the whole is not a valid IPv4 address (each part must be \
                 0-255, the last one filling the remaining bytes)",
            )),
        };
    }
    Ok(Host::Name(name.to_string()))
}

/// WHATWG "ends in a number": the last label is all decimal digits, or `0x`/`0X` followed by hex digits.
fn ends_in_a_number(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or("");
    if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    parse_number(last).is_some()
}

/// One part of a lenient IPv4 literal: decimal, `0`-prefixed octal, or `0x`-prefixed hex (`0x` alone is 0).
/// `None` if it is not a number or exceeds u32.
fn parse_number(part: &str) -> Option<u32> {
    if part.is_empty() {
        return None;
    }
    let (digits, radix) = if let Some(h) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
        (h, 16)
    } else if part.len() > 1 && part.starts_with('0') {
        (&part[1..], 8)
    } else {
        (part, 10)
    };
    if digits.is_empty() {
        return Some(0);
    }
    if !digits.bytes().all(|b| (b as char).is_digit(radix)) {
        return None;
    }
    // Leading zeros cannot overflow the check: strip them before the length-limited parse.
    let trimmed = digits.trim_start_matches('0');
    if trimmed.is_empty() {
        return Some(0);
    }
    u32::from_str_radix(trimmed, radix).ok()
}

/// inet_aton / WHATWG IPv4 parsing: `a`, `a.b`, `a.b.c`, `a.b.c.d`; every part but the last is one byte, the
/// last fills the remaining bytes.
fn parse_ipv4_lenient(name: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = name.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let nums: Vec<u32> = parts.iter().map(|p| parse_number(p)).collect::<Option<_>>()?;
    let (last, init) = nums.split_last()?;
    if init.iter().any(|&n| n > 255) {
        return None;
    }
    let rest_bits = 8 * (4 - init.len() as u32);
    if rest_bits < 32 && u64::from(*last) >= 1u64 << rest_bits {
        return None;
    }
    let mut v: u32 = 0;
    for (i, &n) in init.iter().enumerate() {
        v |= n << (24 - 8 * i as u32);
    }
    Some(Ipv4Addr::from(v | last))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Host {
        Host::Ip(s.parse().unwrap())
    }
    fn name(s: &str) -> Host {
        Host::Name(s.into())
    }
    fn n(s: &str) -> Host {
        normalize_host(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn names_are_lowercased_and_lose_one_trailing_dot() {
        assert_eq!(n("SMTP.Office365.COM"), name("smtp.office365.com"));
        assert_eq!(n("smtp.example.com."), name("smtp.example.com"));
        assert_eq!(n("  mail.example.org  "), name("mail.example.org"));
        assert_eq!(n("relay_1.corp.example"), name("relay_1.corp.example"));
        assert_eq!(n("localhost"), name("localhost"));
        assert_eq!(n("xn--bcher-kva.example"), name("xn--bcher-kva.example"));
    }

    #[test]
    fn idn_becomes_punycode_and_homographs_differ() {
        assert_eq!(n("Bücher.example"), name("xn--bcher-kva.example"));
        assert_eq!(n("BÜCHER.example"), name("xn--bcher-kva.example"));
        // Cyrillic 'а' (U+0430) instead of Latin 'a'
        let fake = n("p\u{0430}ypal.com");
        assert_ne!(fake, name("paypal.com"));
        assert!(matches!(&fake, Host::Name(s) if s.starts_with("xn--")), "{fake:?}");
        // full-width letters and ideographic full stop fold to ASCII
        assert_eq!(n("ｅｘａｍｐｌｅ。com"), name("example.com"));
    }

    #[test]
    fn ip_literals_in_every_resolver_form() {
        for s in [
            "127.0.0.1",
            "127.1",
            "127.0.1",
            "0x7f.1",
            "0X7F.0.0.1",
            "0177.0.0.1",
            "0177.1",
            "2130706433",
            "0x7f000001",
            "017700000001",
            "127.0.0.1.",
            "0x7f.0x0.0x0.0x1",
            "１２７。０。０。１",
            "127.000.000.001",
        ] {
            assert_eq!(n(s), ip("127.0.0.1"), "{s:?}");
        }
        assert_eq!(n("0"), ip("0.0.0.0"));
        assert_eq!(n("0x"), ip("0.0.0.0"));
        assert_eq!(n("169.254.43518"), ip("169.254.169.254"));
        assert_eq!(n("0xa9fea9fe"), ip("169.254.169.254"));
        assert_eq!(n("1.2.3"), ip("1.2.0.3"));
        assert_eq!(n("255.255.255.255"), ip("255.255.255.255"));
        assert_eq!(n("4294967295"), ip("255.255.255.255"));
    }

    #[test]
    fn ipv6_literals_bracketed_or_not_and_mapped_forms() {
        assert_eq!(n("[::1]"), ip("::1"));
        assert_eq!(n("::1"), ip("::1"));
        assert_eq!(n("[2001:DB8::25]"), ip("2001:db8::25"));
        assert_eq!(n("[::ffff:127.0.0.1]"), ip("127.0.0.1"));
        assert_eq!(n("::ffff:7f00:1"), ip("127.0.0.1"));
        assert_eq!(n("[fd00:ec2::254]"), ip("fd00:ec2::254"));
    }

    #[test]
    fn rejects_invalid_hosts_with_reasons() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("   ", "empty"),
            ("smtp example.com", "whitespace"),
            ("smtp://smtp.example.com", "scheme"),
            ("smtp.example.com/x", "path"),
            ("user@smtp.example.com", "user"),
            ("smtp.example.com:587", "port"),
            ("[::1]:25", "bracket"),
            ("[::1", "bracket"),
            ("[nope]", "IPv6"),
            ("fe80::1%eth0", "zone"),
            ("[fe80::1%25eth0]", "zone"),
            ("a:b:c", "IPv6"),
            ("1.2.3.256", "IPv4"),
            ("256.1.2.3", "IPv4"),
            ("1.2.3.4.5", "IPv4"),
            ("4294967296", "IPv4"),
            ("08", "IPv4"),
            ("0x1g.1", "IPv4"),
            ("foo.123", "IPv4"),
            ("foo.0x10", "IPv4"),
            ("a..b", "IDNA"),
            ("..", "IDNA"),
            (".", "IDNA"),
            ("example.com..", "IDNA"),
            ("-bad.example", "IDNA"),
            ("bad-.example", "IDNA"),
            ("semi;colon.example", "IDNA"),
            ("nul\0.example", "IDNA"),
            ("xn--zz.example", "IDNA"),
        ];
        for (input, hint) in cases {
            match normalize_host(input) {
                Ok(h) => panic!("{input:?} must be rejected, got {h:?}"),
                Err(e) => {
                    let text = e.to_string();
                    let ok = match *hint {
                        "IDNA" => text.contains("IDNA") || text.contains("empty label"),
                        h => text.contains(h),
                    };
                    assert!(ok, "{input:?}: reason {text:?} should mention {hint:?}");
                }
            }
        }
        let long_label = format!("{}.example", "a".repeat(64));
        assert!(normalize_host(&long_label).is_err());
        let long_name = format!("{}.example", ["abcdefghij"; 25].join("."));
        assert!(long_name.len() > 253);
        assert!(normalize_host(&long_name).is_err());
        assert!(normalize_host(&format!("{}.example", "a".repeat(63))).is_ok());
    }

    #[test]
    fn last_label_rule_only_applies_to_numeric_last_labels() {
        // numeric earlier labels are fine in names
        assert_eq!(n("123.example.com"), name("123.example.com"));
        assert_eq!(n("0x7f.example"), name("0x7f.example"));
        assert_eq!(n("1e100.net"), name("1e100.net"));
        assert_eq!(n("example.0xg"), name("example.0xg"));
    }

    #[test]
    fn display_and_with_port() {
        assert_eq!(n("[::1]").with_port(25), "[::1]:25");
        assert_eq!(n("127.1").with_port(25), "127.0.0.1:25");
        assert_eq!(n("Smtp.Example.com").with_port(587), "smtp.example.com:587");
        assert_eq!(n("::1").to_string(), "::1");
        assert_eq!(n("127.1").ip(), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(n("a.example").ip(), None);
    }
}
