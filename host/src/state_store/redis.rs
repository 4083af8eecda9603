//! The shared state store on Redis or a Redis Cluster. Every key of an agent
//! starts `agent-host/{namespace/agent}/` (the key-value layout of
//! [`crate::cap::key_value::redis_store`]), so every script below touches one slot;
//! an invocation id carries its agent's scope, so `get` and `cancel` find the
//! slot from the id alone. Each operation is one Lua script (atomic on the
//! server) using the server's clock (`TIME`) for leases and budgets.
//!
//! Per agent: `q/` a sorted set of queued invocation keys scored by sequence
//! number, `r/` a sorted set of running ones scored by lease deadline (ms),
//! `s/` a hash of queue counters (items `n`, bytes `b`, sequence `seq`), `i/`
//! one hash per invocation, `x/` idempotency key → id, `bu/` and `bh/` the
//! token budget's used tokens and reservations.
//!
//! Connections: `redis://…` is one server (a [`ConnectionManager`],
//! reconnecting; key-value data in the layout before the hash tag is renamed
//! into it on connect); `redis+cluster://host:port[,host:port…]` is a Cluster,
//! discovered from those seed nodes. `rediss://` connects over TLS, and a
//! password from `--store-password-file` is sent, through
//! [`RedisStore::connect_with`]'s settings.

use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::ClusterClient;
use ::redis::cluster_async::ClusterConnection;
use ::redis::{Cmd, Pipeline, RedisFuture, Script, Value};

use super::*;
use crate::cap::key_value::redb_store::encode;
use crate::cap::key_value::redis_store::{
    bucket_key, data_key, migrate_untagged_keys, prefix, usage_key, version_key, KeyValueArgs,
    COMMIT, CONNECT_TIMEOUT, KV_LUA, RESPONSE_TIMEOUT,
};
use crate::cap::key_value::Versioned;

const NOW: &str = r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"#;

/// KEYS: record, queue, stats, idempotency, running. ARGV: input, metadata,
/// key, max items, max bytes, has key, id, claiming replica ('' = queue it),
/// lease ms.
const SUBMIT: &str = r#"
if ARGV[6] == '1' then
  local existing = redis.call('GET', KEYS[4])
  if existing then return {'dup', existing, 0, 0} end
end
local n = tonumber(redis.call('HGET', KEYS[3], 'n') or '0')
local b = tonumber(redis.call('HGET', KEYS[3], 'b') or '0')
local bytes = #ARGV[1] + #ARGV[2]
if n + 1 > tonumber(ARGV[4]) or b + bytes > tonumber(ARGV[5]) then
  return {'full', '', n, b}
end
local seq = redis.call('HINCRBY', KEYS[3], 'seq', 1)
redis.call('HINCRBY', KEYS[3], 'n', 1)
redis.call('HINCRBY', KEYS[3], 'b', bytes)
redis.call('HSET', KEYS[1], 'id', ARGV[7], 'state', 'queued', 'input', ARGV[1],
  'meta', ARGV[2], 'idem', ARGV[3], 'hasidem', ARGV[6], 'idemkey', KEYS[4],
  'created', string.format('%d', now_ms()), 'attempts', '[]', 'fence', 0,
  'seq', seq, 'bytes', bytes)
if ARGV[8] == '' then
  redis.call('ZADD', KEYS[2], seq, KEYS[1])
else
  local now = now_ms()
  redis.call('HSET', KEYS[1], 'state', 'running', 'fence', 1,
    'attempts', cjson.encode({{replica = ARGV[8], startedMs = now}}))
  redis.call('ZADD', KEYS[5], now + tonumber(ARGV[9]), KEYS[1])
end
if ARGV[6] == '1' then redis.call('SET', KEYS[4], ARGV[7]) end
return {'ok', '', 0, 0}
"#;

/// KEYS: queue, running. ARGV: replica, lease ms. Takes an expired lease
/// first (it is older work), else the lowest sequence number.
const CLAIM: &str = r#"
local now = now_ms()
local rec, reclaimed
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1)
if #expired > 0 then
  rec, reclaimed = expired[1], 1
else
  local first = redis.call('ZRANGE', KEYS[1], 0, 0)
  if #first == 0 then return false end
  rec, reclaimed = first[1], 0
  redis.call('ZREM', KEYS[1], rec)
end
local attempts = cjson.decode(redis.call('HGET', rec, 'attempts'))
if reclaimed == 1 and #attempts > 0 then attempts[#attempts]['end'] = 'leaseExpired' end
attempts[#attempts + 1] = {replica = ARGV[1], startedMs = now}
local fence = redis.call('HINCRBY', rec, 'fence', 1)
redis.call('HSET', rec, 'state', 'running', 'attempts', cjson.encode(attempts))
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), rec)
local f = redis.call('HMGET', rec, 'id', 'input', 'meta')
return {f[1], f[2], f[3], #attempts, fence, reclaimed}
"#;

/// Whether KEYS[1] is running under fence ARGV[1].
const OWNS: &str = r#"
local function owns(rec, fence)
  local f = redis.call('HMGET', rec, 'state', 'fence')
  return f[1] == 'running' and f[2] == fence
end

local function finish(rec, running, stats, state, retention, attempt_end)
  if attempt_end then
    local attempts = cjson.decode(redis.call('HGET', rec, 'attempts'))
    if #attempts > 0 then
      attempts[#attempts]['end'] = attempt_end
      redis.call('HSET', rec, 'attempts', cjson.encode(attempts))
    end
  end
  redis.call('HSET', rec, 'state', state)
  redis.call('ZREM', running, rec)
  redis.call('HINCRBY', stats, 'n', -1)
  redis.call('HINCRBY', stats, 'b', -tonumber(redis.call('HGET', rec, 'bytes')))
  redis.call('PEXPIRE', rec, retention)
  if redis.call('HGET', rec, 'hasidem') == '1' then
    redis.call('PEXPIRE', redis.call('HGET', rec, 'idemkey'), retention)
  end
end
"#;

/// KEYS: record, running. ARGV: fence, lease ms.
const RENEW: &str = r#"
if not owns(KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[2], now_ms() + tonumber(ARGV[2]), KEYS[1])
return 1
"#;

/// KEYS: record, running, stats, then the key-value keys. ARGV: fence,
/// state, result, retention ms, has kv, then the key-value arguments.
const COMPLETE: &str = r#"
if not owns(KEYS[1], ARGV[1]) then return {'fenced', 0} end
if ARGV[5] == '1' then
  local r = kv_check(4, 6)
  if r[1] ~= 'ok' then return r end
  kv_apply(4, 6, r[2])
end
redis.call('HSET', KEYS[1], 'result', ARGV[3])
finish(KEYS[1], KEYS[2], KEYS[3], ARGV[2], ARGV[4], ARGV[2])
return {'ok', 0}
"#;

/// KEYS: record, running, queue. ARGV: fence. The releaser's token is spent.
const RELEASE: &str = r#"
if not owns(KEYS[1], ARGV[1]) then return 0 end
local attempts = cjson.decode(redis.call('HGET', KEYS[1], 'attempts'))
attempts[#attempts]['end'] = 'released'
redis.call('HINCRBY', KEYS[1], 'fence', 1)
redis.call('HSET', KEYS[1], 'state', 'queued', 'attempts', cjson.encode(attempts))
redis.call('ZREM', KEYS[2], KEYS[1])
redis.call('ZADD', KEYS[3], redis.call('HGET', KEYS[1], 'seq'), KEYS[1])
return 1
"#;

/// KEYS: record, running, queue, stats. ARGV: retention ms.
const CANCEL: &str = r#"
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'notfound', ''} end
if state ~= 'queued' and state ~= 'running' then return {'ended', state} end
redis.call('ZREM', KEYS[3], KEYS[1])
local attempt_end = nil
if state == 'running' then attempt_end = 'cancelled' end
finish(KEYS[1], KEYS[2], KEYS[4], 'cancelled', ARGV[1], attempt_end)
redis.call('HINCRBY', KEYS[1], 'fence', 1)
return {'cancelled', state}
"#;

/// KEYS: used, held. ARGV: prompt, completion, per minute, hold id, max
/// hold ms. Members are `<hold id>:<tokens>`.
const RESERVE: &str = r#"
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 60000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[5]))
local committed, used = 0, {}
local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #entries, 2 do
  local n = tonumber(string.match(entries[i], ':(%d+)$'))
  committed = committed + n
  used[#used + 1] = {n, tonumber(entries[i + 1])}
end
for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  committed = committed + tonumber(string.match(m, ':(%d+)$'))
end
local prompt, per = tonumber(ARGV[1]), tonumber(ARGV[3])
local room = math.max(per - committed, 0)
if room <= prompt then
  local need, freed, retry = committed + prompt + 1 - per, 0, 60000
  for _, u in ipairs(used) do
    freed = freed + u[1]
    if freed >= need then retry = math.max(u[2] + 60000 - now, 0) break end
  end
  return {'refused', committed, retry}
end
local tokens = prompt + math.min(tonumber(ARGV[2]), room - prompt)
redis.call('ZADD', KEYS[2], now, ARGV[4] .. ':' .. string.format('%d', tokens))
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[5]))
return {'ok', tokens, 0}
"#;

/// KEYS: used, held. ARGV: hold id, tokens reserved, tokens used.
const SETTLE: &str = r#"
redis.call('ZREM', KEYS[2], ARGV[1] .. ':' .. ARGV[2])
if tonumber(ARGV[3]) > 0 then
  redis.call('ZADD', KEYS[1], now_ms(), ARGV[1] .. ':' .. ARGV[3])
  redis.call('PEXPIRE', KEYS[1], 61000)
end
return 1
"#;

/// One server (reconnecting) or a Cluster.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

struct Scripts {
    submit: Script,
    claim: Script,
    renew: Script,
    complete: Script,
    release: Script,
    cancel: Script,
    reserve: Script,
    settle: Script,
    kv_commit: Script,
}

/// The store on Redis; also the key-value backend on the same keys.
pub struct RedisStore {
    conn: Conn,
    scripts: Arc<Scripts>,
    retention: Duration,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("redis: {e}"))
}

/// A script that was sent: with no reply it may have run.
fn sent(e: ::redis::RedisError) -> StoreError {
    if e.is_timeout() || e.is_connection_dropped() || e.is_io_error() {
        StoreError::Unknown(format!("redis: {e}"))
    } else {
        backend(e)
    }
}

fn kv_backend(e: impl std::fmt::Display) -> KeyValueError {
    KeyValueError::Backend(format!("redis: {e}"))
}

fn skey(scope: &Scope, kind: &str) -> Vec<u8> {
    let mut k = prefix(scope);
    k.extend_from_slice(kind.as_bytes());
    k.extend(encode(&[&scope.namespace, &scope.agent]));
    k
}

fn record_key(scope: &Scope, id: &InvocationId) -> Vec<u8> {
    let mut k = prefix(scope);
    k.extend_from_slice(b"i/");
    k.extend_from_slice(id.as_str().as_bytes());
    k
}

fn idempotency_key(scope: &Scope, key: &str) -> Vec<u8> {
    let mut k = prefix(scope);
    k.extend_from_slice(b"x/");
    k.extend(encode(&[&scope.namespace, &scope.agent, key]));
    k
}

impl RedisStore {
    /// Connects to `url`: `redis://host:port/db` (one server) or
    /// `redis+cluster://host:port[,host:port…]` (a Cluster's seed nodes).
    /// Fails unless the store answers within [`CONNECT_TIMEOUT`].
    pub async fn connect(url: &str, retention: Duration) -> Result<Self, StoreError> {
        match crate::config::Store::redis(url).map_err(backend)? {
            crate::config::Store::Redis(settings) => Self::connect_with(&settings, retention).await,
            crate::config::Store::Embedded => Err(backend("not a Redis URL")),
        }
    }

    /// Connects with the operator's settings (`--store`, its password file,
    /// TLS for `rediss://`). Fails unless the store answers within
    /// [`CONNECT_TIMEOUT`].
    pub async fn connect_with(
        settings: &crate::config::RedisSettings,
        retention: Duration,
    ) -> Result<Self, StoreError> {
        let conn = if settings.is_cluster() {
            let client = ClusterClient::builder(settings.nodes().to_vec())
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(RESPONSE_TIMEOUT)
                .build()
                .map_err(backend)?;
            let conn = tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_connection())
                .await
                .map_err(|_| backend(format!("no cluster connection within {CONNECT_TIMEOUT:?}")))?
                .map_err(backend)?;
            Conn::Cluster(conn)
        } else {
            let client = ::redis::Client::open(settings.connection_info()).map_err(backend)?;
            let probe = client.clone();
            // Key-value data of hosts before the hash tag: renamed once.
            tokio::task::spawn_blocking(move || {
                let mut sync = probe.get_connection_with_timeout(CONNECT_TIMEOUT)?;
                sync.set_read_timeout(Some(CONNECT_TIMEOUT))?;
                migrate_untagged_keys(&mut sync)
            })
            .await
            .map_err(backend)?
            .map_err(backend)?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(RESPONSE_TIMEOUT));
            let conn = tokio::time::timeout(
                CONNECT_TIMEOUT,
                ConnectionManager::new_with_config(client, config),
            )
            .await
            .map_err(|_| backend(format!("no connection within {CONNECT_TIMEOUT:?}")))?
            .map_err(backend)?;
            Conn::Single(conn)
        };
        let with = |body: &str, libs: &[&str]| Script::new(&format!("{}{body}", libs.concat()));
        let scripts = Scripts {
            submit: with(SUBMIT, &[NOW]),
            claim: with(CLAIM, &[NOW]),
            renew: with(RENEW, &[NOW, OWNS]),
            complete: with(COMPLETE, &[NOW, OWNS, KV_LUA]),
            release: with(RELEASE, &[NOW, OWNS]),
            cancel: with(CANCEL, &[NOW, OWNS]),
            reserve: with(RESERVE, &[NOW]),
            settle: with(SETTLE, &[NOW]),
            kv_commit: with(COMMIT, &[KV_LUA]),
        };
        let store = Self {
            conn,
            scripts: Arc::new(scripts),
            retention,
        };
        ::redis::cmd("PING")
            .query_async::<String>(&mut store.conn.clone())
            .await
            .map_err(backend)?;
        Ok(store)
    }

    /// Submits `new`, queued, or claimed by `claim` (replica, lease).
    async fn submit_as(
        &self,
        new: NewInvocation,
        bound: QueueBound,
        claim: Option<(&str, Duration)>,
    ) -> Result<Taken, StoreError> {
        check_new(&new, &bound)?;
        let scope = new.id.scope()?;
        let key = new.idempotency_key.clone().unwrap_or_default();
        let (status, existing, items, bytes): (String, String, u64, u64) = self
            .scripts
            .submit
            .key(record_key(&scope, &new.id))
            .key(skey(&scope, "q/"))
            .key(skey(&scope, "s/"))
            .key(idempotency_key(&scope, &key))
            .key(skey(&scope, "r/"))
            .arg(new.input.as_slice())
            .arg(new.metadata.as_slice())
            .arg(key.as_str())
            .arg(bound.max_items)
            .arg(bound.max_bytes)
            .arg(if new.idempotency_key.is_some() {
                "1"
            } else {
                "0"
            })
            .arg(new.id.as_str())
            .arg(claim.map_or("", |(replica, _)| replica))
            .arg(claim.map_or(0, |(_, lease)| lease.as_millis() as u64))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(sent)?;
        match status.as_str() {
            "ok" => Ok(Taken::Claimed {
                fence: u64::from(claim.is_some()),
            }),
            "dup" => Ok(Taken::Duplicate(InvocationId(existing))),
            "full" => Err(StoreError::QueueFull {
                agent: agent_name(&scope),
                items,
                bytes,
                max_items: bound.max_items,
                max_bytes: bound.max_bytes,
            }),
            other => Err(backend(format!("unexpected submit reply {other:?}"))),
        }
    }

    fn retention_ms(&self) -> u64 {
        self.retention.as_millis().max(1) as u64
    }
}

#[async_trait::async_trait]
impl KeyValueBackend for RedisStore {
    async fn read(
        &self,
        scope: &Scope,
        bucket: &str,
        name: &str,
    ) -> Result<Versioned, KeyValueError> {
        // Two GETs, not MGET: MGET is refused across keys on a Cluster
        // client even when they share a slot.
        let mut pipe = ::redis::pipe();
        pipe.get(data_key(scope, bucket, name))
            .get(version_key(scope, bucket, name));
        let (value, version): (Option<Vec<u8>>, Option<u64>) = pipe
            .query_async(&mut self.conn.clone())
            .await
            .map_err(kv_backend)?;
        Ok(Versioned {
            value,
            version: version.unwrap_or(0),
        })
    }

    async fn usage(&self, scope: &Scope) -> Result<u64, KeyValueError> {
        let usage: Option<u64> = ::redis::cmd("GET")
            .arg(usage_key(scope))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(kv_backend)?;
        Ok(usage.unwrap_or(0))
    }

    async fn keys(&self, scope: &Scope, bucket: &str) -> Result<Vec<String>, KeyValueError> {
        let mut keys: Vec<String> = ::redis::cmd("SMEMBERS")
            .arg(bucket_key(scope, bucket))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(kv_backend)?;
        keys.sort();
        Ok(keys)
    }

    async fn commit(&self, scope: &Scope, changes: Changes) -> Result<(), KeyValueError> {
        let mut invocation = self.scripts.kv_commit.prepare_invoke();
        let args = KeyValueArgs::push(&mut invocation, scope, &changes);
        let (status, detail): (String, i64) = invocation
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(|e| {
                // Sent but unanswered: Redis may have run the script.
                if e.is_timeout() || e.is_connection_dropped() || e.is_io_error() {
                    KeyValueError::Unknown(format!("redis: {e}"))
                } else {
                    kv_backend(e)
                }
            })?;
        args.outcome(&status, detail)
    }
}

#[async_trait::async_trait]
impl StateStore for RedisStore {
    fn kv(&self) -> Arc<dyn KeyValueBackend> {
        Arc::new(Self {
            conn: self.conn.clone(),
            scripts: self.scripts.clone(),
            retention: self.retention,
        })
    }

    async fn submit(&self, new: NewInvocation, bound: QueueBound) -> Result<Submitted, StoreError> {
        Ok(match self.submit_as(new, bound, None).await? {
            Taken::Duplicate(id) => Submitted::Duplicate(id),
            Taken::Claimed { .. } => Submitted::Accepted,
        })
    }

    async fn submit_claimed(
        &self,
        new: NewInvocation,
        bound: QueueBound,
        replica: &str,
        lease: Duration,
    ) -> Result<Taken, StoreError> {
        self.submit_as(new, bound, Some((replica, lease))).await
    }

    async fn claim(
        &self,
        scope: &Scope,
        replica: &str,
        lease: Duration,
    ) -> Result<Option<Claim>, StoreError> {
        type Reply = Option<(String, Vec<u8>, Vec<u8>, u32, u64, i64)>;
        let reply: Reply = self
            .scripts
            .claim
            .key(skey(scope, "q/"))
            .key(skey(scope, "r/"))
            .arg(replica)
            .arg(lease.as_millis() as u64)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(sent)?;
        Ok(
            reply.map(|(id, input, metadata, attempt, fence, reclaimed)| Claim {
                id: InvocationId(id),
                input,
                metadata,
                attempt,
                fence,
                reclaimed: reclaimed == 1,
            }),
        )
    }

    async fn renew(
        &self,
        id: &InvocationId,
        fence: u64,
        lease: Duration,
    ) -> Result<Result<(), Fenced>, StoreError> {
        let scope = id.scope()?;
        let ok: i64 = self
            .scripts
            .renew
            .key(record_key(&scope, id))
            .key(skey(&scope, "r/"))
            .arg(fence)
            .arg(lease.as_millis() as u64)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(sent)?;
        Ok(if ok == 1 { Ok(()) } else { Err(Fenced) })
    }

    async fn complete(
        &self,
        id: &InvocationId,
        fence: u64,
        outcome: Outcome,
        kv: Option<(Scope, Changes)>,
    ) -> Result<Completed, StoreError> {
        check_result(&outcome)?;
        let scope = check_kv_scope(id, &kv)?;
        let mut invocation = self.scripts.complete.prepare_invoke();
        invocation
            .key(record_key(&scope, id))
            .key(skey(&scope, "r/"))
            .key(skey(&scope, "s/"))
            .arg(fence)
            .arg(outcome.state.as_str())
            .arg(outcome.result.as_slice())
            .arg(self.retention_ms())
            .arg(if kv.is_some() { "1" } else { "0" });
        let args = kv
            .as_ref()
            .map(|(kv_scope, changes)| KeyValueArgs::push(&mut invocation, kv_scope, changes));
        let (status, detail): (String, i64) = invocation
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(sent)?;
        match (status.as_str(), args) {
            ("ok", _) => Ok(Completed::Completed),
            ("fenced", _) => Ok(Completed::Fenced),
            (_, Some(args)) => match args.outcome(&status, detail) {
                Err(
                    refused @ (KeyValueError::Conflict { .. }
                    | KeyValueError::Quota { .. }
                    | KeyValueError::NotCounter { .. }),
                ) => Ok(Completed::KeyValueConflict(refused)),
                Err(e) => Err(e.into()),
                Ok(()) => Err(backend(
                    "complete: key-value check passed but the script did not complete",
                )),
            },
            (other, None) => Err(backend(format!("unexpected complete reply {other:?}"))),
        }
    }

    async fn release(
        &self,
        id: &InvocationId,
        fence: u64,
    ) -> Result<Result<(), Fenced>, StoreError> {
        let scope = id.scope()?;
        let ok: i64 = self
            .scripts
            .release
            .key(record_key(&scope, id))
            .key(skey(&scope, "r/"))
            .key(skey(&scope, "q/"))
            .arg(fence)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(sent)?;
        Ok(if ok == 1 { Ok(()) } else { Err(Fenced) })
    }

    async fn get(&self, id: &InvocationId) -> Result<Option<Record>, StoreError> {
        let scope = id.scope()?;
        let fields: Vec<Option<Vec<u8>>> = ::redis::cmd("HMGET")
            .arg(record_key(&scope, id))
            .arg(&[
                "state", "input", "meta", "idem", "hasidem", "created", "attempts", "result",
            ])
            .query_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        let mut f = fields.into_iter();
        let mut next = || f.next().flatten();
        let Some(state) = next() else { return Ok(None) };
        let text =
            |b: Option<Vec<u8>>| String::from_utf8_lossy(&b.unwrap_or_default()).into_owned();
        let state = State::parse(&text(Some(state)))?;
        let (input, metadata, idem, has_idem) = (next(), next(), next(), next());
        let created = text(next()).parse().map_err(backend)?;
        let attempts = serde_json::from_slice(&next().unwrap_or_else(|| b"[]".to_vec()))
            .or_else(|_| Ok::<_, serde_json::Error>(Vec::new()))
            .map_err(backend)?;
        Ok(Some(Record {
            id: id.clone(),
            state,
            input: input.unwrap_or_default(),
            metadata: metadata.unwrap_or_default(),
            idempotency_key: (has_idem.as_deref() == Some(b"1")).then(|| text(idem)),
            created_ms: created,
            attempts,
            result: next(),
        }))
    }

    async fn cancel(&self, id: &InvocationId) -> Result<Cancelled, StoreError> {
        let scope = id.scope()?;
        let (status, state): (String, String) = self
            .scripts
            .cancel
            .key(record_key(&scope, id))
            .key(skey(&scope, "r/"))
            .key(skey(&scope, "q/"))
            .key(skey(&scope, "s/"))
            .arg(self.retention_ms())
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(sent)?;
        Ok(match status.as_str() {
            "notfound" => Cancelled::NotFound,
            "ended" => Cancelled::AlreadyEnded(State::parse(&state)?),
            _ => Cancelled::Cancelled(State::parse(&state)?),
        })
    }

    async fn depth(&self, scope: &Scope) -> Result<Depth, StoreError> {
        let mut pipe = ::redis::pipe();
        pipe.zcard(skey(scope, "q/"))
            .zcard(skey(scope, "r/"))
            .hget(skey(scope, "s/"), "b");
        let (queued, running, bytes): (u64, u64, Option<u64>) = pipe
            .query_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        Ok(Depth {
            queued,
            running,
            bytes: bytes.unwrap_or(0),
        })
    }

    async fn reserve(
        &self,
        scope: &Scope,
        prompt: u64,
        completion: u64,
        per_minute: u64,
    ) -> Result<Result<Hold, BudgetRefused>, StoreError> {
        let hold = uuid::Uuid::new_v4().simple().to_string();
        let (status, a, b): (String, u64, u64) = self
            .scripts
            .reserve
            .key(skey(scope, "bu/"))
            .key(skey(scope, "bh/"))
            .arg(prompt)
            .arg(completion)
            .arg(per_minute)
            .arg(&hold)
            .arg(MAX_HOLD.as_millis() as u64)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(sent)?;
        Ok(match status.as_str() {
            "ok" => Ok(Hold {
                id: hold,
                tokens: a,
            }),
            _ => Err(BudgetRefused {
                committed: a,
                per_minute,
                prompt,
                retry_after: Duration::from_millis(b),
            }),
        })
    }

    async fn settle(&self, scope: &Scope, hold: &Hold, used: u64) -> Result<(), StoreError> {
        let _: i64 = self
            .scripts
            .settle
            .key(skey(scope, "bu/"))
            .key(skey(scope, "bh/"))
            .arg(&hold.id)
            .arg(hold.tokens)
            .arg(used)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(sent)?;
        Ok(())
    }
}
