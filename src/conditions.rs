//! Conditions: building the four condition types and merging them into the existing list so that
//! `lastTransitionTime` moves only when `status` really changes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

pub const VALID: &str = "Valid";
pub const CONNECTED: &str = "Connected";
pub const AUTHENTICATED: &str = "Authenticated";
pub const READY: &str = "Ready";
/// An early warning while the check passes (`Ready` unaffected); see `crate::warnings`.
pub const DEGRADED: &str = "Degraded";

/// Condition messages are capped (the API allows 32 KiB; `kubectl describe` needs far less).
const MAX_MESSAGE: usize = 1024;

/// Condition status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    True,
    False,
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }
}

/// A desired condition, before merging (no timestamp yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub type_: &'static str,
    pub status: Status,
    pub reason: String,
    pub message: String,
}

impl Desired {
    pub fn new(type_: &'static str, status: Status, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self { type_, status, reason: reason.into(), message: truncate(message.into(), MAX_MESSAGE) }
    }
}

/// Truncates on a character boundary, marking the cut.
pub fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max.saturating_sub(3);
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// Merges desired conditions into `existing`: an unchanged `status` keeps its `lastTransitionTime`; a changed
/// one gets `now`. Conditions of other types are kept; the result is ordered by the desired list first.
pub fn merge(existing: &[Condition], desired: &[Desired], generation: Option<i64>, now: Timestamp) -> Vec<Condition> {
    let mut out: Vec<Condition> = desired
        .iter()
        .map(|d| {
            let previous = existing.iter().find(|c| c.type_ == d.type_);
            let last_transition_time = match previous {
                Some(p) if p.status == d.status.as_str() => p.last_transition_time.clone(),
                _ => Time(now),
            };
            Condition {
                type_: d.type_.to_string(),
                status: d.status.as_str().to_string(),
                reason: d.reason.clone(),
                message: d.message.clone(),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect();
    for c in existing {
        if !desired.iter().any(|d| d.type_ == c.type_) {
            out.push(c.clone());
        }
    }
    out
}

/// Finds a condition by type.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn transition_time_moves_only_on_status_change() {
        let t0 = ts("2026-12-01T10:00:00Z");
        let t1 = ts("2026-12-01T11:00:00Z");
        let first = merge(&[], &[Desired::new(READY, Status::False, "ConnectionRefused", "a")], Some(1), t0);
        assert_eq!(first[0].last_transition_time.0, t0);
        // same status, other message and reason: time stays
        let second = merge(&first, &[Desired::new(READY, Status::False, "ConnectionTimedOut", "b")], Some(2), t1);
        assert_eq!(second[0].last_transition_time.0, t0);
        assert_eq!(second[0].reason, "ConnectionTimedOut");
        assert_eq!(second[0].observed_generation, Some(2));
        // status flips: time moves
        let third = merge(&second, &[Desired::new(READY, Status::True, "CheckSucceeded", "ok")], Some(2), t1);
        assert_eq!(third[0].last_transition_time.0, t1);
    }

    #[test]
    fn unrelated_conditions_are_kept_and_messages_capped() {
        let t0 = ts("2026-12-01T10:00:00Z");
        let other = merge(&[], &[Desired::new("Other", Status::True, "X", "y")], None, t0);
        let merged = merge(&other, &[Desired::new(READY, Status::True, "R", "é".repeat(2000))], None, t0);
        assert_eq!(merged.len(), 2);
        assert!(merged[0].message.len() <= MAX_MESSAGE);
        assert!(merged[0].message.ends_with("..."));
    }
}
