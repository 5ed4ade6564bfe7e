//! The events of one reconcile (docs/api.md, "Events"): [`to_publish`] is a pure function of the status
//! before and after and of the check report, if a check ran; [`publish`] sends them.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::runtime::events::{Event, EventType};
use kube::{Client, Resource};
use tracing::warn;

use crate::api::{CheckResult, SmtpSettingsStatus, TestEmailResult};
use crate::conditions::{self, DEGRADED, VALID};
use crate::engine::{self, reason::ConditionKind};
use crate::status;

/// Longest event note (the API allows 1 KiB).
const MAX_NOTE: usize = 1000;

/// One event to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: String,
    pub note: String,
    pub action: &'static str,
}

impl Note {
    fn new(warning: bool, reason: &str, note: impl Into<String>, action: &'static str) -> Note {
        Note { warning, reason: reason.into(), note: conditions::truncate(note.into(), MAX_NOTE), action }
    }
}

/// The check that ran in this reconcile, if any.
pub struct Ran<'a> {
    pub report: &'a engine::Report,
    pub insecure: bool,
    /// The early warnings of the check.
    pub findings: &'a [crate::warnings::Finding],
}

/// A Warning per early warning that `old` did not show yet (`Degraded` was not True or did not carry it): one
/// event on the transition into each, none while it stays.
fn new_findings(old: &SmtpSettingsStatus, findings: &[crate::warnings::Finding]) -> Vec<Note> {
    let shown = conditions::find(&old.conditions, DEGRADED).filter(|c| c.status == "True").map(|c| c.message.as_str());
    findings
        .iter()
        .filter(|f| !shown.is_some_and(|m| m.contains(&f.message)))
        .map(|f| Note::new(true, f.warning.as_str(), f.message.clone(), "Check"))
        .collect()
}

/// The events for the step from `old` to `new`. Comparisons use the stored (truncated) forms, so an
/// unchanged refusal publishes nothing however long its message is.
pub fn to_publish(old: &SmtpSettingsStatus, new: &SmtpSettingsStatus, ran: Option<&Ran>) -> Vec<Note> {
    let mut out = Vec::new();
    match ran {
        None => {
            let valid = |s: &SmtpSettingsStatus| {
                conditions::find(&s.conditions, VALID).map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
            };
            if let Some((st, reason, message)) = valid(new).filter(|v| v.0 == "False")
                && valid(old) != Some((st, reason.clone(), message.clone()))
            {
                out.push(Note::new(true, &reason, message, "Validate"));
            }
        }
        Some(ran) => {
            if ran.insecure {
                let note = "TLS certificate verification is disabled (spec.tls.insecureSkipVerify); the server's \
                            identity was not verified";
                out.push(Note::new(true, "InsecureSkipVerify", note, "Check"));
            }
            match &ran.report.outcome {
                Err(f) if f.reason.condition() != ConditionKind::TestEmail => {
                    out.push(Note::new(true, f.reason.as_str(), status::failure_message(f), "Check"));
                }
                _ if old.last_check.as_ref().map(|l| l.result) != Some(CheckResult::Succeeded) => {
                    out.push(Note::new(false, "CheckSucceeded", "the SMTP server check passed", "Check"));
                }
                _ => {}
            }
            out.extend(new_findings(old, ran.findings));
        }
    }
    if new.test_email != old.test_email
        && let Some(t) = &new.test_email
    {
        match t.result {
            TestEmailResult::Sent => {
                out.push(Note::new(false, "TestEmailSent", format!("test email accepted: {}", t.message), "TestEmail"))
            }
            TestEmailResult::Failed => out.push(Note::new(true, "TestEmailFailed", t.message.clone(), "TestEmail")),
            TestEmailResult::Deferred | TestEmailResult::Sending | TestEmailResult::Unknown => {}
        }
    }
    out
}

/// Publishes the notes about `obj` (failures are logged; an event is never worth failing a reconcile).
/// Warnings go through the recorder, which folds a repeat within minutes into the first event's series. Normal
/// notes (a first success, a test email sent) are created as they are: the recorder would keep a copy of each
/// for six minutes to count repeats that these notes do not have, about 2.5 KB per object when a backlog of
/// 10,000 objects goes Ready at once.
pub async fn publish<K: Resource<DynamicType = ()>>(ctx: &super::Context, obj: &K, notes: Vec<Note>) {
    let reference = obj.object_ref(&());
    let instance = ctx.settings.pod_name.as_deref().unwrap_or(CONTROLLER);
    for n in notes {
        let ev = Event {
            type_: if n.warning { EventType::Warning } else { EventType::Normal },
            reason: n.reason.clone(),
            note: Some(n.note),
            action: n.action.into(),
            secondary: None,
        };
        let published = if n.warning {
            ctx.recorder.publish(&ev, &reference).await
        } else {
            create(ctx.client.clone(), instance, ev, reference.clone()).await
        };
        if let Err(e) = published {
            warn!(error = %e, reason = n.reason, "could not publish event");
        }
    }
}

/// Name of the reporting controller of every event.
pub const CONTROLLER: &str = "smtp-operator";

/// Creates one event as the recorder would (same name scheme and fields), without keeping a copy.
async fn create(client: Client, instance: &str, ev: Event, regarding: ObjectReference) -> kube::Result<()> {
    let now = k8s_openapi::jiff::Timestamp::now();
    let name = format!("{}.{:x}", regarding.name.as_deref().unwrap_or(CONTROLLER), now.as_nanosecond());
    let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".into());
    let event = K8sEvent {
        metadata: ObjectMeta { name: Some(name), namespace: Some(namespace.clone()), ..Default::default() },
        action: Some(ev.action),
        reason: Some(ev.reason),
        note: ev.note,
        event_time: Some(MicroTime(now)),
        regarding: Some(regarding),
        reporting_controller: Some(CONTROLLER.into()),
        reporting_instance: Some(instance.into()),
        type_: Some(if ev.type_ == EventType::Warning { "Warning" } else { "Normal" }.into()),
        ..Default::default()
    };
    Api::<K8sEvent>::namespaced(client, &namespace).create(&PostParams::default(), &event).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::TestEmailStatus;
    use crate::engine::{Failure, Reason, Report, Step};
    use crate::status::{Checked, Outcome};
    use crate::validate::Invalid;
    use k8s_openapi::jiff::Timestamp;
    use std::time::Duration;

    fn now() -> Timestamp {
        "2026-12-01T10:00:00Z".parse().unwrap()
    }
    fn report(outcome: Result<(), Failure>) -> Report {
        Report {
            outcome,
            last_step: Step::Quit,
            tls_version: None,
            server_mechanisms: vec![],
            auth_mechanism: None,
            certificates: vec![],
            plaintext_auth: vec![],
            token_certificates: vec![],
            peer: None,
            step_durations: vec![],
            duration: Duration::from_millis(5),
            test_email: None,
        }
    }
    fn reasons(notes: &[Note]) -> Vec<&str> {
        notes.iter().map(|n| n.reason.as_str()).collect()
    }
    fn invalid(message: String) -> Invalid {
        Invalid { reason: Reason::SecretNotFound, message }
    }

    #[test]
    fn a_long_refusal_warns_once_not_on_every_reconcile() {
        let i = invalid("x".repeat(5000));
        let old = SmtpSettingsStatus::default();
        let first = status::next(&old, &Outcome::Invalid { invalid: &i, test_request: None }, Some(1), now());
        assert_eq!(reasons(&to_publish(&old, &first, None)), vec!["SecretNotFound"]);
        let again = status::next(&first, &Outcome::Invalid { invalid: &i, test_request: None }, Some(1), now());
        assert_eq!(again, first);
        assert!(to_publish(&first, &again, None).is_empty(), "warned again for the same refusal");
    }

    #[test]
    fn an_invalid_spec_that_answers_a_test_request_says_test_email_failed() {
        let i = invalid("secret gone".into());
        let old = SmtpSettingsStatus::default();
        let new = status::next(&old, &Outcome::Invalid { invalid: &i, test_request: Some("v1") }, Some(1), now());
        assert_eq!(reasons(&to_publish(&old, &new, None)), vec!["SecretNotFound", "TestEmailFailed"]);
        let notes = to_publish(&old, &new, None);
        assert!(notes[1].warning && notes[1].note.contains("secret gone"), "{notes:?}");
    }

    #[test]
    fn check_events() {
        let old = SmtpSettingsStatus::default();
        let ok = report(Ok(()));
        let notes = to_publish(&old, &old, Some(&Ran { report: &ok, insecure: true, findings: &[] }));
        assert_eq!(reasons(&notes), vec!["InsecureSkipVerify", "CheckSucceeded"]);
        let f = Failure { step: Step::Auth, reason: Reason::AuthenticationFailed, message: "no".into(), reply: None };
        let failed = report(Err(f));
        assert_eq!(
            reasons(&to_publish(&old, &old, Some(&Ran { report: &failed, insecure: false, findings: &[] }))),
            vec!["AuthenticationFailed"]
        );
        // a passing check after a passing one says nothing; a sent test email says so
        let mut was_ok = old.clone();
        was_ok.last_check = Some(Default::default());
        let mut sent = was_ok.clone();
        sent.test_email = Some(TestEmailStatus {
            request: "v".into(),
            result: TestEmailResult::Sent,
            time: None,
            message: "250 ok".into(),
        });
        assert_eq!(
            reasons(&to_publish(&was_ok, &sent, Some(&Ran { report: &ok, insecure: false, findings: &[] }))),
            vec!["TestEmailSent"]
        );
        assert!(to_publish(&was_ok, &was_ok, Some(&Ran { report: &ok, insecure: false, findings: &[] })).is_empty());
    }

    #[test]
    fn a_warning_event_on_the_transition_into_each_early_warning_only() {
        use crate::warnings::{Finding, Warning};
        let expiring = Finding { warning: Warning::CertificateExpiresSoon, message: "expires on 2026-12-05".into() };
        let plain = Finding { warning: Warning::AuthOverPlaintextOffered, message: "AUTH before STARTTLS".into() };
        let ok = report(Ok(()));
        let checked = |old: &SmtpSettingsStatus, findings: &[Finding]| {
            let c = Checked {
                report: &ok,
                credentials: &crate::engine::Credentials::None,
                oauth: false,
                insecure: false,
                inputs: "i".into(),
                period: None,
                test_request: None,
                findings,
            };
            let new = status::next(old, &Outcome::Checked(c), Some(1), now());
            let notes = to_publish(old, &new, Some(&Ran { report: &ok, insecure: false, findings }));
            (new, notes.into_iter().filter(|n| n.warning).map(|n| n.reason).collect::<Vec<_>>())
        };
        let (first, warned) = checked(&SmtpSettingsStatus::default(), std::slice::from_ref(&expiring));
        assert_eq!(warned, ["CertificateExpiresSoon"]);
        let (second, warned) = checked(&first, std::slice::from_ref(&expiring));
        assert!(warned.is_empty(), "warned again for the same finding: {warned:?}");
        let both = [expiring.clone(), plain];
        let (third, warned) = checked(&second, &both);
        assert_eq!(warned, ["AuthOverPlaintextOffered"], "only the new finding");
        let (cleared, warned) = checked(&third, &[]);
        assert!(warned.is_empty());
        let (_, warned) = checked(&cleared, std::slice::from_ref(&expiring));
        assert_eq!(warned, ["CertificateExpiresSoon"], "a finding that comes back warns again");
    }
}
