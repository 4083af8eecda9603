//! The shared backend: Redis, for several replicas of an agent sharing state.
//! Each commit is one Lua script, which Redis runs atomically: it checks every
//! version the invocation saw, checks the quota, then applies every write —
//! or returns without touching anything.

use std::sync::Mutex;

use super::redb_store::encode;
use super::{Changes, KvBackend, KvError, Scope, Versioned};

/// Check-and-apply, atomically. KEYS: usage, then per entry version, data and
/// bucket-set keys. ARGV: quota, entry count, then per entry expected version,
/// op (`s` set, `d` delete, `-` read only), value, key name.
const COMMIT: &str = r#"
local n = tonumber(ARGV[2])
for i = 1, n do
  local seen = tonumber(redis.call('GET', KEYS[3 * i - 1]) or '0')
  if seen ~= tonumber(ARGV[4 * i - 1]) then return {'conflict', i} end
end
local before = tonumber(redis.call('GET', KEYS[1]) or '0')
local after = before
for i = 1, n do
  local op = ARGV[4 * i]
  if op ~= '-' then
    local data = KEYS[3 * i]
    local name = ARGV[4 * i + 2]
    if redis.call('EXISTS', data) == 1 then
      after = after - #name - redis.call('STRLEN', data)
    end
    if op == 's' then after = after + #name + #ARGV[4 * i + 1] end
  end
end
if after > tonumber(ARGV[1]) and after > before then return {'quota', after} end
for i = 1, n do
  local op = ARGV[4 * i]
  if op ~= '-' then
    if op == 's' then
      redis.call('SET', KEYS[3 * i], ARGV[4 * i + 1])
      redis.call('SADD', KEYS[3 * i + 1], ARGV[4 * i + 2])
    else
      redis.call('DEL', KEYS[3 * i])
      redis.call('SREM', KEYS[3 * i + 1], ARGV[4 * i + 2])
    end
    redis.call('INCR', KEYS[3 * i - 1])
  end
end
redis.call('SET', KEYS[1], after)
return {'ok', after}
"#;

/// A Redis server reached over one connection, re-opened after an error.
pub struct RedisBackend {
    client: redis::Client,
    conn: Mutex<Option<redis::Connection>>,
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

impl RedisBackend {
    /// Connects to `url` (`redis://host:port/db`); fails if the server does not answer.
    pub fn connect(url: &str) -> Result<Self, KvError> {
        let client = redis::Client::open(url).map_err(backend)?;
        let conn = client.get_connection().map_err(backend)?;
        Ok(Self {
            client,
            conn: Mutex::new(Some(conn)),
            script: redis::Script::new(COMMIT),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, KvError> {
        let mut guard = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            *guard = Some(self.client.get_connection().map_err(backend)?);
        }
        let result = f(guard.as_mut().expect("connected above"));
        if result.is_err() {
            // Start the next call on a fresh connection.
            *guard = None;
        }
        result.map_err(backend)
    }
}

impl KvBackend for RedisBackend {
    fn read(&self, scope: &Scope, bucket: &str, name: &str) -> Result<Versioned, KvError> {
        let (value, version): (Option<Vec<u8>>, Option<u64>) = self.with(|c| {
            redis::cmd("MGET")
                .arg(data_key(scope, bucket, name))
                .arg(version_key(scope, bucket, name))
                .query(c)
        })?;
        Ok(Versioned {
            value,
            version: version.unwrap_or(0),
        })
    }

    fn usage(&self, scope: &Scope) -> Result<u64, KvError> {
        let usage: Option<u64> = self.with(|c| redis::cmd("GET").arg(usage_key(scope)).query(c))?;
        Ok(usage.unwrap_or(0))
    }

    fn keys(&self, scope: &Scope, bucket: &str) -> Result<Vec<String>, KvError> {
        let mut keys: Vec<String> = self.with(|c| {
            redis::cmd("SMEMBERS")
                .arg(bucket_key(scope, bucket))
                .query(c)
        })?;
        keys.sort();
        Ok(keys)
    }

    fn commit(&self, scope: &Scope, changes: &Changes) -> Result<(), KvError> {
        let entries: Vec<(&(String, String), u64)> =
            changes.expected.iter().map(|(k, v)| (k, *v)).collect();
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(usage_key(scope))
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
        let (status, detail): (String, i64) = self.with(|c| invocation.invoke(c))?;
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
