//! The `smtp-operator.io/allowed-servers` annotation: parsing, matching and the CredentialsNotBoundToServer
//! message. Input: `annotation \0 destination-host \0 port-bytes`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtp_operator::policy::{
    AllowedServers, Host, HostPattern, allows, credentials_not_bound_message, normalize_host, parse_allowed_servers,
};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == 0);
    let annotation = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let host_text = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let port_bytes = parts.next().unwrap_or_default();
    let port = u16::from_le_bytes([port_bytes.first().copied().unwrap_or(25), port_bytes.get(1).copied().unwrap_or(0)]);

    let (servers, errors) = parse_allowed_servers(&annotation);
    for e in &errors {
        assert!(!e.reason.is_empty());
        let _ = e.to_string();
    }
    // Every valid entry prints back to text that parses to the same entry.
    for entry in &servers.entries {
        let text = entry.to_string();
        let (again, errs) = parse_allowed_servers(&text);
        assert!(errs.is_empty(), "{text:?} printed from {entry:?} does not re-parse: {errs:?}");
        assert_eq!(again.entries, vec![entry.clone()], "round trip of {text:?}");
        if let HostPattern::Subdomains(d) = &entry.host {
            // the apex never matches
            assert!(!entry.matches(&Host::Name(d.clone()), port));
            let sub = Host::Name(format!("x.{d}"));
            assert_eq!(entry.matches(&sub, port), entry.port.is_none_or(|p| p == port));
        }
    }
    // Parsing the whole printed list gives the same set.
    let printed: Vec<String> = servers.entries.iter().map(|e| e.to_string()).collect();
    assert_eq!(parse_allowed_servers(&printed.join("\n")).0, servers);

    let Ok(host) = normalize_host(&host_text) else { return };
    let allowed = allows(&servers, &host, port);
    assert_eq!(allowed, servers.entries.iter().any(|e| e.matches(&host, port)));
    assert!(!allows(&AllowedServers::default(), &host, port));
    if port == 0 {
        return;
    }
    for existing in [None, Some(annotation.as_ref())] {
        let msg = credentials_not_bound_message("s", "ns", &host, port, existing);
        assert!(!msg.chars().any(char::is_control), "control character in {msg:?}");
        // When the message carries the full command, its value really allows the destination.
        if let Some((_, value)) = msg.rsplit_once("smtp-operator.io/allowed-servers=") {
            let value = value.strip_suffix('\'').unwrap_or(value).replace(r"'\''", "'");
            let (suggested, _) = parse_allowed_servers(&value);
            assert!(allows(&suggested, &host, port), "suggestion {value:?} does not allow {host}:{port}");
        }
    }
});
