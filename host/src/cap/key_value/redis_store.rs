//! The shared backend: Redis, for several replicas of an agent sharing state.
//! Each commit is one Lua script, which Redis runs atomically: it checks every
//! version the invocation saw, checks the quota, then applies every write —
//! or returns without touching anything.
//!
//! Every key of an agent starts `agent-host/{namespace/agent}/`: the braces
//! are a Redis Cluster hash tag, so one agent's keys share a slot and its
//! scripts (this commit, and the state store's `complete`, which embeds it)
//! work on a Cluster. Keys written before the tag existed
//! (`agent-host/d/…`, without it) are renamed into this layout when a host
//! connects (`migrate_untagged_keys`).
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
use super::{Changes, KeyValueBackend, KeyValueError, Scope, Versioned};

/// Longest wait for a TCP connection to Redis (at load, and on reconnects).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest wait for any reply. Reads are cut off sooner by the invocation's
/// deadline; a commit, which runs to its end once started, is bounded by this
/// plus [`CONNECT_TIMEOUT`].
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Key-value check and apply, as Lua functions other scripts embed (the
/// state store's `complete` runs them in the same script as the result
/// record). Offsets: keys from `KEYS[ko]`: usage, last stamp, then per
/// entry version, data and bucket-set keys, then the same three per
/// increment. Args from `ARGV[ao]`: quota, entry count n, increment count m,
/// then per entry expected version, op (`s` set, `d` delete, `-` read only),
/// value, key name; then per increment the delta (8 bytes, little-endian)
/// and key name. A set or increment takes a new stamp (above any version
/// seen, so a deleted and re-created key never repeats one); a delete
/// removes the version too. Increments add to what the key holds at commit
/// (byte-wise, exact on u64: Lua numbers are doubles) with no version check.
pub(crate) const KV_LUA: &str = r#"
local function le_add(cur, delta)
  local out, carry = {}, 0
  for i = 1, 8 do
    local s = string.byte(cur, i) + string.byte(delta, i) + carry
    out[i] = string.char(s % 256)
    carry = math.floor(s / 256)
  end
  return table.concat(out)
end

local function kv_check(ko, ao)
  local n, m = tonumber(ARGV[ao + 1]), tonumber(ARGV[ao + 2])
  for i = 1, n do
    local k, a = ko + 3 * i - 1, ao + 4 * i - 1
    local seen = tonumber(redis.call('GET', KEYS[k]) or '0')
    if seen ~= tonumber(ARGV[a]) then return {'conflict', i} end
  end
  local before = tonumber(redis.call('GET', KEYS[ko]) or '0')
  local after = before
  for i = 1, n do
    local k, a = ko + 3 * i - 1, ao + 4 * i - 1
    local op = ARGV[a + 1]
    if op ~= '-' then
      if redis.call('EXISTS', KEYS[k + 1]) == 1 then
        after = after - #ARGV[a + 3] - redis.call('STRLEN', KEYS[k + 1])
      end
      if op == 's' then after = after + #ARGV[a + 3] + #ARGV[a + 2] end
    end
  end
  for j = 1, m do
    local k, a = ko + 3 * n + 3 * j - 1, ao + 4 * n + 2 * j + 1
    local len = redis.call('STRLEN', KEYS[k + 1])
    if len == 0 and redis.call('EXISTS', KEYS[k + 1]) == 0 then
      after = after + #ARGV[a + 1] + 8
    elseif len ~= 8 then
      return {'notcounter', j}
    end
  end
  if after > tonumber(ARGV[ao]) and after > before then return {'quota', after} end
  return {'ok', after}
end

local function kv_apply(ko, ao, after)
  local n, m = tonumber(ARGV[ao + 1]), tonumber(ARGV[ao + 2])
  local stamp = tonumber(redis.call('GET', KEYS[ko + 1]) or '0')
  for i = 1, n do
    local k, a = ko + 3 * i - 1, ao + 4 * i - 1
    local op = ARGV[a + 1]
    if op ~= '-' then
      local version = tonumber(redis.call('GET', KEYS[k]) or '0')
      if version > stamp then stamp = version end
      if op == 's' then
        stamp = stamp + 1
        redis.call('SET', KEYS[k + 1], ARGV[a + 2])
        redis.call('SET', KEYS[k], string.format('%d', stamp))
        redis.call('SADD', KEYS[k + 2], ARGV[a + 3])
      else
        redis.call('DEL', KEYS[k + 1], KEYS[k])
        redis.call('SREM', KEYS[k + 2], ARGV[a + 3])
      end
    end
  end
  for j = 1, m do
    local k, a = ko + 3 * n + 3 * j - 1, ao + 4 * n + 2 * j + 1
    local version = tonumber(redis.call('GET', KEYS[k]) or '0')
    if version > stamp then stamp = version end
    stamp = stamp + 1
    local cur = redis.call('GET', KEYS[k + 1]) or string.rep('\0', 8)
    redis.call('SET', KEYS[k + 1], le_add(cur, ARGV[a]))
    redis.call('SET', KEYS[k], string.format('%d', stamp))
    redis.call('SADD', KEYS[k + 2], ARGV[a + 1])
  end
  redis.call('SET', KEYS[ko + 1], string.format('%d', stamp))
  redis.call('SET', KEYS[ko], string.format('%d', after))
end
"#;

/// The plain key-value commit: [`KV_LUA`] at the first key and argument.
pub(crate) const COMMIT: &str = r#"
local r = kv_check(1, 1)
if r[1] ~= 'ok' then return r end
kv_apply(1, 1, r[2])
return r
"#;

/// A Redis server reached over a multiplexed async connection.
pub struct RedisBackend {
    client: redis::Client,
    /// Made on first use, inside the runtime that drives it.
    conn: OnceCell<ConnectionManager>,
    script: redis::Script,
}

pub(crate) fn backend(e: impl std::fmt::Display) -> KeyValueError {
    KeyValueError::Backend(format!("redis: {e}"))
}

/// The prefix of every key of `s`: `agent-host/{namespace/agent}/`. The
/// braces are a Redis Cluster hash tag, so all of an agent's keys live in one
/// slot and one script may touch them all; the scope is spelled out again,
/// length-prefixed, after the kind, so no two scopes share a key even when
/// their tags read alike.
pub(crate) fn prefix(s: &Scope) -> Vec<u8> {
    format!("agent-host/{{{}/{}}}/", s.namespace, s.agent).into_bytes()
}

fn key(s: &Scope, kind: &[u8], parts: &[&str]) -> Vec<u8> {
    let mut k = prefix(s);
    k.extend_from_slice(kind);
    k.extend(encode(&[&s.namespace, &s.agent]));
    k.extend(encode(parts));
    k
}

pub(crate) fn data_key(s: &Scope, bucket: &str, name: &str) -> Vec<u8> {
    key(s, b"d/", &[bucket, name])
}

pub(crate) fn version_key(s: &Scope, bucket: &str, name: &str) -> Vec<u8> {
    key(s, b"v/", &[bucket, name])
}

pub(crate) fn bucket_key(s: &Scope, bucket: &str) -> Vec<u8> {
    key(s, b"k/", &[bucket])
}

pub(crate) fn usage_key(s: &Scope) -> Vec<u8> {
    key(s, b"u/", &[])
}

fn stamp_key(s: &Scope) -> Vec<u8> {
    key(s, b"n/", &[])
}

/// Renames keys written before the hash tag existed (`agent-host/d/…`,
/// `v/`, `k/`, `u/`, `n/` then the encoded scope: one server only, as the
/// untagged layout never worked on a Cluster) to the tagged layout; how many
/// were renamed. Safe to run from several hosts at once and again later: a
/// key already renamed is skipped, and a tagged key is never overwritten.
/// Replicas still running the untagged layout must be stopped first. A
/// marker key records a finished pass, so later starts do not SCAN the
/// whole keyspace again.
pub(crate) fn migrate_untagged_keys(conn: &mut redis::Connection) -> redis::RedisResult<u64> {
    const DONE: &str = "agent-host/kv-layout-tagged";
    if redis::cmd("EXISTS").arg(DONE).query::<i64>(conn)? == 1 {
        return Ok(0);
    }
    let mut cursor: u64 = 0;
    let mut renamed = 0;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("agent-host/[dvkun]/*")
            .arg("COUNT")
            .arg(1000)
            .query(conn)?;
        for old in keys {
            let Some(scope) = untagged_scope(&old) else {
                continue;
            };
            let mut new = prefix(&scope);
            new.extend_from_slice(&old[b"agent-host/".len()..]);
            match redis::cmd("RENAMENX")
                .arg(&old)
                .arg(&new)
                .query::<i64>(conn)
            {
                Ok(n) => renamed += n as u64,
                // Renamed by another host since the SCAN.
                Err(e) if e.to_string().contains("no such key") => {}
                Err(e) => return Err(e),
            }
        }
        if next == 0 {
            redis::cmd("SET").arg(DONE).arg(1).query::<()>(conn)?;
            return Ok(renamed);
        }
        cursor = next;
    }
}

/// The scope an untagged key (`agent-host/<kind>/` + encoded parts) names.
fn untagged_scope(key: &[u8]) -> Option<Scope> {
    fn part(b: &[u8]) -> Option<(String, &[u8])> {
        let len = u32::from_be_bytes(b.get(..4)?.try_into().ok()?) as usize;
        let text = String::from_utf8(b.get(4..4 + len)?.to_vec()).ok()?;
        Some((text, &b[4 + len..]))
    }
    let rest = key.strip_prefix(b"agent-host/")?.get(2..)?;
    let (namespace, rest) = part(rest)?;
    let (agent, _) = part(rest)?;
    Some(Scope { namespace, agent })
}

/// The keys of one key-value commit, in [`KV_LUA`]'s order.
pub(crate) struct KeyValueArgs<'a> {
    entries: Vec<(&'a (String, String), u64)>,
    increments: Vec<(&'a (String, String), u64)>,
    max_bytes: u64,
}

impl<'a> KeyValueArgs<'a> {
    /// Appends `changes`' keys and arguments to `invocation`.
    pub(crate) fn push(
        invocation: &mut redis::ScriptInvocation<'_>,
        scope: &Scope,
        changes: &'a Changes,
    ) -> Self {
        let entries: Vec<_> = changes.expected.iter().map(|(k, v)| (k, *v)).collect();
        let increments: Vec<_> = changes.increments.iter().map(|(k, v)| (k, *v)).collect();
        invocation
            .key(usage_key(scope))
            .key(stamp_key(scope))
            .arg(changes.max_bytes)
            .arg(entries.len())
            .arg(increments.len());
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
        for ((bucket, name), delta) in &increments {
            invocation
                .key(version_key(scope, bucket, name))
                .key(data_key(scope, bucket, name))
                .key(bucket_key(scope, bucket))
                .arg(&delta.to_le_bytes()[..])
                .arg(name.as_str());
        }
        Self {
            entries,
            increments,
            max_bytes: changes.max_bytes,
        }
    }

    /// What [`KV_LUA`]'s `kv_check` reply means.
    pub(crate) fn outcome(&self, status: &str, detail: i64) -> Result<(), KeyValueError> {
        let at = |list: &[(&(String, String), u64)]| {
            let (bucket, key) = list[(detail - 1) as usize].0.clone();
            (bucket, key)
        };
        match status {
            "ok" => Ok(()),
            "conflict" => {
                let (bucket, key) = at(&self.entries);
                Err(KeyValueError::Conflict { bucket, key })
            }
            "notcounter" => {
                let (bucket, key) = at(&self.increments);
                Err(KeyValueError::NotCounter { bucket, key })
            }
            "quota" => Err(KeyValueError::Quota {
                needed: detail as u64,
                limit: self.max_bytes,
            }),
            other => Err(backend(format!("unexpected script reply {other:?}"))),
        }
    }
}

impl RedisBackend {
    /// Connects to `url` (`redis://host:port/db`, or connection settings that
    /// carry a password: [`crate::config::RedisSettings`]); fails if the server does not
    /// answer PING within [`CONNECT_TIMEOUT`] (once per host, at load).
    pub fn connect(url: impl redis::IntoConnectionInfo) -> Result<Self, KeyValueError> {
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
        migrate_untagged_keys(&mut probe).map_err(backend)?;
        Ok(Self {
            client,
            conn: OnceCell::new(),
            script: redis::Script::new(&format!("{KV_LUA}{COMMIT}")),
        })
    }

    /// The shared connection (a cheap handle onto it).
    async fn conn(&self) -> Result<ConnectionManager, KeyValueError> {
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
impl KeyValueBackend for RedisBackend {
    async fn read(
        &self,
        scope: &Scope,
        bucket: &str,
        name: &str,
    ) -> Result<Versioned, KeyValueError> {
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

    async fn usage(&self, scope: &Scope) -> Result<u64, KeyValueError> {
        let usage: Option<u64> = redis::cmd("GET")
            .arg(usage_key(scope))
            .query_async(&mut self.conn().await?)
            .await
            .map_err(backend)?;
        Ok(usage.unwrap_or(0))
    }

    async fn keys(&self, scope: &Scope, bucket: &str) -> Result<Vec<String>, KeyValueError> {
        let mut keys: Vec<String> = redis::cmd("SMEMBERS")
            .arg(bucket_key(scope, bucket))
            .query_async(&mut self.conn().await?)
            .await
            .map_err(backend)?;
        keys.sort();
        Ok(keys)
    }

    async fn commit(&self, scope: &Scope, changes: Changes) -> Result<(), KeyValueError> {
        let mut invocation = self.script.prepare_invoke();
        let args = KeyValueArgs::push(&mut invocation, scope, &changes);
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
                        KeyValueError::Unknown(format!("redis: {e}"))
                    } else {
                        backend(e)
                    }
                })
        };
        let (status, detail) = tokio::time::timeout(CONNECT_TIMEOUT + RESPONSE_TIMEOUT, exchange)
            .await
            .map_err(|_| {
                KeyValueError::Unknown(format!(
                    "redis: no reply within {:?}",
                    CONNECT_TIMEOUT + RESPONSE_TIMEOUT
                ))
            })??;
        args.outcome(&status, detail)
    }
}
