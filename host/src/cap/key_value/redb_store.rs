//! The embedded backend: one redb file per host. redb commits are atomic and,
//! at its default durability, fsynced before `commit` returns — so a commit the
//! host acknowledged survives a SIGKILL, and one interrupted by it is absent.
//! Every read and commit runs on tokio's blocking pool: a slow disk (or an
//! fsync) waits there, never on the async workers that serve other agents.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use super::{Changes, KeyValueBackend, KeyValueError, Scope, Versioned};

/// Encoded (scope, bucket, key) → value.
const DATA: TableDefinition<&[u8], &[u8]> = TableDefinition::new("data");
/// Encoded (scope, bucket, key) → version, present exactly while the key is
/// (an absent key is version 0), so deletes leave nothing behind.
const VERSIONS: TableDefinition<&[u8], u64> = TableDefinition::new("versions");
/// Encoded scope → the last version stamp handed out. Stamps only grow, so a
/// key deleted and re-created between a read and a commit is still a conflict.
const STAMPS: TableDefinition<&[u8], u64> = TableDefinition::new("stamps");
/// Encoded scope → bytes held (keys plus values).
const USAGE: TableDefinition<&[u8], u64> = TableDefinition::new("usage");

/// Bytes of the database's page cache (redb's default is 1 GiB): results and
/// inputs written on callers' behalf pass through it, so it is what bounds
/// the host's memory for them.
pub const CACHE_BYTES: usize = 16 << 20;

/// A redb database file holding every agent's state.
pub struct RedbBackend {
    db: Arc<Database>,
}

impl RedbBackend {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, KeyValueError> {
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| KeyValueError::Backend(format!("{}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(backend)?;
        {
            txn.open_table(DATA).map_err(backend)?;
            txn.open_table(VERSIONS).map_err(backend)?;
            txn.open_table(USAGE).map_err(backend)?;
            txn.open_table(STAMPS).map_err(backend)?;
        }
        txn.commit().map_err(backend)?;
        Ok(Self { db: Arc::new(db) })
    }

    /// The open database, shared with the state store so that a key-value
    /// commit and an invocation's result are one redb write transaction.
    pub fn database(&self) -> Arc<Database> {
        self.db.clone()
    }

    /// Runs `f` on the blocking pool (redb calls block on disk I/O and fsync).
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, KeyValueError> + Send + 'static,
    ) -> Result<T, KeyValueError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| KeyValueError::Backend(format!("redb task: {e}")))?
    }
}

fn backend(e: impl std::fmt::Display) -> KeyValueError {
    KeyValueError::Backend(e.to_string())
}

/// Length-prefixed parts, so no name or key (NUL bytes included) can make one
/// scope's key spell another's.
pub(crate) fn encode(parts: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(&(p.len() as u32).to_be_bytes());
        out.extend_from_slice(p.as_bytes());
    }
    out
}

pub(crate) fn scope_key(scope: &Scope) -> Vec<u8> {
    encode(&[&scope.namespace, &scope.agent])
}

fn entry_key(scope: &Scope, bucket: &str, key: &str) -> Vec<u8> {
    encode(&[&scope.namespace, &scope.agent, bucket, key])
}

fn read(db: &Database, k: &[u8]) -> Result<Versioned, KeyValueError> {
    let txn = db.begin_read().map_err(backend)?;
    let data = txn.open_table(DATA).map_err(backend)?;
    let versions = txn.open_table(VERSIONS).map_err(backend)?;
    Ok(Versioned {
        value: data.get(k).map_err(backend)?.map(|v| v.value().to_vec()),
        version: versions.get(k).map_err(backend)?.map_or(0, |v| v.value()),
    })
}

fn usage(db: &Database, sk: &[u8]) -> Result<u64, KeyValueError> {
    let txn = db.begin_read().map_err(backend)?;
    let usage = txn.open_table(USAGE).map_err(backend)?;
    Ok(usage.get(sk).map_err(backend)?.map_or(0, |v| v.value()))
}

fn keys(db: &Database, prefix: &[u8]) -> Result<Vec<String>, KeyValueError> {
    let txn = db.begin_read().map_err(backend)?;
    let data = txn.open_table(DATA).map_err(backend)?;
    let mut keys = Vec::new();
    for entry in data.range(prefix..).map_err(backend)? {
        let (k, _) = entry.map_err(backend)?;
        let Some(rest) = k.value().strip_prefix(prefix) else {
            break;
        };
        // rest = u32 length + key bytes.
        keys.push(String::from_utf8_lossy(&rest[4..]).into_owned());
    }
    Ok(keys)
}

fn commit(db: &Database, scope: &Scope, changes: &Changes) -> Result<(), KeyValueError> {
    let txn = db.begin_write().map_err(backend)?;
    apply(&txn, scope, changes)?;
    txn.commit().map_err(backend)
}

/// Checks and applies `changes` inside `txn`; on an error the caller drops
/// `txn`, which discards everything written in it.
pub(crate) fn apply(
    txn: &WriteTransaction,
    scope: &Scope,
    changes: &Changes,
) -> Result<(), KeyValueError> {
    {
        let mut data = txn.open_table(DATA).map_err(backend)?;
        let mut versions = txn.open_table(VERSIONS).map_err(backend)?;
        let mut usage = txn.open_table(USAGE).map_err(backend)?;
        let mut stamps = txn.open_table(STAMPS).map_err(backend)?;
        for ((bucket, key), seen) in &changes.expected {
            let k = entry_key(scope, bucket, key);
            let now = versions
                .get(k.as_slice())
                .map_err(backend)?
                .map_or(0, |v| v.value());
            if now != *seen {
                return Err(KeyValueError::Conflict {
                    bucket: bucket.clone(),
                    key: key.clone(),
                });
            }
        }
        let sk = scope_key(scope);
        let before = usage
            .get(sk.as_slice())
            .map_err(backend)?
            .map_or(0, |v| v.value());
        let mut stamp = stamps
            .get(sk.as_slice())
            .map_err(backend)?
            .map_or(0, |v| v.value());
        let mut after = before as i128;
        for ((bucket, key), value) in &changes.writes {
            let k = entry_key(scope, bucket, key);
            let old = data
                .get(k.as_slice())
                .map_err(backend)?
                .map(|v| v.value().len());
            if let Some(old) = old {
                after -= (key.len() + old) as i128;
            }
            // Versions written before stamps existed were per-key counters:
            // stay above them so no stamp is ever handed out twice for a key.
            let version = versions
                .get(k.as_slice())
                .map_err(backend)?
                .map_or(0, |v| v.value());
            stamp = stamp.max(version);
            match value {
                Some(v) => {
                    after += (key.len() + v.len()) as i128;
                    stamp += 1;
                    data.insert(k.as_slice(), v.as_slice()).map_err(backend)?;
                    versions.insert(k.as_slice(), stamp).map_err(backend)?;
                }
                None => {
                    // Absent is version 0: nothing of the key is kept.
                    data.remove(k.as_slice()).map_err(backend)?;
                    versions.remove(k.as_slice()).map_err(backend)?;
                }
            }
        }
        // Increments: added to whatever the key holds now, no version check.
        for (k2 @ (bucket, key), delta) in &changes.increments {
            let k = entry_key(scope, bucket, key);
            let old = data
                .get(k.as_slice())
                .map_err(backend)?
                .map(|v| v.value().to_vec());
            let current = match &old {
                Some(v) => super::counter(v, k2)?,
                None => {
                    after += (key.len() + 8) as i128;
                    0
                }
            };
            let version = versions
                .get(k.as_slice())
                .map_err(backend)?
                .map_or(0, |v| v.value());
            stamp = stamp.max(version) + 1;
            let next = current.wrapping_add(*delta).to_le_bytes();
            data.insert(k.as_slice(), next.as_slice())
                .map_err(backend)?;
            versions.insert(k.as_slice(), stamp).map_err(backend)?;
        }
        let after = after.max(0) as u64;
        // A quota lowered below what is stored still lets the agent shrink.
        if after > changes.max_bytes && after > before {
            return Err(KeyValueError::Quota {
                needed: after,
                limit: changes.max_bytes,
            });
        }
        usage.insert(sk.as_slice(), after).map_err(backend)?;
        stamps.insert(sk.as_slice(), stamp).map_err(backend)?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl KeyValueBackend for RedbBackend {
    async fn read(
        &self,
        scope: &Scope,
        bucket: &str,
        key: &str,
    ) -> Result<Versioned, KeyValueError> {
        let k = entry_key(scope, bucket, key);
        self.blocking(move |db| read(db, &k)).await
    }

    async fn usage(&self, scope: &Scope) -> Result<u64, KeyValueError> {
        let sk = scope_key(scope);
        self.blocking(move |db| usage(db, &sk)).await
    }

    async fn keys(&self, scope: &Scope, bucket: &str) -> Result<Vec<String>, KeyValueError> {
        let prefix = encode(&[&scope.namespace, &scope.agent, bucket]);
        self.blocking(move |db| keys(db, &prefix)).await
    }

    async fn commit(&self, scope: &Scope, changes: Changes) -> Result<(), KeyValueError> {
        let scope = scope.clone();
        self.blocking(move |db| commit(db, &scope, &changes)).await
    }
}
