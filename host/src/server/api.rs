//! The HTTP API: routes, admission, idempotency, and the JSON shapes of
//! responses. Errors are `{"error": {"code", "message"}}` with a stable code.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::auth::{self, authorize, Caller};
use super::durable;
use super::store::{Finished, KeyLookup, Phase, Tracked};
use super::{Hosted, Shared};
use crate::audit::Event;
use crate::runtime::{Invocation, InvocationError, PreparedAgent, Slot, TaskInput, Usage};
use crate::state_store::InvocationId;

/// Longest accepted `Idempotency-Key`.
const MAX_KEY_LEN: usize = 255;
/// Request headers passed to the agent as task metadata (prefix stripped).
const METADATA_PREFIX: &str = "x-agent-meta-";
const RETRY_AFTER_SECS: &str = "1";

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/agents", get(list_agents))
        .route("/v1/agents/{agent}/invocations", post(invoke))
        .route(
            "/v1/invocations/{id}",
            get(get_invocation).delete(cancel_invocation),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(shared)
}

/// An error response.
#[derive(Debug)]
pub(super) struct ApiError {
    status: StatusCode,
    pub(super) code: &'static str,
    pub(super) message: String,
}

impl ApiError {
    pub(super) fn status(&self) -> StatusCode {
        self.status
    }

    pub(super) fn code(&self) -> &'static str {
        self.code
    }

    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            serde_json::json!({ "error": ErrorBody { code: self.code, message: &self.message } });
        json_response(self.status, Bytes::from(body.to_string()))
    }
}

fn json_response(status: StatusCode, body: Bytes) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    ) {
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(RETRY_AFTER_SECS),
        );
    }
    response
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InvokeQuery {
    #[serde(rename = "async", default)]
    run_async: bool,
}

/// How an accepted invocation gets its slot.
enum Admission {
    Slot(Slot),
    Queued(QueueTicket),
}

/// A place in an agent's queue; given back when dropped.
struct QueueTicket(Arc<Hosted>);

impl Drop for QueueTicket {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::SeqCst);
        self.0.queued_gauge.dec();
    }
}

/// Takes a free slot, else a place in the queue, else refuses.
fn admit(hosted: &Arc<Hosted>, agent: &PreparedAgent) -> Result<Admission, ApiError> {
    if let Ok(permit) = hosted.permits.clone().try_acquire_owned() {
        return Ok(Admission::Slot(permit.into()));
    }
    let limits = agent.limits();
    let max_queue = limits.max_queue;
    let queued = hosted
        .queued
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |q| {
            (q < max_queue).then_some(q + 1)
        });
    match queued {
        Ok(_) => {
            hosted.queued_gauge.inc();
            Ok(Admission::Queued(QueueTicket(hosted.clone())))
        }
        Err(_) => Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "QueueFull",
            format!(
                "agent {} is running spec.limits.maxConcurrency ({}) invocations and spec.limits.maxQueue ({}) are waiting; retry later",
                agent.name(),
                limits.max_concurrency,
                max_queue
            ),
        )),
    }
}

enum Started {
    New(Arc<Tracked>, Admission),
    Replay(Arc<Tracked>),
}

async fn invoke(
    State(s): State<Arc<Shared>>,
    Path(agent): Path<String>,
    query: Result<Query<InvokeQuery>, axum::extract::rejection::QueryRejection>,
    request: Request,
) -> Response {
    let result = accept(&s, &agent, query, request).await;
    match result {
        Ok(response) => response,
        Err(e) => {
            if s.agents.contains_key(&agent) {
                s.metrics.rejected(&agent, e.code);
            }
            e.into_response()
        }
    }
}

async fn accept(
    s: &Arc<Shared>,
    agent: &str,
    query: Result<Query<InvokeQuery>, axum::extract::rejection::QueryRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    not_draining(s)?;
    let hosted = s.agents.get(agent).ok_or_else(|| {
        let known: Vec<&str> = s.agents.keys().map(String::as_str).collect();
        ApiError::new(
            StatusCode::NOT_FOUND,
            "UnknownAgent",
            format!(
                "no agent named {agent:?}; this host serves: {}",
                known.join(", ")
            ),
        )
    })?;
    let current = hosted.current().ok_or_else(|| unavailable(agent))?;
    let caller = request
        .extensions()
        .get::<Caller>()
        .cloned()
        .expect("the auth layer names every caller");
    if let Err(denied) = authorize(&caller, current.callers()) {
        s.metrics.rejected(agent, "Forbidden");
        let line = format!("{} {}", request.method(), request.uri().path());
        return Ok(auth::deny(
            s,
            &caller,
            line,
            Some(agent),
            auth::forbidden(&denied),
        ));
    }
    let run_async = query
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "InvalidQuery",
                format!("{}; allowed: async=true|false", e.body_text()),
            )
        })?
        .run_async;
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let key = idempotency_key(headers)?;
    let input = read_input(
        s,
        &parts.headers,
        body,
        current.limits().max_input_bytes.bytes(),
    )
    .await?;
    if let Some(d) = s.durable.as_ref().filter(|_| key.is_some() || run_async) {
        let request = durable::Request {
            hosted,
            agent: current.clone(),
            run_async,
            key,
            input,
            metadata: metadata(headers),
            caller: caller.name.clone(),
        };
        let (answer, replayed) = durable::accept(s, d, request).await?;
        let mut response = match answer {
            durable::Response::Accepted { id, body } => {
                let mut r = json_response(StatusCode::ACCEPTED, body);
                if let Ok(v) = HeaderValue::from_str(&format!("/v1/invocations/{id}")) {
                    r.headers_mut().insert(header::LOCATION, v);
                }
                r
            }
            durable::Response::Ended { status, body } => json_response(status, body),
        };
        if replayed {
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
        }
        return Ok(response);
    }
    let fingerprint: Option<[u8; 32]> =
        (key.is_some() || s.audit.enabled()).then(|| Sha256::digest(input.as_bytes()).into());

    let started = if key.is_some() || run_async {
        s.store.with_lock(|l| {
            if let (Some(key), Some(fp)) = (&key, &fingerprint) {
                match l.lookup_key(agent, key, fp) {
                    KeyLookup::Replay(t) => return Ok(Started::Replay(t)),
                    KeyLookup::Mismatch => {
                        return Err(ApiError::new(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "IdempotencyKeyReused",
                            format!("Idempotency-Key {key:?} was first used with a different body for agent {agent}; use a new key for a new task"),
                        ))
                    }
                    KeyLookup::New => l.reserve_key().map_err(|_| {
                        ApiError::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "IdempotencyStoreFull",
                            "the host remembers as many idempotency keys as it may; retry later",
                        )
                    })?,
                }
            }
            let admission = admit(hosted, &current)?;
            let tracked = Tracked::new(uuid::Uuid::new_v4().to_string(), agent.to_string());
            if let (Some(key), Some(fp)) = (&key, fingerprint) {
                l.bind_key(key, fp, tracked.clone());
            }
            l.remember(tracked.clone());
            Ok(Started::New(tracked, admission))
        })?
    } else {
        let admission = admit(hosted, &current)?;
        Started::New(
            Tracked::new(uuid::Uuid::new_v4().to_string(), agent.to_string()),
            admission,
        )
    };

    let (tracked, replayed) = match started {
        Started::Replay(tracked) => (tracked, true),
        Started::New(tracked, admission) => {
            let launch = Launch {
                input,
                fingerprint,
                key: key.clone(),
                caller: caller.name.clone(),
                metadata: metadata(headers),
                cancel: None,
            };
            launch.start(s, hosted, &tracked, admission, Some(headers));
            (tracked, false)
        }
    };

    let mut response = if let (true, Phase::Evicted(f)) = (run_async, tracked.phase()) {
        json_response(f.status, f.body.clone())
    } else if run_async {
        let body = status_body(&tracked, &tracked.phase());
        let mut r = json_response(StatusCode::ACCEPTED, body);
        if let Ok(v) = HeaderValue::from_str(&format!("/v1/invocations/{}", tracked.id)) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        r
    } else {
        let finished = tracked.done().await;
        json_response(finished.status, finished.body.clone())
    };
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

fn not_draining(s: &Shared) -> Result<(), ApiError> {
    if s.draining.load(Ordering::SeqCst) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Draining",
            "the host is shutting down and accepts no new invocations; retry on another replica",
        ));
    }
    Ok(())
}

/// An accepted invocation about to start.
struct Launch {
    input: String,
    fingerprint: Option<[u8; 32]>,
    key: Option<String>,
    caller: String,
    metadata: Vec<(String, String)>,
    /// Cancelled by the client (MCP `notifications/cancelled`); `None`: only the host's shutdown cancels.
    cancel: Option<CancellationToken>,
}

impl Launch {
    /// Audits the start and runs the invocation in its own task.
    fn start(
        self,
        s: &Arc<Shared>,
        hosted: &Arc<Hosted>,
        tracked: &Arc<Tracked>,
        admission: Admission,
        headers: Option<&HeaderMap>,
    ) {
        s.audit.record(Event::InvocationStart {
            agent: tracked.agent.clone(),
            invocation: tracked.id.clone(),
            caller: self.caller,
            input_bytes: self.input.len() as u64,
            input_sha256: self.fingerprint.map(hex::encode).unwrap_or_default(),
            idempotency_key: self.key,
        });
        let task = TaskInput {
            id: Some(tracked.id.clone()),
            input: self.input,
            metadata: self.metadata,
        };
        let span =
            tracing::info_span!("invocation", agent = %tracked.agent, invocation = %tracked.id);
        if let Some(headers) = headers {
            crate::telemetry::set_parent_from(&span, headers);
        }
        // Its own task, even for a synchronous request: a client that goes
        // away cannot cut an invocation in half, and idle workers steal
        // invocations (measured: better throughput on 2 cores than running
        // on the connection's task).
        s.tasks.spawn(
            execute(
                s.clone(),
                hosted.clone(),
                tracked.clone(),
                admission,
                task,
                self.cancel,
            )
            .instrument(span),
        );
    }
}

/// A synchronous invocation asked for outside the HTTP API (the MCP
/// endpoint): the same draining check, input bound, admission, audit,
/// metrics and execution as `POST /v1/agents/{agent}/invocations`.
pub(super) async fn invoke_direct(
    s: &Arc<Shared>,
    hosted: &Arc<Hosted>,
    current: &PreparedAgent,
    input: String,
    caller: String,
    cancel: CancellationToken,
) -> Result<Arc<Finished>, ApiError> {
    let outcome = async {
        not_draining(s)?;
        let limit = current.limits().max_input_bytes.bytes();
        if input.len() as u64 > limit {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "InputTooLarge",
                format!(
                    "input of {} bytes exceeds the agent's spec.limits.maxInputBytes of {limit}",
                    input.len()
                ),
            ));
        }
        let admission = admit(hosted, current)?;
        let tracked = Tracked::new(uuid::Uuid::new_v4().to_string(), hosted.name.clone());
        let fingerprint = s
            .audit
            .enabled()
            .then(|| Sha256::digest(input.as_bytes()).into());
        let launch = Launch {
            input,
            fingerprint,
            key: None,
            caller,
            metadata: Vec::new(),
            cancel: Some(cancel),
        };
        launch.start(s, hosted, &tracked, admission, None);
        Ok(tracked)
    }
    .await;
    match outcome {
        Ok(tracked) => Ok(tracked.done().await),
        Err(e) => {
            s.metrics.rejected(&hosted.name, e.code);
            Err(e)
        }
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bad = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "InvalidIdempotencyKey",
            format!("Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters"),
        )
    };
    let key = value.to_str().map_err(|_| bad())?;
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    Ok(Some(key.to_string()))
}

/// Bytes reserved from the server's input budget; given back when dropped.
pub(super) struct Reservation<'a> {
    budget: &'a std::sync::atomic::AtomicU64,
    bytes: u64,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.budget.fetch_add(self.bytes, Ordering::SeqCst);
    }
}

pub(super) fn reserve(s: &Shared, bytes: u64) -> Result<Reservation<'_>, ApiError> {
    s.input_budget
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(bytes))
        .map(|_| Reservation {
            budget: &s.input_budget,
            bytes,
        })
        .map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Overloaded",
                "the host is buffering as many request bodies as it may (--max-buffered-input); retry later",
            )
        })
}

async fn read_input(
    s: &Shared,
    headers: &HeaderMap,
    body: Body,
    limit: u64,
) -> Result<String, ApiError> {
    let too_large = |size: String| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "InputTooLarge",
            format!(
                "input of {size} bytes exceeds the agent's spec.limits.maxInputBytes of {limit}"
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared.filter(|n| *n > limit) {
        return Err(too_large(n.to_string()));
    }
    // Reserve what the body may take before reading it (the agent's limit
    // when the length is not declared), so concurrent uploads stay bounded.
    let _reserved = reserve(s, declared.unwrap_or(limit))?;
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    let read = tokio::time::timeout(s.body_timeout, Limited::new(body, limit_usize).collect());
    let bytes = match read.await {
        Err(_elapsed) => {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "BodyTimeout",
                format!(
                    "the request body did not arrive within {:?}",
                    s.body_timeout
                ),
            ))
        }
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(too_large(format!("more than {limit}")))
        }
        Ok(Err(e)) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "BodyUnreadable",
                format!("could not read the request body: {e}"),
            ))
        }
    };
    let input = String::from_utf8(bytes.to_vec()).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "InvalidInput",
            format!(
                "the body must be UTF-8 JSON; byte {} is not UTF-8",
                e.utf8_error().valid_up_to()
            ),
        )
    })?;
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&input) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "InvalidInput",
            format!("the body must be the task input as JSON: {e}"),
        ));
    }
    Ok(input)
}

fn metadata(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(name, value)| {
            let key = name.as_str().strip_prefix(METADATA_PREFIX)?;
            Some((key.to_string(), value.to_str().ok()?.to_string()))
        })
        .collect()
}

/// Runs one accepted invocation to its end (or cancellation) and publishes
/// the response.
async fn execute(
    s: Arc<Shared>,
    hosted: Arc<Hosted>,
    tracked: Arc<Tracked>,
    admission: Admission,
    task: TaskInput,
    client_cancel: Option<CancellationToken>,
) {
    let by_client = || async {
        match &client_cancel {
            Some(token) => token.cancelled().await,
            None => std::future::pending::<()>().await,
        }
    };
    let slot: Slot = match admission {
        Admission::Slot(slot) => slot,
        Admission::Queued(ticket) => {
            tokio::select! {
                permit = hosted.permits.clone().acquire_owned() => {
                    drop(ticket);
                    permit.expect("the semaphore is never closed").into()
                }
                () = s.cancel.cancelled() => { drop(ticket); return cancelled(&s, &tracked) }
                () = by_client() => { drop(ticket); return cancelled_by_client(&s, &tracked) }
            }
        }
    };
    // The agent serving now: a spec that changed while this task waited applies.
    let Some(agent) = hosted.current() else {
        let e = unavailable(&hosted.name);
        return ended_unrun(&s, &tracked, e.status, "failed", e.code, &e.message);
    };
    tracked.set(Phase::Running);
    hosted.in_flight_gauge.inc();
    let invocation = tokio::select! {
        inv = agent.invoke_in_slot(slot, task) => Ok(inv),
        () = s.cancel.cancelled() => Err(false),
        () = by_client() => Err(true),
    };
    hosted.in_flight_gauge.dec();
    let inv = match invocation {
        Ok(inv) => inv,
        Err(false) => return cancelled(&s, &tracked),
        Err(true) => return cancelled_by_client(&s, &tracked),
    };
    record_end(&s, &hosted, &inv);
    s.store.publish(&tracked, finished(&inv));
}

/// What every invocation that ran leaves behind, in memory or durable: its
/// metrics, the agent's activity (events) and its audit record.
pub(super) fn record_end(s: &Shared, hosted: &Hosted, inv: &Invocation) {
    s.metrics.finished(inv);
    hosted.note(inv);
    s.audit.record(Event::InvocationEnd {
        agent: inv.agent.clone(),
        invocation: inv.id.clone(),
        outcome: inv.outcome().to_string(),
        error: inv.result.as_ref().err().map(ToString::to_string),
        fuel: inv.usage.fuel_consumed,
        peak_memory_bytes: inv.usage.peak_memory_bytes,
        wall_time_us: inv.usage.wall_time_us,
        capability_records_suppressed: inv.usage.capability_records_suppressed,
    });
}

pub(super) fn unavailable(agent: &str) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "AgentUnavailable",
        format!("agent {agent} is not serving: its resource is missing or invalid (see its status); nothing runs under a stale or broader spec"),
    )
}

fn cancelled(s: &Shared, tracked: &Arc<Tracked>) {
    const MESSAGE: &str =
        "cancelled: the host shut down and the invocation did not end within the grace period";
    s.cancelled.fetch_add(1, Ordering::SeqCst);
    ended_unrun(
        s,
        tracked,
        StatusCode::SERVICE_UNAVAILABLE,
        "cancelled",
        "Cancelled",
        MESSAGE,
    );
}

/// The client withdrew the request (MCP `notifications/cancelled`, or its
/// response stream closed): the instance is dropped where it stood.
fn cancelled_by_client(s: &Shared, tracked: &Arc<Tracked>) {
    ended_unrun(
        s,
        tracked,
        StatusCode::OK,
        "cancelled",
        "Cancelled",
        "cancelled by the client before the invocation ended",
    );
}

/// Ends an accepted invocation that did not run (or was stopped): metrics,
/// audit record and the response every reader gets.
fn ended_unrun(
    s: &Shared,
    tracked: &Arc<Tracked>,
    status: StatusCode,
    state: &'static str,
    code: &'static str,
    message: &str,
) {
    s.metrics.record_outcome(&tracked.agent, code);
    s.audit.record(Event::InvocationEnd {
        agent: tracked.agent.clone(),
        invocation: tracked.id.clone(),
        outcome: code.into(),
        error: Some(message.into()),
        fuel: 0,
        peak_memory_bytes: 0,
        wall_time_us: 0,
        capability_records_suppressed: 0,
    });
    let body = InvocationBody {
        id: &tracked.id,
        agent: &tracked.agent,
        state,
        outcome: Some(code),
        output: None,
        error: Some(ErrorBody { code, message }),
        usage: None,
    };
    s.store.publish(
        tracked,
        Finished {
            status,
            state,
            body: to_bytes(&body),
        },
    );
}

/// The JSON of an invocation, in every response that shows one.
#[derive(Serialize)]
struct InvocationBody<'a> {
    id: &'a str,
    agent: &'a str,
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    state: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorBody<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<&'a Usage>,
}

fn to_bytes(body: &impl Serialize) -> Bytes {
    Bytes::from(serde_json::to_vec(body).expect("response bodies serialise"))
}

/// The status and body of an ended invocation. Budget breaches, traps and agent
/// errors are outcomes of a request that was served (200, `state: failed`);
/// only refusals and host faults change the status.
pub(super) fn finished(inv: &Invocation) -> Finished {
    let (status, state) = match &inv.result {
        Ok(_) => (StatusCode::OK, "succeeded"),
        Err(InvocationError::InvalidInput { .. }) => (StatusCode::BAD_REQUEST, "failed"),
        Err(InvocationError::InputTooLarge { .. }) => (StatusCode::PAYLOAD_TOO_LARGE, "failed"),
        Err(InvocationError::Capacity { .. }) => (StatusCode::SERVICE_UNAVAILABLE, "failed"),
        Err(InvocationError::Host { .. }) => (StatusCode::INTERNAL_SERVER_ERROR, "failed"),
        Err(_) => (StatusCode::OK, "failed"),
    };
    let message = inv.result.as_ref().err().map(ToString::to_string);
    let body = InvocationBody {
        id: &inv.id,
        agent: &inv.agent,
        state,
        outcome: Some(inv.outcome()),
        // The agent's output is JSON by contract; anything else is passed as a string.
        output: inv.result.as_ref().ok().map(|text| {
            serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.clone()))
        }),
        error: inv.result.as_ref().err().map(|e| ErrorBody {
            code: e.code(),
            message: message.as_deref().unwrap_or_default(),
        }),
        usage: Some(&inv.usage),
    };
    Finished {
        status,
        state,
        body: to_bytes(&body),
    }
}

fn status_body(tracked: &Tracked, phase: &Phase) -> Bytes {
    match phase {
        Phase::Done(f) | Phase::Evicted(f) => f.body.clone(),
        other => to_bytes(&InvocationBody {
            id: &tracked.id,
            agent: &tracked.agent,
            state: other.name(),
            outcome: None,
            output: None,
            error: None,
            usage: None,
        }),
    }
}

/// The refusal (403, audited) when `caller` may not see or cancel
/// invocations of `agent`: as for invoking it. An agent not serving here has
/// no `spec.callers` to check, so with authentication on its invocations are
/// refused (fail closed).
fn refusal(
    s: &Shared,
    caller: &Caller,
    agent: &str,
    line: impl FnOnce() -> String,
) -> Option<Response> {
    s.auth.as_ref()?;
    let current = s.agents.get(agent).and_then(|h| h.current());
    let allowed = match &current {
        Some(a) => authorize(caller, a.callers()),
        None => Err(auth::Denied {
            caller: caller.name.clone(),
        }),
    };
    allowed.err().map(|denied| {
        let error = match current {
            Some(_) => auth::forbidden(&denied),
            None => ApiError::new(
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!("agent {agent} is not serving here, so who may reach its invocations cannot be checked"),
            ),
        };
        auth::deny(s, caller, line(), Some(agent), error)
    })
}

async fn get_invocation(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let line = || format!("GET /v1/invocations/{id}");
    if let (Some(d), Ok(durable_id)) = (&s.durable, InvocationId::parse(&id)) {
        let agent = durable_id.scope().map(|sc| sc.agent).unwrap_or_default();
        if let Some(refused) = refusal(&s, &caller, &agent, line) {
            return refused;
        }
        return match durable::get(d, &durable_id).await {
            // The stored status belongs to the synchronous POST; a read of
            // an invocation found is 200, as for in-memory ones.
            Ok(Some(record)) => json_response(StatusCode::OK, durable::response_of(&record).1),
            Ok(None) => unknown_invocation(&id),
            Err(e) => e.into_response(),
        };
    }
    let tracked = s.store.get(&id);
    if let Some(t) = &tracked {
        if let Some(refused) = refusal(&s, &caller, &t.agent, line) {
            return refused;
        }
    }
    match tracked {
        Some(tracked) => match tracked.phase() {
            Phase::Evicted(f) => json_response(f.status, f.body.clone()),
            phase => json_response(StatusCode::OK, status_body(&tracked, &phase)),
        },
        None => unknown_invocation(&id),
    }
}

fn unknown_invocation(id: &str) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "UnknownInvocation",
        format!("no invocation {id:?} is remembered: ids come from async or idempotent requests and are kept for the result TTL"),
    )
    .into_response()
}

/// `DELETE /v1/invocations/{id}`: cancels a queued or running durable invocation.
async fn cancel_invocation(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let (Some(d), Ok(durable_id)) = (&s.durable, InvocationId::parse(&id)) else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "UnknownInvocation",
            format!("no durable invocation {id:?}: only async or idempotent invocations kept in the state store can be cancelled"),
        )
        .into_response();
    };
    let agent = durable_id.scope().map(|sc| sc.agent).unwrap_or_default();
    if let Some(refused) = refusal(&s, &caller, &agent, || {
        format!("DELETE /v1/invocations/{id}")
    }) {
        return refused;
    }
    match durable::cancel(d, &durable_id).await {
        Ok((status, body)) => json_response(status, body),
        Err(e) => e.into_response(),
    }
}

/// The agents this caller may invoke (all of them when authentication is off).
async fn list_agents(
    State(s): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let agents: Vec<_> = s
        .agents
        .values()
        .filter(|h| {
            s.auth.is_none()
                || h.current()
                    .is_some_and(|a| authorize(&caller, a.callers()).is_ok())
        })
        .map(|h| match h.current() {
            Some(agent) => {
                let l = agent.limits();
                serde_json::json!({
                    "name": h.name,
                    "serving": true,
                    "digest": format!("sha256:{}", agent.digest),
                    "maxConcurrency": l.max_concurrency,
                    "maxQueue": l.max_queue,
                    "maxInputBytes": l.max_input_bytes.bytes(),
                    "inFlight": h.in_flight_gauge.get(),
                    "queued": h.queued.load(Ordering::SeqCst),
                })
            }
            None => serde_json::json!({ "name": h.name, "serving": false }),
        })
        .collect();
    json_response(
        StatusCode::OK,
        Bytes::from(serde_json::json!({ "agents": agents }).to_string()),
    )
}

async fn healthz() -> Response {
    json_response(StatusCode::OK, Bytes::from_static(b"{\"status\":\"ok\"}"))
}

async fn readyz(State(s): State<Arc<Shared>>) -> Response {
    let draining = s.draining.load(Ordering::SeqCst);
    let audit = match (s.audit.enabled(), s.audit.healthy()) {
        (false, _) => "disabled",
        (true, true) => "ok",
        (true, false) => "failing",
    };
    // Ready only when every hosted agent has a compiled component under a
    // valid spec (a missing or invalid resource makes its host unready).
    let agents: Vec<_> = s
        .agents
        .values()
        .map(|h| match h.current() {
            Some(a) => serde_json::json!({ "name": h.name, "digest": format!("sha256:{}", a.digest), "serving": true }),
            None => serde_json::json!({ "name": h.name, "serving": false }),
        })
        .collect();
    let serving = s.agents.values().all(|h| h.current().is_some());
    let store = match &s.durable {
        None => "none",
        Some(d) if d.reachable() => "ok",
        Some(_) => "unreachable",
    };
    let ready = !draining && audit != "failing" && serving && store != "unreachable";
    let body = serde_json::json!({ "ready": ready, "draining": draining, "auditLog": audit, "store": store, "agents": agents });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(status, Bytes::from(body.to_string()))
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    let mut response = s.metrics.encode().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    response
}

async fn not_found(request: Request) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!(
            "no route for {} {}; see the API in docs/openapi.yaml",
            request.method(),
            request.uri().path()
        ),
    )
    .into_response()
}
