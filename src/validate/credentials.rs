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

/// Refuses when a referenced Secret does not allow where its value goes: the SMTP password to `server:port`;
/// an OAuth2 client secret, refresh token or private key to the token endpoint AND the SMTP server, because the
/// access token obtained with it is a credential for that server too. For JwtBearer, the key's Secret must
/// also list the users it may act as. Nothing is sent anywhere when this fails.
pub(super) fn bind_secrets(
    spec: &SmtpSettingsSpec,
    refs: &[Reference],
    referenced: &Referenced,
    namespace: &str,
    server: &Destination,
    token: Option<&Destination>,
) -> Result<(), Invalid> {
    for r in refs.iter().filter(|r| r.kind == RefKind::Secret && r.purpose != Purpose::CaBundle) {
        let dests = match (r.purpose, token) {
            (Purpose::Password, _) => vec![server],
            (_, Some(t)) => vec![t, server],
            _ => continue,
        };
        check_binding(referenced, r, &dests, namespace)?;
    }
    match (&spec.auth.type_, &spec.auth.oauth2) {
        (AuthType::OAuth2, Some(o)) if o.grant == OAuth2Grant::JwtBearer => {
            check_subjects(o, refs, referenced, namespace)
        }
        _ => Ok(()),
    }
}

/// Refuses a Secret whose `smtp-operator.io/allowed-servers` does not list every destination.
fn check_binding(
    referenced: &Referenced,
    r: &Reference,
    dests: &[&Destination],
    namespace: &str,
) -> Result<(), Invalid> {
    let Some(obj) = referenced.objects.get(&(r.kind, r.name.clone())) else {
        return Ok(()); // reported as SecretNotFound where the value is needed
    };
    let existing = obj.annotations.get(policy::ALLOWED_SERVERS_ANNOTATION).map(String::as_str);
    let allowed = existing.map(|v| policy::parse_allowed_servers(v).0).unwrap_or_default();
    let missing: Vec<String> =
        dests.iter().filter(|d| !policy::allows(&allowed, &d.host, d.port)).map(|d| d.host.with_port(d.port)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let what = match r.purpose {
        Purpose::Password => format!("the {} is not sent", r.purpose.describe()),
        _ => format!("the {} is not sent and no access token is requested", r.purpose.describe()),
    };
    let message = policy::credentials_not_bound_message(&r.name, namespace, &missing, existing);
    Err(Invalid::new(Reason::CredentialsNotBoundToServer, format!("{what}: {message}")))
}

/// JwtBearer: `subject` (required) and `username` (when it differs) must be listed in the key Secret's
/// `smtp-operator.io/allowed-subjects`.
fn check_subjects(o: &OAuth2Auth, refs: &[Reference], referenced: &Referenced, namespace: &str) -> Result<(), Invalid> {
    let subject = required_subject(o)?;
    let Some(r) = find(refs, Purpose::PrivateKey) else {
        return Ok(()); // reported as InvalidSpec where the key is needed
    };
    let Some(obj) = referenced.objects.get(&(r.kind, r.name.clone())) else {
        return Ok(()); // reported as SecretNotFound where the value is needed
    };
    let existing = obj.annotations.get(policy::ALLOWED_SUBJECTS_ANNOTATION).map(String::as_str);
    let (allowed, _) = policy::parse_allowed_subjects(existing.unwrap_or_default());
    let mut users = vec![subject];
    if !o.username.eq_ignore_ascii_case(subject) {
        users.push(o.username.as_str());
    }
    let missing: Vec<&str> = users.into_iter().filter(|u| !policy::subject_allowed(&allowed, u)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let message = policy::subject_not_allowed_message(&r.name, namespace, &missing, existing);
    Err(Invalid::new(Reason::SubjectNotAllowed, format!("no access token is requested: {message}")))
}

/// JwtBearer acts as `subject`: the CRD requires it, and so does validation (for `smtp-operator check`).
fn required_subject(o: &OAuth2Auth) -> Result<&str, Invalid> {
    o.subject
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Invalid::new(Reason::InvalidSpec, "grant JwtBearer requires subject (the user to act as)"))
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
            subject: required_subject(o)?.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use crate::api::SmtpSettingsSpec;
    use crate::engine::Reason;
    use crate::policy::{ALLOWED_SERVERS_ANNOTATION as SERVERS, ALLOWED_SUBJECTS_ANNOTATION as SUBJECTS};
    use crate::validate::{RefKind, RefObject, Referenced, SecurityPolicy, validate};

    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMII\n-----END PRIVATE KEY-----\n";

    fn spec(auth: &str) -> SmtpSettingsSpec {
        serde_yaml::from_str(&format!("server: smtp.example.com\nport: 587\nfrom: a@example.com\nauth: {auth}\n"))
            .unwrap()
    }

    fn oauth(grant: &str, extra: &str) -> SmtpSettingsSpec {
        spec(&format!(
            "{{type: OAuth2, oauth2: {{username: alerts@example.com, grant: {grant}, tokenUrl: 'https://login.example.com/t', \
             clientId: app, clientSecretRef: {{name: s, key: v}}, privateKeyRef: {{name: s, key: v}}{extra}}}}}"
        ))
    }

    fn secret(annotations: &[(&str, &str)]) -> Referenced {
        let mut r = Referenced::default();
        let annotations = annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let data = [("v".to_string(), KEY.as_bytes().to_vec()), ("password".to_string(), b"pw".to_vec())].into();
        r.objects.insert((RefKind::Secret, "s".into()), RefObject { data, annotations, ..Default::default() });
        r
    }

    #[test]
    fn binding_table() {
        let basic = spec("{type: Basic, basic: {username: u, passwordSecretRef: {name: s, key: password}}}");
        let cc = oauth("ClientCredentials", "");
        let jwt = oauth("JwtBearer", ", subject: alerts@example.com");
        let jwt_other_user = oauth("JwtBearer", ", subject: svc@example.com");
        let jwt_no_subject = oauth("JwtBearer", "");
        let both = (SERVERS, "login.example.com, smtp.example.com:587");
        type Case<'a> = (&'a str, &'a SmtpSettingsSpec, Vec<(&'a str, &'a str)>, Result<(), Reason>);
        let cases: &[Case] = &[
            ("basic bound", &basic, vec![(SERVERS, "smtp.example.com:587")], Ok(())),
            (
                "basic elsewhere",
                &basic,
                vec![(SERVERS, "smtp.example.com:465")],
                Err(Reason::CredentialsNotBoundToServer),
            ),
            (
                "oauth token host only",
                &cc,
                vec![(SERVERS, "login.example.com")],
                Err(Reason::CredentialsNotBoundToServer),
            ),
            ("oauth server only", &cc, vec![(SERVERS, "smtp.example.com")], Err(Reason::CredentialsNotBoundToServer)),
            ("oauth both", &cc, vec![both], Ok(())),
            ("oauth wildcard", &cc, vec![(SERVERS, "*.example.com")], Ok(())),
            ("jwt without subjects", &jwt, vec![both], Err(Reason::SubjectNotAllowed)),
            ("jwt subject listed", &jwt, vec![both, (SUBJECTS, "alerts@example.com")], Ok(())),
            ("jwt domain listed", &jwt, vec![both, (SUBJECTS, "*@Example.com")], Ok(())),
            ("jwt other subject", &jwt, vec![both, (SUBJECTS, "ops@example.com")], Err(Reason::SubjectNotAllowed)),
            (
                "jwt username not listed",
                &jwt_other_user,
                vec![both, (SUBJECTS, "svc@example.com")],
                Err(Reason::SubjectNotAllowed),
            ),
            ("jwt both listed", &jwt_other_user, vec![both, (SUBJECTS, "svc@example.com alerts@example.com")], Ok(())),
            ("jwt without subject", &jwt_no_subject, vec![both, (SUBJECTS, "*@example.com")], Err(Reason::InvalidSpec)),
        ];
        let policy = SecurityPolicy { require_secret_binding: true, ..Default::default() };
        for (name, spec, annotations, want) in cases {
            let got = validate(spec, "mail", &secret(annotations), &policy).map(|_| ()).map_err(|e| e.reason);
            assert_eq!(&got, want, "{name}");
        }
        // without binding, the subject is still required
        let off = SecurityPolicy::default();
        assert_eq!(validate(&jwt_no_subject, "mail", &secret(&[]), &off).unwrap_err().reason, Reason::InvalidSpec);
    }

    #[test]
    fn messages_give_the_command_with_every_missing_entry() {
        let policy = SecurityPolicy { require_secret_binding: true, ..Default::default() };
        let e = validate(&oauth("ClientCredentials", ""), "mail", &secret(&[]), &policy).unwrap_err();
        assert!(
            e.message.ends_with(
                "kubectl annotate secret s -n mail 'smtp-operator.io/allowed-servers=login.example.com:443, \
                 smtp.example.com:587'"
            ),
            "{}",
            e.message
        );
        assert!(e.message.contains("no access token is requested"), "{}", e.message);
        let jwt = oauth("JwtBearer", ", subject: boss@example.com");
        let annotations = [(SERVERS, "login.example.com, smtp.example.com:587"), (SUBJECTS, "alerts@example.com")];
        let e = validate(&jwt, "mail", &secret(&annotations), &policy).unwrap_err();
        assert!(
            e.message.ends_with(
                "kubectl annotate --overwrite secret s -n mail 'smtp-operator.io/allowed-subjects=alerts@example.com, \
                 boss@example.com'"
            ),
            "{}",
            e.message
        );
    }
}
