//! Early warnings (pure; docs/api.md, "Early warnings"): what a passing check saw that will break or is weaker
//! than it should be. [`findings`] turns a check report and the settings into findings; [`crate::status`]
//! makes the `Degraded` condition of them and [`crate::controller::events`] a Warning event for each new one.
//! Messages carry dates, never "in N days", so an unchanged finding writes nothing.

use std::time::Duration;

use crate::api::{AuthType, SmtpSettingsSpec};
use crate::engine::{CertificateInfo, Report};

/// The reasons of `Degraded=True`, most urgent first (the condition carries the first finding's reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Warning {
    /// The leaf or a chain certificate of the SMTP server or the OAuth2 token endpoint expires within
    /// `--certificate-warning-window`.
    CertificateExpiresSoon,
    /// Basic auth against Microsoft 365, whose SMTP Basic auth is being retired.
    BasicAuthDeprecated,
    /// The server offers AUTH on the plain connection, before STARTTLS.
    AuthOverPlaintextOffered,
}

impl Warning {
    pub fn as_str(self) -> &'static str {
        match self {
            Warning::CertificateExpiresSoon => "CertificateExpiresSoon",
            Warning::BasicAuthDeprecated => "BasicAuthDeprecated",
            Warning::AuthOverPlaintextOffered => "AuthOverPlaintextOffered",
        }
    }

    /// Every reason (for docs and tests).
    pub const ALL: &'static [Warning] =
        &[Warning::CertificateExpiresSoon, Warning::BasicAuthDeprecated, Warning::AuthOverPlaintextOffered];
}

/// One early warning with its message (stable while the cause is).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub warning: Warning,
    pub message: String,
}

/// Microsoft 365 hosts whose SMTP Basic auth is being retired.
const BASIC_AUTH_RETIRING: &[&str] = &["smtp.office365.com", "outlook.office365.com"];

/// What the warnings look at besides the report.
pub struct Facts<'a> {
    pub spec: &'a SmtpSettingsSpec,
    /// `--certificate-warning-window` and how the flag wrote it (for messages).
    pub window: Duration,
    pub window_text: &'a str,
    /// Unix seconds.
    pub now: i64,
}

/// The findings of a check, most urgent first; none for a failed check (Ready says what is wrong then).
pub fn findings(report: &Report, facts: &Facts) -> Vec<Finding> {
    if !report.succeeded() {
        return Vec::new();
    }
    let mut out = Vec::new();
    out.extend(expiring(&report.certificates, "the server's certificate", facts));
    out.extend(expiring(&report.token_certificates, "the token endpoint's certificate", facts));
    let host = facts.spec.server.trim_end_matches('.').to_ascii_lowercase();
    if facts.spec.auth.type_ == AuthType::Basic && BASIC_AUTH_RETIRING.contains(&host.as_str()) {
        out.push(Finding {
            warning: Warning::BasicAuthDeprecated,
            message: format!(
                "Basic authentication (a password) against {host} is being retired by Microsoft for Exchange Online; \
                 move to auth.type OAuth2 before it stops working: see examples/microsoft-365.yaml and docs/oauth2.md"
            ),
        });
    }
    if !report.plaintext_auth.is_empty() {
        out.push(Finding {
            warning: Warning::AuthOverPlaintextOffered,
            message: format!(
                "the server offers AUTH ({}) on the plain connection, before STARTTLS; this operator authenticates \
                 only after STARTTLS, but a client that does not insist on it sends its password in clear text: \
                 offer AUTH only after STARTTLS (Postfix: smtpd_tls_auth_only = yes)",
                report.plaintext_auth.join(", ")
            ),
        });
    }
    out
}

/// The certificate of `chain` that expires first, when that is within the window; `leaf` names the chain's
/// leaf in the message (a chain certificate is named as one of its chain).
fn expiring(chain: &[CertificateInfo], leaf: &str, facts: &Facts) -> Option<Finding> {
    let window = i64::try_from(facts.window.as_secs()).unwrap_or(i64::MAX);
    let (index, cert) = chain.iter().enumerate().min_by_key(|(_, c)| c.not_after)?;
    if cert.not_after.saturating_sub(facts.now) > window {
        return None;
    }
    let which = if index == 0 { leaf.to_string() } else { format!("a certificate of the chain of {leaf}") };
    let verb = if cert.not_after <= facts.now { "expired on" } else { "expires on" };
    Some(Finding {
        warning: Warning::CertificateExpiresSoon,
        message: format!(
            "{which} ({}, issued by {}) {verb} {} (warning window {}); renew it before then",
            cert.subject,
            cert.issuer,
            rfc3339(cert.not_after),
            facts.window_text
        ),
    })
}

/// Unix seconds as RFC 3339 (UTC).
pub fn rfc3339(unix: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(unix).map(|t| t.to_string()).unwrap_or_else(|_| unix.to_string())
}

/// The earliest notAfter of a chain (Unix seconds), for the expiry metric.
pub fn earliest_expiry(chain: &[CertificateInfo]) -> Option<i64> {
    chain.iter().map(|c| c.not_after).min()
}

/// Parses `--certificate-warning-window`: `14d`, or a Go-style duration (`336h`).
pub fn parse_window(s: &str) -> Result<Duration, String> {
    match s.trim().strip_suffix('d').map(str::parse::<u64>) {
        Some(Ok(days)) if days <= 3650 => Ok(Duration::from_secs(days * 86_400)),
        Some(_) => Err(format!("invalid window {s:?}: expected e.g. 14d or 336h")),
        None => crate::duration::parse(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Failure, Reason, Step};

    const NOW: i64 = 1_796_227_866; // 2026-12-02T16:11:06Z
    const DAY: i64 = 86_400;

    fn cert(subject: &str, not_after: i64) -> CertificateInfo {
        CertificateInfo { subject: subject.into(), issuer: "CN=Test CA".into(), dns_names: vec![], not_after }
    }

    fn report(ok: bool, chain: Vec<CertificateInfo>, plaintext_auth: &[&str]) -> Report {
        Report {
            outcome: if ok {
                Ok(())
            } else {
                Err(Failure {
                    step: Step::Auth,
                    reason: Reason::AuthenticationFailed,
                    message: "no".into(),
                    reply: None,
                })
            },
            last_step: Step::Quit,
            tls_version: Some("1.3".into()),
            server_mechanisms: vec![],
            auth_mechanism: None,
            peer: None,
            certificates: chain,
            plaintext_auth: plaintext_auth.iter().map(|s| s.to_string()).collect(),
            token_certificates: vec![],
            step_durations: vec![],
            duration: Duration::from_millis(5),
            test_email: None,
        }
    }

    fn with_token(mut r: Report, chain: Vec<CertificateInfo>) -> Report {
        r.token_certificates = chain;
        r
    }

    fn spec(server: &str, auth: &str) -> SmtpSettingsSpec {
        let mut v = serde_json::json!({"server": server, "port": 587, "from": "a@example.com"});
        if auth == "Basic" {
            v["auth"] = serde_json::json!({"type": "Basic", "basic": {"username": "u",
                "passwordSecretRef": {"name": "s", "key": "k"}}});
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn degraded_findings_table() {
        let leaf_3d = vec![cert("CN=leaf", NOW + 3 * DAY), cert("CN=ca", NOW + 300 * DAY)];
        let chain_3d = vec![cert("CN=leaf", NOW + 300 * DAY), cert("CN=inter", NOW + 3 * DAY)];
        let far = vec![cert("CN=leaf", NOW + 30 * DAY)];
        let edge = vec![cert("CN=leaf", NOW + 14 * DAY)];
        use Warning::*;
        #[rustfmt::skip]
        let cases: Vec<(&str, Report, SmtpSettingsSpec, Vec<Warning>)> = vec![
            ("leaf in 3 days", report(true, leaf_3d.clone(), &[]), spec("mail.example.com", "None"), vec![CertificateExpiresSoon]),
            ("chain cert in 3 days", report(true, chain_3d, &[]), spec("mail.example.com", "None"), vec![CertificateExpiresSoon]),
            ("30 days is fine", report(true, far.clone(), &[]), spec("mail.example.com", "None"), vec![]),
            ("exactly the window", report(true, edge, &[]), spec("mail.example.com", "None"), vec![CertificateExpiresSoon]),
            ("no TLS, no certificate", report(true, vec![], &[]), spec("mail.example.com", "None"), vec![]),
            ("AUTH before STARTTLS", report(true, far.clone(), &["PLAIN"]), spec("mail.example.com", "None"), vec![AuthOverPlaintextOffered]),
            ("Basic at Microsoft 365", report(true, far.clone(), &[]), spec("smtp.office365.com", "Basic"), vec![BasicAuthDeprecated]),
            ("Basic at outlook, upper case, dot", report(true, far.clone(), &[]), spec("Outlook.Office365.com.", "Basic"), vec![BasicAuthDeprecated]),
            ("no auth at Microsoft 365", report(true, far.clone(), &[]), spec("smtp.office365.com", "None"), vec![]),
            ("Basic elsewhere", report(true, far, &[]), spec("smtp.example.com", "Basic"), vec![]),
            ("all three, most urgent first", report(true, leaf_3d.clone(), &["LOGIN"]), spec("smtp.office365.com", "Basic"),
                vec![CertificateExpiresSoon, BasicAuthDeprecated, AuthOverPlaintextOffered]),
            ("a failed check warns of nothing", report(false, leaf_3d.clone(), &["PLAIN"]), spec("smtp.office365.com", "Basic"), vec![]),
            ("token endpoint in 3 days", with_token(report(true, vec![], &[]), leaf_3d.clone()), spec("mail.example.com", "None"), vec![CertificateExpiresSoon]),
            ("both expiring: one finding each", with_token(report(true, leaf_3d.clone(), &[]), leaf_3d), spec("mail.example.com", "None"),
                vec![CertificateExpiresSoon, CertificateExpiresSoon]),
        ];
        for (name, report, spec, want) in cases {
            let facts = Facts { spec: &spec, window: Duration::from_secs(14 * 86_400), window_text: "14d", now: NOW };
            let got: Vec<Warning> = findings(&report, &facts).iter().map(|f| f.warning).collect();
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn expiry_message_has_the_date_not_a_countdown() {
        let spec = spec("mail.example.com", "None");
        let r = report(true, vec![cert("CN=leaf", NOW + 3 * DAY)], &[]);
        let at = |now| {
            findings(&r, &Facts { spec: &spec, window: Duration::from_secs(14 * 86_400), window_text: "14d", now })
        };
        let (today, tomorrow) = (at(NOW), at(NOW + DAY));
        assert_eq!(today, tomorrow, "the message changed from one day to the next");
        assert!(today[0].message.contains("2026-12-05T16:11:06Z"), "{}", today[0].message);
        assert!(today[0].message.contains("CN=leaf") && today[0].message.contains("14d"), "{}", today[0].message);
        assert!(at(NOW + 4 * DAY)[0].message.contains("expired on"));
    }

    #[test]
    fn window_flag() {
        assert_eq!(parse_window("14d"), Ok(Duration::from_secs(14 * 86_400)));
        assert_eq!(parse_window("336h"), Ok(Duration::from_secs(14 * 86_400)));
        assert_eq!(parse_window("0d"), Ok(Duration::ZERO));
        assert!(parse_window("xd").is_err() && parse_window("14").is_err() && parse_window("99999d").is_err());
    }
}
