//! Resolve → dial policy → TCP connect. The policy is applied to the resolved addresses, and the connection
//! goes to exactly one of the checked addresses (no second resolution), so DNS cannot redirect a check past
//! the policy.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpStream;

use super::{DialPolicy, Failure, Reason, Step};

fn fail(step: Step, reason: Reason, message: String) -> Failure {
    Failure { step, reason, message, reply: None }
}

/// The host as given, without the brackets of an IPv6 literal (`[::1]` → `::1`).
pub(crate) fn bare_host(server: &str) -> &str {
    let s = server.trim();
    s.strip_prefix('[').and_then(|s| s.strip_suffix(']')).unwrap_or(s)
}

/// Refuses a port outside `allowed_ports` (before any DNS or connection).
pub(crate) fn check_port(policy: &DialPolicy, port: u16) -> Result<(), Failure> {
    if policy.allowed_ports.is_empty() || policy.allowed_ports.contains(&port) {
        return Ok(());
    }
    let allowed: Vec<String> = policy.allowed_ports.iter().map(u16::to_string).collect();
    Err(fail(
        Step::Policy,
        Reason::PortNotAllowed,
        format!(
            "port {port} is not allowed by the operator (allowed: {}); use one of those ports or ask the operator \
             administrator to add it to --allowed-ports",
            allowed.join(", ")
        ),
    ))
}

/// Resolves `host:port`, bounded by `timeout`.
pub(crate) async fn resolve(host: &str, port: u16, timeout: Duration) -> Result<Vec<SocketAddr>, Failure> {
    let host = bare_host(host);
    // an IP literal needs no lookup (and must not be looked up)
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    match tokio::time::timeout(timeout, tokio::net::lookup_host((host, port))).await {
        Err(_) => Err(fail(
            Step::Resolve,
            Reason::DnsLookupFailed,
            format!(
                "looking up {host} did not finish within {}; check the host name and the cluster's DNS",
                crate::duration::format(timeout)
            ),
        )),
        Ok(Err(e)) => Err(fail(
            Step::Resolve,
            Reason::DnsLookupFailed,
            format!("could not resolve {host}: {e}; check spec.server"),
        )),
        Ok(Ok(addrs)) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            if addrs.is_empty() {
                Err(fail(Step::Resolve, Reason::DnsLookupFailed, format!("{host} has no addresses; check spec.server")))
            } else {
                Ok(addrs)
            }
        }
    }
}

/// Refuses when ANY resolved address lies in a denied range (one bad address is enough: the resolver's
/// order is not under our control).
pub(crate) fn check_addresses(policy: &DialPolicy, host: &str, addrs: &[SocketAddr]) -> Result<(), Failure> {
    for a in addrs {
        if let Some(net) = policy.denied.iter().find(|n| n.contains(a.ip())) {
            return Err(fail(
                Step::Policy,
                Reason::DestinationNotAllowed,
                format!(
                    "{} resolves to {}, which is in the denied range {}/{}; the operator does not connect there \
                     (see --denied-cidrs)",
                    bare_host(host),
                    a.ip(),
                    net.addr,
                    net.prefix
                ),
            ));
        }
    }
    Ok(())
}

/// Connects to the checked addresses in order; each attempt is bounded by `timeout`. Returns the stream and the
/// address dialled, or the failure of the last attempt.
pub(crate) async fn connect(addrs: &[SocketAddr], timeout: Duration) -> Result<(TcpStream, SocketAddr), Failure> {
    let mut last: Option<Failure> = None;
    for &addr in addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => {
                let _ = tcp.set_nodelay(true);
                return Ok((tcp, addr));
            }
            Ok(Err(e)) => last = Some(connect_error(addr, &e, timeout)),
            Err(_) => {
                last = Some(connect_error(addr, &io::Error::from(io::ErrorKind::TimedOut), timeout));
            }
        }
    }
    Err(last.unwrap_or_else(|| fail(Step::Connect, Reason::ConnectionFailed, "no address to connect to".into())))
}

fn connect_error(addr: SocketAddr, e: &io::Error, timeout: Duration) -> Failure {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => fail(
            Step::Connect,
            Reason::ConnectionRefused,
            format!("{addr} refused the connection; check spec.server and spec.port and that the server is running"),
        ),
        io::ErrorKind::TimedOut => fail(
            Step::Connect,
            Reason::ConnectionTimedOut,
            format!(
                "connecting to {addr} did not finish within {}; check spec.port and that a firewall lets the \
                 operator reach the server",
                crate::duration::format(timeout)
            ),
        ),
        _ => fail(
            Step::Connect,
            Reason::ConnectionFailed,
            format!("connecting to {addr} failed: {e}; check spec.server and the network path"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::IpNet;

    #[test]
    fn port_policy() {
        let p = DialPolicy { allowed_ports: vec![25, 587], denied: vec![] };
        assert!(check_port(&p, 587).is_ok());
        let f = check_port(&p, 2526).unwrap_err();
        assert_eq!((f.step, f.reason), (Step::Policy, Reason::PortNotAllowed));
        assert!(f.message.contains("25, 587"));
        assert!(check_port(&DialPolicy::default(), 1).is_ok());
    }

    #[test]
    fn any_denied_address_refuses() {
        let p =
            DialPolicy { allowed_ports: vec![], denied: vec![IpNet { addr: "127.0.0.0".parse().unwrap(), prefix: 8 }] };
        let ok: SocketAddr = "192.0.2.1:25".parse().unwrap();
        let bad: SocketAddr = "[::ffff:127.0.0.1]:25".parse().unwrap();
        assert!(check_addresses(&p, "h", &[ok]).is_ok());
        let f = check_addresses(&p, "h", &[ok, bad]).unwrap_err();
        assert_eq!(f.reason, Reason::DestinationNotAllowed);
    }

    #[test]
    fn bracketed_ipv6() {
        assert_eq!(bare_host("[::1]"), "::1");
        assert_eq!(bare_host("mail.example.com"), "mail.example.com");
    }
}
