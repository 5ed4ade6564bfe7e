//! Resolve → dial policy → TCP connect. The policy is applied to the resolved addresses, and the connection
//! goes to exactly one of the checked addresses (no second resolution), so DNS cannot redirect a check past
//! the policy.

use std::io;
use std::net::{IpAddr, SocketAddr};

use tokio::net::TcpStream;

use super::budget::Budget;
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

/// Resolves `host:port` within the budget.
pub(crate) async fn resolve(host: &str, port: u16, budget: &Budget) -> Result<Vec<SocketAddr>, Failure> {
    let host = bare_host(host);
    // an IP literal needs no lookup (and must not be looked up)
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    match budget.run(tokio::net::lookup_host((host, port))).await {
        Err(()) => Err(fail(
            Step::Resolve,
            Reason::DnsLookupFailed,
            format!(
                "looking up {host} did not finish within {}; check the host name and the cluster's DNS",
                budget.describe()
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

/// Connects to the checked addresses in order. Each attempt gets an equal share of the time left (the time
/// left divided by the addresses not yet tried), so one address that black-holes cannot use up the budget of
/// the others. Returns the stream and the address dialled, or the failure of the last attempt.
pub(crate) async fn connect(addrs: &[SocketAddr], budget: &Budget) -> Result<(TcpStream, SocketAddr), Failure> {
    let mut last: Option<Failure> = None;
    for (i, &addr) in addrs.iter().enumerate() {
        let share = budget.left() / u32::try_from(addrs.len() - i).unwrap_or(u32::MAX);
        match budget.run_capped(share, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => {
                // commands are written in one piece each; do not let Nagle hold them for a delayed ACK
                let _ = tcp.set_nodelay(true);
                return Ok((tcp, addr));
            }
            Ok(Err(e)) => last = Some(connect_error(addr, &e, budget)),
            Err(()) => last = Some(connect_error(addr, &io::Error::from(io::ErrorKind::TimedOut), budget)),
        }
    }
    Err(last.unwrap_or_else(|| fail(Step::Connect, Reason::ConnectionFailed, "no address to connect to".into())))
}

fn connect_error(addr: SocketAddr, e: &io::Error, budget: &Budget) -> Failure {
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
                "connecting to {addr} did not finish within its share of {}; check spec.port and that a \
                 firewall lets the operator reach the server",
                budget.describe()
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

    /// What a name resolving to three black-holed addresses gives: listeners with backlog 0 whose accept queue
    /// holds one unaccepted connection, so the kernel drops further SYNs (a real hang, on loopback).
    #[tokio::test]
    async fn three_black_holed_addresses_share_the_budget() {
        let mut keep = Vec::new();
        let mut addrs = Vec::new();
        for ip in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
            let listener = socket.listen(0).unwrap();
            let addr = listener.local_addr().unwrap();
            let filler = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5)).unwrap();
            keep.push((listener, filler));
            addrs.push(addr);
        }
        let budget = Budget::new(std::time::Duration::from_secs(3));
        let started = std::time::Instant::now();
        let f = connect(&addrs, &budget).await.unwrap_err();
        let took = started.elapsed();
        assert!(took <= std::time::Duration::from_secs(4), "took {took:?}");
        assert_eq!((f.step, f.reason), (Step::Connect, Reason::ConnectionTimedOut), "{f:?}");
        // each address had its share: the last one was tried too
        assert!(f.message.contains(&addrs[2].to_string()), "{}", f.message);
    }

    /// The fault table's row "a name resolving to several addresses, the first refuses, the second works", at
    /// the level of `connect` (tests/faults.rs runs it end to end with a real name): the refusal moves on to the
    /// next address, which is dialled within the budget.
    #[tokio::test]
    async fn a_refusing_first_address_falls_through_to_the_next() {
        let refusing = std::net::TcpListener::bind("127.0.0.2:0").unwrap().local_addr().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let working = listener.local_addr().unwrap();
        let budget = Budget::new(std::time::Duration::from_secs(3));
        let (_tcp, dialled) = connect(&[refusing, working], &budget).await.expect("the second address works");
        assert_eq!(dialled, working);
        assert!(budget.left() > std::time::Duration::ZERO, "within the budget");
        let (_accepted, _) = listener.accept().await.unwrap();
    }

    #[test]
    fn bracketed_ipv6() {
        assert_eq!(bare_host("[::1]"), "::1");
        assert_eq!(bare_host("mail.example.com"), "mail.example.com");
    }
}
