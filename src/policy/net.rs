//! Address ranges and ports: the parsers behind `--denied-cidrs`, `--allowed-ports` and
//! `--allowed-token-ports`, and the default denylist.
//!
//! CIDR syntax: `a.b.c.d/n` (n ≤ 32), `v6/n` (n ≤ 128), or a bare address (= a single host, /32 or /128).
//! **Host bits must be zero**: `10.1.2.3/8` is rejected with a hint (`did you mean 10.0.0.0/8?`). A denylist
//! is security configuration; silently masking a typo (the user may have meant `/32`) would deny a different
//! range than the one they wrote, so we fail fast at startup instead. IPv6 zone ids (`fe80::1%eth0`) are
//! rejected. IPv4 parts use strict dotted-decimal (no octal/hex forms) here: this is operator configuration,
//! not untrusted input, and ambiguity is worse than strictness.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::RangeInclusive;
use std::str::FromStr;

use crate::engine::IpNet;

/// Why a CIDR did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("empty CIDR")]
    Empty,
    #[error("{input:?} is not an IP address or CIDR (expected e.g. 10.0.0.0/8 or fd00::/8)")]
    BadAddress { input: String },
    #[error("{input:?}: prefix length must be a number between 0 and {max}")]
    BadPrefix { input: String, max: u8 },
    #[error("{input:?} has host bits set; did you mean {suggestion}?")]
    HostBitsSet { input: String, suggestion: String },
}

fn mask_v4(a: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    let p = u32::from(prefix.min(32));
    let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
    Ipv4Addr::from(u32::from(a) & mask)
}

fn mask_v6(a: Ipv6Addr, prefix: u8) -> Ipv6Addr {
    let p = u32::from(prefix.min(128));
    let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
    Ipv6Addr::from(u128::from(a) & mask)
}

impl IpNet {
    /// The network with host bits cleared.
    pub fn network(&self) -> IpNet {
        let addr = match self.addr {
            IpAddr::V4(a) => IpAddr::V4(mask_v4(a, self.prefix)),
            IpAddr::V6(a) => IpAddr::V6(mask_v6(a, self.prefix)),
        };
        IpNet { addr, prefix: self.prefix }
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for IpNet {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let input = s.trim();
        if input.is_empty() {
            return Err(CidrError::Empty);
        }
        let (addr_part, prefix_part) = match input.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (input, None),
        };
        let bad = || CidrError::BadAddress { input: input.to_string() };
        // `IpAddr::from_str` accepts strict dotted decimal only and no zone ids; that is what we want.
        let addr: IpAddr = addr_part.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_part {
            None => max,
            Some(p) => {
                // Only plain decimal digits: no sign, no whitespace, no leading "+".
                if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(CidrError::BadPrefix { input: input.to_string(), max });
                }
                let n: u8 = p.parse().map_err(|_| CidrError::BadPrefix { input: input.to_string(), max })?;
                if n > max {
                    return Err(CidrError::BadPrefix { input: input.to_string(), max });
                }
                n
            }
        };
        let net = IpNet { addr, prefix };
        let canonical = net.network();
        if canonical != net {
            return Err(CidrError::HostBitsSet { input: input.to_string(), suggestion: canonical.to_string() });
        }
        Ok(net)
    }
}

/// Parses the `--denied-cidrs` value: CIDRs separated by commas (whitespace around entries ignored, empty
/// entries skipped). The word `default` stands for [`default_denied()`], so `default,10.0.0.0/8` extends the
/// defaults. An empty or blank value is an empty list (= nothing denied; e.g. for tests that talk to
/// loopback peers). Duplicates are removed; order is kept.
pub fn parse_cidr_list(s: &str) -> Result<Vec<IpNet>, CidrError> {
    let mut out: Vec<IpNet> = Vec::new();
    let push = |n: IpNet, out: &mut Vec<IpNet>| {
        if !out.contains(&n) {
            out.push(n);
        }
    };
    for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        if entry.eq_ignore_ascii_case("default") {
            for n in default_denied() {
                push(n, &mut out);
            }
        } else {
            push(entry.parse()?, &mut out);
        }
    }
    Ok(out)
}

/// The default of `--denied-cidrs`: loopback, link-local (which holds the cloud metadata endpoint
/// 169.254.169.254), unspecified, the IPv4-mapped forms of these, and the other addresses cloud metadata
/// services use (AWS IPv6 `fd00:ec2::254`, Alibaba `100.100.100.200`, Oracle Cloud Classic `192.0.0.192`).
///
/// [`IpNet::contains`] already compares IPv4-mapped addresses as IPv4, so the mapped entries are belt and
/// braces for any consumer that compares without that normalisation.
pub fn default_denied() -> Vec<IpNet> {
    const DEFAULTS: &[(&str, u8)] = &[
        // loopback
        ("127.0.0.0", 8),
        ("::1", 128),
        ("::ffff:127.0.0.0", 104),
        // link-local, incl. the metadata endpoint 169.254.169.254 (AWS, GCP, Azure, OCI, OpenStack, ...)
        ("169.254.0.0", 16),
        ("fe80::", 10),
        ("::ffff:169.254.0.0", 112),
        // unspecified / "this network" (0.0.0.0 reaches the local host on Linux)
        ("0.0.0.0", 8),
        ("::", 128),
        ("::ffff:0.0.0.0", 104),
        // other cloud metadata endpoints
        ("fd00:ec2::254", 128),  // AWS IMDS over IPv6
        ("100.100.100.200", 32), // Alibaba Cloud metadata
        ("::ffff:100.100.100.200", 128),
        ("192.0.0.192", 32), // Oracle Cloud Classic metadata
        ("::ffff:192.0.0.192", 128),
    ];
    DEFAULTS.iter().map(|(a, p)| IpNet { addr: a.parse().expect("valid built-in address"), prefix: *p }).collect()
}

/// True when `ip` lies in any of `denied`.
pub fn is_denied(denied: &[IpNet], ip: IpAddr) -> bool {
    denied.iter().any(|n| n.contains(ip))
}

/// Why a port list did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PortListError {
    #[error("empty port list: give at least one port (e.g. 25,465,587,2525)")]
    Empty,
    #[error("{entry:?} is not a port: expected a number 1-65535 or a range like 2500-2599")]
    Invalid { entry: String },
    #[error("{entry:?}: port 0 is not a valid destination port")]
    Zero { entry: String },
    #[error("{entry:?}: range start is greater than its end")]
    Reversed { entry: String },
}

/// A set of ports, as given to `--allowed-ports` / `--allowed-token-ports`: a comma-separated list of ports
/// (`25,465,587,2525`); as an extension, inclusive ranges (`2500-2599`). Whitespace around entries is
/// ignored and empty entries are skipped, but the list as a whole must not be empty (an empty list would mean
/// "any port" to [`crate::engine::DialPolicy`], which is never what a typo should produce).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortList {
    ranges: Vec<RangeInclusive<u16>>,
}

impl PortList {
    /// True when `port` is in the list.
    pub fn contains(&self, port: u16) -> bool {
        self.ranges.iter().any(|r| r.contains(&port))
    }

    /// Every port, sorted and deduplicated (for [`crate::engine::DialPolicy::allowed_ports`]).
    pub fn ports(&self) -> Vec<u16> {
        let mut v: Vec<u16> = self.ranges.iter().flat_map(|r| r.clone()).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The ranges as written (single ports are one-element ranges).
    pub fn ranges(&self) -> &[RangeInclusive<u16>] {
        &self.ranges
    }
}

impl fmt::Display for PortList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if r.start() == r.end() {
                write!(f, "{}", r.start())?;
            } else {
                write!(f, "{}-{}", r.start(), r.end())?;
            }
        }
        Ok(())
    }
}

impl FromStr for PortList {
    type Err = PortListError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_port_list(s)
    }
}

fn parse_port(entry: &str, s: &str) -> Result<u16, PortListError> {
    let s = s.trim();
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PortListError::Invalid { entry: entry.to_string() });
    }
    let n: u32 = s.parse().map_err(|_| PortListError::Invalid { entry: entry.to_string() })?;
    match n {
        0 => Err(PortListError::Zero { entry: entry.to_string() }),
        1..=65535 => Ok(n as u16),
        _ => Err(PortListError::Invalid { entry: entry.to_string() }),
    }
}

/// Parses a port list; see [`PortList`].
pub fn parse_port_list(s: &str) -> Result<PortList, PortListError> {
    let mut ranges = Vec::new();
    for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let range = match entry.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (parse_port(entry, a)?, parse_port(entry, b)?);
                if a > b {
                    return Err(PortListError::Reversed { entry: entry.to_string() });
                }
                a..=b
            }
            None => {
                let p = parse_port(entry, entry)?;
                p..=p
            }
        };
        if !ranges.contains(&range) {
            ranges.push(range);
        }
    }
    if ranges.is_empty() {
        return Err(PortListError::Empty);
    }
    Ok(PortList { ranges })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_v4_v6_and_bare_addresses() {
        assert_eq!("10.0.0.0/8".parse::<IpNet>().unwrap(), IpNet { addr: ip("10.0.0.0"), prefix: 8 });
        assert_eq!(" fd00::/8 ".parse::<IpNet>().unwrap(), IpNet { addr: ip("fd00::"), prefix: 8 });
        assert_eq!("192.0.2.7".parse::<IpNet>().unwrap(), IpNet { addr: ip("192.0.2.7"), prefix: 32 });
        assert_eq!("2001:db8::1".parse::<IpNet>().unwrap(), IpNet { addr: ip("2001:db8::1"), prefix: 128 });
        assert_eq!("0.0.0.0/0".parse::<IpNet>().unwrap(), IpNet { addr: ip("0.0.0.0"), prefix: 0 });
        assert_eq!("::/0".parse::<IpNet>().unwrap().prefix, 0);
        assert_eq!(
            "::ffff:127.0.0.0/104".parse::<IpNet>().unwrap(),
            IpNet { addr: ip("::ffff:127.0.0.0"), prefix: 104 }
        );
    }

    #[test]
    fn rejects_host_bits_with_a_suggestion() {
        let e = "10.1.2.3/8".parse::<IpNet>().unwrap_err();
        assert_eq!(e, CidrError::HostBitsSet { input: "10.1.2.3/8".into(), suggestion: "10.0.0.0/8".into() });
        assert!(e.to_string().contains("did you mean 10.0.0.0/8"), "{e}");
        let e = "fe80::1/10".parse::<IpNet>().unwrap_err();
        assert!(e.to_string().contains("fe80::/10"), "{e}");
    }

    #[test]
    fn rejects_garbage_with_clear_errors() {
        for bad in [
            "",
            "  ",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "10.0.0.0/ 8",
            "10.0.0/8",
            "0x7f.0.0.1/32",
            "010.0.0.0/8",
            "fe80::1%eth0/128",
            "example.com/24",
            "10.0.0.0/8/8",
            "10.0.0.0/0008",
            "1.2.3.4/99999999999999999999",
        ] {
            let r = bad.parse::<IpNet>();
            assert!(r.is_err(), "{bad:?} must be rejected, got {r:?}");
        }
        assert_eq!("".parse::<IpNet>().unwrap_err(), CidrError::Empty);
        assert!(matches!("10.0.0.0/33".parse::<IpNet>().unwrap_err(), CidrError::BadPrefix { max: 32, .. }));
        assert!(matches!("::/129".parse::<IpNet>().unwrap_err(), CidrError::BadPrefix { max: 128, .. }));
        assert!(matches!("nope".parse::<IpNet>().unwrap_err(), CidrError::BadAddress { .. }));
    }

    #[test]
    fn display_round_trips() {
        for s in ["10.0.0.0/8", "fe80::/10", "::ffff:169.254.0.0/112", "127.0.0.1/32"] {
            assert_eq!(s.parse::<IpNet>().unwrap().to_string(), s);
        }
        for n in default_denied() {
            assert_eq!(n.to_string().parse::<IpNet>().unwrap(), n);
        }
    }

    #[test]
    fn list_parser_handles_whitespace_empties_default_and_errors() {
        assert_eq!(parse_cidr_list("").unwrap(), vec![]);
        assert_eq!(parse_cidr_list(" , ").unwrap(), vec![]);
        let l = parse_cidr_list(" 10.0.0.0/8 ,, fd00::/8,10.0.0.0/8 ").unwrap();
        assert_eq!(l, vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()]);
        let l = parse_cidr_list("DEFAULT,10.0.0.0/8").unwrap();
        assert_eq!(l.len(), default_denied().len() + 1);
        assert!(is_denied(&l, ip("169.254.169.254")));
        assert!(is_denied(&l, ip("10.9.9.9")));
        let e = parse_cidr_list("10.0.0.0/8, 192.168.1.1/16").unwrap_err();
        assert!(e.to_string().contains("192.168.0.0/16"), "{e}");
    }

    #[test]
    fn default_denylist_covers_loopback_link_local_unspecified_and_metadata() {
        let d = default_denied();
        for bad in [
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "::ffff:127.0.0.1",
            "169.254.169.254",
            "::ffff:169.254.169.254",
            "169.254.0.23",
            "fe80::1",
            "febf:ffff::1",
            "0.0.0.0",
            "0.1.2.3",
            "::",
            "::ffff:0.0.0.0",
            "fd00:ec2::254",
            "100.100.100.200",
            "::ffff:100.100.100.200",
            "192.0.0.192",
        ] {
            assert!(is_denied(&d, ip(bad)), "{bad} must be denied by default");
        }
        for ok in [
            "192.0.2.10",
            "8.8.8.8",
            "2001:db8::25",
            "fd00:ec2::253",
            "100.100.100.201",
            "::2",
            "::ffff:192.0.2.10",
            "fec0::1",
            "128.0.0.1",
            "1.0.0.0",
        ] {
            assert!(!is_denied(&d, ip(ok)), "{ok} must not be denied by default");
        }
        // the explicitly requested entries are present
        for must in [
            "127.0.0.0/8",
            "::1/128",
            "169.254.0.0/16",
            "fe80::/10",
            "0.0.0.0/8",
            "::/128",
            "::ffff:127.0.0.0/104",
            "::ffff:169.254.0.0/112",
            "::ffff:0.0.0.0/104",
            "fd00:ec2::254/128",
        ] {
            assert!(d.contains(&must.parse().unwrap()), "{must} missing");
        }
    }

    #[test]
    fn port_lists() {
        let l = parse_port_list("25,465,587,2525").unwrap();
        assert_eq!(l.ports(), vec![25, 465, 587, 2525]);
        assert!(l.contains(587) && !l.contains(588) && !l.contains(0));
        assert_eq!(l.to_string(), "25,465,587,2525");
        let l: PortList = " 443 , 2500-2502,,443 ".parse().unwrap();
        assert_eq!(l.ports(), vec![443, 2500, 2501, 2502]);
        assert_eq!(l.to_string(), "443,2500-2502");
        assert!(l.contains(2501) && !l.contains(2503));
        assert_eq!(parse_port_list("1-65535").unwrap().ports().len(), 65535);
        assert_eq!(parse_port_list("7-7").unwrap().ports(), vec![7]);
    }

    #[test]
    fn port_list_errors() {
        assert_eq!(parse_port_list("").unwrap_err(), PortListError::Empty);
        assert_eq!(parse_port_list(" , ").unwrap_err(), PortListError::Empty);
        assert_eq!(parse_port_list("25,0").unwrap_err(), PortListError::Zero { entry: "0".into() });
        assert!(matches!(parse_port_list("0-10").unwrap_err(), PortListError::Zero { .. }));
        assert_eq!(parse_port_list("2599-2500").unwrap_err(), PortListError::Reversed { entry: "2599-2500".into() });
        for bad in ["smtp", "65536", "99999999999", "-25", "25-", "+25", "2 5", "25.0", "1-2-3", "0x19", "２５"] {
            assert!(
                matches!(parse_port_list(bad), Err(PortListError::Invalid { .. } | PortListError::Zero { .. })),
                "{bad:?} must be rejected: {:?}",
                parse_port_list(bad)
            );
        }
        let e = parse_port_list("25,smtp").unwrap_err();
        assert!(e.to_string().contains("\"smtp\""), "{e}");
    }
}
