//! OAuth 2.0 access tokens for SASL XOAUTH2, without Kubernetes: one [`TokenRequest`] in, an [`AccessToken`] or
//! a [`TokenError`] out, plus a shared [`cache::TokenCache`].
//!
//! - Grants: `client_credentials` and `refresh_token` through the `oauth2` crate; the RFC 7523 JWT bearer grant
//!   is built here (see [`request_token`]) because `oauth2` 5 has no request type for it (its token requests
//!   hard-code their `grant_type`, and an extra `grant_type` parameter would be sent twice).
//! - Transport: [`http::HttpClient`], our own HTTPS client (hyper 1 + tokio-rustls + ring) over a TCP stream it
//!   dials itself after checking the dial policy on the resolved address. `https` only, no redirects, every
//!   step bounded by [`TokenRequest::timeout`], body capped at [`http::MAX_BODY_BYTES`].
//! - Errors name the endpoint, the HTTP status and the OAuth `error` / `error_description`; never a secret,
//!   assertion or token (any credential value the server echoed is replaced by `<redacted>`).

pub mod cache;
pub mod http;
pub mod jwt;

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use oauth2::basic::{BasicClient, BasicErrorResponse, BasicTokenResponse};
use oauth2::{AuthType, ClientId, ClientSecret, RefreshToken, RequestTokenError, Scope, TokenResponse, TokenUrl};

use crate::engine::sanitize::Sanitizer;
use crate::engine::{DialPolicy, Reason, SecretValue, Step};

pub use cache::TokenCache;
pub use http::HttpError;

/// The grant used to obtain the token, with its credentials.
#[derive(Clone, Debug)]
pub enum Grant {
    /// RFC 6749 §4.4. An empty secret sends only `client_id` (public client).
    ClientCredentials { client_secret: SecretValue },
    /// RFC 6749 §6. An empty client secret sends only `client_id` (public client).
    RefreshToken { client_secret: SecretValue, refresh_token: SecretValue },
    /// RFC 7523 §2.1: an RS256 assertion signed with `private_key` (PEM PKCS#8/PKCS#1, or a Google
    /// service-account JSON with `private_key`); iss = client id, sub = `subject` (omitted when empty).
    JwtBearer { private_key: SecretValue, subject: String },
}

/// The kind of a [`Grant`], without credentials (cache keys, metric labels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GrantKind {
    ClientCredentials,
    RefreshToken,
    JwtBearer,
}

impl GrantKind {
    /// The contract's name of the grant.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantKind::ClientCredentials => "ClientCredentials",
            GrantKind::RefreshToken => "RefreshToken",
            GrantKind::JwtBearer => "JwtBearer",
        }
    }
}

impl Grant {
    pub fn kind(&self) -> GrantKind {
        match self {
            Grant::ClientCredentials { .. } => GrantKind::ClientCredentials,
            Grant::RefreshToken { .. } => GrantKind::RefreshToken,
            Grant::JwtBearer { .. } => GrantKind::JwtBearer,
        }
    }

    /// The credential values of the grant (what the sanitizer masks in the endpoint's answers).
    pub fn secrets(&self) -> Vec<&SecretValue> {
        match self {
            Grant::ClientCredentials { client_secret } => vec![client_secret],
            Grant::RefreshToken { client_secret, refresh_token } => vec![client_secret, refresh_token],
            Grant::JwtBearer { private_key, .. } => vec![private_key],
        }
    }

    /// The JWT bearer subject, empty for other grants.
    pub fn subject(&self) -> &str {
        match self {
            Grant::JwtBearer { subject, .. } => subject,
            _ => "",
        }
    }
}

/// How the client authenticates at the token endpoint (the API's `clientAuthMethod`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ClientAuth {
    /// `client_secret_post`: client_id and client_secret in the form body.
    #[default]
    RequestBody,
    /// `client_secret_basic`: `Authorization: Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 §2.3.1).
    BasicAuth,
}

/// One token request.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    /// `https` URL of the token endpoint (also the JWT `aud`).
    pub token_url: String,
    pub client_id: String,
    pub grant: Grant,
    /// Sent as `scope`, joined by spaces; omitted when empty.
    pub scopes: Vec<String>,
    pub client_auth: ClientAuth,
    /// Extra trust anchors (DER) added to the webpki roots.
    pub extra_roots: Vec<Vec<u8>>,
    /// Bound for every step: resolve, connect, TLS, request, response.
    pub timeout: Duration,
    /// Ports and addresses that may be dialled (token ports, denied ranges).
    pub policy: DialPolicy,
}

/// An access token.
#[derive(Clone, Debug)]
pub struct AccessToken {
    pub token: SecretValue,
    /// The server's `expires_in`, when given.
    pub expires_in: Option<Duration>,
    /// The certificates the token endpoint presented when this token was fetched (leaf first; for
    /// `status.lastCheck.tokenEndpointCertificate` and the early warnings).
    pub certificates: Vec<crate::engine::CertificateInfo>,
}

/// Why no token was obtained. `message` is for humans and never holds a credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenError {
    /// [`Step::Policy`] for policy refusals (nothing was sent), else [`Step::Token`].
    pub step: Step,
    /// `TokenRequestFailed` for endpoint and credential errors; `PortNotAllowed` / `DestinationNotAllowed` for
    /// policy refusals; `InvalidSecretValue` for unusable credentials (e.g. a key that is not an RSA key);
    /// `InvalidCABundle` for unusable extra roots.
    pub reason: Reason,
    pub message: String,
    /// The endpoint asked to wait this long (HTTP 429 or 503 with `Retry-After`): the cache sends no request
    /// for this token before then.
    pub retry_after: Option<Duration>,
    /// The endpoint could not be reached, did not answer in time, or answered 5xx or 429: the trouble is on its
    /// side ([`crate::vocabulary::FailureClass::Transient`]).
    pub transient: bool,
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TokenError {}

impl TokenError {
    fn failed(message: String) -> Self {
        Self { step: Step::Token, reason: Reason::TokenRequestFailed, message, retry_after: None, transient: false }
    }
}

impl From<HttpError> for TokenError {
    fn from(e: HttpError) -> Self {
        Self { step: e.step, reason: e.reason, message: e.message, retry_after: None, transient: e.transient }
    }
}

/// Longest `error` / `error_description` quoted in a message.
const MAX_DESCRIPTION_CHARS: usize = 300;
/// Longest token error message.
const MAX_MESSAGE_CHARS: usize = 1000;

type GrantResult = Result<BasicTokenResponse, RequestTokenError<HttpError, BasicErrorResponse>>;

/// Requests a token. Never panics; nothing is sent when the URL or the policy refuses the endpoint.
pub async fn request_token(req: &TokenRequest) -> Result<AccessToken, TokenError> {
    let target = http::Target::parse(&req.token_url)?;
    let client = http::HttpClient::new(req.timeout, req.policy.clone(), &req.extra_roots)?;
    client.check_port(&target)?;
    let endpoint = format!("https://{}{}", target.authority(), target.path_and_query.split('?').next().unwrap_or(""));

    let mut secrets: Vec<SecretValue> = Vec::new();
    let answer = Arc::new(Answer::default());
    let result = match &req.grant {
        Grant::ClientCredentials { client_secret } | Grant::RefreshToken { client_secret, .. } => {
            oauth2_grant(req, client_secret, &client, &answer, &mut secrets).await?
        }
        Grant::JwtBearer { private_key, subject } => {
            jwt_grant(req, private_key, subject, &client, &answer, &mut secrets).await?
        }
    };
    let mut token = conclude(result, &answer, &secrets, &endpoint)?;
    token.certificates = client.presented();
    Ok(token)
}

/// Client credentials and refresh token, through the `oauth2` crate.
async fn oauth2_grant(
    req: &TokenRequest,
    client_secret: &SecretValue,
    client: &http::HttpClient,
    answer: &Arc<Answer>,
    secrets: &mut Vec<SecretValue>,
) -> Result<GrantResult, TokenError> {
    let token_url = TokenUrl::new(req.token_url.clone())
        .map_err(|e| TokenError::failed(format!("the token URL is not valid ({e})")))?;
    let mut oauth = BasicClient::new(ClientId::new(req.client_id.clone())).set_token_uri(token_url).set_auth_type(
        match req.client_auth {
            ClientAuth::RequestBody => AuthType::RequestBody,
            ClientAuth::BasicAuth => AuthType::BasicAuth,
        },
    );
    if !client_secret.is_empty() {
        secrets.push(client_secret.clone());
        oauth = oauth.set_client_secret(ClientSecret::new(utf8(client_secret, "client secret")?));
    }
    let scopes = req.scopes.iter().map(|s| Scope::new(s.clone()));
    // Owned handles, not borrows: a closure returning a future that borrows its captures makes the
    // whole future non-`Send` (higher-ranked lifetime), and callers spawn it.
    let (c, s) = (client.clone(), answer.clone());
    let send = move |r: ::http::Request<Vec<u8>>| {
        let (c, s) = (c.clone(), s.clone());
        async move {
            let resp = c.send(r).await?;
            s.record(&resp);
            Ok::<_, HttpError>(resp)
        }
    };
    Ok(match &req.grant {
        Grant::RefreshToken { refresh_token, .. } => {
            secrets.push(refresh_token.clone());
            let rt = RefreshToken::new(utf8(refresh_token, "refresh token")?);
            oauth.exchange_refresh_token(&rt).add_scopes(scopes).request_async(&send).await
        }
        _ => oauth.exchange_client_credentials().add_scopes(scopes).request_async(&send).await,
    })
}

/// The RFC 7523 JWT bearer grant, built here.
async fn jwt_grant(
    req: &TokenRequest,
    private_key: &SecretValue,
    subject: &str,
    client: &http::HttpClient,
    answer: &Arc<Answer>,
    secrets: &mut Vec<SecretValue>,
) -> Result<GrantResult, TokenError> {
    let key = jwt::load_key(private_key).map_err(|e| TokenError {
        step: Step::Token,
        reason: Reason::InvalidSecretValue,
        message: format!("JWT bearer: {}", e.0),
        retry_after: None,
        transient: false,
    })?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let assertion = jwt::assertion(&key, &req.client_id, subject, &req.token_url, &req.scopes, now)
        .map_err(|e| TokenError::failed(format!("JWT bearer: {}", e.0)))?;
    secrets.push(assertion.clone());
    let http_req = jwt_bearer_request(req, &assertion)?;
    Ok(match client.send(http_req).await {
        Err(e) => Err(RequestTokenError::Request(e)),
        Ok(resp) => {
            answer.record(&resp);
            interpret(resp)
        }
    })
}

/// What the endpoint's HTTP answer said besides its body.
#[derive(Default)]
struct Answer {
    status: AtomicU16,
    /// `Retry-After` in seconds (the delay-seconds form), 0 = none.
    retry_after_s: AtomicU64,
}

/// The longest `Retry-After` honoured: a longer one is cut to this (the endpoint cannot stop checks for days).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

impl Answer {
    fn record<B>(&self, resp: &::http::Response<B>) {
        self.status.store(resp.status().as_u16(), Ordering::Relaxed);
        let secs = resp
            .headers()
            .get(::http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        self.retry_after_s.store(secs, Ordering::Relaxed);
    }

    /// The wait the endpoint asked for, for the statuses that mean "not now" (429, 503).
    fn retry_after(&self) -> Option<Duration> {
        let secs = self.retry_after_s.load(Ordering::Relaxed);
        let status = self.status.load(Ordering::Relaxed);
        (secs > 0 && (status == 429 || status == 503)).then(|| Duration::from_secs(secs).min(MAX_RETRY_AFTER))
    }
}

/// The token, or an error whose message went through the sanitizer.
fn conclude(
    result: GrantResult,
    answer: &Answer,
    secrets: &[SecretValue],
    endpoint: &str,
) -> Result<AccessToken, TokenError> {
    let status = answer.status.load(Ordering::Relaxed);
    let sanitizer = Sanitizer::for_secrets(secrets);
    let message =
        |text: String| sanitizer.clean(&format!("token request to {endpoint} failed: {text}"), MAX_MESSAGE_CHARS);
    let retry_after = answer.retry_after();
    let failed = |text: String| {
        let wait = retry_after
            .map(|d| {
                format!(
                    "; the endpoint asks to wait {} (Retry-After): no token request is sent before then",
                    crate::duration::format(d)
                )
            })
            .unwrap_or_default();
        let transient = status == 429 || status >= 500;
        Err(TokenError { retry_after, transient, ..TokenError::failed(message(text + &wait)) })
    };
    match result {
        Ok(resp) => {
            let token = resp.access_token().secret();
            if token.is_empty() {
                return failed("the answer holds an empty access_token".into());
            }
            if *resp.token_type() != oauth2::basic::BasicTokenType::Bearer {
                // the type is the endpoint's text: it goes through the sanitizer with the rest of the message
                return failed(format!(
                    "the answer's token_type is \"{}\", but XOAUTH2 needs a Bearer token; check tokenUrl and the \
                     grant (the endpoint issues another kind of token)",
                    resp.token_type().as_ref()
                ));
            }
            Ok(AccessToken {
                token: SecretValue::new(token.as_bytes()),
                expires_in: resp.expires_in(),
                certificates: Vec::new(),
            })
        }
        Err(RequestTokenError::Request(e)) => {
            let mut e = TokenError::from(e);
            e.message = sanitizer.clean(&e.message, MAX_MESSAGE_CHARS);
            Err(e)
        }
        Err(RequestTokenError::ServerResponse(err)) => {
            // everything the endpoint wrote goes through the sanitizer before it is quoted
            let code = sanitizer.clean(err.error().as_ref(), MAX_DESCRIPTION_CHARS);
            let mut text = format!("HTTP {status}, error \"{code}\"");
            if let Some(d) = err.error_description() {
                text.push_str(&format!(": {}", sanitizer.clean(d, MAX_DESCRIPTION_CHARS)));
            }
            text.push_str(hint(err.error().as_ref()));
            failed(text)
        }
        Err(RequestTokenError::Parse(e, _body)) => {
            // The body is never quoted (a 200 answer carries the token); serde's message may quote values too,
            // except for a missing field, which names only the field.
            let inner = e.inner().to_string();
            let detail = match inner.split(" at line ").next() {
                Some(missing) if missing.starts_with("missing field") => missing.to_owned(),
                _ => format!("at {}", e.path()),
            };
            let text = if status == 200 {
                format!("HTTP 200, the token answer is not the expected OAuth JSON ({detail})")
            } else {
                format!("HTTP {status}, the error answer is not the expected OAuth JSON{}", not_oauth_hint(status))
            };
            failed(text)
        }
        Err(RequestTokenError::Other(o)) => failed(format!("HTTP {status}, {o}{}", not_oauth_hint(status))),
    }
}

/// What to do about an error answer that is not OAuth JSON (an HTML or text page).
fn not_oauth_hint(status: u16) -> &'static str {
    if status >= 500 {
        "; the token endpoint failed on its side (5xx), or a proxy in front of it did: nothing to change unless it \
         persists, the check is retried with backoff; else check that tokenUrl is the OAuth token endpoint"
    } else {
        "; check that tokenUrl is the OAuth token endpoint (an HTML or text answer comes from a web page or a proxy)"
    }
}

/// What to check next for common OAuth error codes.
fn hint(error: &str) -> &'static str {
    match error {
        "invalid_client" => "; check clientId, the client secret and clientAuthMethod",
        "invalid_grant" => "; the refresh token, assertion or subject was rejected (expired, revoked or not allowed)",
        "unauthorized_client" => "; the client may not use this grant",
        "invalid_scope" => "; check scopes",
        _ => "",
    }
}

fn utf8(v: &SecretValue, what: &str) -> Result<String, TokenError> {
    v.expose_str().map(str::to_owned).ok_or_else(|| TokenError {
        step: Step::Token,
        reason: Reason::InvalidSecretValue,
        message: format!("the {what} is not UTF-8 text"),
        retry_after: None,
        transient: false,
    })
}

/// The RFC 7523 request: `grant_type`, `assertion`, `scope`; with a client secret, client authentication as
/// configured (else `client_id` in the body).
fn jwt_bearer_request(req: &TokenRequest, assertion: &SecretValue) -> Result<::http::Request<Vec<u8>>, TokenError> {
    let assertion = utf8(assertion, "assertion")?;
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", jwt::GRANT_TYPE);
    form.append_pair("assertion", &assertion);
    if !req.scopes.is_empty() {
        form.append_pair("scope", &req.scopes.join(" "));
    }
    let _ = req.client_auth; // the assertion authenticates; no client secret in this grant
    ::http::Request::builder()
        .method(::http::Method::POST)
        .uri(req.token_url.as_str())
        .header(::http::header::ACCEPT, "application/json")
        .header(::http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form.finish().into_bytes())
        .map_err(|e| TokenError::failed(format!("building the token request failed ({e})")))
}

/// Interprets a token endpoint answer the way `oauth2` does for its own requests.
fn interpret(
    resp: ::http::Response<Vec<u8>>,
) -> Result<BasicTokenResponse, RequestTokenError<HttpError, BasicErrorResponse>> {
    let body = resp.body();
    if resp.status() != ::http::StatusCode::OK {
        if body.is_empty() {
            return Err(RequestTokenError::Other("the server returned an empty error answer".into()));
        }
        return Err(
            match serde_path_to_error::deserialize::<_, BasicErrorResponse>(&mut serde_json::Deserializer::from_slice(
                body,
            )) {
                Ok(e) => RequestTokenError::ServerResponse(e),
                Err(e) => RequestTokenError::Parse(e, Vec::new()),
            },
        );
    }
    serde_path_to_error::deserialize::<_, BasicTokenResponse>(&mut serde_json::Deserializer::from_slice(body))
        .map_err(|e| RequestTokenError::Parse(e, Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpret_error_and_token_answers() {
        let r = ::http::Response::builder()
            .status(401)
            .body(br#"{"error":"invalid_client","error_description":"bad"}"#.to_vec())
            .unwrap();
        match interpret(r) {
            Err(RequestTokenError::ServerResponse(e)) => assert_eq!(e.error().as_ref(), "invalid_client"),
            other => panic!("{other:?}"),
        }
        let r = ::http::Response::builder()
            .status(200)
            .body(br#"{"access_token":"t","token_type":"Bearer","expires_in":60}"#.to_vec())
            .unwrap();
        let t = interpret(r).unwrap();
        assert_eq!(t.expires_in(), Some(Duration::from_secs(60)));
    }

    #[tokio::test]
    async fn http_is_refused_before_any_connection() {
        let req = TokenRequest {
            token_url: "http://127.0.0.1:9/token".into(),
            client_id: "c".into(),
            grant: Grant::ClientCredentials { client_secret: SecretValue::new("s3cret-value") },
            scopes: vec![],
            client_auth: ClientAuth::RequestBody,
            extra_roots: vec![],
            timeout: Duration::from_secs(1),
            policy: DialPolicy::default(),
        };
        let e = request_token(&req).await.unwrap_err();
        assert_eq!(e.reason, Reason::TokenRequestFailed);
        assert!(e.message.contains("only https"), "{}", e.message);
    }
}
