//! The shared backend: Redis, for several replicas of an agent sharing state.
//! Each commit is one Lua script, which Redis runs atomically: it checks every
//! version the invocation saw, checks the quota, then applies every write —
//! or returns without touching anything.
//!
//! Calls go over one multiplexed async connection (re-established by
//! [`redis::aio::ConnectionManager`]): concurrent invocations pipeline on it
//! instead of queueing behind a lock, and a Redis that stops answering makes
//! only the calls waiting on it fail — at the invocation's deadline, or after
//! [`RESPONSE_TIMEOUT`] — never an executor thread or another agent.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use super::redb_store::encode;
use super::{Changes, KvBackend, KvError, Scope, Versioned};

/// Longest wait for a TCP connection to Redis (at load, and on reconnects).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest wait for any reply. Reads are cut off sooner by the invocation's
/// deadline; a commit, which runs to its end once started, is bounded by this
/// plus [`CONNECT_TIMEOUT`].
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Check-and-apply, atomically. KEYS: usage, last stamp, then per entry
/// version, data and bucket-set keys. ARGV: quota, entry count, then per entry
/// expected version, op (`s` set, `d` delete, `-` read only), value, key name.
/// A set takes a new stamp (above any version seen, so a deleted and
/// re-created key never repeats one); a delete removes the version too.
const COMMIT: &str = r#"
local n = tonumber(ARGV[2])
for i = 1, n do
  local seen = tonumber(redis.call('GET', KEYS[3 * i]) or '0')
  if seen ~= tonumber(ARGV[4 * i - 1]) then return {'conflict', i} end
end
local before = tonumber(redis.call('GET', KEYS[1]) or '0')
local after = before
for i = 1, n do
  local op = ARGV[4 * i]
  if op ~= '-' then
    local data = KEYS[3 * i + 1]
    local name = ARGV[4 * i + 2]
    if redis.call('EXISTS', data) == 1 then
      after = after - #name - redis.call('STRLEN', data)
    end
    if op == 's' then after = after + #name + #ARGV[4 * i + 1] end
  end
end
if after > tonumber(ARGV[1]) and after > before then return {'quota', after} end
local stamp = tonumber(redis.call('GET', KEYS[2]) or '0')
for i = 1, n do
  local op = ARGV[4 * i]
  if op ~= '-' then
    local version = tonumber(redis.call('GET', KEYS[3 * i]) or '0')
    if version > stamp then stamp = version end
    if op == 's' then
      stamp = stamp + 1
      redis.call('SET', KEYS[3 * i + 1], ARGV[4 * i + 1])
      redis.call('SET', KEYS[3 * i], string.format('%d', stamp))
      redis.call('SADD', KEYS[3 * i + 2], ARGV[4 * i + 2])
    else
      redis.call('DEL', KEYS[3 * i + 1], KEYS[3 * i])
      redis.call('SREM', KEYS[3 * i + 2], ARGV[4 * i + 2])
    end
  end
end
redis.call('SET', KEYS[2], string.format('%d', stamp))
redis.call('SET', KEYS[1], after)
return {'ok', after}
"#;

/// A Redis server reached over a multiplexed async connection.
pub struct RedisBackend {
    client: redis::Client,
    /// Made on first use, inside the runtime that drives it.
    conn: OnceCell<ConnectionManager>,
    script: redis::Script,
}

fn backend(e: impl std::fmt::Display) -> KvError {
    KvError::Backend(format!("redis: {e}"))
}

fn key(tag: &[u8], parts: &[&str]) -> Vec<u8> {
    let mut k = b"agent-host/".to_vec();
    k.extend_from_slice(tag);
    k.extend(encode(parts));
    k
}

fn data_key(s: &Scope, bucket: &str, name: &str) -> Vec<u8> {
    key(b"d/", &[&s.namespace, &s.agent, bucket, name])
}

fn version_key(s: &Scope, bucket: &str, name: &str) -> Vec<u8> {
    key(b"v/", &[&s.namespace, &s.agent, bucket, name])
}

fn bucket_key(s: &Scope, bucket: &str) -> Vec<u8> {
    key(b"k/", &[&s.namespace, &s.agent, bucket])
}

fn usage_key(s: &Scope) -> Vec<u8> {
    key(b"u/", &[&s.namespace, &s.agent])
}

fn stamp_key(s: &Scope) -> Vec<u8> {
    key(b"n/", &[&s.namespace, &s.agent])
}

impl RedisBackend {
    /// Connects to `url` (`redis://host:port/db`, or connection settings that
    /// carry a password: [`crate::config::RedisSettings`]); fails if the server does not
    /// answer PING within [`CONNECT_TIMEOUT`] (once per host, at load).
    pub fn connect(url: impl redis::IntoConnectionInfo) -> Result<Self, KvError> {
        let client = redis::Client::open(url).map_err(backend)?;
        let mut probe = client
            .get_connection_with_timeout(CONNECT_TIMEOUT)
            .map_err(backend)?;
        probe
            .set_read_timeout(Some(CONNECT_TIMEOUT))
            .map_err(backend)?;
        redis::cmd("PING")
            .query::<String>(&mut probe)
            .map_err(backend)?;
        Ok(Self {
            client,
            conn: OnceCell::new(),
            script: redis::Script::new(COMMIT),
        })
    }

    /// The shared connection (a cheap handle onto it).
    async fn conn(&self) -> Result<ConnectionManager, KvError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        self.conn
            .get_or_try_init(|| ConnectionManager::new_with_config(self.client.clone(), config))
            .await
            .cloned()
            .map_err(backend)
    }
}

#[async_trait::async_trait]
impl KvBackend for RedisBackend {
    async fn read(&self, scope: &Scope, bucket: &str, name: &str) -> Result<Versioned, KvError> {
        let (value, version): (Option<Vec<u8>>, Option<u64>) = redis::cmd("MGET")
            .arg(data_key(scope, bucket, name))
            .arg(version_key(scope, bucket, name))
            .query_async(&mut self.conn().await?)
            .await
            .map_err(backend)?;
        Ok(Versioned {
            value,
            version: version.unwrap_or(0),
        })
    }

    async fn usage(&self, scope: &Scope) -> Result<u64, KvError> {
        let usage: Option<u64> = redis::cmd("GET")
            .arg(usage_key(scope))
            .query_async(&mut self.conn().await?)
            .await
            .map_err(backend)?;
        Ok(usage.unwrap_or(0))
    }

    async fn keys(&self, scope: &Scope, bucket: &str) -> Result<Vec<String>, KvError> {
        let mut keys: Vec<String> = redis::cmd("SMEMBERS")
            .arg(bucket_key(scope, bucket))
            .query_async(&mut self.conn().await?)
            .await
            .map_err(backend)?;
        keys.sort();
        Ok(keys)
    }

    async fn commit(&self, scope: &Scope, changes: Changes) -> Result<(), KvError> {
        let entries: Vec<(&(String, String), u64)> =
            changes.expected.iter().map(|(k, v)| (k, *v)).collect();
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(usage_key(scope))
            .key(stamp_key(scope))
            .arg(changes.max_bytes)
            .arg(entries.len());
        for ((bucket, name), seen) in &entries {
            invocation
                .key(version_key(scope, bucket, name))
                .key(data_key(scope, bucket, name))
                .key(bucket_key(scope, bucket));
            let (op, value): (&str, &[u8]) =
                match changes.writes.get(&(bucket.clone(), name.clone())) {
                    None => ("-", b""),
                    Some(None) => ("d", b""),
                    Some(Some(v)) => ("s", v.as_slice()),
                };
            invocation.arg(*seen).arg(op).arg(value).arg(name.as_str());
        }
        // A commit is not cut off by the invocation's deadline (it runs to its
        // end once started), so bound the whole exchange, reconnects included.
        let exchange = async {
            let mut conn = self.conn().await?;
            invocation
                .invoke_async::<(String, i64)>(&mut conn)
                .await
                .map_err(|e| {
                    // Sent but unanswered: Redis may have run the script.
                    if e.is_timeout() || e.is_connection_dropped() || e.is_io_error() {
                        KvError::Unknown(format!("redis: {e}"))
                    } else {
                        backend(e)
                    }
                })
        };
        let (status, detail) = tokio::time::timeout(CONNECT_TIMEOUT + RESPONSE_TIMEOUT, exchange)
            .await
            .map_err(|_| {
                KvError::Unknown(format!(
                    "redis: no reply within {:?}",
                    CONNECT_TIMEOUT + RESPONSE_TIMEOUT
                ))
            })??;
        match status.as_str() {
            "ok" => Ok(()),
            "conflict" => {
                let ((bucket, name), _) = entries[(detail - 1) as usize];
                Err(KvError::Conflict {
                    bucket: bucket.clone(),
                    key: name.clone(),
                })
            }
            "quota" => Err(KvError::Quota {
                needed: detail as u64,
                limit: changes.max_bytes,
            }),
            other => Err(backend(format!("unexpected script reply {other:?}"))),
        }
    }
}
