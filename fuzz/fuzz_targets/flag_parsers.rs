//! The flag parsers: CIDRs (`--denied-cidrs`), port lists (`--allowed-ports`), rates (`--*-check-rate`).
//! Whatever parses prints back to text that parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtp_operator::engine::IpNet;
use smtp_operator::policy::{parse_cidr_list, parse_port_list};
use smtp_operator::ratelimit::Rate;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    if let Ok(net) = text.parse::<IpNet>() {
        assert_eq!(net.to_string().parse::<IpNet>(), Ok(net));
        assert_eq!(net.network(), net);
        assert!(net.contains(net.addr));
    }
    if let Ok(list) = parse_cidr_list(&text) {
        let printed: Vec<String> = list.iter().map(|n| n.to_string()).collect();
        assert_eq!(parse_cidr_list(&printed.join(",")), Ok(list));
    }
    if let Ok(ports) = parse_port_list(&text) {
        let again = parse_port_list(&ports.to_string()).expect("printed list parses");
        assert_eq!(again, ports);
        for r in ports.ranges() {
            assert!(*r.start() >= 1 && r.start() <= r.end());
            assert!(ports.contains(*r.start()) && ports.contains(*r.end()));
        }
        assert!(!ports.contains(0));
    }
    if let Ok(rate) = text.parse::<Rate>() {
        assert_eq!(rate.to_string().parse::<Rate>(), Ok(rate));
        let _ = rate.quota();
    }
});
