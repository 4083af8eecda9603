//! The durable state plane: invocations, their results, idempotency keys,
//! the async queue with leases, shared token budgets — in the same store as
//! the agents' key-value data, so that a key-value commit and the result of
//! the invocation that made it are one atomic write.
//!
//! Two implementations of [`StateStore`]: [`redb::RedbStore`] (embedded, one
//! file under the state dir, the same database as the key-value store; one
//! host) and [`redis::RedisStore`] (a Redis server or Redis Cluster, shared
//! by replicas; every key of an agent is hash-tagged `{namespace/agent}`, so
//! every script touches one slot).
//!
//! Promises (each has a test in `tests/`):
//! 1. [`StateStore::submit`] records the invocation, its idempotency key and
//!    its place in the agent's queue in one atomic write; when it returns
//!    `Accepted` the record is durable (redb fsyncs; Redis as its persistence
//!    settings say) and a later claim on any replica can take it.
//!    [`StateStore::submit_claimed`] does the same and claims it for the
//!    submitting replica in that write (fence 1, attempt 1), never queued.
//! 2. An idempotency key names at most one invocation of an agent while that
//!    invocation is kept: a second submit with it returns `Duplicate(id)`
//!    whichever replica sent the first.
//! 3. The queue of an agent is bounded, all replicas together, in items and
//!    in bytes (inputs plus metadata of queued and running invocations); past
//!    either bound, submit fails with [`StoreError::QueueFull`]. Inputs,
//!    metadata and results are bounded in bytes ([`MAX_INPUT_BYTES`],
//!    [`MAX_METADATA_BYTES`], [`MAX_RESULT_BYTES`]); ended records are kept
//!    for the store's retention, then removed with their idempotency key.
//! 4. An invocation is run by one lease holder at a time: each claim (of a
//!    queued item, or the reclaim of one whose lease expired) takes a fencing
//!    token greater than every earlier one for that invocation, and renew,
//!    complete and release are refused ([`Fenced`]) unless they carry the
//!    current token of a running invocation. Lease times are the store's
//!    clock (Redis `TIME`), not the replicas'.
//! 5. [`StateStore::complete`] checks the fence, applies the key-value
//!    changes (version checks on keys read or written, increments as deltas,
//!    quota) and writes the result as one atomic step; if any check fails
//!    nothing of it is applied. A stale owner's commit is therefore refused
//!    and a key-value counter counts each invocation once.
//! 6. [`StateStore::release`] puts running work back at its place in the
//!    queue, its attempts kept; [`StateStore::cancel`] ends queued or running
//!    work as `Cancelled` and bumps the fence so the running attempt cannot
//!    commit.
//! 7. [`StateStore::reserve`] and [`StateStore::settle`] keep an agent's
//!    tokens-per-minute window in the store, so every replica spends from
//!    one budget, with the semantics of `cap::llm::TokenRate`: a reservation
//!    counts until settled (or until [`MAX_HOLD`] passes: a replica that
//!    died holding it), used tokens count for 60 s. [`budget::StoreBudgets`]
//!    is how the `llm` capability uses them.
//!
//! Redis queue design: a sorted set of queued ids scored by a per-agent
//! sequence number (oldest first; a released item keeps its number) and a
//! sorted set of running ids scored by lease deadline, changed only inside
//! Lua scripts with the invocation's hash. A script is atomic, so claim,
//! reclaim, fence and record change together; streams were not used because
//! a stream entry's ownership (XAUTOCLAIM) cannot be checked in the same
//! atomic step as the key-value commit and the result.

pub mod budget;
pub mod redb;
pub mod redis;
#[cfg(test)]
mod tests;

use std::time::Duration;

use crate::cap::key_value::{Changes, KeyValueBackend, KeyValueError, Scope};

/// Largest task input kept in the store: `spec.limits.maxInputBytes`' maximum.
pub const MAX_INPUT_BYTES: usize = 64 << 20;
/// Largest metadata kept with an invocation (headers, trace context): it is
/// host-built but sized by callers.
pub const MAX_METADATA_BYTES: usize = 64 << 10;
/// Largest result kept: `spec.limits.maxOutputBytes`' maximum plus room for
/// the outcome's envelope.
pub const MAX_RESULT_BYTES: usize = (64 << 20) + (64 << 10);
/// Longest idempotency key, bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 256;
/// A budget reservation not settled within this is dropped: its replica died.
pub const MAX_HOLD: Duration = Duration::from_secs(300);
/// Ended invocations are kept this long by default, then removed.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// An invocation id: the agent scope, hex-encoded and length-prefixed, then
/// `.`, then a random UUID. Carrying the scope lets any replica find the
/// agent's slot (and keys) from the id alone.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InvocationId(String);

impl InvocationId {
    /// A fresh id for an invocation of `scope`.
    pub fn new(scope: &Scope) -> Self {
        let parts = crate::cap::key_value::redb_store::encode(&[&scope.namespace, &scope.agent]);
        Self(format!(
            "{}.{}",
            hex::encode(parts),
            uuid::Uuid::new_v4().simple()
        ))
    }

    /// Parses an id from a caller (a URL path), checking its form.
    pub fn parse(id: &str) -> Result<Self, StoreError> {
        let parsed = Self(id.to_string());
        parsed.scope()?;
        Ok(parsed)
    }

    /// The agent scope the id names.
    pub fn scope(&self) -> Result<Scope, StoreError> {
        let bad = || StoreError::BadId(self.0.chars().take(200).collect());
        let (scope, rest) = self.0.split_once('.').ok_or_else(bad)?;
        if rest.len() != 32 || !rest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let bytes = hex::decode(scope).map_err(|_| bad())?;
        let mut parts = Vec::new();
        let mut at = &bytes[..];
        while !at.is_empty() {
            let len = u32::from_be_bytes(at.get(..4).ok_or_else(bad)?.try_into().unwrap());
            let part = at.get(4..4 + len as usize).ok_or_else(bad)?;
            parts.push(String::from_utf8(part.to_vec()).map_err(|_| bad())?);
            at = &at[4 + len as usize..];
        }
        match <[String; 2]>::try_from(parts) {
            Ok([namespace, agent]) => Ok(Scope { namespace, agent }),
            Err(_) => Err(bad()),
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for InvocationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where an invocation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum State {
    /// Waiting in the agent's queue.
    Queued,
    /// Claimed by a replica holding a lease.
    Running,
    /// Ended with a result.
    Succeeded,
    /// Ended with an error.
    Failed,
    /// Cancelled by a caller.
    Cancelled,
}

impl State {
    /// Whether the invocation has ended.
    pub fn is_end(self) -> bool {
        matches!(self, State::Succeeded | State::Failed | State::Cancelled)
    }

    fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Running => "running",
            State::Succeeded => "succeeded",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "queued" => State::Queued,
            "running" => State::Running,
            "succeeded" => State::Succeeded,
            "failed" => State::Failed,
            "cancelled" => State::Cancelled,
            other => return Err(StoreError::Backend(format!("unknown state {other:?}"))),
        })
    }
}

/// One run of an invocation.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// The replica that claimed it.
    pub replica: String,
    /// When it was claimed, ms since the Unix epoch (store clock).
    pub started_ms: u64,
    /// How it ended: `succeeded`, `failed`, `released`, `leaseExpired`,
    /// `cancelled`; `None` while running.
    #[serde(default)]
    pub end: Option<String>,
}

/// A new invocation, as given to [`StateStore::submit`].
#[derive(Clone, Debug)]
pub struct NewInvocation {
    /// Its id (from [`InvocationId::new`] for the agent's scope).
    pub id: InvocationId,
    /// The task input.
    pub input: Vec<u8>,
    /// Opaque host metadata (how it was asked for, trace context).
    pub metadata: Vec<u8>,
    /// The caller's idempotency key, if any.
    pub idempotency_key: Option<String>,
}

/// The agent's queue bound, all replicas together (`spec.limits.maxQueue`
/// and its byte budget), and its input limit.
#[derive(Clone, Copy, Debug)]
pub struct QueueBound {
    /// Invocations queued or running.
    pub max_items: u64,
    /// Bytes of their inputs and metadata.
    pub max_bytes: u64,
    /// `spec.limits.maxInputBytes` (at most [`MAX_INPUT_BYTES`]).
    pub max_input_bytes: u64,
}

/// What [`StateStore::submit`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Submitted {
    /// Recorded and queued.
    Accepted,
    /// The idempotency key already names this invocation; nothing recorded.
    Duplicate(InvocationId),
}

/// What [`StateStore::submit_claimed`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Taken {
    /// Recorded and claimed at once by the submitting replica: attempt 1,
    /// holding this fencing token.
    Claimed {
        /// The token the attempt presents to renew, complete and release.
        fence: u64,
    },
    /// The idempotency key already names this invocation; nothing recorded.
    Duplicate(InvocationId),
}

/// Work handed to a replica by [`StateStore::claim`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The invocation.
    pub id: InvocationId,
    /// Its input.
    pub input: Vec<u8>,
    /// Its metadata.
    pub metadata: Vec<u8>,
    /// Which attempt this is, from 1.
    pub attempt: u32,
    /// The fencing token this attempt must present.
    pub fence: u64,
    /// Whether it was taken from a replica whose lease expired.
    pub reclaimed: bool,
}

/// How an invocation ended, as given to [`StateStore::complete`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// `Succeeded` or `Failed`.
    pub state: State,
    /// The result or error, as the API will return it.
    pub result: Vec<u8>,
}

/// What [`StateStore::complete`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Completed {
    /// The result (and key-value changes) were written.
    Completed,
    /// This attempt no longer owns the invocation; nothing written.
    Fenced,
    /// The key-value changes were refused (conflict, quota, a non-counter
    /// incremented); nothing written, the attempt still holds its lease.
    KeyValueConflict(KeyValueError),
}

/// Refused: the fencing token is not the invocation's current one, or it is
/// not running.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("fenced: this attempt no longer owns the invocation (its lease was taken over, released or cancelled)")]
pub struct Fenced;

/// What [`StateStore::cancel`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cancelled {
    /// It was queued or running (the state it had) and is now cancelled.
    Cancelled(State),
    /// It had already ended in this state; nothing changed.
    AlreadyEnded(State),
    /// No such invocation (or it is past its retention).
    NotFound,
}

/// An invocation as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Its id.
    pub id: InvocationId,
    /// Where it is.
    pub state: State,
    /// Its input.
    pub input: Vec<u8>,
    /// Its metadata.
    pub metadata: Vec<u8>,
    /// The caller's idempotency key.
    pub idempotency_key: Option<String>,
    /// When it was accepted, ms since the Unix epoch (store clock).
    pub created_ms: u64,
    /// Every claim, oldest first, with the replica that ran it.
    pub attempts: Vec<Attempt>,
    /// The result once ended (empty for a cancelled one).
    pub result: Option<Vec<u8>>,
}

/// How much work an agent has in the store (for metrics and readiness).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Depth {
    /// Invocations waiting.
    pub queued: u64,
    /// Invocations claimed and not ended.
    pub running: u64,
    /// Bytes of inputs and metadata of both, counted against the queue bound.
    pub bytes: u64,
}

/// A budget reservation granted by [`StateStore::reserve`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    /// Names the reservation for [`StateStore::settle`].
    pub id: String,
    /// Tokens reserved: the prompt plus up to the completion asked for.
    pub tokens: u64,
}

/// Why a budget reservation was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("spec.capabilities.llm.tokensPerMinute: {committed} of {per_minute} tokens used or reserved in the last minute across replicas; this prompt counts as {prompt}; retry in {retry_after:?}")]
pub struct BudgetRefused {
    /// Tokens used in the last minute plus those reserved.
    pub committed: u64,
    /// The limit.
    pub per_minute: u64,
    /// The prompt's estimate.
    pub prompt: u64,
    /// When enough of the window frees for this prompt (at most a minute;
    /// longer if reservations in flight hold it).
    pub retry_after: Duration,
}

/// Why a store call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The agent's queue is at its bound.
    #[error("queue full: agent {agent:?} has {items} invocations ({bytes} bytes) queued or running across replicas; spec.limits.maxQueue allows {max_items} items and {max_bytes} bytes")]
    QueueFull {
        /// `namespace/agent`.
        agent: String,
        /// Items queued or running.
        items: u64,
        /// Their bytes.
        bytes: u64,
        /// The item bound.
        max_items: u64,
        /// The byte bound.
        max_bytes: u64,
    },
    /// An input, metadata, result or key past its limit.
    #[error("{what} of {len} bytes is over the store's limit of {limit} bytes")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// An invocation id that does not have the form the host hands out.
    #[error("invocation id {0:?} is malformed: expected <hex agent scope>.<32 hex digits>")]
    BadId(String),
    /// No such invocation.
    #[error("no invocation {0}")]
    NotFound(InvocationId),
    /// The key-value changes given to complete are for another agent.
    #[error("key-value changes for agent {kv:?} cannot complete an invocation of {invocation:?}")]
    WrongScope {
        /// The invocation's agent.
        invocation: String,
        /// The changes' agent.
        kv: String,
    },
    /// The store failed (I/O, connection, a refused command); nothing was
    /// changed.
    #[error("state store: {0}")]
    Backend(String),
    /// A write was sent but no reply came: it may or may not have applied.
    /// For `complete`, [`StateStore::get`] tells: the result and the
    /// key-value changes were applied together or not at all.
    #[error("state store: no reply to a write, which may or may not have applied: {0}")]
    Unknown(String),
}

impl From<KeyValueError> for StoreError {
    fn from(e: KeyValueError) -> Self {
        StoreError::Backend(e.to_string())
    }
}

/// Where the host keeps everything that outlives one invocation.
#[async_trait::async_trait]
pub trait StateStore: Send + Sync {
    /// The key-value backend on the same store (for reads in transactions).
    fn kv(&self) -> std::sync::Arc<dyn KeyValueBackend>;

    /// Records `new` and its idempotency key and queues it, atomically; or
    /// finds the invocation the key already names.
    async fn submit(&self, new: NewInvocation, bound: QueueBound) -> Result<Submitted, StoreError>;

    /// Like [`StateStore::submit`], but the invocation is claimed by
    /// `replica` in the same atomic write (a synchronous request run on the
    /// replica holding the connection): it is never queued, and counts
    /// against the queue bound like running work. If that replica dies, its
    /// lease expires and any replica reclaims it as usual.
    async fn submit_claimed(
        &self,
        new: NewInvocation,
        bound: QueueBound,
        replica: &str,
        lease: Duration,
    ) -> Result<Taken, StoreError>;

    /// Takes the agent's oldest queued invocation, or one whose lease expired,
    /// for `replica` with a lease of `lease`.
    async fn claim(
        &self,
        scope: &Scope,
        replica: &str,
        lease: Duration,
    ) -> Result<Option<Claim>, StoreError>;

    /// Extends the lease of a running attempt.
    async fn renew(
        &self,
        id: &InvocationId,
        fence: u64,
        lease: Duration,
    ) -> Result<Result<(), Fenced>, StoreError>;

    /// Ends a running attempt with `outcome` and its key-value changes, in
    /// one atomic step that checks the fence first.
    async fn complete(
        &self,
        id: &InvocationId,
        fence: u64,
        outcome: Outcome,
        kv: Option<(Scope, Changes)>,
    ) -> Result<Completed, StoreError>;

    /// Hands a running attempt back to the queue (at its old place).
    async fn release(
        &self,
        id: &InvocationId,
        fence: u64,
    ) -> Result<Result<(), Fenced>, StoreError>;

    /// The invocation, from any replica.
    async fn get(&self, id: &InvocationId) -> Result<Option<Record>, StoreError>;

    /// Cancels a queued or running invocation.
    async fn cancel(&self, id: &InvocationId) -> Result<Cancelled, StoreError>;

    /// The agent's queued and running work.
    async fn depth(&self, scope: &Scope) -> Result<Depth, StoreError>;

    /// Reserves `prompt` plus up to `completion` tokens in the agent's shared
    /// per-minute window.
    async fn reserve(
        &self,
        scope: &Scope,
        prompt: u64,
        completion: u64,
        per_minute: u64,
    ) -> Result<Result<Hold, BudgetRefused>, StoreError>;

    /// Replaces a reservation by the tokens actually used (0: none).
    async fn settle(&self, scope: &Scope, hold: &Hold, used: u64) -> Result<(), StoreError>;
}

/// Checks what submit is given against the store's and the agent's limits.
fn check_new(new: &NewInvocation, bound: &QueueBound) -> Result<(), StoreError> {
    let input_limit = (bound.max_input_bytes as usize).min(MAX_INPUT_BYTES);
    let checks = [
        ("input", new.input.len(), input_limit),
        ("metadata", new.metadata.len(), MAX_METADATA_BYTES),
        (
            "idempotency key",
            new.idempotency_key.as_ref().map_or(0, String::len),
            MAX_IDEMPOTENCY_KEY_BYTES,
        ),
    ];
    for (what, len, limit) in checks {
        if len > limit {
            return Err(StoreError::TooLarge { what, len, limit });
        }
    }
    new.id.scope().map(|_| ())
}

fn check_result(outcome: &Outcome) -> Result<(), StoreError> {
    if outcome.result.len() > MAX_RESULT_BYTES {
        return Err(StoreError::TooLarge {
            what: "result",
            len: outcome.result.len(),
            limit: MAX_RESULT_BYTES,
        });
    }
    if !matches!(outcome.state, State::Succeeded | State::Failed) {
        return Err(StoreError::Backend(format!(
            "complete takes succeeded or failed, not {}",
            outcome.state.as_str()
        )));
    }
    Ok(())
}

fn check_kv_scope(id: &InvocationId, kv: &Option<(Scope, Changes)>) -> Result<Scope, StoreError> {
    let scope = id.scope()?;
    if let Some((kv_scope, _)) = kv {
        if *kv_scope != scope {
            return Err(StoreError::WrongScope {
                invocation: format!("{}/{}", scope.namespace, scope.agent),
                kv: format!("{}/{}", kv_scope.namespace, kv_scope.agent),
            });
        }
    }
    Ok(scope)
}

fn agent_name(scope: &Scope) -> String {
    format!("{}/{}", scope.namespace, scope.agent)
}
