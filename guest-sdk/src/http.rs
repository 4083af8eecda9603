//! Outgoing HTTP over `wasi:http/outgoing-handler`, in blocking style.
//!
//! The host lets a request through only if its URL and method match an entry
//! of the manifest's `spec.capabilities.http`; otherwise it fails with
//! [`HttpError::Denied`], which converts to [`AgentError::CapabilityDenied`]
//! so `?` reports a manifest problem, not an outage.
//!
//! ```no_run
//! use agent_host_guest::http;
//! let health: serde_json::Value = http::get_json("http://127.0.0.1:8080/health")?;
//! let created = http::post_json("http://127.0.0.1:8080/api/issues", &health)?;
//! let id: serde_json::Value = created.json()?;
//! # Ok::<(), agent_host_guest::http::HttpError>(())
//! ```

mod transport;
mod url;

use std::fmt;

use serde::{de::DeserializeOwned, Serialize};

use crate::AgentError;

pub use url::encode_component;

/// Longest prefix of a non-2xx response body kept in [`HttpError::Status`],
/// so an error page cannot blow up the agent's error message.
pub const MAX_ERROR_BODY_CHARS: usize = 1024;

/// Why an HTTP request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The host refused the request (`error-code.HTTP-request-denied`): the
    /// URL or method is not declared in `spec.capabilities.http`.
    Denied {
        /// The URL the agent asked for.
        url: String,
    },
    /// The server answered with a non-2xx status (only from the `*_json` helpers;
    /// [`request`] returns every status as a [`Response`]).
    Status {
        /// The HTTP status code.
        status: u16,
        /// The start of the response body (at most [`MAX_ERROR_BODY_CHARS`]),
        /// decoded lossily as UTF-8.
        body: String,
    },
    /// The request failed on the way (connection refused, DNS, timeout, a
    /// header the host forbids, the per-invocation request budget spent
    /// (`ConnectionLimitReached`)...): the `wasi:http` error code's debug text.
    Transport(String),
    /// The URL could not be parsed into scheme, authority and path.
    InvalidUrl(String),
    /// A JSON body could not be encoded, or a response body could not be
    /// decoded into the requested type.
    Decode(String),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Denied { url } => write!(
                f,
                "HTTP request to {url} denied by the host: declare it in spec.capabilities.http"
            ),
            HttpError::Status { status, body } => write!(f, "HTTP status {status}: {body}"),
            HttpError::Transport(e) => write!(f, "HTTP transport error: {e}"),
            HttpError::InvalidUrl(e) => write!(f, "invalid URL: {e}"),
            HttpError::Decode(e) => write!(f, "HTTP body: {e}"),
        }
    }
}

impl std::error::Error for HttpError {}

impl From<HttpError> for AgentError {
    /// [`HttpError::Denied`] becomes [`AgentError::CapabilityDenied`] (fix the
    /// manifest); everything else becomes [`AgentError::Upstream`] (retry later).
    fn from(e: HttpError) -> AgentError {
        match e {
            HttpError::Denied { .. } => AgentError::CapabilityDenied(e.to_string()),
            _ => AgentError::Upstream(e.to_string()),
        }
    }
}

/// A complete HTTP response: status, headers and the whole body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// Response headers in the order received (names are lower-case).
    pub headers: Vec<(String, Vec<u8>)>,
    /// The whole response body.
    pub body: Vec<u8>,
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first value of header `name` (case-insensitive), if present and UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The body decoded lossily as UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON into `T`; [`HttpError::Decode`] if it does not fit.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HttpError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| HttpError::Decode(format!("response is not the expected JSON: {e}")))
    }

    /// `self` if the status is 2xx, otherwise [`HttpError::Status`].
    pub fn error_for_status(self) -> Result<Response, HttpError> {
        if self.is_success() {
            return Ok(self);
        }
        let body: String = self.text().chars().take(MAX_ERROR_BODY_CHARS).collect();
        Err(HttpError::Status {
            status: self.status,
            body,
        })
    }
}

/// Sends one request and waits for the complete response.
///
/// `method` is an HTTP method name (`"GET"`, `"POST"`...). `headers` are sent
/// as given; a `content-length` header is added when `body` is `Some`. Every
/// status is returned as a [`Response`]; only failures to get one are errors.
pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<Response, HttpError> {
    let target = url::Target::parse(url)?;
    transport::send(transport::method(method), &target, headers, body)
}

/// GETs `url` and parses a 2xx JSON response into `T` (for example
/// [`serde_json::Value`]). Non-2xx statuses are [`HttpError::Status`].
pub fn get_json<T: DeserializeOwned>(url: &str) -> Result<T, HttpError> {
    request("GET", url, &[("accept", "application/json")], None)?
        .error_for_status()?
        .json()
}

/// POSTs `body` serialised as JSON to `url` and returns the 2xx response.
/// Non-2xx statuses are [`HttpError::Status`].
pub fn post_json<B: Serialize + ?Sized>(url: &str, body: &B) -> Result<Response, HttpError> {
    let body = serde_json::to_vec(body)
        .map_err(|e| HttpError::Decode(format!("cannot encode request body: {e}")))?;
    let headers = [
        ("content-type", "application/json"),
        ("accept", "application/json"),
    ];
    request("POST", url, &headers, Some(&body))?.error_for_status()
}
