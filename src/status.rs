//! Every status transition of an SmtpSettings (pure): [`next`] turns the current status and what a reconcile
//! found (an [`Outcome`]) into the status to write. The controller writes only what this module returns.
//! Messages name the failing step, carry the server's reply, say what to do next, and hold no timestamps or
//! ids that change on every check (so an unchanged outcome writes nothing). The fields, conditions and reasons
//! are described in docs/api.md.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::api::{CertificateStatus, CheckResult, LastCheck, SmtpSettingsStatus, TestEmailResult, TestEmailStatus};
use crate::conditions::{self, AUTHENTICATED, CONNECTED, DEGRADED, Desired, READY, Status, VALID};
use crate::engine::reason::ConditionKind;
use crate::engine::{Credentials, Failure, Report};
use crate::ratelimit::Limit;
use crate::validate::Invalid;
use crate::warnings::Finding;

/// Longest `status.testEmail.message`.
const MAX_TEST_EMAIL_MESSAGE: usize = 1024;

/// What a reconcile found, as far as the status is concerned.
#[derive(Debug)]
pub enum Outcome<'a> {
    /// The spec or a referenced object is not usable; a test-email request for it fails.
    Invalid { invalid: &'a Invalid, test_request: Option<&'a str> },
    /// A check is owed but waits for `limit` until `until` (`status.nextCheckTime`).
    Deferred { until: Timestamp, limit: Limit, test_request: Option<&'a str> },
    /// A check is about to run or running: `Ready=Unknown CheckPending` for a first check or a new
    /// generation, and `testEmail.result: Sending` when it sends the test email for `sending`.
    Pending { sending: Option<&'a str> },
    /// `testEmail` says `Sending` for the current request: an operator stopped while sending it. Whether it
    /// left is unknown; it is not sent again.
    Interrupted { request: &'a str },
    /// A check ran.
    Checked(Checked<'a>),
}

/// A finished check and what it covered.
#[derive(Debug)]
pub struct Checked<'a> {
    pub report: &'a Report,
    pub credentials: &'a Credentials,
    pub oauth: bool,
    pub insecure: bool,
    /// Digest of what the check covered (`status.lastCheck.inputs`).
    pub inputs: String,
    /// The periodic re-check interval, when there is one.
    pub period: Option<Duration>,
    /// The test-email request this check answered (the message was part of it).
    pub test_request: Option<&'a str>,
    /// The early warnings of this check ([`crate::warnings::findings`]).
    pub findings: &'a [Finding],
}

/// The status after `outcome`, from `current`. `now` is the time of the reconcile (seconds precision).
pub fn next(
    current: &SmtpSettingsStatus,
    outcome: &Outcome,
    generation: Option<i64>,
    now: Timestamp,
) -> SmtpSettingsStatus {
    let mut next = current.clone();
    let merge = |desired: &[Desired]| conditions::merge(&current.conditions, desired, generation, now);
    match outcome {
        Outcome::Invalid { invalid: i, test_request } => {
            next.conditions = merge(&invalid(i));
            next.observed_generation = generation;
            next.next_check_time = None;
            if let Some(request) = test_request {
                let message = format!("not sent: {}: {}", i.reason, i.message);
                next.test_email = Some(test_email(request, TestEmailResult::Failed, Some(now), message));
            }
        }
        Outcome::Deferred { until, limit, test_request } => {
            let message = format!("a check is owed but waits for {limit}; status.nextCheckTime says when it runs");
            next.conditions = merge(&[Desired::new(READY, Status::Unknown, CHECK_DEFERRED, message)]);
            next.next_check_time = Some(until.to_string());
            if let Some(request) = test_request {
                let message = format!("waits for {limit}; it is sent with the check at status.nextCheckTime");
                next.test_email = Some(test_email(request, TestEmailResult::Deferred, None, message));
            }
        }
        Outcome::Pending { sending } => {
            if needs_pending(current, generation) {
                let message = "a check of the SMTP server is running";
                next.conditions = merge(&[Desired::new(READY, Status::Unknown, CHECK_PENDING, message)]);
                next.observed_generation = generation;
            }
            if let Some(request) = sending {
                let message = "being sent with the running check";
                next.test_email = Some(test_email(request, TestEmailResult::Sending, Some(now), message.into()));
            }
        }
        Outcome::Interrupted { request } => {
            let message = "the operator stopped while sending this test email (restart, crash or leader change), \
                so whether it was delivered is unknown; it is not sent again: set a new annotation value to send another";
            next.test_email = Some(test_email(request, TestEmailResult::Unknown, Some(now), message.into()));
        }
        Outcome::Checked(c) => {
            let mut desired = from_report(c.report, c.credentials, c.oauth, c.insecure);
            desired.push(degraded(c.report, c.findings));
            next.conditions = merge(&desired);
            next.observed_generation = generation;
            next.last_check = Some(last_check(c.report, now.to_string(), c.inputs.clone()));
            next.next_check_time = c.period.map(|p| (now + p).to_string());
            if let Some(request) = c.test_request {
                next.test_email = Some(test_email_result(request, c.report, now));
            }
        }
    }
    next
}

/// Whether a check owed now shows `Ready=Unknown CheckPending`: a first check, or one for a new generation.
pub fn needs_pending(current: &SmtpSettingsStatus, generation: Option<i64>) -> bool {
    conditions::find(&current.conditions, READY).is_none() || current.observed_generation != generation
}

fn test_email(request: &str, result: TestEmailResult, time: Option<Timestamp>, message: String) -> TestEmailStatus {
    TestEmailStatus {
        request: request.into(),
        result,
        time: time.map(|t| t.to_string()),
        message: conditions::truncate(message, MAX_TEST_EMAIL_MESSAGE),
    }
}

/// `status.testEmail` after a check that carried the test message.
fn test_email_result(request: &str, report: &Report, now: Timestamp) -> TestEmailStatus {
    let (result, message) = match (&report.outcome, &report.test_email) {
        (Ok(()), Some(Ok(reply))) => (TestEmailResult::Sent, reply.clone()),
        (Ok(()), None) => (TestEmailResult::Failed, "not sent: spec.testEmail.to lists no recipient".into()),
        (Err(f), _) | (Ok(()), Some(Err(f))) => {
            (TestEmailResult::Failed, format!("{}: {}", f.reason, failure_message(f)))
        }
    };
    test_email(request, result, Some(now), message)
}

/// Reason of `Ready=True`.
pub const CHECK_SUCCEEDED: &str = "CheckSucceeded";
/// Reason of `Ready=Unknown` while a check is owed and about to run.
pub const CHECK_PENDING: &str = "CheckPending";
/// Reason of `Ready=Unknown` while a check waits for a rate limit.
pub const CHECK_DEFERRED: &str = "CheckDeferred";
/// Reason of `Connected`/`Authenticated=Unknown` when an earlier step stopped the check (and of
/// `Degraded=Unknown` when the check did not pass).
pub const NOT_CHECKED: &str = "NotChecked";
/// Reason of `Degraded=False`: the check passed and warned of nothing.
pub const NO_WARNINGS: &str = "NoWarnings";

/// The `Degraded` condition after a check: True with the first (most urgent) finding's reason and every
/// finding's message, False without findings, Unknown when the check did not pass.
pub fn degraded(report: &Report, findings: &[Finding]) -> Desired {
    let failed = report.outcome.as_ref().err().filter(|f| f.reason.condition() != ConditionKind::TestEmail);
    match (failed, findings.first()) {
        (Some(_), _) => degraded_not_checked(),
        (None, None) => Desired::new(DEGRADED, Status::False, NO_WARNINGS, "the last check passed without warnings"),
        (None, Some(first)) => {
            let messages: Vec<&str> = findings.iter().map(|f| f.message.as_str()).collect();
            Desired::new(DEGRADED, Status::True, first.warning.as_str(), messages.join("; also: "))
        }
    }
}

fn degraded_not_checked() -> Desired {
    Desired::new(DEGRADED, Status::Unknown, NOT_CHECKED, "early warnings need a passing check (see Ready)")
}

/// Conditions for a spec that cannot be checked.
pub fn invalid(invalid: &Invalid) -> Vec<Desired> {
    let not_checked = "not checked: the spec or a referenced object is not usable (see condition Valid)";
    vec![
        Desired::new(VALID, Status::False, invalid.reason.as_str(), invalid.message.clone()),
        Desired::new(CONNECTED, Status::Unknown, NOT_CHECKED, not_checked),
        Desired::new(AUTHENTICATED, Status::Unknown, NOT_CHECKED, not_checked),
        Desired::new(READY, Status::False, invalid.reason.as_str(), invalid.message.clone()),
        degraded_not_checked(),
    ]
}

/// Describes a failure for a condition message: step, reason text, server reply.
pub fn failure_message(f: &Failure) -> String {
    let mut m = format!("{} failed: {}", f.step.as_str(), f.message);
    if let Some(r) = &f.reply
        && !f.message.contains(&r.text)
    {
        m.push_str(&format!(" (server replied {} {})", r.code, r.text));
    }
    m
}

/// Conditions after a check ran. `insecure` adds the skip-verify note to Ready's message.
pub fn from_report(report: &Report, credentials: &Credentials, oauth: bool, insecure: bool) -> Vec<Desired> {
    let endpoint = report.peer.map(|p| format!(" ({p})")).unwrap_or_default();
    let tls = report.tls_version.as_deref().map(|v| format!(", TLS {v}")).unwrap_or_default();
    let valid = Desired::new(VALID, Status::True, "Valid", "the spec and every referenced object are usable");
    let auth_configured = oauth || !matches!(credentials, Credentials::None);
    let auth_ok = || match report.auth_mechanism.as_deref() {
        Some(m) if auth_configured => {
            Desired::new(AUTHENTICATED, Status::True, "Authenticated", format!("AUTH {m} accepted"))
        }
        _ => Desired::new(AUTHENTICATED, Status::True, "AuthNotConfigured", "no authentication configured"),
    };
    let connected_ok =
        || Desired::new(CONNECTED, Status::True, "Connected", format!("connected{endpoint}{tls}; EHLO accepted"));
    let skip_note =
        if insecure { " WARNING: certificate verification is disabled (tls.insecureSkipVerify)." } else { "" };
    let passed = || {
        vec![
            valid.clone(),
            connected_ok(),
            auth_ok(),
            Desired::new(
                READY,
                Status::True,
                CHECK_SUCCEEDED,
                format!("the SMTP server accepted the connection{tls} and the configured authentication.{skip_note}"),
            ),
        ]
    };
    match &report.outcome {
        Ok(()) => passed(),
        Err(f) => {
            let message = format!("{}{skip_note}", failure_message(f));
            let not_checked = |why: &str| format!("not checked: {why}");
            let (connected, authenticated, ready_status) = match f.reason.condition() {
                ConditionKind::Valid => {
                    let v = Desired::new(VALID, Status::False, f.reason.as_str(), message.clone());
                    return vec![
                        v,
                        Desired::new(
                            CONNECTED,
                            Status::Unknown,
                            NOT_CHECKED,
                            not_checked("refused by policy before connecting"),
                        ),
                        Desired::new(
                            AUTHENTICATED,
                            Status::Unknown,
                            NOT_CHECKED,
                            not_checked("refused by policy before connecting"),
                        ),
                        Desired::new(READY, Status::False, f.reason.as_str(), message),
                    ];
                }
                ConditionKind::Connected => (
                    Desired::new(CONNECTED, Status::False, f.reason.as_str(), message.clone()),
                    Desired::new(AUTHENTICATED, Status::Unknown, NOT_CHECKED, not_checked("the connection failed")),
                    Status::False,
                ),
                ConditionKind::Authenticated if f.step == crate::engine::Step::Token => (
                    Desired::new(
                        CONNECTED,
                        Status::Unknown,
                        NOT_CHECKED,
                        not_checked("no access token, so no connection was made"),
                    ),
                    Desired::new(AUTHENTICATED, Status::False, f.reason.as_str(), message.clone()),
                    Status::False,
                ),
                ConditionKind::Authenticated => (
                    connected_ok(),
                    Desired::new(AUTHENTICATED, Status::False, f.reason.as_str(), message.clone()),
                    Status::False,
                ),
                // only the test email failed: the connection and auth check passed
                ConditionKind::TestEmail => return passed(),
            };
            vec![valid, connected, authenticated, Desired::new(READY, ready_status, f.reason.as_str(), message)]
        }
    }
}

/// `status.lastCheck` for a report. A failure of only the test email counts as a passed check.
pub fn last_check(report: &Report, time: String, inputs: String) -> LastCheck {
    let failed = report.outcome.as_ref().err().filter(|f| f.reason.condition() != ConditionKind::TestEmail);
    LastCheck {
        time,
        result: if failed.is_some() { CheckResult::Failed } else { CheckResult::Succeeded },
        reason: failed.map(|f| f.reason.as_str().to_string()).unwrap_or_else(|| "Succeeded".into()),
        duration_milliseconds: i64::try_from(report.duration.as_millis()).unwrap_or(i64::MAX),
        tls_version: report.tls_version.clone(),
        auth_mechanism: report.auth_mechanism.clone(),
        server_mechanisms: report.server_mechanisms.clone(),
        certificate: report.certificates.first().map(certificate_status),
        token_endpoint_certificate: report.token_certificates.first().map(certificate_status),
        inputs: Some(inputs),
    }
}

fn certificate_status(c: &crate::engine::CertificateInfo) -> CertificateStatus {
    CertificateStatus {
        subject: c.subject.clone(),
        issuer: c.issuer.clone(),
        dns_names: c.dns_names.clone(),
        not_after: crate::warnings::rfc3339(c.not_after),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Reason, Reply, SecretValue, Step};
    use std::time::Duration;

    fn report(outcome: Result<(), Failure>) -> Report {
        Report {
            outcome,
            last_step: Step::Quit,
            tls_version: Some("1.3".into()),
            server_mechanisms: vec!["PLAIN".into(), "LOGIN".into()],
            auth_mechanism: Some("PLAIN".into()),
            certificates: vec![],
            plaintext_auth: vec![],
            token_certificates: vec![],
            peer: Some("192.0.2.1:587".parse().unwrap()),
            step_durations: vec![],
            duration: Duration::from_millis(412),
            test_email: None,
        }
    }

    fn password() -> Credentials {
        Credentials::Password { username: "u".into(), password: SecretValue::new("pw"), mechanisms: vec![] }
    }

    fn get<'a>(d: &'a [Desired], t: &str) -> &'a Desired {
        d.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn success_sets_all_true() {
        let d = from_report(&report(Ok(())), &password(), false, false);
        assert_eq!(get(&d, READY).status, Status::True);
        assert_eq!(get(&d, AUTHENTICATED).reason, "Authenticated");
        assert!(get(&d, CONNECTED).message.contains("TLS 1.3"));
        let d = from_report(&report(Ok(())), &Credentials::None, false, true);
        assert_eq!(get(&d, AUTHENTICATED).reason, "AuthNotConfigured");
        assert!(get(&d, READY).message.contains("insecureSkipVerify"));
    }

    #[test]
    fn auth_failure_keeps_connected_true_and_carries_the_reply() {
        let f = Failure {
            step: Step::Auth,
            reason: Reason::AuthenticationFailed,
            message: "the server refused the credentials; check the password".into(),
            reply: Some(Reply { code: 535, text: "5.7.8 Authentication credentials invalid".into() }),
        };
        let d = from_report(&report(Err(f)), &password(), false, false);
        assert_eq!(get(&d, CONNECTED).status, Status::True);
        assert_eq!(get(&d, AUTHENTICATED).reason, "AuthenticationFailed");
        assert_eq!(get(&d, READY).status, Status::False);
        assert!(get(&d, READY).message.contains("535 5.7.8"), "{}", get(&d, READY).message);
        let lc = last_check(
            &report(Err(Failure {
                step: Step::Auth,
                reason: Reason::AuthenticationFailed,
                message: String::new(),
                reply: None,
            })),
            "t".into(),
            "i".into(),
        );
        assert_eq!(lc.result, CheckResult::Failed);
        assert_eq!(lc.reason, "AuthenticationFailed");
    }

    #[test]
    fn connection_failure_leaves_auth_unknown_and_policy_failure_is_invalid() {
        let f =
            Failure { step: Step::Connect, reason: Reason::ConnectionRefused, message: "refused".into(), reply: None };
        let d = from_report(&report(Err(f)), &password(), false, false);
        assert_eq!(get(&d, CONNECTED).reason, "ConnectionRefused");
        assert_eq!(get(&d, AUTHENTICATED).status, Status::Unknown);
        let f = Failure {
            step: Step::Policy,
            reason: Reason::DestinationNotAllowed,
            message: "denied".into(),
            reply: None,
        };
        let d = from_report(&report(Err(f)), &password(), false, false);
        assert_eq!(get(&d, VALID).status, Status::False);
        assert_eq!(get(&d, READY).reason, "DestinationNotAllowed");
    }

    #[test]
    fn test_email_failure_does_not_fail_the_check() {
        let f = Failure { step: Step::RcptTo, reason: Reason::RecipientRejected, message: "no".into(), reply: None };
        let r = report(Err(f));
        assert_eq!(get(&from_report(&r, &password(), false, false), READY).status, Status::True);
        assert_eq!(last_check(&r, "t".into(), "i".into()).result, CheckResult::Succeeded);
    }
}
