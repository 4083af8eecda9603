//! Caller authentication and per-agent authorization for the serve API.
//!
//! One axum layer ([`layer`]) covers every route of the router except the
//! probes (`/healthz`, `/readyz`) and, unless `--metrics-auth`, `/metrics`: a
//! route added later is covered without a line of its own. It puts the
//! caller in the request's extensions as [`Caller`]; handlers that run an
//! agent ask [`authorize`] whether that caller may (the agent's
//! `spec.callers`).
//!
//! Identities come from bearer tokens: files of a mounted directory
//! ([`TokenFiles`], one file per caller name) and, in a cluster, Kubernetes
//! service-account tokens checked with the TokenReview API
//! ([`TokenReviewer`]). Without either, authentication is off and every
//! caller is anonymous (its peer address), as for local runs.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::api::ApiError;
use super::Shared;
use crate::audit::Event;

mod files;
mod review;

pub use files::{TokenFiles, MAX_TOKEN_BYTES, MAX_TOKEN_FILES, RELOAD_INTERVAL};
pub use review::{
    TokenReviewer, MAX_REVIEWS_IN_FLIGHT, REVIEW_CACHE_ENTRIES, REVIEW_CACHE_TTL, REVIEW_TIMEOUT,
};

/// Who is calling. With authentication on, the name a token maps to; with it
/// off, the peer address (`anonymous`), which no `spec.callers` ever matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The caller's name as the audit log records it.
    pub name: String,
    authenticated: bool,
}

impl Caller {
    /// A caller that proved nothing: named by its peer address.
    pub fn anonymous(peer: impl Into<String>) -> Self {
        Self {
            name: peer.into(),
            authenticated: false,
        }
    }

    /// A caller whose token mapped to `name`.
    pub fn authenticated(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            authenticated: true,
        }
    }

    /// Whether the name was proved by a token.
    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }
}

/// Why [`authorize`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("caller {caller:?} may not invoke this agent: it is not in the agent's spec.callers")]
pub struct Denied {
    /// The caller refused.
    pub caller: String,
}

/// Whether `caller` may invoke an agent whose `spec.callers` is
/// `agent_spec_callers` (`None`: any caller the host let through).
/// An anonymous caller never matches a list, even one naming its address.
pub fn authorize(caller: &Caller, agent_spec_callers: Option<&[String]>) -> Result<(), Denied> {
    match agent_spec_callers {
        None => Ok(()),
        Some(allowed) if caller.authenticated && allowed.contains(&caller.name) => Ok(()),
        Some(_) => Err(Denied {
            caller: caller.name.clone(),
        }),
    }
}

/// How the server authenticates callers; built by `serve` from its flags.
pub struct Authenticator {
    tokens: Option<TokenFiles>,
    review: Option<TokenReviewer>,
    /// `/metrics` needs a token too.
    pub metrics_auth: bool,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("tokens", &self.tokens.as_ref().map(|t| &t.dir))
            .field("token_review", &self.review.is_some())
            .field("metrics_auth", &self.metrics_auth)
            .finish()
    }
}

/// A token that could not be checked (the TokenReview API failed).
#[derive(Debug, thiserror::Error)]
#[error("the caller's token could not be checked: {0}")]
pub struct Unavailable(String);

impl Authenticator {
    /// Authentication from `tokens` and/or `review`; `None` when both are off.
    pub fn new(
        tokens: Option<TokenFiles>,
        review: Option<TokenReviewer>,
        metrics_auth: bool,
    ) -> Option<Self> {
        (tokens.is_some() || review.is_some()).then_some(Self {
            tokens,
            review,
            metrics_auth,
        })
    }

    /// The caller name `token` proves, if any: token files first (no network),
    /// then TokenReview.
    pub async fn authenticate(&self, token: &str) -> Result<Option<String>, Unavailable> {
        if let Some(name) = self.tokens.as_ref().and_then(|t| t.lookup(token)) {
            return Ok(Some(name));
        }
        match &self.review {
            Some(review) => review.review(token).await,
            None => Ok(None),
        }
    }

    /// Starts re-reading the token files when they change.
    pub fn watch(&self) {
        if let Some(tokens) = &self.tokens {
            tokens.watch();
        }
    }
}

/// Paths every caller may reach: probes are for the kubelet, which sends no token.
fn is_open(path: &str, metrics_auth: bool) -> bool {
    matches!(path, "/healthz" | "/readyz") || (path == "/metrics" && !metrics_auth)
}

/// `router` with [`layer`] over every route and the fallback (axum layers
/// cover only what the router holds when they are added: merge routes first).
pub(super) fn protect(router: axum::Router, shared: Arc<Shared>) -> axum::Router {
    router.layer(axum::middleware::from_fn_with_state(shared, layer))
}

/// The axum layer: authenticates the request (or lets a probe through) and
/// puts its [`Caller`] in the extensions.
pub(super) async fn layer(
    State(s): State<Arc<Shared>>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_string(), |c| c.0.to_string());
    let Some(auth) = s
        .auth
        .as_ref()
        .filter(|a| !is_open(request.uri().path(), a.metrics_auth))
    else {
        request.extensions_mut().insert(Caller::anonymous(peer));
        return next.run(request).await;
    };
    let what = format!("{} {}", request.method(), request.uri().path());
    let refuse = |status, code, message: &str, invalid: bool| {
        // No agent label: the path is the unauthenticated caller's to choose.
        s.metrics.rejected("", code);
        let caller = Caller::anonymous(peer.clone());
        let mut r = deny(
            &s,
            &caller,
            what.clone(),
            None,
            ApiError::new(status, code, message),
        );
        if status == StatusCode::UNAUTHORIZED {
            let challenge = if invalid {
                "Bearer realm=\"agent-host\", error=\"invalid_token\""
            } else {
                "Bearer realm=\"agent-host\""
            };
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        r
    };
    let token = match bearer(&request) {
        Ok(token) => token.to_string(),
        Err(message) => return refuse(StatusCode::UNAUTHORIZED, "Unauthenticated", message, false),
    };
    match auth.authenticate(&token).await {
        Ok(Some(name)) => {
            request.extensions_mut().insert(Caller::authenticated(name));
            next.run(request).await
        }
        Ok(None) => refuse(
            StatusCode::UNAUTHORIZED,
            "Unauthenticated",
            "the bearer token is not valid for this host",
            true,
        ),
        Err(e) => {
            tracing::warn!(error = %e, "caller authentication unavailable");
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "AuthenticationUnavailable",
                "the bearer token could not be checked (TokenReview failed); retry later",
                false,
            )
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(request: &Request) -> Result<&str, &'static str> {
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return Err("this host requires a caller token: send Authorization: Bearer <token>");
    };
    let malformed = "the Authorization header must be Bearer <token>, the token at most 16 KiB of visible ASCII";
    if value.len() > MAX_TOKEN_BYTES + 7 {
        return Err(malformed);
    }
    let value = value.to_str().map_err(|_| malformed)?;
    let (scheme, token) = value.split_once(' ').ok_or(malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer")
        || token.is_empty()
        || !token.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(malformed);
    }
    Ok(token)
}

/// Audits a refusal (`request`: method and path) and builds its response.
pub(super) fn deny(
    s: &Shared,
    caller: &Caller,
    request: String,
    agent: Option<&str>,
    error: ApiError,
) -> Response {
    tracing::info!(caller = %caller.name, status = error.status().as_u16(), code = error.code(), %request, "request denied");
    s.audit.record(Event::RequestDenied {
        caller: caller.name.clone(),
        status: error.status().as_u16(),
        code: error.code(),
        request,
        agent: agent.map(str::to_string),
    });
    error.into_response()
}

/// The 403 for a caller [`authorize`] refused.
pub(super) fn forbidden(denied: &Denied) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "Forbidden", denied.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorize_allows_any_caller_without_a_list_and_only_listed_authenticated_ones_with_one() {
        let alice = Caller::authenticated("alice");
        let list = ["alice".to_string()];
        assert!(authorize(&alice, None).is_ok());
        assert!(authorize(&alice, Some(&list)).is_ok());
        assert!(authorize(&Caller::authenticated("bob"), Some(&list)).is_err());
        // A peer address never matches, even listed.
        let anon = Caller::anonymous("127.0.0.1:5000");
        assert!(authorize(&anon, Some(&["127.0.0.1:5000".to_string()])).is_err());
    }
}
