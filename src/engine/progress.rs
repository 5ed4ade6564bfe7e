//! Per-step timing and what the report collects along the way.

use std::time::{Duration, Instant};

use super::{Failure, Report, Step};

/// Per-step timing and what the report collects along the way.
pub(crate) struct Progress {
    pub(crate) start: Instant,
    pub(crate) current: Option<(Step, Instant)>,
    pub(crate) steps: Vec<(Step, Duration)>,
    pub(crate) last_step: Step,
    pub(crate) tls_version: Option<String>,
    pub(crate) server_mechanisms: Vec<String>,
    pub(crate) auth_mechanism: Option<String>,
    pub(crate) peer: Option<std::net::SocketAddr>,
    pub(crate) certificates: Vec<super::CertificateInfo>,
    pub(crate) plaintext_auth: Vec<String>,
    pub(crate) test_email: Option<Result<String, Failure>>,
}

impl Progress {
    pub(crate) fn new() -> Self {
        Progress {
            start: Instant::now(),
            current: None,
            steps: Vec::new(),
            last_step: Step::Policy,
            tls_version: None,
            server_mechanisms: Vec::new(),
            auth_mechanism: None,
            peer: None,
            certificates: Vec::new(),
            plaintext_auth: Vec::new(),
            test_email: None,
        }
    }

    pub(crate) fn step(&mut self, s: Step) {
        self.step_at(s, Instant::now());
    }

    pub(crate) fn step_at(&mut self, s: Step, at: Instant) {
        if self.current.is_some_and(|(current, _)| current == s) {
            return; // the same step again (e.g. policy checks before and after the test message): one entry
        }
        let begins = match self.current.take() {
            Some((prev, t0)) => {
                self.steps.push((prev, at.saturating_duration_since(t0)));
                at
            }
            // the first step runs from the start: the steps cover the whole check and add up to its duration
            None => self.start,
        };
        self.current = Some((s, begins));
        self.last_step = s;
    }

    pub(crate) fn into_report(mut self, outcome: Result<(), Failure>) -> Report {
        let now = Instant::now();
        if let Some((prev, t0)) = self.current.take() {
            self.steps.push((prev, now.saturating_duration_since(t0)));
        }
        let last_step = match &outcome {
            Err(f) => f.step,
            Ok(()) => self.last_step,
        };
        Report {
            outcome,
            last_step,
            tls_version: self.tls_version,
            server_mechanisms: self.server_mechanisms,
            auth_mechanism: self.auth_mechanism,
            peer: self.peer,
            certificates: self.certificates,
            plaintext_auth: self.plaintext_auth,
            token_certificates: Vec::new(),
            step_durations: self.steps,
            duration: now.saturating_duration_since(self.start),
            test_email: self.test_email,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_records_steps_in_order() {
        let mut p = Progress::new();
        p.step(Step::Policy);
        p.step(Step::Resolve);
        p.step(Step::Connect);
        let r = p.into_report(Ok(()));
        assert_eq!(
            r.step_durations.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            [Step::Policy, Step::Resolve, Step::Connect]
        );
        assert_eq!(r.last_step, Step::Connect);
    }

    /// The steps are timed back to back from the start to the report: they add up to its duration exactly
    /// (`smtp-operator check` prints both, issue 14).
    #[test]
    fn step_durations_add_up_to_the_duration() {
        let mut p = Progress::new();
        std::thread::sleep(std::time::Duration::from_millis(2)); // setup before the first step belongs to it
        p.step(Step::Policy);
        p.step(Step::Resolve);
        p.step_at(Step::Ehlo, Instant::now());
        let r = p.into_report(Ok(()));
        assert_eq!(r.step_durations.iter().map(|(_, d)| *d).sum::<std::time::Duration>(), r.duration);
        assert!(r.step_durations[0].1 >= std::time::Duration::from_millis(2), "{:?}", r.step_durations);
    }
}
