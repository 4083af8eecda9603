//! Key-value state (`spec.capabilities.keyValue`): per-agent scoped buckets,
//! transactional per invocation.
//!
//! An invocation works on a [`Transaction`]: reads go to the backend (and see
//! the invocation's own buffered writes first), writes are buffered, and
//! nothing reaches the backend until the host commits — which it does only
//! when `run` returned `ok`. The commit is optimistic: every key the
//! invocation read or wrote must still have the version it saw, or the whole
//! commit is refused as a [`KvError::Conflict`]; nothing is ever half-written.

pub mod host;
pub mod redb_store;
pub mod redis_store;

use std::collections::BTreeMap;
use std::sync::Arc;

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
pub struct KvGrant {
    /// The agent's namespace and name.
    pub scope: Scope,
    /// Buckets the agent may open; empty means any name.
    pub buckets: Vec<String>,
    /// Keys plus values the agent may hold, bytes.
    pub max_bytes: u64,
}

impl KvGrant {
    /// A fresh transaction for one invocation.
    pub fn begin(&self, backend: Arc<dyn KvBackend>) -> Transaction {
        Transaction::new(
            backend,
            self.scope.clone(),
            self.buckets.clone(),
            self.max_bytes,
        )
    }
}

/// A bucket the guest opened (`wasi:keyvalue/store.bucket`): just its name;
/// the transaction behind it is the invocation's.
#[derive(Debug)]
pub struct Bucket {
    /// The bucket's name, as granted.
    pub name: String,
}

/// A value and the version it had when read (`0`: the key did not exist).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned {
    /// The bytes, if the key exists.
    pub value: Option<Vec<u8>>,
    /// Bumped by every committed write of the key.
    pub version: u64,
}

/// What an invocation asks the backend to apply, all or nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Versions the invocation saw, per (bucket, key); each must still hold.
    pub expected: BTreeMap<(String, String), u64>,
    /// New values (`None` deletes), per (bucket, key).
    pub writes: BTreeMap<(String, String), Option<Vec<u8>>>,
    /// The scope's byte quota (keys plus values).
    pub max_bytes: u64,
}

/// Why a key-value operation or commit failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
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
    /// A bucket the manifest does not list.
    #[error("bucket {0:?} is not granted (spec.capabilities.keyValue.buckets)")]
    BucketDenied(String),
    /// The backend failed (I/O, connection); nothing was committed.
    #[error("key-value backend: {0}")]
    Backend(String),
}

/// A store shared by every agent of a host (or several hosts, for Redis).
pub trait KvBackend: Send + Sync {
    /// The current value and version of a key.
    fn read(&self, scope: &Scope, bucket: &str, key: &str) -> Result<Versioned, KvError>;
    /// Bytes (keys plus values) the scope holds.
    fn usage(&self, scope: &Scope) -> Result<u64, KvError>;
    /// Keys of a bucket, sorted.
    fn keys(&self, scope: &Scope, bucket: &str) -> Result<Vec<String>, KvError>;
    /// Applies `changes` atomically and durably, or nothing.
    fn commit(&self, scope: &Scope, changes: &Changes) -> Result<(), KvError>;
}

/// One invocation's view of its agent's state.
pub struct Transaction {
    backend: Arc<dyn KvBackend>,
    scope: Scope,
    buckets: Vec<String>,
    changes: Changes,
}

impl Transaction {
    /// A transaction for `scope`; `buckets` empty means any bucket name.
    pub fn new(
        backend: Arc<dyn KvBackend>,
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
        }
    }

    /// Refuses buckets the manifest does not list.
    pub fn check_bucket(&self, bucket: &str) -> Result<(), KvError> {
        if self.buckets.is_empty() || self.buckets.iter().any(|b| b == bucket) {
            Ok(())
        } else {
            Err(KvError::BucketDenied(bucket.to_string()))
        }
    }

    /// The value of `key`, this invocation's own writes included.
    pub fn get(&mut self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.check_bucket(bucket)?;
        let k = (bucket.to_string(), key.to_string());
        if let Some(buffered) = self.changes.writes.get(&k) {
            return Ok(buffered.clone());
        }
        let read = self.backend.read(&self.scope, bucket, key)?;
        self.changes.expected.entry(k).or_insert(read.version);
        Ok(read.value)
    }

    /// Buffers `value` for `key`. Fails early when the buffered state alone
    /// cannot fit the quota (the commit checks it again against the store).
    pub fn set(&mut self, bucket: &str, key: &str, value: Vec<u8>) -> Result<(), KvError> {
        self.write(bucket, key, Some(value))
    }

    /// Buffers the deletion of `key`.
    pub fn delete(&mut self, bucket: &str, key: &str) -> Result<(), KvError> {
        self.write(bucket, key, None)
    }

    fn write(&mut self, bucket: &str, key: &str, value: Option<Vec<u8>>) -> Result<(), KvError> {
        self.check_bucket(bucket)?;
        let k = (bucket.to_string(), key.to_string());
        if !self.changes.expected.contains_key(&k) {
            // The commit must know what it overwrites: a blind write still
            // conflicts with a concurrent one.
            let read = self.backend.read(&self.scope, bucket, key)?;
            self.changes.expected.insert(k.clone(), read.version);
        }
        let size = (key.len() + value.as_ref().map_or(0, Vec::len)) as u64;
        if size > self.changes.max_bytes {
            return Err(KvError::Quota {
                needed: size,
                limit: self.changes.max_bytes,
            });
        }
        self.changes.writes.insert(k, value);
        Ok(())
    }

    /// Whether `key` exists, this invocation's writes included.
    pub fn exists(&mut self, bucket: &str, key: &str) -> Result<bool, KvError> {
        Ok(self.get(bucket, key)?.is_some())
    }

    /// Keys of `bucket`, this invocation's writes and deletes applied, sorted.
    pub fn keys(&mut self, bucket: &str) -> Result<Vec<String>, KvError> {
        self.check_bucket(bucket)?;
        let mut keys: std::collections::BTreeSet<String> = self
            .backend
            .keys(&self.scope, bucket)?
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
        Ok(keys.into_iter().collect())
    }

    /// Adds `delta` to the little-endian u64 at `key` (absent counts as 0);
    /// the new value.
    pub fn increment(&mut self, bucket: &str, key: &str, delta: u64) -> Result<u64, KvError> {
        let current = match self.get(bucket, key)? {
            None => 0,
            Some(bytes) => u64::from_le_bytes(bytes.as_slice().try_into().map_err(|_| {
                KvError::Backend(format!(
                    "key {key:?} in bucket {bucket:?} does not hold a u64 counter"
                ))
            })?),
        };
        let next = current.wrapping_add(delta);
        self.set(bucket, key, next.to_le_bytes().to_vec())?;
        Ok(next)
    }

    /// Keys this transaction would write or delete.
    pub fn pending_writes(&self) -> usize {
        self.changes.writes.len()
    }

    /// Applies the buffered writes atomically, or nothing. A transaction that
    /// is dropped instead leaves no trace.
    pub fn commit(self) -> Result<(), KvError> {
        if self.changes.writes.is_empty() {
            return Ok(());
        }
        self.backend.commit(&self.scope, &self.changes)
    }
}

#[cfg(test)]
mod tests;
