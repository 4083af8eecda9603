//! Sends one completion to the granted provider: the API key from the
//! operator's secret (never the guest's), retries on 429 and 5xx with
//! exponential backoff and jitter — honouring `Retry-After` — all inside the
//! invocation's deadline, request and response sizes capped.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::Value;

use super::provider::{anthropic_body, anthropic_response, openai_body, openai_response};
use crate::bindings::agent_host::agent::llm::{Request, Response};
use crate::cap::http::client::{send, Destination};
use crate::manifest::LlmProvider;

/// Largest request body the host sends, bytes.
pub const MAX_REQUEST_BYTES: usize = 4 << 20;
/// Largest response body the host reads, bytes.
pub const MAX_RESPONSE_BYTES: u64 = 4 << 20;
/// Attempts per completion (the first plus retries).
pub const MAX_ATTEMPTS: u32 = 5;
/// First backoff; doubled per retry, with jitter.
pub const BASE_BACKOFF: Duration = Duration::from_millis(200);

/// Where and as whom to call the model. `Debug` leaves the key out.
#[derive(Clone)]
pub struct Endpoint {
    /// The API dialect.
    pub provider: LlmProvider,
    /// The granted model.
    pub model: String,
    /// Base URL, e.g. `https://api.openai.com/v1/` (ends with `/`).
    pub base: url::Url,
    /// From the operator's mounted secret.
    pub api_key: Option<String>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("provider", &self.provider)
            .field("model", &self.model)
            .field("base", &self.base.as_str())
            .field(
                "api_key",
                &self.api_key.as_ref().map(|_| crate::redact::REDACTED),
            )
            .finish()
    }
}

/// Why a completion failed, before or after the provider answered.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// Refused before sending (too large, bad endpoint).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The provider failed, refused or never answered successfully.
    #[error("{0}")]
    Upstream(String),
}

impl Endpoint {
    fn url(&self) -> url::Url {
        let path = match self.provider {
            LlmProvider::Openai => "chat/completions",
            LlmProvider::Anthropic => "messages",
        };
        self.base
            .join(path)
            .expect("a relative path joins any base URL")
    }

    fn body(&self, request: &Request, max_tokens: u32) -> Value {
        match self.provider {
            LlmProvider::Openai => openai_body(&self.model, request, Some(max_tokens)),
            LlmProvider::Anthropic => anthropic_body(&self.model, request, max_tokens),
        }
    }

    fn http_request(&self, body: Bytes) -> http::Request<wasmtime_wasi_http::WasiBody> {
        let url = self.url();
        let mut b = http::Request::post(url.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::HOST, url.host_str().unwrap_or_default());
        b = match (self.provider, &self.api_key) {
            (LlmProvider::Openai, Some(key)) => {
                b.header(http::header::AUTHORIZATION, format!("Bearer {key}"))
            }
            (LlmProvider::Anthropic, key) => {
                let b = b.header("anthropic-version", "2023-06-01");
                match key {
                    Some(key) => b.header("x-api-key", key.as_str()),
                    None => b,
                }
            }
            (LlmProvider::Openai, None) => b,
        };
        b.body(
            Full::new(body)
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
        .expect("a valid request")
    }

    /// One completion with retries; returns the response and the attempts made.
    pub async fn complete(
        &self,
        request: &Request,
        max_tokens: u32,
        deadline: Instant,
    ) -> Result<(Response, u32), CallError> {
        let mut attempts = 0;
        let response = self
            .complete_counted(request, max_tokens, deadline, &mut attempts)
            .await?;
        Ok((response, attempts))
    }

    /// [`Endpoint::complete`], keeping the attempts made in `attempts` whether
    /// it succeeds or fails (the retry count of the tool-call metrics).
    pub async fn complete_counted(
        &self,
        request: &Request,
        max_tokens: u32,
        deadline: Instant,
        attempts: &mut u32,
    ) -> Result<Response, CallError> {
        let body = serde_json::to_vec(&self.body(request, max_tokens)).expect("JSON");
        if body.len() > MAX_REQUEST_BYTES {
            return Err(CallError::Invalid(format!(
                "request of {} bytes exceeds {MAX_REQUEST_BYTES}",
                body.len()
            )));
        }
        let body = Bytes::from(body);
        let url = self.url();
        let host = url::Host::parse(url.host_str().unwrap_or_default())
            .map_err(|e| CallError::Invalid(format!("endpoint host: {e}")))?;
        let port = url.port_or_known_default().unwrap_or(443);
        let mut last = String::new();
        for attempt in 1..=MAX_ATTEMPTS {
            *attempts = attempt;
            let addr = tokio::net::lookup_host((url.host_str().unwrap_or_default(), port))
                .await
                .map_err(|e| CallError::Upstream(format!("resolving {url}: {e}")))?
                .next()
                .ok_or_else(|| CallError::Upstream(format!("{url}: no address")))?;
            let dest = Destination {
                addr,
                host: &host,
                tls: url.scheme() == "https",
                path_and_query: &url[url::Position::BeforePath..url::Position::AfterQuery],
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            let options = wasmtime_wasi_http::RequestOptions {
                connect_timeout: Some(remaining.min(Duration::from_secs(5))),
                first_byte_timeout: Some(remaining),
                between_bytes_timeout: Some(remaining),
            };
            let outcome = async {
                let (response, io) = send(
                    self.http_request(body.clone()),
                    dest,
                    options,
                    MAX_RESPONSE_BYTES,
                )
                .await
                .map_err(|e| (None, format!("{e:?}")))?;
                tokio::spawn(Box::into_pin(io));
                let status = response.status();
                let retry_after = response
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let bytes = response
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| (None, format!("reading the response: {e:?}")))?
                    .to_bytes();
                Ok::<_, (Option<Duration>, String)>((status, retry_after, bytes))
            }
            .await;
            let wait = match outcome {
                Ok((status, _, bytes)) if status.is_success() => {
                    let value: Value = serde_json::from_slice(&bytes)
                        .map_err(|e| CallError::Upstream(format!("response is not JSON: {e}")))?;
                    let parsed = match self.provider {
                        LlmProvider::Openai => openai_response(&value),
                        LlmProvider::Anthropic => anthropic_response(&value),
                    };
                    return parsed.map_err(|e| CallError::Upstream(e.to_string()));
                }
                Ok((status, retry_after, bytes))
                    if status == http::StatusCode::TOO_MANY_REQUESTS
                        || status.is_server_error() =>
                {
                    last = format!(
                        "{status}: {}",
                        String::from_utf8_lossy(&bytes)
                            .chars()
                            .take(200)
                            .collect::<String>()
                    );
                    retry_after.unwrap_or_else(|| backoff(attempt))
                }
                Ok((status, _, bytes)) => {
                    return Err(CallError::Upstream(format!(
                        "{status}: {}",
                        String::from_utf8_lossy(&bytes)
                            .chars()
                            .take(500)
                            .collect::<String>()
                    )))
                }
                Err((_, e)) => {
                    last = e;
                    backoff(attempt)
                }
            };
            if attempt == MAX_ATTEMPTS || Instant::now() + wait >= deadline {
                break;
            }
            tokio::time::sleep(wait).await;
        }
        Err(CallError::Upstream(format!(
            "the provider did not answer successfully within the invocation's deadline or {MAX_ATTEMPTS} attempts; last: {last}"
        )))
    }
}

/// `BASE_BACKOFF * 2^(attempt-1)`, plus up to 50% jitter so that agents that
/// were refused together do not retry together.
fn backoff(attempt: u32) -> Duration {
    let base = BASE_BACKOFF * 2u32.saturating_pow(attempt.saturating_sub(1));
    let mut byte = [0u8; 1];
    let _ = getrandom::fill(&mut byte);
    base + base.mul_f64(f64::from(byte[0]) / 510.0)
}
