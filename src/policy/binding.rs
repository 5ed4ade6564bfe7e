//! The Secret annotation `smtp-operator.io/allowed-servers` (docs/api.md, "Annotations"; docs/security.md): the destinations a Secret's
//! values may be sent to.
//!
//! Syntax: entries separated by commas and/or whitespace (newlines included); empty entries are skipped.
//! Each entry is one of
//!
//! | entry | matches |
//! |---|---|
//! | `smtp.example.com` | that host, any port |
//! | `smtp.example.com:587` | that host, port 587 only |
//! | `*.example.com`, `*.example.com:587` | every name *under* `example.com`, at any depth (`a.example.com`, `a.b.example.com`); **not** `example.com` itself — list the apex separately if it is meant |
//! | `192.0.2.10`, `192.0.2.10:25`, `2001:db8::25`, `[2001:db8::25]`, `[2001:db8::25]:25` | that IP literal (an IPv6 address with a port needs brackets) |
//!
//! Hosts are normalised exactly like the destination ([`normalize_host`]): case-insensitive, trailing dot
//! ignored, international names compared in punycode, IPv4 literals in any `inet_aton` form. A name never
//! matches an IP literal (no DNS is involved in this decision). `*` alone, `*` in any other position and a
//! wildcard over a single label (`*.com`) are invalid. Invalid entries are reported and skipped; the valid
//! ones still apply.

use std::fmt;

use super::host::{Host, normalize_host};

/// The annotation on a Secret that lists the destinations its values may be sent to.
pub const ALLOWED_SERVERS_ANNOTATION: &str = crate::api::ALLOWED_SERVERS;

/// The host part of an entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPattern {
    /// Exactly this host.
    Exact(Host),
    /// `*.domain`: any name ending in `.domain` (the stored value is `domain`, normalised); not the apex.
    Subdomains(String),
}

/// One valid annotation entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerPattern {
    pub host: HostPattern,
    /// `None` = any port.
    pub port: Option<u16>,
}

impl ServerPattern {
    /// True when this entry allows `host:port`.
    pub fn matches(&self, host: &Host, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        match (&self.host, host) {
            (HostPattern::Exact(a), b) => a == b,
            (HostPattern::Subdomains(domain), Host::Name(name)) => {
                name.strip_suffix(domain.as_str()).is_some_and(|prefix| prefix.len() > 1 && prefix.ends_with('.'))
            }
            (HostPattern::Subdomains(_), Host::Ip(_)) => false,
        }
    }
}

impl fmt::Display for ServerPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.host, self.port) {
            (HostPattern::Exact(h), Some(p)) => f.write_str(&h.with_port(p)),
            (HostPattern::Exact(h @ Host::Ip(std::net::IpAddr::V6(_))), None) => write!(f, "[{h}]"),
            (HostPattern::Exact(h), None) => write!(f, "{h}"),
            (HostPattern::Subdomains(d), Some(p)) => write!(f, "*.{d}:{p}"),
            (HostPattern::Subdomains(d), None) => write!(f, "*.{d}"),
        }
    }
}

/// A parsed annotation value (the valid entries).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedServers {
    pub entries: Vec<ServerPattern>,
}

impl AllowedServers {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// An annotation entry that was skipped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("allowed-servers entry {entry:?} ignored: {reason}")]
pub struct EntryError {
    /// The entry as written (truncated to 256 characters).
    pub entry: String,
    pub reason: String,
}

/// True when `servers` allows sending to `host:port`.
pub fn allows(servers: &AllowedServers, host: &Host, port: u16) -> bool {
    servers.entries.iter().any(|e| e.matches(host, port))
}

/// Splits an annotation value into its raw entries (commas and any whitespace separate; empties skipped).
fn raw_entries(value: &str) -> impl Iterator<Item = &str> {
    value.split(|c: char| c == ',' || c.is_whitespace()).filter(|e| !e.is_empty())
}

/// Parses the annotation value. Never fails as a whole: invalid entries are returned next to the valid ones.
pub fn parse_allowed_servers(value: &str) -> (AllowedServers, Vec<EntryError>) {
    let mut servers = AllowedServers::default();
    let mut errors = Vec::new();
    for entry in raw_entries(value) {
        match parse_entry(entry) {
            Ok(p) => {
                if !servers.entries.contains(&p) {
                    servers.entries.push(p);
                }
            }
            Err(reason) => errors.push(EntryError { entry: entry.chars().take(256).collect(), reason }),
        }
    }
    (servers, errors)
}

fn parse_port(s: &str) -> Result<u16, String> {
    let bad = || format!("{s:?} is not a port (1-65535)");
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match s.parse::<u32>() {
        Ok(n @ 1..=65535) => Ok(n as u16),
        _ => Err(bad()),
    }
}

fn parse_entry(entry: &str) -> Result<ServerPattern, String> {
    if entry.contains("://") {
        return Err("give host or host:port, without a scheme".into());
    }
    // `[v6]` or `[v6]:port`
    if entry.starts_with('[') {
        let Some(close) = entry.find(']') else {
            return Err("missing ']' after the IPv6 address".into());
        };
        let host = normalize_host(&entry[..=close]).map_err(|e| e.reason)?;
        let port = match &entry[close + 1..] {
            "" => None,
            rest => match rest.strip_prefix(':') {
                Some(p) => Some(parse_port(p)?),
                None => return Err("expected ':port' after ']'".into()),
            },
        };
        return Ok(ServerPattern { host: HostPattern::Exact(host), port });
    }
    let (host_part, port) = match entry.matches(':').count() {
        0 => (entry, None),
        1 => {
            let (h, p) = entry.split_once(':').expect("one colon");
            (h, Some(parse_port(p)?))
        }
        // a bare IPv6 address, no port (use brackets for one)
        _ => (entry, None),
    };
    if let Some(domain) = host_part.strip_prefix("*.") {
        if domain.contains('*') {
            return Err("'*' is only allowed as the whole first label, as in *.example.com".into());
        }
        return match normalize_host(domain).map_err(|e| e.reason)? {
            Host::Ip(_) => Err("a wildcard needs a domain name, not an IP address".into()),
            Host::Name(d) if !d.contains('.') => {
                Err(format!("*.{d} would match every name under a top-level domain; name the domain"))
            }
            Host::Name(d) => Ok(ServerPattern { host: HostPattern::Subdomains(d), port }),
        };
    }
    if host_part == "*" {
        return Err("'*' alone is not allowed; list the servers (or *.domain)".into());
    }
    if host_part.contains('*') {
        return Err("'*' is only allowed as the whole first label, as in *.example.com".into());
    }
    let host = normalize_host(host_part).map_err(|e| match e.reason.as_str() {
        r if r.contains("IPv6") && port.is_none() && host_part.contains(':') => {
            format!("{r}; write an IPv6 address with a port as [address]:port")
        }
        r => r.to_string(),
    })?;
    Ok(ServerPattern { host: HostPattern::Exact(host), port })
}

pub(crate) fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-:/=,@%+[]".contains(&b)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Above this many characters, the existing list is not repeated in the message.
const MAX_EXISTING_IN_MESSAGE: usize = 1024;

/// The message of `Valid=False CredentialsNotBoundToServer`: names the Secret, the destinations it does not
/// allow (`missing`, as `host:port`), and the exact `kubectl annotate` command that allows them — appending to
/// the existing list when the Secret already has the annotation (`existing` = its current value, `None` when
/// absent). Deterministic (no timestamps), one line, contains no Secret value (only the annotation, which is
/// not secret).
pub fn credentials_not_bound_message(
    secret: &str,
    namespace: &str,
    missing: &[String],
    existing: Option<&str>,
) -> String {
    let dest = missing.join(", ");
    let intended = if missing.len() > 1 { "are the intended servers" } else { "is the intended server" };
    let key = ALLOWED_SERVERS_ANNOTATION;
    match existing {
        None => format!(
            "Secret {secret:?} may not be sent to {dest}: it has no {key} annotation. If {dest} {intended}, allow \
             it with: kubectl annotate secret {} -n {} {}",
            shell_quote(secret),
            shell_quote(namespace),
            shell_quote(&format!("{key}={dest}")),
        ),
        Some(value) => {
            // Keep the user's entries as written (minus ones with control characters, which are invalid
            // anyway and must not reach a terminal), then append the destinations.
            let mut entries: Vec<&str> = raw_entries(value).filter(|e| !e.chars().any(char::is_control)).collect();
            let them = if missing.len() > 1 { "them" } else { "it" };
            let listed = if entries.is_empty() { "is empty".to_string() } else { format!("does not list {them}") };
            let head = format!("Secret {secret:?} may not be sent to {dest}: its {key} annotation {listed}.");
            let joined_len: usize = entries.iter().map(|e| e.len() + 2).sum();
            if joined_len > MAX_EXISTING_IN_MESSAGE {
                return format!(
                    "{head} If {dest} {intended}, append {dest} to that annotation of secret {secret} in namespace \
                     {namespace}."
                );
            }
            entries.extend(missing.iter().map(String::as_str));
            format!(
                "{head} If {dest} {intended}, allow it with: kubectl annotate --overwrite secret {} -n {} {}",
                shell_quote(secret),
                shell_quote(namespace),
                shell_quote(&format!("{key}={}", entries.join(", "))),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Host {
        normalize_host(s).unwrap()
    }
    fn parse_ok(s: &str) -> AllowedServers {
        let (a, errs) = parse_allowed_servers(s);
        assert!(errs.is_empty(), "{s:?}: {errs:?}");
        a
    }

    #[test]
    fn contract_example() {
        let a = parse_ok("smtp.office365.com:587, login.microsoftonline.com");
        assert!(allows(&a, &h("smtp.office365.com"), 587));
        assert!(!allows(&a, &h("smtp.office365.com"), 25), "port is bound");
        assert!(allows(&a, &h("login.microsoftonline.com"), 443), "no port = any port");
        assert!(allows(&a, &h("login.microsoftonline.com"), 8443));
        assert!(!allows(&a, &h("evil.example"), 587));
        assert!(!allows(&a, &h("smtp.office365.com.evil.example"), 587));
        assert!(!allows(&a, &h("office365.com"), 587));
        assert!(!allows(&a, &h("xsmtp.office365.com"), 587));
    }

    #[test]
    fn case_whitespace_newlines_and_empty_entries() {
        let a = parse_ok("\n  SMTP.Example.COM.:587 ,,\n\t[2001:DB8::25]:25\n, ,*.Corp.Example  192.0.2.10\n");
        assert_eq!(a.entries.len(), 4);
        assert!(allows(&a, &h("smtp.example.com"), 587));
        assert!(allows(&a, &h("Smtp.Example.Com."), 587));
        assert!(allows(&a, &h("[2001:db8::25]"), 25));
        assert!(allows(&a, &h("relay.corp.example"), 2525));
        assert!(allows(&a, &h("192.0.2.10"), 25));
        assert!(parse_ok("").is_empty());
        assert!(parse_ok(" ,\n, ").is_empty());
        // duplicates collapse
        assert_eq!(parse_ok("a.example, A.example.").entries.len(), 1);
    }

    #[test]
    fn wildcard_matches_subdomains_at_any_depth_but_not_the_apex() {
        let a = parse_ok("*.example.com");
        assert!(allows(&a, &h("smtp.example.com"), 587));
        assert!(allows(&a, &h("a.b.c.example.com"), 25));
        assert!(!allows(&a, &h("example.com"), 587), "apex must not match");
        assert!(!allows(&a, &h("badexample.com"), 587));
        assert!(!allows(&a, &h("example.com.evil.test"), 587));
        assert!(!allows(&a, &h("192.0.2.1"), 587));
        let a = parse_ok("*.example.com:587");
        assert!(allows(&a, &h("smtp.example.com"), 587));
        assert!(!allows(&a, &h("smtp.example.com"), 25));
    }

    #[test]
    fn ip_literals_match_in_all_forms_and_never_names() {
        let a = parse_ok("127.0.0.1:2525, 2001:db8::25, [::1]");
        assert!(allows(&a, &h("127.1"), 2525));
        assert!(allows(&a, &h("0x7f000001"), 2525));
        assert!(allows(&a, &h("::ffff:127.0.0.1"), 2525));
        assert!(!allows(&a, &h("127.0.0.1"), 25));
        assert!(allows(&a, &h("2001:0db8:0::25"), 1));
        assert!(allows(&a, &h("::1"), 25));
        assert!(!allows(&a, &h("localhost"), 2525), "no DNS: a name never matches an IP entry");
        let names = parse_ok("localhost");
        assert!(!allows(&names, &h("127.0.0.1"), 25), "no DNS: an IP never matches a name entry");
        // an entry written in octal is the same address
        let a = parse_ok("0177.0.0.1:25");
        assert!(allows(&a, &h("127.0.0.1"), 25));
    }

    #[test]
    fn idn_entries_compare_in_punycode() {
        let a = parse_ok("Bücher.example:587, *.münchen.example");
        assert!(allows(&a, &h("xn--bcher-kva.example"), 587));
        assert!(allows(&a, &h("BÜCHER.example"), 587));
        assert!(allows(&a, &h("smtp.xn--mnchen-3ya.example"), 587));
        let latin = parse_ok("paypal.com");
        assert!(!allows(&latin, &h("p\u{0430}ypal.com"), 587), "homograph must not match");
    }

    #[test]
    fn invalid_entries_are_reported_not_fatal() {
        let (a, errs) = parse_allowed_servers(
            "smtp.example.com:587, *, *.com, foo.*.example, *foo.example, host:0, host:99999, host:smtp, \
             smtp://x.example, [::1, [::1]x, [::1]:, *.127.0.0.1, bad..name, 2001:db8::25:587:x, ok.example",
        );
        assert_eq!(a.entries.len(), 2, "{a:?}");
        assert!(allows(&a, &h("smtp.example.com"), 587));
        assert!(allows(&a, &h("ok.example"), 25));
        let bad: Vec<&str> = errs.iter().map(|e| e.entry.as_str()).collect();
        assert_eq!(
            bad,
            [
                "*",
                "*.com",
                "foo.*.example",
                "*foo.example",
                "host:0",
                "host:99999",
                "host:smtp",
                "smtp://x.example",
                "[::1",
                "[::1]x",
                "[::1]:",
                "*.127.0.0.1",
                "bad..name",
                "2001:db8::25:587:x"
            ]
        );
        for e in &errs {
            assert!(!e.reason.is_empty());
            assert!(e.to_string().contains(&e.entry), "{e}");
        }
        assert!(errs[1].reason.contains("top-level"), "{}", errs[1].reason);
    }

    #[test]
    fn display_round_trips() {
        let text = "smtp.example.com:587, [2001:db8::25]:25, [::1], *.corp.example, *.corp.example:25, 192.0.2.1";
        let a = parse_ok(text);
        let shown: Vec<String> = a.entries.iter().map(|e| e.to_string()).collect();
        assert_eq!(shown.join(", "), text);
        assert_eq!(parse_ok(&shown.join(",")), a);
    }

    #[test]
    fn message_without_annotation() {
        let m =
            credentials_not_bound_message("smtp-credentials", "mail", &[h("SMTP.Example.com").with_port(587)], None);
        assert_eq!(
            m,
            "Secret \"smtp-credentials\" may not be sent to smtp.example.com:587: it has no \
             smtp-operator.io/allowed-servers annotation. If smtp.example.com:587 is the intended server, allow it \
             with: kubectl annotate secret smtp-credentials -n mail \
             smtp-operator.io/allowed-servers=smtp.example.com:587"
        );
        // the suggested value really allows the destination
        let value = m.rsplit_once("allowed-servers=").unwrap().1;
        assert!(allows(&parse_ok(value), &h("smtp.example.com"), 587));
    }

    #[test]
    fn message_appends_to_existing_annotation() {
        let m = credentials_not_bound_message(
            "smtp-oauth",
            "mail",
            &[h("login.microsoftonline.com").with_port(443)],
            Some("smtp.office365.com:587,\n *.corp.example"),
        );
        assert_eq!(
            m,
            "Secret \"smtp-oauth\" may not be sent to login.microsoftonline.com:443: its \
             smtp-operator.io/allowed-servers annotation does not list it. If login.microsoftonline.com:443 is the \
             intended server, allow it with: kubectl annotate --overwrite secret smtp-oauth -n mail \
             'smtp-operator.io/allowed-servers=smtp.office365.com:587, *.corp.example, login.microsoftonline.com:443'"
        );
        let value = m.rsplit_once("allowed-servers=").unwrap().1.trim_end_matches('\'');
        let a = parse_ok(value);
        assert!(allows(&a, &h("login.microsoftonline.com"), 443));
        assert!(allows(&a, &h("smtp.office365.com"), 587), "existing entries kept");
        assert!(allows(&a, &h("x.corp.example"), 25), "existing entries kept");
    }

    #[test]
    fn message_with_two_destinations_allows_both() {
        let missing = [h("login.example.com").with_port(443), h("smtp.example.com").with_port(587)];
        for existing in [None, Some("login.example.com")] {
            let m = credentials_not_bound_message("oauth", "mail", &missing, existing);
            assert!(m.contains("login.example.com:443, smtp.example.com:587 are the intended servers"), "{m}");
            let value = m.rsplit_once("allowed-servers=").unwrap().1.trim_end_matches('\'');
            let a = parse_ok(value);
            assert!(allows(&a, &h("login.example.com"), 443) && allows(&a, &h("smtp.example.com"), 587), "{m}");
        }
    }

    #[test]
    fn message_edge_cases() {
        let m = credentials_not_bound_message("s", "ns", &[h("2001:db8::25").with_port(25)], Some("  "));
        assert!(m.contains("annotation is empty"), "{m}");
        assert!(m.contains("--overwrite"), "an existing (even empty) annotation needs --overwrite: {m}");
        assert!(m.ends_with("smtp-operator.io/allowed-servers=[2001:db8::25]:25"), "{m}");
        // quotes and control characters in the existing value cannot break the command line
        let m = credentials_not_bound_message("s", "ns", &[h("a.example").with_port(25)], Some("it's, \u{1b}[31mred"));
        assert!(!m.chars().any(char::is_control), "{m:?}");
        assert!(m.ends_with(r"'smtp-operator.io/allowed-servers=it'\''s, a.example:25'"), "{m}");
        // a huge existing list is not repeated
        let long = vec!["x.example:25"; 200].join(",");
        let m = credentials_not_bound_message("s", "ns", &[h("a.example").with_port(25)], Some(&long));
        assert!(m.len() < 400 && m.contains("append a.example:25"), "{m}");
        // deterministic
        assert_eq!(m, credentials_not_bound_message("s", "ns", &[h("a.example").with_port(25)], Some(&long)));
    }
}
