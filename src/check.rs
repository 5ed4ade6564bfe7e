//! Runs a validated [`Plan`]: for OAuth2 the access token first (from the shared cache), then the SMTP check.
//! Shared by the controller and `smtp-operator check`, so both behave the same.
//!
//! One [`Budget`] of `spec.check.timeout` covers both: the token request runs first within that budget, the
//! SMTP check gets what is left of it (docs/operations.md).

use crate::engine::sanitize::Sanitizer;
use crate::engine::token::TokenCache;
use crate::engine::{self, Budget, Credentials, Failure, FailureClass, Reason, Report, Step, TestMessage};
use crate::validate::Plan;

/// How long after the budget the backstop around the token request fires.
const BACKSTOP_GRACE: std::time::Duration = std::time::Duration::from_millis(250);

/// Longest failure message kept (characters).
const MAX_MESSAGE_CHARS: usize = 1000;

/// Runs the plan, adding `test_message` when given.
pub async fn run(plan: &Plan, tokens: &TokenCache, test_message: Option<TestMessage>) -> Report {
    run_classified(plan, tokens, test_message).await.0
}

/// [`run`], plus the class of the check's failure (`None` when it passed): a token failure as the token client
/// classed it, an SMTP one by [`Failure::class`].
pub async fn run_classified(
    plan: &Plan,
    tokens: &TokenCache,
    test_message: Option<TestMessage>,
) -> (Report, Option<FailureClass>) {
    let budget = Budget::new(plan.request.timeout);
    let mut request = plan.request.clone();
    request.test_message = test_message;
    let Some(oauth) = &plan.oauth else {
        return classified(engine::run_within(&request, budget).await);
    };
    // the token request runs first, so its own budget of the whole timeout ends with the check's deadline
    let mut token_request = oauth.request.clone();
    token_request.timeout = budget.total();
    // the token request keeps its own deadline (and names the phase it ran out in); this bound is a backstop,
    // e.g. for a caller that waits on another caller's fetch of the same token
    let (token, token_certificates) =
        match tokio::time::timeout(budget.left() + BACKSTOP_GRACE, tokens.get(&token_request)).await {
            Ok(Ok(token)) => (token.token, token.certificates),
            Ok(Err(e)) => {
                let secrets = token_request.grant.secrets();
                let message = Sanitizer::for_secrets(secrets).clean(&e.message, MAX_MESSAGE_CHARS);
                let class = if e.transient { FailureClass::Transient } else { FailureClass::Permanent };
                return (token_failure(e.step, e.reason, message, budget), Some(class));
            }
            Err(_) => {
                let message = format!(
                    "the token request did not finish within {}; check that the token endpoint answers",
                    budget.describe()
                );
                let failure = token_failure(Step::Token, Reason::TokenRequestFailed, message, budget);
                return (failure, Some(FailureClass::Transient));
            }
        };
    request.credentials = Credentials::XOAuth2 { username: oauth.username.clone(), token: token.clone() };
    let mut report = engine::run_within(&request, budget).await;
    report.token_certificates = token_certificates;
    // a token the server refuses is not reused: the next check fetches a fresh one
    if let Err(f) = &report.outcome
        && f.reason == Reason::AuthenticationFailed
    {
        tokens.invalidate(&oauth.request, &token);
    }
    classified(report)
}

fn classified(report: Report) -> (Report, Option<FailureClass>) {
    let class = report.outcome.as_ref().err().map(Failure::class);
    (report, class)
}

fn token_failure(step: Step, reason: Reason, message: String, budget: Budget) -> Report {
    let duration = budget.total().saturating_sub(budget.left());
    Report {
        outcome: Err(Failure { step, reason, message, reply: None }),
        last_step: step,
        tls_version: None,
        server_mechanisms: vec![],
        auth_mechanism: None,
        peer: None,
        certificates: vec![],
        plaintext_auth: vec![],
        token_certificates: vec![],
        step_durations: vec![(step, duration)],
        duration,
        test_email: None,
    }
}
