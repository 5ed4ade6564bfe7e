//! The one HTTPS client the token side uses: a single POST over a connection this module dials itself, so the
//! dial policy applies to the address actually connected to.
//!
//! Steps, all within one budget of the timeout: policy on the port (before DNS) → resolve once → policy on every resolved
//! address → TCP connect to one of exactly those addresses → TLS (host name for SNI and verification, trust =
//! webpki roots + extra roots, ring) → HTTP/1.1 request → response head → body (capped). Only `https` URLs are
//! accepted; a 3xx answer is an error naming where it pointed, never followed.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::engine::{Budget, DialPolicy, Reason, Step};

/// Largest response body accepted from a token endpoint.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Default port of an `https` URL.
pub const DEFAULT_HTTPS_PORT: u16 = 443;

/// A failed HTTP exchange. The message names the step and the endpoint host, never a request body or header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpError {
    pub step: Step,
    pub reason: Reason,
    pub message: String,
    /// The endpoint could not be reached or did not answer in time (retried with backoff, see
    /// [`crate::vocabulary::FailureClass`]); false for everything a change must fix.
    pub transient: bool,
}

impl HttpError {
    fn failed(message: impl Into<String>) -> Self {
        Self { step: Step::Token, reason: Reason::TokenRequestFailed, message: message.into(), transient: false }
    }
    fn unreachable(message: impl Into<String>) -> Self {
        Self { transient: true, ..Self::failed(message) }
    }
    fn policy(reason: Reason, message: impl Into<String>) -> Self {
        Self { step: Step::Policy, reason, message: message.into(), transient: false }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HttpError {}

/// Where and how requests may go.
#[derive(Clone)]
pub struct HttpClient {
    /// The budget of one request, all phases together.
    pub timeout: Duration,
    pub policy: DialPolicy,
    tls: Arc<rustls::ClientConfig>,
    /// The certificates the endpoint presented in the last handshake (leaf first), for the early warnings.
    presented: Arc<std::sync::Mutex<Vec<crate::engine::CertificateInfo>>>,
}

/// The parts of an `https` URL this client needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Host as written (no brackets for IPv6 literals).
    pub host: String,
    pub port: u16,
    /// Origin-form request target (`/path?query`).
    pub path_and_query: String,
}

impl Target {
    /// Parses and checks an URL: `https` only, a host, no user info.
    pub fn parse(url: &str) -> Result<Self, HttpError> {
        let parsed =
            url::Url::parse(url).map_err(|e| HttpError::failed(format!("the token URL is not a valid URL ({e})")))?;
        if parsed.scheme() != "https" {
            return Err(HttpError::failed(format!(
                "the token URL uses scheme {:?}; only https is allowed for token requests",
                parsed.scheme()
            )));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(HttpError::failed("the token URL must not contain user information"));
        }
        let host = match parsed.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            None => return Err(HttpError::failed("the token URL has no host")),
        };
        let port = parsed.port().unwrap_or(DEFAULT_HTTPS_PORT);
        let mut path_and_query = parsed.path().to_string();
        if let Some(q) = parsed.query() {
            path_and_query.push('?');
            path_and_query.push_str(q);
        }
        Ok(Self { host, port, path_and_query })
    }

    /// `host:port` for messages (IPv6 in brackets).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Builds the rustls configuration: ring, webpki roots plus `extra_roots` (DER), HTTP/1.1 via ALPN.
pub fn tls_config(extra_roots: &[Vec<u8>]) -> Result<Arc<rustls::ClientConfig>, HttpError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for (i, der) in extra_roots.iter().enumerate() {
        roots.add(CertificateDer::from(der.clone())).map_err(|e| HttpError {
            step: Step::Token,
            reason: Reason::InvalidCABundle,
            message: format!("extra trust anchor #{} is not a usable CA certificate ({e})", i + 1),
            transient: false,
        })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpError::failed(format!("TLS setup failed ({e})")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

impl HttpClient {
    pub fn new(timeout: Duration, policy: DialPolicy, extra_roots: &[Vec<u8>]) -> Result<Self, HttpError> {
        Ok(Self { timeout, policy, tls: tls_config(extra_roots)?, presented: Arc::default() })
    }

    /// The certificates the endpoint presented in this client's last TLS handshake (leaf first).
    pub fn presented(&self) -> Vec<crate::engine::CertificateInfo> {
        self.presented.lock().expect("presented lock").clone()
    }

    /// Checks the port against the policy (done before any DNS lookup).
    pub fn check_port(&self, target: &Target) -> Result<(), HttpError> {
        if !self.policy.allowed_ports.is_empty() && !self.policy.allowed_ports.contains(&target.port) {
            let allowed: Vec<String> = self.policy.allowed_ports.iter().map(u16::to_string).collect();
            return Err(HttpError::policy(
                Reason::PortNotAllowed,
                format!(
                    "token endpoint port {} is not allowed (allowed token ports: {}); no request was made",
                    target.port,
                    allowed.join(", ")
                ),
            ));
        }
        Ok(())
    }

    /// Resolves the host once and checks every address against the policy.
    async fn resolve(&self, target: &Target, budget: &Budget) -> Result<Vec<SocketAddr>, HttpError> {
        let addrs: Vec<SocketAddr> = if let Ok(ip) = target.host.parse::<IpAddr>() {
            vec![SocketAddr::new(ip, target.port)]
        } else {
            match budget.run(tokio::net::lookup_host((target.host.as_str(), target.port))).await {
                Err(()) => {
                    return Err(HttpError::unreachable(format!(
                        "resolving token endpoint host {} did not finish within {}",
                        target.host,
                        budget.describe()
                    )));
                }
                Ok(Err(e)) => {
                    return Err(HttpError::failed(format!(
                        "resolving token endpoint host {} failed ({e})",
                        target.host
                    )));
                }
                Ok(Ok(it)) => it.collect(),
            }
        };
        if addrs.is_empty() {
            return Err(HttpError::failed(format!("token endpoint host {} has no address", target.host)));
        }
        for a in &addrs {
            if self.policy.denied.iter().any(|net| net.contains(a.ip())) {
                return Err(HttpError::policy(
                    Reason::DestinationNotAllowed,
                    format!(
                        "token endpoint host {} resolves to {}, which is in a denied address range; no request \
                         was made",
                        target.host,
                        a.ip()
                    ),
                ));
            }
        }
        Ok(addrs)
    }

    /// Connects to one of the checked addresses; each gets an equal share of the time left.
    async fn connect(&self, target: &Target, addrs: &[SocketAddr], budget: &Budget) -> Result<TcpStream, HttpError> {
        let mut last = String::new();
        for (i, addr) in addrs.iter().enumerate() {
            let share = budget.left() / u32::try_from(addrs.len() - i).unwrap_or(u32::MAX);
            match budget.run_capped(share, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => {
                    // the request goes out in one write; do not let Nagle hold it for a delayed ACK
                    let _ = s.set_nodelay(true);
                    return Ok(s);
                }
                Ok(Err(e)) => last = format!("connecting to {addr} failed ({e})"),
                Err(()) => {
                    last = format!("connecting to {addr} did not finish within its share of {}", budget.describe())
                }
            }
        }
        Err(HttpError::unreachable(format!("token endpoint {}: {last}", target.authority())))
    }

    /// Policy, resolve, connect, TLS: a stream ready for the request.
    async fn open(&self, target: &Target, budget: &Budget) -> Result<TlsStream<TcpStream>, HttpError> {
        self.check_port(target)?;
        let addrs = self.resolve(target, budget).await?;
        let tcp = self.connect(target, &addrs, budget).await?;
        let server_name = ServerName::try_from(target.host.clone())
            .map_err(|_| HttpError::failed(format!("{:?} is not a valid TLS server name", target.host)))?;
        let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
        match budget.run(connector.connect(server_name, tcp)).await {
            Err(()) => Err(HttpError::unreachable(format!(
                "the TLS handshake with token endpoint {} did not finish within {}",
                target.authority(),
                budget.describe()
            ))),
            Ok(Err(e)) => Err(HttpError::failed(format!(
                "TLS handshake with token endpoint {} failed ({e}); check the endpoint's certificate and \
                 tls.caBundle",
                target.authority()
            ))),
            Ok(Ok(s)) => {
                // session tickets come before the answer: ACK at once (see engine/tls.rs)
                let _ = s.get_ref().0.set_quickack(true);
                let chain = s.get_ref().1.peer_certificates().unwrap_or_default();
                *self.presented.lock().expect("presented lock") =
                    chain.iter().filter_map(|der| crate::engine::x509::parse(der)).collect();
                Ok(s)
            }
        }
    }

    /// Sends one request (`https` absolute URI) and returns the response with its body (at most
    /// [`MAX_BODY_BYTES`]). 3xx answers are errors. Every phase (resolve, connect, TLS, write, headers, body)
    /// runs within one budget of [`HttpClient::timeout`].
    pub async fn send(&self, request: http::Request<Vec<u8>>) -> Result<http::Response<Vec<u8>>, HttpError> {
        let budget = Budget::new(self.timeout);
        let target = Target::parse(&request.uri().to_string())?;
        let tls = self.open(&target, &budget).await?;
        let (mut sender, conn) =
            match budget.run(hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(tls))).await {
                Err(()) => return Err(HttpError::unreachable("HTTP setup with the token endpoint timed out")),
                Ok(Err(e)) => {
                    return Err(HttpError::unreachable(format!("HTTP setup with the token endpoint failed ({e})")));
                }
                Ok(Ok(pair)) => pair,
            };
        // The connection task ends when the request is done or this guard drops it.
        let _driver = AbortOnDrop(tokio::spawn(async move {
            let _ = conn.await;
        }));
        let outgoing = target.outgoing(request)?;
        let response = match budget.run(sender.send_request(outgoing)).await {
            Err(()) => {
                return Err(HttpError::unreachable(format!(
                    "token endpoint {} did not answer (request written, no response headers) within {}",
                    target.authority(),
                    budget.describe()
                )));
            }
            Ok(Err(e)) => {
                return Err(HttpError::unreachable(format!("token request to {} failed ({e})", target.authority())));
            }
            Ok(Ok(r)) => r,
        };
        if response.status().is_redirection() {
            return Err(redirect_error(&target, &response));
        }
        let (parts, body) = response.into_parts();
        let body = read_body(&target, body, &budget).await?;
        Ok(http::Response::from_parts(parts, body))
    }
}

/// The body, capped at [`MAX_BODY_BYTES`], within the budget.
async fn read_body(target: &Target, body: hyper::body::Incoming, budget: &Budget) -> Result<Vec<u8>, HttpError> {
    match budget.run(Limited::new(body, MAX_BODY_BYTES).collect()).await {
        Err(()) => Err(HttpError::unreachable(format!(
            "reading the answer of token endpoint {} did not finish within {}",
            target.authority(),
            budget.describe()
        ))),
        Ok(Err(e)) => Err(HttpError::failed(if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
            format!("the answer of token endpoint {} exceeds {MAX_BODY_BYTES} bytes", target.authority())
        } else {
            format!("reading the answer of token endpoint {} failed ({e})", target.authority())
        })),
        Ok(Ok(c)) => Ok(c.to_bytes().to_vec()),
    }
}

fn redirect_error<B>(target: &Target, response: &http::Response<B>) -> HttpError {
    let to = response
        .headers()
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(|loc| redirect_host(target, loc))
        .unwrap_or_else(|| "an unspecified location".to_string());
    HttpError::failed(format!(
        "token endpoint {} answered HTTP {} redirecting to {to}; redirects are not followed, set tokenUrl to the \
         final token endpoint",
        target.authority(),
        response.status().as_u16()
    ))
}

impl Target {
    /// The request as sent: origin-form target, Host, `Connection: close`, Content-Length, the caller's headers.
    fn outgoing(&self, request: http::Request<Vec<u8>>) -> Result<http::Request<Full<Bytes>>, HttpError> {
        let (parts, body) = request.into_parts();
        let mut builder = http::Request::builder()
            .method(parts.method)
            .uri(self.path_and_query.as_str())
            .header(http::header::HOST, self.authority_for_host_header())
            .header(http::header::CONNECTION, "close");
        for (name, value) in parts.headers.iter() {
            if name != http::header::HOST && name != http::header::CONNECTION {
                builder = builder.header(name, value);
            }
        }
        builder
            .header(http::header::CONTENT_LENGTH, body.len())
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| HttpError::failed(format!("building the token request failed ({e})")))
    }
}

impl Target {
    fn authority_for_host_header(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        if self.port == DEFAULT_HTTPS_PORT { host } else { format!("{host}:{}", self.port) }
    }
}

/// Names the host a `Location` header points to (relative locations stay on the same host). Only the host is
/// named: a redirect URL may carry parameters that should not end up in a status message.
fn redirect_host(target: &Target, location: &str) -> String {
    let base = format!("https://{}/", target.authority());
    match url::Url::parse(&base).and_then(|b| b.join(location)) {
        Ok(u) => match (u.host_str(), u.port_or_known_default()) {
            (Some(h), Some(p)) => format!("host {h}:{p} ({})", u.scheme()),
            (Some(h), None) => format!("host {h} ({})", u.scheme()),
            _ => "a location without host".to_string(),
        },
        Err(_) => "an unparsable location".to_string(),
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_https_only() {
        let t = Target::parse("https://login.example.com/tenant/oauth2/v2.0/token?x=1").unwrap();
        assert_eq!(t.host, "login.example.com");
        assert_eq!(t.port, 443);
        assert_eq!(t.path_and_query, "/tenant/oauth2/v2.0/token?x=1");
        let t = Target::parse("https://[::1]:8443/t").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.authority()), ("::1", 8443, "[::1]:8443".to_string()));
        assert!(Target::parse("http://login.example.com/token").is_err());
        assert!(Target::parse("ftp://x/").is_err());
        assert!(Target::parse("https://user:pw@x/").is_err());
        assert!(Target::parse("not a url").is_err());
    }

    #[test]
    fn redirect_host_names_only_the_host() {
        let t = Target::parse("https://a.example:8443/token").unwrap();
        assert_eq!(redirect_host(&t, "https://evil.example/x?secret=1"), "host evil.example:443 (https)");
        assert_eq!(redirect_host(&t, "/other"), "host a.example:8443 (https)");
    }

    #[test]
    fn port_policy() {
        let c = HttpClient::new(Duration::from_secs(1), DialPolicy { allowed_ports: vec![443], denied: vec![] }, &[])
            .unwrap();
        let e = c.check_port(&Target::parse("https://x.example:8443/").unwrap()).unwrap_err();
        assert_eq!((e.step, e.reason), (Step::Policy, Reason::PortNotAllowed));
        c.check_port(&Target::parse("https://x.example/").unwrap()).unwrap();
    }
}
