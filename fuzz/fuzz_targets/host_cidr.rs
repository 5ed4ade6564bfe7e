//! Host normalisation and CIDR matching: normalisation is idempotent, agrees with std on plain IP literals,
//! and the denylist decision does not depend on how an address is written.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use smtp_operator::engine::IpNet;
use smtp_operator::policy::{Host, default_denied, is_denied, normalize_host};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let denied = default_denied();
    match normalize_host(&text) {
        Err(e) => assert!(!e.reason.is_empty()),
        Ok(Host::Name(name)) => {
            assert!(name.is_ascii() && !name.is_empty() && !name.ends_with('.'), "{name:?}");
            assert_eq!(name, name.to_ascii_lowercase());
            assert!(text.trim().parse::<IpAddr>().is_err(), "{text:?} is an IP literal but became a name");
            assert_eq!(normalize_host(&name), Ok(Host::Name(name.clone())), "not idempotent");
        }
        Ok(Host::Ip(ip)) => {
            if let IpAddr::V6(v6) = ip {
                assert!(v6.to_ipv4_mapped().is_none(), "mapped form not canonicalised: {v6}");
            }
            if let Ok(std_ip) = text.trim().parse::<IpAddr>() {
                assert_eq!(std_ip.to_canonical(), ip);
            }
            assert_eq!(normalize_host(&ip.to_string()), Ok(Host::Ip(ip)));
            let bracketed = match ip {
                IpAddr::V6(a) => format!("[{a}]"),
                IpAddr::V4(a) => format!("[::ffff:{a}]"),
            };
            assert_eq!(normalize_host(&bracketed), Ok(Host::Ip(ip)));
            // mapped or not, the decision is the same
            if let IpAddr::V4(v4) = ip {
                assert_eq!(is_denied(&denied, ip), is_denied(&denied, IpAddr::V6(v4.to_ipv6_mapped())));
            }
        }
    }
    // Any 16 bytes as an address: each network contains itself, and /0 contains everything of its family.
    if data.len() >= 17 {
        let mut octets = [0u8; 16];
        octets.copy_from_slice(&data[..16]);
        let addr = IpAddr::from(octets);
        let prefix = data[16] % 129;
        let net = IpNet { addr, prefix };
        // Known property of IpNet::contains: an IPv4-mapped query is compared as IPv4, so a v6 network with a
        // prefix < 96 (which a CIDR with zero host bits can never be for a mapped address) does not contain
        // its own mapped base address. Everything else must contain itself.
        let mapped_short = matches!(addr, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some()) && prefix < 96;
        assert_eq!(net.contains(addr), !mapped_short, "{addr}/{prefix}");
        assert!(IpNet { addr: "::".parse().unwrap(), prefix: 0 }.contains(addr) || addr.to_canonical().is_ipv4());
        let _ = is_denied(&denied, addr);
    }
});
