//! Key-value state (`spec.capabilities.keyValue`): per-agent scoped buckets,
//! transactional per invocation.
//!
//! An invocation works on a [`Transaction`]: reads go to the backend (and see
//! the invocation's own buffered writes first), writes are buffered, and
//! nothing reaches the backend until the host commits — which it does only
//! when `run` returned `ok`. The commit is optimistic: every key the
//! invocation read or wrote must still have the version it saw, or the whole
//! commit is refused as a [`KeyValueError::Conflict`]; nothing is ever half-written.
//!
//! Increments (`wasi:keyvalue/atomics.increment`) are commutative: a key the
//! invocation only increments is not version-checked; its delta is added to
//! whatever the key holds when the commit applies, so concurrent incrementers
//! never conflict. Inside the transaction `increment` returns the value the
//! key had at the invocation's first look at it plus the invocation's own
//! deltas so far (other invocations' concurrent increments are not seen
//! until the commit). A key the invocation also reads, sets or deletes keeps
//! the optimistic check: its increments become an ordinary buffered write.
//!
//! What a transaction buffers is held in host memory, so it is budgeted at the
//! call that adds it: buffered values and every key touched count against
//! `maxBytes`, keys are at most [`MAX_KEY_BYTES`] and a transaction touches at
//! most [`MAX_TRANSACTION_KEYS`] keys. Every call observes the invocation's
//! deadline; backend calls are async (redb on the blocking pool, Redis over a
//! multiplexed connection), so a slow store never holds an executor thread.

mod capability;
pub mod host;
pub mod redb_store;
pub mod redis_store;

pub use capability::{KeyValue, KeyValueState, KeyValueUsage};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// Longest key a guest may use, bytes. Keys are held in the transaction and
/// sent to the backend verbatim; without a cap one key could be the whole
/// `hostcallBytes` budget, repeated per call.
pub const MAX_KEY_BYTES: usize = 4096;

pub use crate::manifest::MAX_BUCKET_NAME_BYTES;

/// Distinct keys one invocation may read or write. Keys count against
/// `maxBytes` by length, but a flood of short keys would still cost the host a
/// map entry each (~100 bytes); this caps that overhead.
pub const MAX_TRANSACTION_KEYS: usize = 10_000;

/// Whose keys these are: the agent's namespace and name. One agent can never
/// name a key of another, because every backend key starts with the scope.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    /// Kubernetes namespace (`""` for agents loaded from files).
    pub namespace: String,
    /// Agent name.
    pub agent: String,
}

/// What the manifest grants: whose keys, which buckets, how many bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValueGrant {
    /// The agent's namespace and name.
    pub scope: Scope,
    /// Buckets the agent may open; empty means any name.
    pub buckets: Vec<String>,
    /// Keys plus values the agent may hold, bytes.
    pub max_bytes: u64,
}

impl KeyValueGrant {
    /// A fresh transaction for one invocation ending at `deadline`.
    pub fn begin(&self, backend: Arc<dyn KeyValueBackend>, deadline: Instant) -> Transaction {
        Transaction::new(
            backend,
            self.scope.clone(),
            self.buckets.clone(),
            self.max_bytes,
        )
        .with_deadline(deadline)
    }
}

pub use crate::bindings::Bucket;

/// A value and the version it had when read (`0`: the key does not exist).
/// A version is a stamp unique within the scope, taken by each write: a key
/// deleted and re-created gets a new one, so no version entry needs to
/// outlive its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned {
    /// The bytes, if the key exists.
    pub value: Option<Vec<u8>>,
    /// The stamp of the committed write that produced the value; 0 when absent.
    pub version: u64,
}

/// What an invocation asks the backend to apply, all or nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Versions the invocation saw, per (bucket, key); each must still hold.
    pub expected: BTreeMap<(String, String), u64>,
    /// New values (`None` deletes), per (bucket, key).
    pub writes: BTreeMap<(String, String), Option<Vec<u8>>>,
    /// Deltas added (wrapping) to the little-endian u64 at (bucket, key) at
    /// commit, absent counting as 0, without a version check. Never a key of
    /// `writes`.
    pub increments: BTreeMap<(String, String), u64>,
    /// The scope's byte quota (keys plus values).
    pub max_bytes: u64,
}

/// Why a key-value operation or commit failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyValueError {
    /// Another invocation committed a key this one read or wrote.
    #[error("conflict: key {key:?} in bucket {bucket:?} changed since this invocation read it")]
    Conflict {
        /// Bucket of the first conflicting key.
        bucket: String,
        /// The key.
        key: String,
    },
    /// The commit would take the agent past `spec.capabilities.keyValue.maxBytes`.
    #[error("quota: the agent's key-value data would take {needed} bytes; spec.capabilities.keyValue.maxBytes is {limit}")]
    Quota {
        /// Bytes the scope would hold.
        needed: u64,
        /// The quota.
        limit: u64,
    },
    /// The invocation's own reads and buffered writes would pass the quota.
    #[error("quota: this invocation's key-value transaction would hold {needed} bytes (every key read or written plus the values written); spec.capabilities.keyValue.maxBytes is {limit}")]
    TransactionQuota {
        /// Bytes the transaction would hold.
        needed: u64,
        /// The quota.
        limit: u64,
    },
    /// The invocation touched more distinct keys than [`MAX_TRANSACTION_KEYS`].
    #[error("too many keys: one invocation may read or write at most {limit} distinct keys")]
    TooManyKeys {
        /// The limit.
        limit: usize,
    },
    /// An increment met a value that is not an 8-byte little-endian counter.
    #[error("key {key:?} in bucket {bucket:?} does not hold a u64 counter (8 bytes, little-endian), so it cannot be incremented")]
    NotCounter {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
    },
    /// A key longer than [`MAX_KEY_BYTES`].
    #[error("key of {len} bytes is longer than the {limit}-byte limit for key-value keys")]
    KeyTooLong {
        /// The key's length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// A bucket name longer than [`MAX_BUCKET_NAME_BYTES`].
    #[error("bucket name of {len} bytes is longer than the {limit}-byte limit")]
    BucketNameTooLong {
        /// The name's length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// A bucket the manifest does not list.
    #[error("bucket {0:?} is not granted (spec.capabilities.keyValue.buckets)")]
    BucketDenied(String),
    /// The invocation's deadline (`spec.limits.timeout`) passed before the
    /// call (or the commit) could start or finish; nothing was committed.
    #[error("the invocation's deadline (spec.limits.timeout) passed; nothing was committed")]
    Deadline,
    /// The backend failed (I/O, connection); nothing was committed.
    #[error("key-value backend: {0}")]
    Backend(String),
    /// A commit was sent but its reply never came: it may or may not have applied.
    #[error("key-value backend: no reply to the commit, which may or may not have applied: {0}")]
    Unknown(String),
}

/// Whether an invocation's buffered key-value writes reached the store
/// (reported in its usage).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum KeyValueCommit {
    /// Every write applied.
    Committed,
    /// None applied (the invocation failed, or the commit was refused).
    NotCommitted,
    /// The commit was sent but not answered: it may or may not have applied.
    Unknown,
}

impl KeyValueCommit {
    /// What a commit's result says happened.
    pub fn of(result: &Result<(), KeyValueError>) -> Self {
        match result {
            Ok(()) => KeyValueCommit::Committed,
            Err(KeyValueError::Unknown(_)) => KeyValueCommit::Unknown,
            Err(_) => KeyValueCommit::NotCommitted,
        }
    }
}

/// A store shared by every agent of a host (or several hosts, for Redis).
/// Async so that a slow store waits without holding an executor thread.
#[async_trait::async_trait]
pub trait KeyValueBackend: Send + Sync {
    /// The current value and version of a key.
    async fn read(
        &self,
        scope: &Scope,
        bucket: &str,
        key: &str,
    ) -> Result<Versioned, KeyValueError>;
    /// Bytes (keys plus values) the scope holds.
    async fn usage(&self, scope: &Scope) -> Result<u64, KeyValueError>;
    /// Keys of a bucket, sorted.
    async fn keys(&self, scope: &Scope, bucket: &str) -> Result<Vec<String>, KeyValueError>;
    /// Applies `changes` atomically and durably, or nothing.
    async fn commit(&self, scope: &Scope, changes: Changes) -> Result<(), KeyValueError>;
}

/// One invocation's view of its agent's state.
pub struct Transaction {
    backend: Arc<dyn KeyValueBackend>,
    scope: Scope,
    buckets: Vec<String>,
    changes: Changes,
    /// Per key only incremented so far: the value and version it had when
    /// first looked at (what `increment` adds its deltas to).
    counters: BTreeMap<(String, String), (u64, u64)>,
    /// Bytes the transaction holds: every key touched plus every buffered
    /// value (8 per counter). Kept at most `changes.max_bytes`.
    held: u64,
    /// When the invocation ends; calls after it fail with [`KeyValueError::Deadline`].
    deadline: Option<Instant>,
}

impl Transaction {
    /// A transaction for `scope`; `buckets` empty means any bucket name.
    pub fn new(
        backend: Arc<dyn KeyValueBackend>,
        scope: Scope,
        buckets: Vec<String>,
        max_bytes: u64,
    ) -> Self {
        Self {
            backend,
            scope,
            buckets,
            changes: Changes {
                max_bytes,
                ..Changes::default()
            },
            counters: BTreeMap::new(),
            held: 0,
            deadline: None,
        }
    }

    /// Ends every backend call (and refuses to start a commit) at `deadline`.
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Refuses buckets the manifest does not list, and over-long names.
    pub fn check_bucket(&self, bucket: &str) -> Result<(), KeyValueError> {
        if bucket.len() > MAX_BUCKET_NAME_BYTES {
            return Err(KeyValueError::BucketNameTooLong {
                len: bucket.len(),
                limit: MAX_BUCKET_NAME_BYTES,
            });
        }
        if self.buckets.is_empty() || self.buckets.iter().any(|b| b == bucket) {
            Ok(())
        } else {
            Err(KeyValueError::BucketDenied(bucket.to_string()))
        }
    }

    /// Runs a backend call, cut off at the invocation's deadline.
    async fn before_deadline<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, KeyValueError>>,
    ) -> Result<T, KeyValueError> {
        let Some(deadline) = self.deadline else {
            return call.await;
        };
        if Instant::now() >= deadline {
            return Err(KeyValueError::Deadline);
        }
        tokio::time::timeout_at(deadline.into(), call)
            .await
            .unwrap_or(Err(KeyValueError::Deadline))
    }

    /// Checks the key and that taking it in (and a value of `value_len`
    /// bytes, replacing what is buffered for it) keeps the transaction within
    /// its budget; the bytes it would hold afterwards.
    fn admit(&self, k: &(String, String), value_len: usize) -> Result<u64, KeyValueError> {
        let key = &k.1;
        if key.len() > MAX_KEY_BYTES {
            return Err(KeyValueError::KeyTooLong {
                len: key.len(),
                limit: MAX_KEY_BYTES,
            });
        }
        let mut held = self.held + value_len as u64;
        if !self.changes.expected.contains_key(k) && !self.counters.contains_key(k) {
            if self.changes.expected.len() + self.counters.len() >= MAX_TRANSACTION_KEYS {
                return Err(KeyValueError::TooManyKeys {
                    limit: MAX_TRANSACTION_KEYS,
                });
            }
            held += key.len() as u64;
        }
        if let Some(Some(old)) = self.changes.writes.get(k) {
            held -= old.len() as u64;
        }
        if held > self.changes.max_bytes {
            return Err(KeyValueError::TransactionQuota {
                needed: held,
                limit: self.changes.max_bytes,
            });
        }
        Ok(held)
    }

    /// Makes `k` part of the transaction's read set (reading its version from
    /// the backend the first time); its version.
    async fn track(&mut self, k: &(String, String)) -> Result<u64, KeyValueError> {
        self.fold(k);
        if let Some(version) = self.changes.expected.get(k) {
            return Ok(*version);
        }
        let held = self.admit(k, 0)?;
        let read = self
            .before_deadline(self.backend.read(&self.scope, &k.0, &k.1))
            .await?;
        self.changes.expected.insert(k.clone(), read.version);
        self.held = held;
        Ok(read.version)
    }

    /// The value of `key`, this invocation's own writes included.
    pub async fn get(&mut self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KeyValueError> {
        self.check_bucket(bucket)?;
        let k = (bucket.to_string(), key.to_string());
        self.fold(&k);
        if let Some(buffered) = self.changes.writes.get(&k) {
            return Ok(buffered.clone());
        }
        let held = self.admit(&k, 0)?;
        let read = self
            .before_deadline(self.backend.read(&self.scope, bucket, key))
            .await?;
        self.changes.expected.entry(k).or_insert(read.version);
        self.held = held;
        Ok(read.value)
    }

    /// Buffers `value` for `key`, refused when the transaction would then
    /// hold more than the quota (the commit checks the store's total again).
    pub async fn set(
        &mut self,
        bucket: &str,
        key: &str,
        value: Vec<u8>,
    ) -> Result<(), KeyValueError> {
        self.check_bucket(bucket)?;
        let k = (bucket.to_string(), key.to_string());
        // Checked before any backend call: a refused set costs the host nothing.
        self.admit(&k, value.len())?;
        self.fold(&k);
        // The commit must know what it overwrites: a blind write still
        // conflicts with a concurrent one.
        self.track(&k).await?;
        self.held = self.admit(&k, value.len())?;
        self.changes.writes.insert(k, Some(value));
        Ok(())
    }

    /// Buffers the deletion of `key`. Deleting a key the store does not hold
    /// buffers no write (only the read of its absence), so it never costs the
    /// store anything.
    pub async fn delete(&mut self, bucket: &str, key: &str) -> Result<(), KeyValueError> {
        self.check_bucket(bucket)?;
        let k = (bucket.to_string(), key.to_string());
        let version = self.track(&k).await?;
        if let Some(Some(old)) = self.changes.writes.get(&k) {
            self.held -= old.len() as u64;
        }
        if version == 0 {
            self.changes.writes.remove(&k);
        } else {
            self.changes.writes.insert(k, None);
        }
        Ok(())
    }

    /// Whether `key` exists, this invocation's writes included.
    pub async fn exists(&mut self, bucket: &str, key: &str) -> Result<bool, KeyValueError> {
        Ok(self.get(bucket, key).await?.is_some())
    }

    /// Keys of `bucket`, this invocation's writes and deletes applied, sorted.
    pub async fn keys(&mut self, bucket: &str) -> Result<Vec<String>, KeyValueError> {
        self.check_bucket(bucket)?;
        let mut keys: std::collections::BTreeSet<String> = self
            .before_deadline(self.backend.keys(&self.scope, bucket))
            .await?
            .into_iter()
            .collect();
        for ((b, k), v) in &self.changes.writes {
            if b == bucket {
                match v {
                    Some(_) => keys.insert(k.clone()),
                    None => keys.remove(k),
                };
            }
        }
        // An increment creates its key.
        for (b, k) in self.changes.increments.keys() {
            if b == bucket {
                keys.insert(k.clone());
            }
        }
        Ok(keys.into_iter().collect())
    }

    /// Adds `delta` (wrapping) to the little-endian u64 at `key`, absent
    /// counting as 0; the value seen at the first look at the key plus this
    /// invocation's deltas so far. A key the transaction has not read or
    /// written is recorded as a delta applied at commit with no version check
    /// (see the module doc); otherwise it is a read-modify-write.
    pub async fn increment(
        &mut self,
        bucket: &str,
        key: &str,
        delta: u64,
    ) -> Result<u64, KeyValueError> {
        self.check_bucket(bucket)?;
        let k = (bucket.to_string(), key.to_string());
        if self.changes.expected.contains_key(&k) {
            let current = match self.get(bucket, key).await? {
                None => 0,
                Some(bytes) => counter(&bytes, &k)?,
            };
            let next = current.wrapping_add(delta);
            self.set(bucket, key, next.to_le_bytes().to_vec()).await?;
            return Ok(next);
        }
        let (base, _) = match self.counters.get(&k) {
            Some(seen) => *seen,
            None => {
                // The key and its 8-byte value are held like a buffered write.
                let held = self.admit(&k, 8)?;
                let read = self
                    .before_deadline(self.backend.read(&self.scope, bucket, key))
                    .await?;
                let value = read.value.as_deref().map_or(Ok(0), |v| counter(v, &k))?;
                self.counters.insert(k.clone(), (value, read.version));
                self.held = held;
                (value, read.version)
            }
        };
        let total = self.changes.increments.entry(k).or_insert(0);
        *total = total.wrapping_add(delta);
        Ok(base.wrapping_add(*total))
    }

    /// Turns `k`'s pending increments, if any, into an ordinary buffered
    /// write checked against the version first seen: the invocation is about
    /// to read, set or delete the key, so it keeps the optimistic check.
    fn fold(&mut self, k: &(String, String)) {
        if let Some((base, version)) = self.counters.remove(k) {
            let delta = self.changes.increments.remove(k).unwrap_or(0);
            self.changes.expected.insert(k.clone(), version);
            let value = base.wrapping_add(delta).to_le_bytes().to_vec();
            self.changes.writes.insert(k.clone(), Some(value));
        }
    }

    /// Keys this transaction would write or delete.
    pub fn pending_writes(&self) -> usize {
        self.changes.writes.len() + self.changes.increments.len()
    }

    /// Bytes the transaction holds (keys touched plus buffered values).
    pub fn held_bytes(&self) -> u64 {
        self.held
    }

    /// Applies the buffered writes atomically, or nothing. Starts only before
    /// the deadline ([`KeyValueError::Deadline`] otherwise, nothing written); once
    /// started it runs to its end even past the deadline, so the caller always
    /// learns whether it applied. A transaction that is dropped instead leaves
    /// no trace.
    pub async fn commit(self) -> Result<(), KeyValueError> {
        if self.changes.writes.is_empty() && self.changes.increments.is_empty() {
            return Ok(());
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(KeyValueError::Deadline);
        }
        // A task of its own: even if the caller stops waiting (cancelled
        // invocation, shutdown), a commit that started runs to its end.
        let Transaction {
            backend,
            scope,
            changes,
            ..
        } = self;
        tokio::spawn(async move { backend.commit(&scope, changes).await })
            .await
            .map_err(|e| KeyValueError::Unknown(format!("commit task: {e}")))?
    }

    /// What the commit would apply, for a caller that commits it together
    /// with other state (the state store's `complete`); `None` when there is
    /// nothing to write.
    pub fn into_intent(self) -> Option<(Scope, Changes)> {
        if self.changes.writes.is_empty() && self.changes.increments.is_empty() {
            return None;
        }
        Some((self.scope, self.changes))
    }
}

/// The u64 counter `bytes` hold (8 bytes, little-endian).
pub(crate) fn counter(bytes: &[u8], k: &(String, String)) -> Result<u64, KeyValueError> {
    let bytes: [u8; 8] = bytes.try_into().map_err(|_| KeyValueError::NotCounter {
        bucket: k.0.clone(),
        key: k.1.clone(),
    })?;
    Ok(u64::from_le_bytes(bytes))
}

#[cfg(test)]
pub(crate) mod tests;
