//! The host's MCP client: JSON-RPC over streamable HTTP (a JSON or an SSE
//! response to each POST), sent through the checked HTTP client of
//! [`crate::cap::http`]: the server's name is resolved, the address checked
//! against the grant's address policy, and that very address connected to.
//! Every exchange is bounded in time (the server's timeout, the invocation's
//! deadline) and in bytes (what is left of the server's per-invocation
//! response budget); redirects are not followed.
//!
//! Only what an agent needs is spoken: `initialize` (the handshake of
//! protocol versions up to [`PROTOCOL_VERSION`]), `tools/list` and
//! `tools/call`; server-initiated requests (sampling, elicitation) are not
//! answered, so a server waiting on one times out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt as _;
use http::{HeaderName, HeaderValue, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

use super::Server;
use crate::cap::http::address::{self, ResolveError};
use crate::cap::http::client::{send, Destination};
use crate::cap::tool_call::Failure;

/// The protocol version the host asks for in `initialize`.
pub const PROTOCOL_VERSION: &str = "2025-11-25";
/// Versions the host accepts in the server's answer (the handshake revisions).
pub const SUPPORTED_VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
/// Pages of `tools/list` followed before the listing is cut off.
pub const MAX_LIST_PAGES: usize = 8;
/// Bytes of a non-success response body kept for the error message.
const ERROR_SNIPPET: usize = 512;

/// Why an exchange with the server failed.
#[derive(Debug)]
pub enum ExchangeError {
    /// The server's address is not granted; nothing was sent.
    Prohibited(String),
    /// The response went past the server's byte budget.
    Budget(String),
    /// Anything else: the kind (for metrics) and what happened.
    Upstream(Failure, String),
}

impl ExchangeError {
    /// The metric kind of a failure that happened after sending.
    pub fn failure(&self) -> Option<Failure> {
        match self {
            ExchangeError::Prohibited(_) => None,
            ExchangeError::Budget(_) => Some(Failure::Protocol),
            ExchangeError::Upstream(kind, _) => Some(*kind),
        }
    }
}

/// A JSON-RPC answer to one request.
#[derive(Debug)]
pub enum Answer {
    /// `result`.
    Result(Value),
    /// `error`: code and message.
    Error(i64, String),
}

/// One server's MCP session within an invocation: what the handshake agreed.
#[derive(Debug)]
pub struct Session {
    /// `Mcp-Session-Id`, when the server keeps sessions.
    pub id: Option<HeaderValue>,
    /// The negotiated protocol version.
    pub version: HeaderValue,
    next_id: u64,
}

/// What the server may still send in this invocation, bytes; shared with
/// the body reader that counts them.
#[derive(Clone, Debug)]
pub struct ByteBudget(Arc<AtomicU64>);

impl ByteBudget {
    /// A budget of `bytes`.
    pub fn new(bytes: u64) -> Self {
        Self(Arc::new(AtomicU64::new(bytes)))
    }

    /// Bytes left.
    pub fn left(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn spend(&self, bytes: u64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(bytes))
            });
    }
}

impl Server {
    /// The handshake: `initialize`, then `notifications/initialized`.
    pub async fn connect(
        &self,
        budget: &ByteBudget,
        deadline: Instant,
    ) -> Result<Session, ExchangeError> {
        let mut session = Session {
            id: None,
            version: HeaderValue::from_static(PROTOCOL_VERSION),
            next_id: 0,
        };
        let params = json!({
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": { "name": "agent-host", "version": env!("CARGO_PKG_VERSION") },
        });
        let (answer, id) = self
            .exchange(&mut session, "initialize", params, true, budget, deadline)
            .await?;
        let result = match answer {
            Some(Answer::Result(result)) => result,
            Some(Answer::Error(code, message)) => {
                return Err(ExchangeError::Upstream(
                    Failure::Upstream,
                    format!("initialize refused ({code}): {message}"),
                ))
            }
            None => return Err(protocol("initialize was not answered")),
        };
        let version = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !SUPPORTED_VERSIONS.contains(&version) {
            return Err(protocol(&format!(
                "the server speaks MCP {version:?}; the host speaks {}",
                SUPPORTED_VERSIONS.join(", ")
            )));
        }
        session.version =
            HeaderValue::from_str(version).expect("a supported version is a header value");
        session.id = id;
        self.exchange(
            &mut session,
            "notifications/initialized",
            json!({}),
            false,
            budget,
            deadline,
        )
        .await?;
        Ok(session)
    }

    /// Sends `method` with `params` (a request when `request`, else a
    /// notification) and returns the answer (none for a notification) and
    /// the session id the server set, if any.
    pub async fn exchange(
        &self,
        session: &mut Session,
        method: &str,
        params: Value,
        request: bool,
        budget: &ByteBudget,
        deadline: Instant,
    ) -> Result<(Option<Answer>, Option<HeaderValue>), ExchangeError> {
        let limit = self
            .timeout
            .min(deadline.saturating_duration_since(Instant::now()));
        if limit.is_zero() {
            return Err(ExchangeError::Upstream(
                Failure::Timeout,
                "the invocation's deadline has passed".into(),
            ));
        }
        let id = request.then(|| {
            session.next_id += 1;
            session.next_id
        });
        let mut message = json!({ "jsonrpc": "2.0", "method": method, "params": params });
        if let Some(id) = id {
            message["id"] = json!(id);
        }
        let body = Bytes::from(serde_json::to_vec(&message).expect("JSON"));
        match tokio::time::timeout(limit, self.post(session, body, id, budget, limit)).await {
            Ok(result) => result,
            Err(_) => Err(ExchangeError::Upstream(
                Failure::Timeout,
                format!("{method}: no answer within {} ms", limit.as_millis()),
            )),
        }
    }

    async fn post(
        &self,
        session: &Session,
        body: Bytes,
        id: Option<u64>,
        budget: &ByteBudget,
        limit: Duration,
    ) -> Result<(Option<Answer>, Option<HeaderValue>), ExchangeError> {
        let request = http::Request::post(self.url.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json, text/event-stream");
        let options = wasmtime_wasi_http::RequestOptions {
            connect_timeout: Some(limit.min(crate::cap::http::CONNECT_TIMEOUT)),
            first_byte_timeout: Some(limit),
            between_bytes_timeout: Some(limit),
        };
        let left = budget.left();
        let (response, io) = self
            .send_checked(request, session, body, options, left)
            .await?;
        tokio::spawn(Box::into_pin(io));
        let status = response.status();
        let session_id = response.headers().get("mcp-session-id").cloned();
        let content_type = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        let counted = budget.clone();
        let body = response.into_body().map_frame(move |frame| {
            if let Some(data) = frame.data_ref() {
                counted.spend(data.len() as u64);
            }
            frame
        });
        let exhausted = budget.clone();
        let over = |e: wasmtime_wasi_http::Error| match e {
            wasmtime_wasi_http::Error::HttpResponseBodySize(_) => {
                // It sent at least what was left: nothing more is read this invocation.
                exhausted.spend(left);
                ExchangeError::Budget(format!(
                    "the server sent more than the {left} bytes left of maxResponseBytesPerInvocation; the response was cut off"
                ))
            }
            wasmtime_wasi_http::Error::ConnectionReadTimeout => ExchangeError::Upstream(
                Failure::Timeout,
                format!("no answer within {} ms", limit.as_millis()),
            ),
            e => {
                ExchangeError::Upstream(Failure::of_http(&e), format!("reading the response: {e}"))
            }
        };
        if !status.is_success() {
            let mut snippet = Vec::new();
            let mut frames = body.into_data_stream();
            while let Some(Ok(chunk)) = frames.next().await {
                snippet.extend_from_slice(&chunk);
                if snippet.len() >= ERROR_SNIPPET {
                    break;
                }
            }
            snippet.truncate(ERROR_SNIPPET);
            let text = String::from_utf8_lossy(&snippet);
            let failure = if status.is_server_error() {
                Failure::ServerError
            } else {
                Failure::Upstream
            };
            let why = match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    format!("{status}: the server refused the host's credentials: {text}")
                }
                s if s.is_redirection() => {
                    format!("{status}: redirects are not followed; grant the server's final URL")
                }
                StatusCode::NOT_FOUND if session.id.is_some() => {
                    format!("{status}: the server ended the session")
                }
                _ => format!("{status}: {text}"),
            };
            return Err(ExchangeError::Upstream(failure, why));
        }
        let Some(id) = id else {
            // A notification: nothing to wait for (202 Accepted is the rule).
            return Ok((None, session_id));
        };
        let answer = match content_type.as_str() {
            "application/json" => {
                let bytes = body.collect().await.map_err(over)?.to_bytes();
                let message: Value = serde_json::from_slice(&bytes)
                    .map_err(|e| protocol(&format!("the response is not JSON: {e}")))?;
                answer_to(&message, id)
                    .ok_or_else(|| protocol("the JSON response does not answer the request"))?
            }
            "text/event-stream" => {
                let mut events = sse_stream::SseStream::new(body);
                loop {
                    match events.next().await {
                        Some(Ok(event)) => {
                            let Some(data) = event.data else { continue };
                            let Ok(message) = serde_json::from_str::<Value>(&data) else {
                                continue;
                            };
                            if let Some(answer) = answer_to(&message, id) {
                                break answer;
                            }
                        }
                        Some(Err(e)) => {
                            return Err(match e {
                                sse_stream::Error::Body(e) => match e
                                    .downcast::<wasmtime_wasi_http::Error>()
                                {
                                    Ok(e) => over(*e),
                                    Err(e) => protocol(&format!("reading the event stream: {e}")),
                                },
                                e => protocol(&format!("reading the event stream: {e}")),
                            })
                        }
                        None => return Err(protocol("the event stream ended without the answer")),
                    }
                }
            }
            other => {
                return Err(protocol(&format!(
                    "unexpected content type {other:?} (application/json or text/event-stream)"
                )))
            }
        };
        Ok((Some(answer), session_id))
    }

    /// Resolves the server under the grant's address policy and sends
    /// `request` (its method and own headers set) to that very address, with
    /// what every request to the server carries: `Host`, the protocol
    /// version, the session and the credential.
    async fn send_checked(
        &self,
        mut request: http::request::Builder,
        session: &Session,
        body: Bytes,
        options: wasmtime_wasi_http::RequestOptions,
        max_body: u64,
    ) -> Result<crate::cap::http::client::Sent, ExchangeError> {
        let addr = address::resolve(&self.host, self.port, &self.addresses)
            .await
            .map_err(|e| match e {
                ResolveError::Prohibited(why) => ExchangeError::Prohibited(why),
                ResolveError::Dns(why) => ExchangeError::Upstream(Failure::Dns, why),
            })?;
        request = request.header(http::header::HOST, &self.authority).header(
            HeaderName::from_static("mcp-protocol-version"),
            &session.version,
        );
        if let Some(sid) = &session.id {
            request = request.header(HeaderName::from_static("mcp-session-id"), sid);
        }
        if let Some(credential) = &self.credential {
            request = request.header(&credential.header, &credential.value);
        }
        let request = request
            .body(
                Full::new(body)
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            )
            .expect("a valid request");
        let dest = Destination {
            addr,
            host: &self.host,
            tls: self.tls,
            path_and_query: &self.path_and_query,
        };
        send(request, dest, options, max_body).await.map_err(|e| {
            ExchangeError::Upstream(Failure::of_http(&e), format!("{}: {e}", self.url))
        })
    }

    /// Ends the server's session (`DELETE`), best effort: a server that keeps
    /// sessions frees it now rather than at its own timeout.
    pub async fn close(&self, session: Session) {
        if session.id.is_none() {
            return;
        }
        let request = http::Request::delete(self.url.as_str());
        let close = async {
            let (_, io) = self
                .send_checked(
                    request,
                    &session,
                    Bytes::new(),
                    Default::default(),
                    ERROR_SNIPPET as u64,
                )
                .await
                .ok()?;
            tokio::spawn(Box::into_pin(io));
            Some(())
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, close).await;
    }
}

/// How long ending a session may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

fn protocol(why: &str) -> ExchangeError {
    ExchangeError::Upstream(Failure::Protocol, why.to_string())
}

/// The answer `message` gives to request `id`, if it is one.
fn answer_to(message: &Value, id: u64) -> Option<Answer> {
    let same = match message.get("id")? {
        Value::Number(n) => n.as_u64() == Some(id),
        Value::String(s) => s == &id.to_string(),
        _ => false,
    };
    if !same {
        return None;
    }
    if let Some(result) = message.get("result") {
        return Some(Answer::Result(result.clone()));
    }
    let error = message.get("error")?;
    Some(Answer::Error(
        error.get("code").and_then(Value::as_i64).unwrap_or(0),
        error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("no message")
            .to_string(),
    ))
}
