//! Durable invocations: async requests and any request with an
//! `Idempotency-Key` are recorded in the state store before they are
//! acknowledged, claimed by a replica with a free slot, run under a renewed
//! lease, and ended with one fenced write of the result and the key-value
//! changes ([`StateStore::complete`]). Any replica answers for any of them.
//!
//! A plain synchronous request without a key does not come here: its caller
//! holds the connection and retries, so it stays the in-memory path.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use super::api::ApiError;
use super::{Hosted, Shared};
use crate::audit::Event;
use crate::runtime::PreparedAgent;
use crate::state_store::{
    Claim, InvocationId, Record, State, StateStore, StoreError, Submitted, Taken,
};

mod worker;

use worker::run;
pub(crate) use worker::{claim_loop, depth_loop};

/// Claim loops per agent on each replica: one claim is one store round
/// trip, so a single loop caps a replica's intake at one item per round trip.
pub(crate) const CLAIMERS: usize = 4;
/// Longest wait between two claims of an idle agent's queue.
const MAX_IDLE_POLL: Duration = Duration::from_millis(100);
/// First wait after an empty claim.
const MIN_IDLE_POLL: Duration = Duration::from_millis(2);
/// Wait after a store failure before the next claim or health probe.
const STORE_RETRY: Duration = Duration::from_millis(500);
/// Store-wide byte bound of one agent's queued and running inputs: what a
/// flood of accepted work can make the store hold, whatever `maxQueue` says.
pub const MAX_QUEUE_BYTES: u64 = 1 << 30;
/// Bytes counted per queued item besides its input (its metadata).
const ITEM_OVERHEAD: u64 = 4096;

/// The state store and how this replica uses it.
#[derive(Clone)]
pub struct DurableConfig {
    /// Where durable invocations live (shared by replicas on Redis).
    pub store: Arc<dyn StateStore>,
    /// This replica's name, recorded with each attempt it runs.
    pub replica: String,
    /// How long a claim holds an invocation without renewal.
    pub lease: Duration,
}

impl std::fmt::Debug for DurableConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableConfig")
            .field("replica", &self.replica)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

/// The durable plane of a running server.
pub(crate) struct Durable {
    store: Arc<dyn StateStore>,
    replica: String,
    lease: Duration,
    /// Whether the store answered the last call: readiness and fast 503s.
    reachable: AtomicBool,
    /// Fired at SIGTERM: no more claims.
    pub(crate) stop_claiming: CancellationToken,
    /// Attempts running here, by id: `DELETE` stops them.
    running: Mutex<HashMap<String, CancellationToken>>,
    /// Bumped whenever an attempt ends here: local waiters re-read at once.
    ended: watch::Sender<u64>,
    /// Woken by a local submit or end: the claim loops look at once.
    submitted: Notify,
}

/// What is kept with an invocation besides its input.
#[derive(Serialize, Deserialize, Default)]
struct Meta {
    /// `x-agent-meta-*` headers, prefix stripped.
    #[serde(default)]
    metadata: Vec<(String, String)>,
}

impl Durable {
    pub(crate) fn new(config: DurableConfig) -> Self {
        Self {
            store: config.store,
            replica: config.replica,
            lease: config.lease,
            reachable: AtomicBool::new(true),
            stop_claiming: CancellationToken::new(),
            running: Mutex::default(),
            ended: watch::Sender::new(0),
            submitted: Notify::new(),
        }
    }

    /// Whether the store answered its last call.
    pub(crate) fn reachable(&self) -> bool {
        self.reachable.load(Ordering::SeqCst)
    }

    fn observe<T>(&self, result: &Result<T, StoreError>) {
        match result {
            Err(StoreError::Backend(e) | StoreError::Unknown(e)) => {
                if self.reachable.swap(false, Ordering::SeqCst) {
                    tracing::error!(error = %e, "state store unreachable: durable requests get 503 StoreUnavailable");
                }
            }
            _ => {
                if !self.reachable.swap(true, Ordering::SeqCst) {
                    tracing::info!("state store reachable again");
                }
            }
        }
    }
}

fn store_unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "StoreUnavailable",
        format!("the state store does not answer, so no durable invocation can be accepted or read; nothing acknowledged is lost; retry later ({e})"),
    )
}

fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::QueueFull { .. } => {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "QueueFull", e.to_string())
        }
        StoreError::TooLarge { .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "InputTooLarge",
            e.to_string(),
        ),
        StoreError::BadId(_) | StoreError::NotFound(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "UnknownInvocation", e.to_string())
        }
        e => store_unavailable(e),
    }
}

/// A durable request, read and checked by the API.
pub(crate) struct Request<'a> {
    pub(crate) hosted: &'a Arc<Hosted>,
    pub(crate) agent: Arc<PreparedAgent>,
    pub(crate) run_async: bool,
    pub(crate) key: Option<String>,
    pub(crate) input: String,
    pub(crate) metadata: Vec<(String, String)>,
    pub(crate) caller: String,
}

/// Records the invocation in the store, then answers: `202` for async, the
/// end state for a synchronous keyed request; a key already used answers
/// with that invocation (`idempotent-replayed: true`).
pub(crate) async fn accept(
    s: &Arc<Shared>,
    d: &Arc<Durable>,
    mut req: Request<'_>,
) -> Result<(Response, bool), ApiError> {
    if !d.reachable() {
        return Err(store_unavailable("its last call failed"));
    }
    let limits = req.agent.limits();
    let scope = req.agent.scope();
    let id = InvocationId::new(&scope);
    let max_items = u64::from(limits.max_queue) + u64::from(limits.max_concurrency);
    let per_item = limits.max_input_bytes.bytes() + ITEM_OVERHEAD;
    let bound = crate::state_store::QueueBound {
        max_items,
        max_bytes: max_items.saturating_mul(per_item).min(MAX_QUEUE_BYTES),
        max_input_bytes: limits.max_input_bytes.bytes(),
    };
    let metadata = serde_json::to_vec(&Meta {
        metadata: std::mem::take(&mut req.metadata),
    })
    .expect("metadata serialises");
    let new = crate::state_store::NewInvocation {
        id: id.clone(),
        input: req.input.clone().into_bytes(),
        metadata,
        idempotency_key: req.key.clone(),
    };
    // A synchronous request runs on the replica holding the connection when
    // a slot is free here: recorded and claimed in one write.
    let slot = match req.run_async {
        true => None,
        false => req.hosted.permits.clone().try_acquire_owned().ok(),
    };
    let ran_here = slot.is_some();
    let (reply, mut replied) = match ran_here {
        true => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            (Some(tx), Some(rx))
        }
        false => (None, None),
    };
    let submitted = match slot {
        None => d.store.submit(new, bound).await,
        Some(slot) => {
            let claimed = d
                .store
                .submit_claimed(new.clone(), bound, &d.replica, d.lease)
                .await;
            claimed.map(|taken| match taken {
                Taken::Duplicate(id) => Submitted::Duplicate(id),
                Taken::Claimed { fence } => {
                    // Recorded before the run starts: the audit log's order.
                    audit_start(s, &req, &new.id);
                    let claim = Claim {
                        id: new.id,
                        input: new.input,
                        metadata: new.metadata,
                        attempt: 1,
                        fence,
                        reclaimed: false,
                    };
                    let hosted = req.hosted.clone();
                    let agent = req.agent.clone();
                    s.tasks.spawn(run(
                        s.clone(),
                        d.clone(),
                        hosted,
                        agent,
                        claim,
                        slot.into(),
                        reply,
                    ));
                    Submitted::Accepted
                }
            })
        }
    };
    d.observe(&submitted);
    let (id, replayed) = match submitted.map_err(store_error)? {
        Submitted::Accepted => {
            if !ran_here {
                d.submitted.notify_waiters();
                audit_start(s, &req, &id);
            }
            (id, false)
        }
        Submitted::Duplicate(existing) => {
            let record = d.store.get(&existing).await;
            d.observe(&record);
            let record = record.map_err(store_error)?;
            if let Some(r) = &record {
                if r.input.as_slice() != req.input.as_bytes() {
                    return Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "IdempotencyKeyReused",
                        format!(
                            "Idempotency-Key {:?} was first used with a different body for agent {}; use a new key for a new task",
                            req.key.clone().unwrap_or_default(),
                            req.hosted.name
                        ),
                    ));
                }
            }
            (existing, true)
        }
    };
    if req.run_async {
        // Just recorded: queued, without another round trip; a replay shows
        // where the first one is.
        let record = match replayed {
            false => None,
            true => d.store.get(&id).await.map_err(store_error)?,
        };
        let body = match record {
            Some(r) => response_of(&r).1,
            None => queued_body(&id, &req.hosted.name),
        };
        return Ok((Response::Accepted { id, body }, replayed));
    }
    let within = limits.timeout.as_duration() + 2 * d.lease + Duration::from_secs(5);
    // Run here: wait for this run's own end, then read the record once
    // (instead of every waiter re-reading the store at every local end).
    // A run that stops without writing (lease lost, shutdown) drops the
    // sender: the store then says how it ended.
    if let Some(rx) = replied.take() {
        let _ = tokio::time::timeout(within, rx).await;
    }
    let record = wait_end(d, &id, within).await.map_err(store_error)?;
    Ok(match record {
        Some(r) if r.state.is_end() => {
            let (status, body) = response_of(&r);
            (Response::Ended { status, body }, replayed)
        }
        // Not ended in time (or purged): where to look it up.
        Some(r) => {
            let (_, body) = response_of(&r);
            (Response::Accepted { id, body }, replayed)
        }
        None => {
            let body = queued_body(&id, &req.hosted.name);
            (Response::Accepted { id, body }, replayed)
        }
    })
}

fn audit_start(s: &Shared, req: &Request<'_>, id: &InvocationId) {
    if !s.audit.enabled() {
        return;
    }
    s.audit.record(Event::InvocationStart {
        agent: req.hosted.name.clone(),
        invocation: id.to_string(),
        caller: req.caller.clone(),
        input_bytes: req.input.len() as u64,
        input_sha256: hex::encode(sha2::Sha256::digest(req.input.as_bytes())),
        idempotency_key: req.key.clone(),
    });
}

/// How the API answers a durable request.
pub(crate) enum Response {
    /// `202` with where to look.
    Accepted { id: InvocationId, body: Bytes },
    /// The end state.
    Ended { status: StatusCode, body: Bytes },
}

fn queued_body(id: &InvocationId, agent: &str) -> Bytes {
    Bytes::from(
        serde_json::json!({ "id": id.as_str(), "agent": agent, "state": "queued", "attempts": [] })
            .to_string(),
    )
}

/// Polls the store (woken early by local ends) until `id` has ended or
/// `within` passed; the last record read.
async fn wait_end(
    d: &Durable,
    id: &InvocationId,
    within: Duration,
) -> Result<Option<Record>, StoreError> {
    let deadline = Instant::now() + within;
    let mut ended = d.ended.subscribe();
    let mut pause = Duration::from_millis(2);
    loop {
        let record = d.store.get(id).await;
        d.observe(&record);
        let record = record?;
        let left = deadline.saturating_duration_since(Instant::now());
        match record {
            Some(r) if !r.state.is_end() && !left.is_zero() => {}
            other => return Ok(other),
        }
        tokio::select! {
            _ = ended.changed() => {}
            () = tokio::time::sleep(pause.min(left)) => {}
        }
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// The stored result: a three-digit HTTP status, then the JSON body.
fn encode_result(status: StatusCode, body: &[u8]) -> Vec<u8> {
    let mut out = format!("{:03}", status.as_u16()).into_bytes();
    out.extend_from_slice(body);
    out
}

/// The status and body of a record, `attempts` (with the replica of each)
/// added.
pub(crate) fn response_of(r: &Record) -> (StatusCode, Bytes) {
    let agent = r.id.scope().map(|s| s.agent).unwrap_or_default();
    let stored = r.result.as_deref().filter(|b| b.len() >= 3);
    let (status, mut body) = match stored {
        Some(bytes) => {
            let status = std::str::from_utf8(&bytes[..3])
                .ok()
                .and_then(|s| s.parse::<u16>().ok())
                .and_then(|s| StatusCode::from_u16(s).ok())
                .unwrap_or(StatusCode::OK);
            let body = serde_json::from_slice::<serde_json::Value>(&bytes[3..])
                .unwrap_or_else(|_| serde_json::json!({}));
            (status, body)
        }
        None if r.state == State::Cancelled => (
            StatusCode::OK,
            serde_json::json!({
                "id": r.id.as_str(), "agent": agent, "state": "cancelled", "outcome": "Cancelled",
                "error": { "code": "Cancelled", "message": "cancelled by a caller (DELETE /v1/invocations/{id}); it will not run again" },
            }),
        ),
        None => (
            StatusCode::OK,
            serde_json::json!({ "id": r.id.as_str(), "agent": agent, "state": state_name(r.state) }),
        ),
    };
    if let Some(obj) = body.as_object_mut() {
        obj.insert(
            "attempts".into(),
            serde_json::to_value(&r.attempts).unwrap_or_default(),
        );
    }
    (status, Bytes::from(body.to_string()))
}

fn state_name(state: State) -> &'static str {
    match state {
        State::Queued => "queued",
        State::Running => "running",
        State::Succeeded => "succeeded",
        State::Failed => "failed",
        State::Cancelled => "cancelled",
    }
}

/// `GET /v1/invocations/{id}` of a durable id: `None` if the store has none.
pub(crate) async fn get(d: &Durable, id: &InvocationId) -> Result<Option<Record>, ApiError> {
    let record = d.store.get(id).await;
    d.observe(&record);
    record.map_err(store_error)
}

/// `DELETE /v1/invocations/{id}`: cancels queued or running work; a run on
/// this replica is stopped (elsewhere its commit is fenced anyway).
pub(crate) async fn cancel(
    d: &Durable,
    id: &InvocationId,
) -> Result<(StatusCode, Bytes), ApiError> {
    let cancelled = d.store.cancel(id).await;
    d.observe(&cancelled);
    match cancelled.map_err(store_error)? {
        crate::state_store::Cancelled::Cancelled(_) => {
            let local = d
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(id.as_str());
            if let Some(stop) = local {
                stop.cancel();
            }
            let record = get(d, id).await?;
            Ok(record.map_or_else(
                || (StatusCode::OK, Bytes::new()),
                |r| response_of(&r),
            ))
        }
        crate::state_store::Cancelled::AlreadyEnded(state) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "AlreadyEnded",
            format!(
                "invocation {id} already ended {}; only queued or running invocations can be cancelled",
                state_name(state)
            ),
        )),
        crate::state_store::Cancelled::NotFound => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "UnknownInvocation",
            format!("no invocation {id} in the state store (ended ones are kept for the store's retention)"),
        )),
    }
}
