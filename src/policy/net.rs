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

/// An IP network (address + prefix length).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpNet {
    /// True when `ip` lies inside this network. An IPv6 address that carries an IPv4 address (see
    /// [`embedded_ipv4`]) lies inside an IPv4 network when the IPv4 address it carries does, so no IPv6 form
    /// slips past an IPv4 rule; an IPv4-mapped network (`::ffff:a.b.c.d/n`, n ≥ 96) is compared as the IPv4
    /// network it carries.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (net, prefix) = match self.addr {
            IpAddr::V6(v6) if self.prefix >= 96 && v6.to_ipv4_mapped().is_some() => {
                (IpAddr::V4(v6.to_ipv4_mapped().expect("checked")), self.prefix - 96)
            }
            a => (a, self.prefix),
        };
        match (net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => v4_in(n, prefix, a),
            (IpAddr::V4(n), IpAddr::V6(a)) => embedded_ipv4(a).into_iter().any(|e| v4_in(n, prefix, e)),
            (IpAddr::V6(n), IpAddr::V6(a)) => mask_v6(n, prefix) == mask_v6(a, prefix),
            (IpAddr::V6(_), IpAddr::V4(_)) => false,
        }
    }
}

fn v4_in(net: Ipv4Addr, prefix: u8, a: Ipv4Addr) -> bool {
    mask_v4(net, prefix) == mask_v4(a, prefix)
}

/// The IPv4 addresses an IPv6 address carries, for the address forms that reach an IPv4 host:
///
/// | form | range | IPv4 address |
/// |---|---|---|
/// | IPv4-mapped | `::ffff:0:0/96` | the last 32 bits |
/// | IPv4-compatible (deprecated) | `::/96` | the last 32 bits |
/// | NAT64 well-known prefix (RFC 6052) | `64:ff9b::/96` | the last 32 bits |
/// | NAT64 local-use prefix (RFC 8215) | `64:ff9b:1::/48` | RFC 6052's /48 position (bits 48–64 and 72–88) and its /96 position (the last 32 bits), each unless all zero |
/// | 6to4 (RFC 3056) | `2002::/16` | bits 16–48 |
/// | Teredo (RFC 4380) | `2001::/32` | the client: the last 32 bits XOR `0xffffffff` |
///
/// Empty for every other address. Used by [`IpNet::contains`], so `--denied-cidrs` (the defaults included)
/// catches a denied IPv4 address in any of these forms.
pub fn embedded_ipv4(a: Ipv6Addr) -> Vec<Ipv4Addr> {
    let o = a.octets();
    let v4 = |i: [usize; 4]| Ipv4Addr::new(o[i[0]], o[i[1]], o[i[2]], o[i[3]]);
    let last = v4([12, 13, 14, 15]);
    let seg = a.segments();
    match seg {
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0, 0, _, _] => vec![last],
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => vec![last],
        // the /48 block itself (RFC 6052 /48 format, skipping the u octet) and a /96 prefix inside it; an
        // all-zero position is padding of the other format, not an address
        [0x64, 0xff9b, 1, ..] => [v4([6, 7, 9, 10]), last].into_iter().filter(|a| !a.is_unspecified()).collect(),
        [0x2002, ..] => vec![v4([2, 3, 4, 5])],
        [0x2001, 0, ..] => vec![Ipv4Addr::from(!u32::from(last))],
        _ => vec![],
    }
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
            // denied IPv4 addresses embedded in IPv6 forms
            "::2",
            "::127.0.0.1",
            "::169.254.169.254",
            "64:ff9b::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1:7f00:0:100::",
            "64:ff9b:1::7f00:1",
            "2002:7f00:1::",
            "2002:a9fe:a9fe:1234::1",
            "2001:0:4136:e378:8000:63bf:80ff:fffe",
            "2001::ffff:fffe",
        ] {
            assert!(is_denied(&d, ip(bad)), "{bad} must be denied by default");
        }
        for ok in [
            "192.0.2.10",
            "8.8.8.8",
            "2001:db8::25",
            "fd00:ec2::253",
            "100.100.100.201",
            "::ffff:192.0.2.10",
            "fec0::1",
            "128.0.0.1",
            "1.0.0.0",
            "::192.0.2.10",
            "64:ff9b::8.8.8.8",
            "2002:c000:20a::1",
            "2001:0:4136:e378:8000:63bf:3ffd:f5f5",
            "2001:db8::7f00:1",
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

    fn net(s: &str, prefix: u8) -> IpNet {
        IpNet { addr: s.parse().unwrap(), prefix }
    }

    #[test]
    fn ipnet_contains_v4_v6_and_mapped_forms() {
        let lo = net("127.0.0.0", 8);
        assert!(lo.contains("127.0.0.1".parse().unwrap()));
        assert!(lo.contains("127.255.1.2".parse().unwrap()));
        assert!(!lo.contains("128.0.0.1".parse().unwrap()));
        assert!(lo.contains("::ffff:127.0.0.1".parse().unwrap()), "mapped form must not bypass");
        let mapped = net("::ffff:169.254.0.0", 112);
        assert!(mapped.contains("169.254.169.254".parse().unwrap()));
        let ll6 = net("fe80::", 10);
        assert!(ll6.contains("fe80::1".parse().unwrap()));
        assert!(!ll6.contains("2001:db8::1".parse().unwrap()));
        assert!(net("0.0.0.0", 0).contains("8.8.8.8".parse().unwrap()));
        assert!(!net("0.0.0.0", 32).contains("0.0.0.1".parse().unwrap()));
    }

    #[test]
    fn embedded_ipv4_table() {
        let cases: &[(&str, &[&str])] = &[
            ("::ffff:127.0.0.1", &["127.0.0.1"]),
            ("::127.0.0.1", &["127.0.0.1"]),
            ("::1", &["0.0.0.1"]),
            ("64:ff9b::192.0.2.33", &["192.0.2.33"]),
            ("64:ff9b:1:c000:2:2100::", &["192.0.2.33"]),
            ("64:ff9b:1::c000:221", &["192.0.2.33"]),
            ("2002:c000:221::1", &["192.0.2.33"]),
            ("2001:0:4136:e378:8000:63bf:3ffd:f5f5", &["192.2.10.10"]),
            ("2001:db8::1", &[]),
            ("fe80::1", &[]),
            ("64:ff9b:2::1", &[]),
            ("::1:0:0:1", &[]),
        ];
        for (v6, want) in cases {
            let v6: Ipv6Addr = v6.parse().unwrap();
            let want: Vec<Ipv4Addr> = want.iter().map(|w| w.parse().unwrap()).collect();
            assert_eq!(embedded_ipv4(v6), want, "{v6}");
        }
    }

    #[test]
    fn ipv4_rules_catch_embedded_forms_and_v6_rules_stay_v6() {
        let ten = net("10.0.0.0", 8);
        for a in ["64:ff9b::10.1.2.3", "2002:a01:203::", "::10.0.0.1", "2001::f5fe:fdfc"] {
            assert!(ten.contains(a.parse().unwrap()), "{a}");
        }
        assert!(!ten.contains("64:ff9b::11.0.0.1".parse().unwrap()));
        assert!(net("::", 0).contains("::ffff:8.8.8.8".parse().unwrap()), "::/0 holds every IPv6 form");
        assert!(!net("::", 0).contains("8.8.8.8".parse().unwrap()));
        assert!(net("2002::", 16).contains("2002:808:808::1".parse().unwrap()));
    }
}
