//! One time budget per check (docs/operations.md): `spec.check.timeout` is the budget of the whole check. A
//! [`Budget`] holds the deadline (start + timeout); every step (DNS, connect per address, TLS, each SMTP
//! command and reply, every phase of the token request) gets the smaller of its own cap and the time left.

use std::time::Duration;

use tokio::time::Instant;

/// The deadline of one check and the total it was given.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    deadline: Instant,
    total: Duration,
}

impl Budget {
    /// A budget of `total` starting now.
    pub fn new(total: Duration) -> Self {
        Budget { deadline: Instant::now() + total, total }
    }

    /// The rest of an existing budget (e.g. the SMTP part of a check whose token request already ran).
    pub fn until(deadline: Instant, total: Duration) -> Self {
        Budget { deadline, total }
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The whole budget (for messages: "within 30s").
    pub fn total(&self) -> Duration {
        self.total
    }

    /// Time left (zero once over).
    pub fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// The smaller of a step's own cap and the time left.
    pub fn cap(&self, own: Duration) -> Duration {
        own.min(self.left())
    }

    /// Runs `f` until the deadline; `Err(())` when the budget ran out first.
    pub async fn run<F: Future>(&self, f: F) -> Result<F::Output, ()> {
        tokio::time::timeout_at(self.deadline, f).await.map_err(|_| ())
    }

    /// Runs `f` for at most `cap(own)`.
    pub async fn run_capped<F: Future>(&self, own: Duration, f: F) -> Result<F::Output, ()> {
        tokio::time::timeout(self.cap(own), f).await.map_err(|_| ())
    }

    /// "the check's time budget (30s)" for messages.
    pub fn describe(&self) -> String {
        format!("the check's time budget ({}, spec.check.timeout)", crate::duration::format(self.total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn steps_get_the_smaller_of_cap_and_time_left() {
        let b = Budget::new(Duration::from_millis(300));
        assert_eq!(b.cap(Duration::from_millis(1)), Duration::from_millis(1));
        assert!(b.cap(Duration::from_secs(3)) <= Duration::from_millis(300));
        let started = Instant::now();
        assert!(b.run(std::future::pending::<()>()).await.is_err());
        assert!(started.elapsed() < Duration::from_secs(2), "the deadline ended the wait");
        assert_eq!(b.left(), Duration::ZERO);
        assert_eq!(b.cap(Duration::from_secs(3)), Duration::ZERO);
        assert_eq!(b.run(async { 1 }).await, Ok(1), "a ready future still completes at the deadline");
    }
}
