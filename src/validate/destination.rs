//! Destination policy: the SMTP server and the token endpoint, checked against the allowed ports and the
//! denied addresses before anything is resolved or dialled (docs/security.md, "No scanning").

use crate::api::SmtpSettingsSpec;
use crate::engine::Reason;
use crate::policy::{self, Host};

use super::{Invalid, SecurityPolicy};

/// A destination that passed the policy: canonical host and port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    pub host: Host,
    pub port: u16,
}

/// The SMTP server of the spec.
pub(super) fn smtp(spec: &SmtpSettingsSpec, policy: &SecurityPolicy) -> Result<Destination, Invalid> {
    let port = u16::try_from(spec.port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| Invalid::new(Reason::InvalidSpec, format!("port {} is outside 1-65535", spec.port)))?;
    if !policy.allowed_ports.is_empty() && !policy.allowed_ports.contains(&port) {
        return Err(Invalid::new(
            Reason::PortNotAllowed,
            format!(
                "port {port} is not in the operator's allowed SMTP ports ({}); use one of them or ask the \
                 cluster admin to extend --allowed-ports",
                join_ports(&policy.allowed_ports)
            ),
        ));
    }
    let host =
        policy::normalize_host(&spec.server).map_err(|e| Invalid::new(Reason::InvalidSpec, format!("server: {e}")))?;
    refuse_denied(&host, &format!("server {:?}", spec.server), policy)?;
    Ok(Destination { host, port })
}

/// The token endpoint's host and port (`https` only).
pub(super) fn token(token_url: &str, policy: &SecurityPolicy) -> Result<Destination, Invalid> {
    let url = url::Url::parse(token_url).map_err(|e| {
        Invalid::new(Reason::InvalidSpec, format!("auth.oauth2.tokenUrl {token_url:?} is not a URL: {e}"))
    })?;
    if url.scheme() != "https" {
        return Err(Invalid::new(Reason::InvalidSpec, "auth.oauth2.tokenUrl must be an https:// URL"));
    }
    let port = url.port_or_known_default().unwrap_or(443);
    if !policy.allowed_token_ports.is_empty() && !policy.allowed_token_ports.contains(&port) {
        return Err(Invalid::new(
            Reason::PortNotAllowed,
            format!(
                "tokenUrl port {port} is not in the operator's allowed token ports ({}); ask the cluster admin to \
                 extend --allowed-token-ports",
                join_ports(&policy.allowed_token_ports)
            ),
        ));
    }
    let host = policy::normalize_host(url.host_str().unwrap_or_default())
        .map_err(|e| Invalid::new(Reason::InvalidSpec, format!("auth.oauth2.tokenUrl host: {e}")))?;
    refuse_denied(&host, "tokenUrl host", policy)?;
    Ok(Destination { host, port })
}

/// An IP literal in a denied range (in any form, embedded IPv4 included) is refused without DNS.
fn refuse_denied(host: &Host, what: &str, policy: &SecurityPolicy) -> Result<(), Invalid> {
    let Some(ip) = host.ip().filter(|ip| policy::is_denied(&policy.denied, *ip)) else {
        return Ok(());
    };
    // name the IPv4 address when only the address carried makes it denied (not for `::1`, itself denied)
    let denied_as_v6 = policy.denied.iter().any(|n| match n.addr {
        std::net::IpAddr::V6(a) => a.to_ipv4_mapped().is_none() && n.contains(ip),
        std::net::IpAddr::V4(_) => false,
    });
    let carried = match ip {
        std::net::IpAddr::V6(_) if denied_as_v6 => String::new(),
        std::net::IpAddr::V6(v6) => policy::embedded_ipv4(v6)
            .into_iter()
            .find(|v4| policy::is_denied(&policy.denied, (*v4).into()))
            .map(|v4| format!(" (it carries the IPv4 address {v4})"))
            .unwrap_or_default(),
        std::net::IpAddr::V4(_) => String::new(),
    };
    Err(Invalid::new(
        Reason::DestinationNotAllowed,
        format!("{what} is the address {ip}{carried}, which the operator may not connect to (--denied-cidrs)"),
    ))
}

fn join_ports(ports: &[u16]) -> String {
    ports.iter().map(u16::to_string).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(server: &str, port: i32) -> SmtpSettingsSpec {
        serde_yaml::from_str(&format!("server: '{server}'\nport: {port}\nfrom: a@example.com\n")).unwrap()
    }

    #[test]
    fn smtp_destination_table() {
        let policy =
            SecurityPolicy { allowed_ports: vec![25, 587], denied: policy::default_denied(), ..Default::default() };
        let cases: &[(&str, i32, Result<&str, Reason>)] = &[
            ("smtp.example.com", 587, Ok("smtp.example.com:587")),
            ("SMTP.Example.com.", 25, Ok("smtp.example.com:25")),
            ("smtp.bücher.example", 587, Ok("smtp.xn--bcher-kva.example:587")),
            ("192.0.2.10", 25, Ok("192.0.2.10:25")),
            ("smtp.example.com", 2526, Err(Reason::PortNotAllowed)),
            ("smtp.example.com", 0, Err(Reason::InvalidSpec)),
            ("smtp.example.com", 70000, Err(Reason::InvalidSpec)),
            ("bad host", 587, Err(Reason::InvalidSpec)),
            ("127.0.0.1", 587, Err(Reason::DestinationNotAllowed)),
            ("0x7f.1", 587, Err(Reason::DestinationNotAllowed)),
            ("2130706433", 587, Err(Reason::DestinationNotAllowed)),
            ("127.1", 587, Err(Reason::DestinationNotAllowed)),
            ("[::ffff:127.0.0.1]", 587, Err(Reason::DestinationNotAllowed)),
            ("169.254.169.254", 587, Err(Reason::DestinationNotAllowed)),
            ("::1", 587, Err(Reason::DestinationNotAllowed)),
            // IPv4 embedded in IPv6: NAT64, 6to4, Teredo, IPv4-compatible
            ("64:ff9b::127.0.0.1", 587, Err(Reason::DestinationNotAllowed)),
            ("2002:7f00:1::1", 587, Err(Reason::DestinationNotAllowed)),
            ("2001:0:4136:e378:8000:63bf:80ff:fffe", 587, Err(Reason::DestinationNotAllowed)),
            ("::127.0.0.1", 587, Err(Reason::DestinationNotAllowed)),
            ("64:ff9b::192.0.2.10", 587, Ok("[64:ff9b::c000:20a]:587")),
        ];
        for (server, port, want) in cases {
            let got = smtp(&spec(server, *port), &policy).map(|d| d.host.with_port(d.port)).map_err(|e| e.reason);
            assert_eq!(got.as_deref().map_err(|r| *r), want.as_ref().map(|s| *s).map_err(|r| *r), "{server}:{port}");
        }
        let e = smtp(&spec("64:ff9b::127.0.0.1", 587), &policy).unwrap_err();
        assert!(e.message.contains("64:ff9b::7f00:1 (it carries the IPv4 address 127.0.0.1)"), "{}", e.message);
        let e = smtp(&spec("::1", 587), &policy).unwrap_err();
        assert!(e.message.contains("the address ::1, which"), "{}", e.message);
    }

    #[test]
    fn token_destination_table() {
        let policy =
            SecurityPolicy { allowed_token_ports: vec![443], denied: policy::default_denied(), ..Default::default() };
        let cases: &[(&str, Result<&str, Reason>)] = &[
            ("https://login.example.com/t", Ok("login.example.com:443")),
            ("https://login.example.com:443/t", Ok("login.example.com:443")),
            ("https://login.example.com:8443/t", Err(Reason::PortNotAllowed)),
            ("http://login.example.com/t", Err(Reason::InvalidSpec)),
            ("not a url", Err(Reason::InvalidSpec)),
            ("https://127.0.0.1/t", Err(Reason::DestinationNotAllowed)),
            ("https://[64:ff9b::a9fe:a9fe]/t", Err(Reason::DestinationNotAllowed)),
        ];
        for (url, want) in cases {
            let got = token(url, &policy).map(|d| d.host.with_port(d.port)).map_err(|e| e.reason);
            assert_eq!(got.as_deref().map_err(|r| *r), want.as_ref().map(|s| *s).map_err(|r| *r), "{url}");
        }
    }
}
