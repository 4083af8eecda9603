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

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::api::ApiError;
use super::Shared;
use crate::audit::Event;

/// Largest token file read, and longest bearer token accepted: a service
/// account token is about 1 KiB; past this a request is refused before any
/// lookup, so a caller cannot make the host hash or forward megabytes.
pub const MAX_TOKEN_BYTES: usize = 16 << 10;
/// Most token files in `--caller-tokens`: the table is read whole.
pub const MAX_TOKEN_FILES: usize = 1024;
/// How often the token directory and the TLS files are looked at for changes
/// (a Secret update reaches the pod's mount within about a minute).
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);
/// How long a positive TokenReview answer is reused: a revoked token is
/// accepted at most this long after the API server stops accepting it.
pub const REVIEW_CACHE_TTL: Duration = Duration::from_secs(10);
/// Most remembered TokenReview answers: distinct valid tokens past it are
/// reviewed every time instead of growing the cache.
pub const REVIEW_CACHE_ENTRIES: usize = 4096;
/// TokenReview requests in flight at once: a flood of random tokens waits
/// here instead of flooding the API server.
pub const MAX_REVIEWS_IN_FLIGHT: usize = 16;
/// Longest a TokenReview may take before the request gets 503.
pub const REVIEW_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Caller tokens from a directory laid out like a mounted Secret: one file
/// per caller name, its content that caller's token. Re-read when it changes.
pub struct TokenFiles {
    dir: PathBuf,
    table: Arc<RwLock<TokenTable>>,
}

/// Caller names by the SHA-256 of their tokens.
#[derive(Default, PartialEq, Eq)]
struct TokenTable {
    entries: Vec<(String, [u8; 32])>,
}

impl TokenFiles {
    /// Reads `dir`; any unreadable, oversized, empty or ambiguous token file
    /// is an error here (at start), naming the file.
    pub fn open(dir: &Path) -> Result<Self, String> {
        let table = read_tokens(dir, true)?;
        if table.entries.is_empty() {
            tracing::warn!(dir = %dir.display(), "--caller-tokens: no token files yet; no caller authenticates by file until some appear");
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            table: Arc::new(RwLock::new(table)),
        })
    }

    /// The caller `token` belongs to. Compares the token's digest with every
    /// entry in constant time, without stopping at a match, so timing tells
    /// nothing about which bytes or which caller matched.
    fn lookup(&self, token: &str) -> Option<String> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let table = self.table.read().expect("token table lock");
        let mut found = None;
        for (name, expected) in &table.entries {
            if bool::from(expected.ct_eq(&digest)) {
                found = Some(name.clone());
            }
        }
        found
    }

    /// Polls the directory every [`RELOAD_INTERVAL`]; a change replaces the
    /// table (a file that became bad is left out: its caller stops being
    /// authenticated, the others keep working).
    fn watch(&self) {
        let (dir, table) = (self.dir.clone(), self.table.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RELOAD_INTERVAL).await;
                let d = dir.clone();
                let Ok(read) = tokio::task::spawn_blocking(move || read_tokens(&d, false)).await
                else {
                    continue;
                };
                let new = read.unwrap_or_else(|e| {
                    tracing::error!(error = %e, "--caller-tokens unreadable: no caller authenticates by file until it is readable again");
                    TokenTable::default()
                });
                let mut current = table.write().expect("token table lock");
                if *current != new {
                    tracing::info!(dir = %dir.display(), callers = new.entries.len(), "caller tokens reloaded");
                    *current = new;
                }
            }
        });
    }
}

/// Whether `name` can be a Secret key (and so a caller file name): it cannot
/// contain `:`, so it never collides with a TokenReview user name.
fn is_secret_key(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Reads the token files of `dir`. `strict`: the first bad file is an error;
/// otherwise bad files are logged and left out.
fn read_tokens(dir: &Path, strict: bool) -> Result<TokenTable, String> {
    let where_ = |e: &dyn std::fmt::Display| format!("--caller-tokens {}: {e}", dir.display());
    let mut names: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| where_(&e))? {
        let entry = entry.map_err(|e| where_(&e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // A mounted Secret's own bookkeeping: `..data`, `..2026_11_29...`.
        if name.starts_with('.') {
            continue;
        }
        if entry.path().is_dir() {
            continue;
        }
        names.push(name);
        if names.len() > MAX_TOKEN_FILES {
            return Err(where_(&format!("more than {MAX_TOKEN_FILES} token files")));
        }
    }
    names.sort();
    let mut entries: Vec<(String, [u8; 32])> = Vec::new();
    for name in names {
        let token = read_token(&dir.join(&name)).and_then(|token| {
            if !is_secret_key(&name) {
                return Err(format!(
                    "{name:?} is not a caller name: use letters, digits, -, _ and . (a Secret key)"
                ));
            }
            let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
            match entries.iter().find(|(_, d)| *d == digest) {
                Some((other, _)) => Err(format!(
                    "{name}: the same token as {other}; each caller needs its own token"
                )),
                None => Ok(digest),
            }
        });
        match token {
            Ok(digest) => entries.push((name, digest)),
            Err(e) if strict => return Err(where_(&e)),
            Err(e) => {
                tracing::error!(error = %where_(&e), "token file left out: its caller is not authenticated")
            }
        }
    }
    Ok(TokenTable { entries })
}

/// One token file: at most [`MAX_TOKEN_BYTES`], visible ASCII after the
/// surrounding whitespace (a trailing newline) is trimmed.
fn read_token(path: &Path) -> Result<String, String> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let file = std::fs::File::open(path).map_err(|e| format!("{name}: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_TOKEN_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{name}: {e}"))?;
    if bytes.len() > MAX_TOKEN_BYTES {
        return Err(format!("{name}: larger than {MAX_TOKEN_BYTES} bytes"));
    }
    let token = String::from_utf8(bytes)
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| format!("{name}: a token must be visible ASCII, not empty"))?;
    Ok(token)
}

/// Kubernetes service-account tokens, checked with the TokenReview API for
/// one audience; positive answers are remembered for [`REVIEW_CACHE_TTL`].
pub struct TokenReviewer {
    client: kube::Client,
    audience: String,
    cache: Mutex<HashMap<[u8; 32], (String, Instant)>>,
    in_flight: tokio::sync::Semaphore,
}

impl TokenReviewer {
    /// Reviews tokens through `client`, accepting only those issued for `audience`.
    pub fn new(client: kube::Client, audience: String) -> Self {
        Self {
            client,
            audience,
            cache: Mutex::default(),
            in_flight: tokio::sync::Semaphore::new(MAX_REVIEWS_IN_FLIGHT),
        }
    }

    async fn review(&self, token: &str) -> Result<Option<String>, Unavailable> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(name) = self.cached(&key) {
            return Ok(Some(name));
        }
        let _permit = self.in_flight.acquire().await.expect("never closed");
        let name = tokio::time::timeout(REVIEW_TIMEOUT, self.ask(token))
            .await
            .map_err(|_| {
                Unavailable(format!("TokenReview took longer than {REVIEW_TIMEOUT:?}"))
            })??;
        if let Some(name) = &name {
            self.remember(key, name.clone());
        }
        Ok(name)
    }

    fn cached(&self, key: &[u8; 32]) -> Option<String> {
        let cache = self.cache.lock().expect("review cache lock");
        cache
            .get(key)
            .filter(|(_, at)| at.elapsed() < REVIEW_CACHE_TTL)
            .map(|(name, _)| name.clone())
    }

    fn remember(&self, key: [u8; 32], name: String) {
        let mut cache = self.cache.lock().expect("review cache lock");
        if cache.len() >= REVIEW_CACHE_ENTRIES {
            cache.retain(|_, (_, at)| at.elapsed() < REVIEW_CACHE_TTL);
        }
        if cache.len() < REVIEW_CACHE_ENTRIES {
            cache.insert(key, (name, Instant::now()));
        }
    }

    /// One TokenReview: the user name when the API server says the token is
    /// authenticated for our audience.
    async fn ask(&self, token: &str) -> Result<Option<String>, Unavailable> {
        use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: Some(vec![self.audience.clone()]),
            },
            ..Default::default()
        };
        let api: kube::Api<TokenReview> = kube::Api::all(self.client.clone());
        let answer = api
            .create(&kube::api::PostParams::default(), &review)
            .await
            .map_err(|e| Unavailable(format!("TokenReview: {e}")))?;
        let Some(status) = answer.status else {
            return Ok(None);
        };
        // Audiences are checked here too: an API server that ignored them
        // must not make a token for another audience valid for this host.
        let for_us = status
            .audiences
            .as_ref()
            .is_some_and(|a| a.contains(&self.audience));
        if status.authenticated != Some(true) || !for_us {
            return Ok(None);
        }
        Ok(status
            .user
            .and_then(|u| u.username)
            .filter(|name| !name.is_empty()))
    }
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

    #[test]
    fn token_files_map_tokens_to_names_and_refuse_bad_files_at_start() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pager"), "s3cret-pager\n").unwrap();
        std::fs::write(dir.path().join("ci"), "s3cret-ci").unwrap();
        std::fs::create_dir(dir.path().join("..2026_11_29")).unwrap();
        let files = TokenFiles::open(dir.path()).unwrap();
        assert_eq!(files.lookup("s3cret-pager").as_deref(), Some("pager"));
        assert_eq!(files.lookup("s3cret-ci").as_deref(), Some("ci"));
        assert_eq!(files.lookup("s3cret"), None);

        std::fs::write(dir.path().join("copy"), "s3cret-ci").unwrap();
        let e = TokenFiles::open(dir.path()).err().unwrap();
        assert!(e.contains("the same token as ci"), "{e}");
        std::fs::remove_file(dir.path().join("copy")).unwrap();

        std::fs::write(dir.path().join("big"), vec![b'a'; MAX_TOKEN_BYTES + 1]).unwrap();
        let e = TokenFiles::open(dir.path()).err().unwrap();
        assert!(e.contains("big: larger than 16384 bytes"), "{e}");
        // Left out on a reload, the others kept.
        let table = read_tokens(dir.path(), false).unwrap();
        assert_eq!(table.entries.len(), 2);
    }
}
