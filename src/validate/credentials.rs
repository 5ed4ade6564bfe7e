//! Credentials: where each Secret's value may be sent (Secret binding, docs/security.md), and the engine's
//! credentials (Basic) or the token request (OAuth2) built from the referenced values.

use std::time::Duration;

use crate::api::{self, AuthType, BasicMechanism, OAuth2Auth, OAuth2Grant, SmtpSettingsSpec};
use crate::engine::token::{self, TokenRequest};
use crate::engine::{Credentials, PasswordMechanism, Reason};
use crate::policy;

use super::destination::Destination;
use super::{Invalid, OAuthPlan, Purpose, RefKind, Reference, Referenced, SecurityPolicy, secret_value};

/// What building the credentials needs besides the spec.
pub(super) struct Context<'a> {
    pub refs: &'a [Reference],
    pub referenced: &'a Referenced,
    /// `tls.caBundle`, also trusted for the token endpoint.
    pub extra_roots: &'a [Vec<u8>],
    pub timeout: Duration,
}

/// Refuses when a referenced Secret does not allow the destination its value goes to: the SMTP password to
/// `server:port`, OAuth2 secrets to the token endpoint.
pub(super) fn bind_secrets(
    _spec: &SmtpSettingsSpec,
    refs: &[Reference],
    referenced: &Referenced,
    namespace: &str,
    server: &Destination,
    token: Option<&Destination>,
) -> Result<(), Invalid> {
    for r in refs.iter().filter(|r| r.kind == RefKind::Secret && r.purpose != Purpose::CaBundle) {
        let dest = match (r.purpose, token) {
            (Purpose::Password, _) => server,
            (_, Some(t)) => t,
            _ => continue,
        };
        check_binding(referenced, r, dest, namespace)?;
    }
    Ok(())
}

/// Refuses a Secret whose `smtp-operator.io/allowed-servers` does not list the destination.
fn check_binding(referenced: &Referenced, r: &Reference, dest: &Destination, namespace: &str) -> Result<(), Invalid> {
    let Some(obj) = referenced.objects.get(&(r.kind, r.name.clone())) else {
        return Ok(()); // reported as SecretNotFound where the value is needed
    };
    let existing = obj.annotations.get(policy::ALLOWED_SERVERS_ANNOTATION).map(String::as_str);
    let allowed = existing.map(|v| policy::parse_allowed_servers(v).0).unwrap_or_default();
    if policy::allows(&allowed, &dest.host, dest.port) {
        return Ok(());
    }
    Err(Invalid::new(
        Reason::CredentialsNotBoundToServer,
        format!(
            "the {} is not sent: {}",
            r.purpose.describe(),
            policy::credentials_not_bound_message(&r.name, namespace, &dest.host, dest.port, existing)
        ),
    ))
}

/// The engine's credentials, and for OAuth2 the token request (the token itself is obtained before the check).
pub(super) fn build(
    spec: &SmtpSettingsSpec,
    ctx: &Context<'_>,
    policy: &SecurityPolicy,
) -> Result<(Credentials, Option<OAuthPlan>), Invalid> {
    match spec.auth.type_ {
        AuthType::None => Ok((Credentials::None, None)),
        AuthType::Basic => {
            let b = spec
                .auth
                .basic
                .as_ref()
                .ok_or_else(|| Invalid::new(Reason::InvalidSpec, "auth.type Basic requires auth.basic"))?;
            let r = find(ctx.refs, Purpose::Password).expect("references() lists the password");
            let password = secret_value(ctx.referenced, r)?;
            let mechanisms = b
                .mechanisms
                .iter()
                .flatten()
                .map(|m| match m {
                    BasicMechanism::Plain => PasswordMechanism::Plain,
                    BasicMechanism::Login => PasswordMechanism::Login,
                })
                .collect();
            Ok((Credentials::Password { username: b.username.clone(), password, mechanisms }, None))
        }
        AuthType::OAuth2 => {
            let o = spec
                .auth
                .oauth2
                .as_ref()
                .ok_or_else(|| Invalid::new(Reason::InvalidSpec, "auth.type OAuth2 requires auth.oauth2"))?;
            // filled in with the access token before the check runs
            Ok((Credentials::None, Some(oauth_plan(o, ctx, policy)?)))
        }
    }
}

fn find(refs: &[Reference], purpose: Purpose) -> Option<&Reference> {
    refs.iter().find(|r| r.purpose == purpose)
}

fn oauth_plan(o: &OAuth2Auth, ctx: &Context<'_>, policy: &SecurityPolicy) -> Result<OAuthPlan, Invalid> {
    if !o.token_url.starts_with("https://") {
        return Err(Invalid::new(Reason::InvalidSpec, "auth.oauth2.tokenUrl must be an https:// URL"));
    }
    let secret_refs: Vec<Reference> = ctx.refs.iter().filter(|r| r.purpose != Purpose::CaBundle).cloned().collect();
    Ok(OAuthPlan {
        username: o.username.clone(),
        request: TokenRequest {
            token_url: o.token_url.clone(),
            client_id: o.client_id.clone(),
            grant: grant(o, ctx)?,
            scopes: o.scopes.clone(),
            client_auth: match o.client_auth_method {
                api::ClientAuthMethod::RequestBody => token::ClientAuth::RequestBody,
                api::ClientAuthMethod::BasicAuth => token::ClientAuth::BasicAuth,
            },
            extra_roots: ctx.extra_roots.to_vec(),
            timeout: ctx.timeout,
            policy: policy.token_dial(),
        },
        secret_version: ctx.referenced.versions(&secret_refs).join(","),
    })
}

/// The grant with its secret values.
fn grant(o: &OAuth2Auth, ctx: &Context<'_>) -> Result<token::Grant, Invalid> {
    let need = |p: Purpose, what: &str| {
        find(ctx.refs, p)
            .ok_or_else(|| Invalid::new(Reason::InvalidSpec, format!("grant {:?} requires {what}", o.grant)))
            .and_then(|r| secret_value(ctx.referenced, r))
    };
    Ok(match o.grant {
        OAuth2Grant::ClientCredentials => {
            token::Grant::ClientCredentials { client_secret: need(Purpose::ClientSecret, "clientSecretRef")? }
        }
        OAuth2Grant::RefreshToken => token::Grant::RefreshToken {
            client_secret: need(Purpose::ClientSecret, "clientSecretRef")?,
            refresh_token: need(Purpose::RefreshToken, "refreshTokenRef")?,
        },
        OAuth2Grant::JwtBearer => token::Grant::JwtBearer {
            private_key: need(Purpose::PrivateKey, "privateKeyRef")?,
            subject: o.subject.clone().unwrap_or_default(),
        },
    })
}
