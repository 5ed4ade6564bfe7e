//! Runs a validated [`Plan`]: for OAuth2 the access token first (from the shared cache), then the SMTP check.
//! Shared by the controller and `smtp-operator check`, so both behave the same.

use std::time::{Duration, Instant};

use crate::engine::token::TokenCache;
use crate::engine::{self, Credentials, Failure, Reason, Report, Step, TestMessage};
use crate::validate::Plan;

/// Runs the plan, adding `test_message` when given.
pub async fn run(plan: &Plan, tokens: &TokenCache, test_message: Option<TestMessage>) -> Report {
    let mut request = plan.request.clone();
    request.test_message = test_message;
    if let Some(oauth) = &plan.oauth {
        let started = Instant::now();
        let token = match tokens.get(&oauth.request).await {
            Ok(token) => token.token,
            Err(e) => return token_failure(e.step, e.reason, e.message, started.elapsed()),
        };
        request.credentials = Credentials::XOAuth2 { username: oauth.username.clone(), token: token.clone() };
        let report = engine::run(&request).await;
        // a token the server refuses is not reused: the next check fetches a fresh one
        if let Err(f) = &report.outcome
            && f.reason == Reason::AuthenticationFailed
        {
            tokens.invalidate(&oauth.request, &token);
        }
        return report;
    }
    engine::run(&request).await
}

fn token_failure(step: Step, reason: Reason, message: String, duration: Duration) -> Report {
    Report {
        outcome: Err(Failure { step, reason, message, reply: None }),
        last_step: step,
        tls_version: None,
        server_mechanisms: vec![],
        auth_mechanism: None,
        peer: None,
        step_durations: vec![(step, duration)],
        duration,
        test_message_reply: None,
    }
}
