//! The embedded state store: tables in the same redb file (and the same open
//! [`Database`]) as the key-value data, so `complete` applies the key-value
//! changes and writes the result in one redb write transaction, fsynced
//! before it returns. One host opens the file (redb locks it), so the shared
//! token budget is kept in that host's memory.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use super::*;
use crate::cap::key_value::redb_store::{self, encode, scope_key, RedbBackend};

/// Id → the record's small fields (JSON [`Meta`]).
const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("invocations");
/// Id → input.
const INPUTS: TableDefinition<&str, &[u8]> = TableDefinition::new("invocation_inputs");
/// Id → metadata.
const METADATA: TableDefinition<&str, &[u8]> = TableDefinition::new("invocation_metadata");
/// Id → result.
const RESULTS: TableDefinition<&str, &[u8]> = TableDefinition::new("invocation_results");
/// Scope ++ sequence number (big-endian) → id: each agent's queue, oldest first.
const QUEUE: TableDefinition<&[u8], &str> = TableDefinition::new("queue");
/// Scope ++ id → lease deadline (ms): running invocations.
const RUNNING: TableDefinition<&[u8], u64> = TableDefinition::new("running");
/// Encoded (scope, key) → id.
const IDEMPOTENCY: TableDefinition<&[u8], &str> = TableDefinition::new("idempotency");
/// Scope → (items, bytes) queued or running.
const QUEUE_STATS: TableDefinition<&[u8], (u64, u64)> = TableDefinition::new("queue_stats");
/// Scope → last sequence number handed out.
const SEQUENCE: TableDefinition<&[u8], u64> = TableDefinition::new("queue_sequence");
/// End time (ms, big-endian) ++ id → (): ended records, for removal after the retention.
const ENDED: TableDefinition<&[u8], ()> = TableDefinition::new("ended");

/// Ended records removed per write, so one write never does unbounded work.
const PURGE_BATCH: usize = 64;

#[derive(serde::Serialize, serde::Deserialize)]
struct Meta {
    state: State,
    idempotency_key: Option<String>,
    created_ms: u64,
    attempts: Vec<Attempt>,
    fence: u64,
    seq: u64,
    bytes: u64,
}

/// The embedded store.
pub struct RedbStore {
    db: Arc<Database>,
    kv: Arc<RedbBackend>,
    retention: Duration,
    budgets: Mutex<HashMap<Scope, Window>>,
}

#[derive(Default)]
struct Window {
    used: VecDeque<(u64, u64)>,
    held: HashMap<String, (u64, u64)>,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("redb: {e}"))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn cat(a: &[u8], b: &[u8]) -> Vec<u8> {
    [a, b].concat()
}

/// Whether a write transaction is committed or dropped (nothing applied).
enum Step<T> {
    Commit(T),
    Abort(T),
}

impl RedbStore {
    /// Opens the store on the key-value backend's database (`kv.redb` under
    /// the state dir), creating its tables.
    pub fn open(kv: Arc<RedbBackend>, retention: Duration) -> Result<Self, StoreError> {
        let db = kv.database();
        let txn = db.begin_write().map_err(backend)?;
        {
            txn.open_table(RECORDS).map_err(backend)?;
            txn.open_table(INPUTS).map_err(backend)?;
            txn.open_table(METADATA).map_err(backend)?;
            txn.open_table(RESULTS).map_err(backend)?;
            txn.open_table(QUEUE).map_err(backend)?;
            txn.open_table(RUNNING).map_err(backend)?;
            txn.open_table(IDEMPOTENCY).map_err(backend)?;
            txn.open_table(QUEUE_STATS).map_err(backend)?;
            txn.open_table(SEQUENCE).map_err(backend)?;
            txn.open_table(ENDED).map_err(backend)?;
        }
        txn.commit().map_err(backend)?;
        Ok(Self {
            db,
            kv,
            retention,
            budgets: Mutex::default(),
        })
    }

    /// Runs `f` in a write transaction on the blocking pool; commits unless
    /// it says abort or fails. A commit that is not `durable` skips the fsync
    /// (the next durable one persists it): for claims, renewals and releases,
    /// whose loss in a crash only puts work back in its earlier state — and
    /// the host that held it died with the store, so no stale owner remains.
    async fn write<T: Send + 'static>(
        &self,
        durable: bool,
        f: impl FnOnce(&WriteTransaction, u64) -> Result<Step<T>, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        let retention = self.retention.as_millis() as u64;
        tokio::task::spawn_blocking(move || {
            let mut txn = db.begin_write().map_err(backend)?;
            if !durable {
                txn.set_durability(::redb::Durability::None)
                    .map_err(backend)?;
            }
            let now = now_ms();
            purge(&txn, now.saturating_sub(retention))?;
            match f(&txn, now)? {
                Step::Commit(t) => {
                    txn.commit().map_err(backend)?;
                    Ok(t)
                }
                Step::Abort(t) => Ok(t),
            }
        })
        .await
        .map_err(|e| backend(format!("task: {e}")))?
    }

    /// Submits `new`, queued, or claimed by `claim` (replica, lease ms).
    async fn submit_as(
        &self,
        new: NewInvocation,
        bound: QueueBound,
        claim: Option<(String, u64)>,
    ) -> Result<Taken, StoreError> {
        check_new(&new, &bound)?;
        self.write(true, move |txn, now| {
            let scope = new.id.scope()?;
            let sk = scope_key(&scope);
            if let Some(key) = &new.idempotency_key {
                let idem = txn.open_table(IDEMPOTENCY).map_err(backend)?;
                let ik = encode(&[&scope.namespace, &scope.agent, key]);
                let existing = idem
                    .get(ik.as_slice())
                    .map_err(backend)?
                    .map(|v| v.value().to_string());
                if let Some(id) = existing {
                    return Ok(Step::Abort(Taken::Duplicate(InvocationId(id))));
                }
            }
            let bytes = (new.input.len() + new.metadata.len()) as u64;
            let (items, held) = add_stats(txn, &sk, 1, bytes as i64)?;
            if items > bound.max_items || held > bound.max_bytes {
                return Err(StoreError::QueueFull {
                    agent: agent_name(&scope),
                    items: items - 1,
                    bytes: held - bytes,
                    max_items: bound.max_items,
                    max_bytes: bound.max_bytes,
                });
            }
            let seq = {
                let mut seqs = txn.open_table(SEQUENCE).map_err(backend)?;
                let seq = seqs
                    .get(sk.as_slice())
                    .map_err(backend)?
                    .map_or(0, |v| v.value())
                    + 1;
                seqs.insert(sk.as_slice(), seq).map_err(backend)?;
                seq
            };
            let id = new.id.as_str();
            let (state, fence, attempts) = match &claim {
                None => (State::Queued, 0, vec![]),
                Some((replica, _)) => {
                    let attempt = Attempt {
                        replica: replica.clone(),
                        started_ms: now,
                        end: None,
                    };
                    (State::Running, 1, vec![attempt])
                }
            };
            put_meta(
                txn,
                id,
                &Meta {
                    state,
                    idempotency_key: new.idempotency_key.clone(),
                    created_ms: now,
                    attempts,
                    fence,
                    seq,
                    bytes,
                },
            )?;
            txn.open_table(INPUTS)
                .map_err(backend)?
                .insert(id, new.input.as_slice())
                .map_err(backend)?;
            txn.open_table(METADATA)
                .map_err(backend)?
                .insert(id, new.metadata.as_slice())
                .map_err(backend)?;
            match &claim {
                None => {
                    txn.open_table(QUEUE)
                        .map_err(backend)?
                        .insert(cat(&sk, &seq.to_be_bytes()).as_slice(), id)
                        .map_err(backend)?;
                }
                Some((_, lease)) => {
                    txn.open_table(RUNNING)
                        .map_err(backend)?
                        .insert(cat(&sk, id.as_bytes()).as_slice(), now + lease)
                        .map_err(backend)?;
                }
            }
            if let Some(key) = &new.idempotency_key {
                let ik = encode(&[&scope.namespace, &scope.agent, key]);
                txn.open_table(IDEMPOTENCY)
                    .map_err(backend)?
                    .insert(ik.as_slice(), id)
                    .map_err(backend)?;
            }
            Ok(Step::Commit(Taken::Claimed { fence }))
        })
        .await
    }

    /// Expires the lease of every running invocation; how many. For a host
    /// starting on the database: redb's file lock means no other process
    /// holds it, so every running invocation was its previous life's, dead,
    /// and the next claims take them over at once instead of after the lease.
    pub async fn expire_leases(&self) -> Result<u64, StoreError> {
        self.write(true, |txn, _| {
            let mut running = txn.open_table(RUNNING).map_err(backend)?;
            let held: Vec<Vec<u8>> = running
                .iter()
                .map_err(backend)?
                .map(|e| e.map(|(k, _)| k.value().to_vec()).map_err(backend))
                .collect::<Result<_, _>>()?;
            for key in &held {
                running.insert(key.as_slice(), 0).map_err(backend)?;
            }
            Ok(Step::Commit(held.len() as u64))
        })
        .await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Scope, Window>> {
        self.budgets.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn get_meta(txn: &WriteTransaction, id: &str) -> Result<Option<Meta>, StoreError> {
    let records = txn.open_table(RECORDS).map_err(backend)?;
    let meta = records.get(id).map_err(backend)?;
    meta.map(|m| serde_json::from_slice(m.value()).map_err(backend))
        .transpose()
}

fn put_meta(txn: &WriteTransaction, id: &str, meta: &Meta) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(meta).map_err(backend)?;
    let mut records = txn.open_table(RECORDS).map_err(backend)?;
    records.insert(id, bytes.as_slice()).map_err(backend)?;
    Ok(())
}

fn add_stats(
    txn: &WriteTransaction,
    sk: &[u8],
    items: i64,
    bytes: i64,
) -> Result<(u64, u64), StoreError> {
    let mut stats = txn.open_table(QUEUE_STATS).map_err(backend)?;
    let (n, b) = stats
        .get(sk)
        .map_err(backend)?
        .map_or((0, 0), |v| v.value());
    let next = (
        (n as i64 + items).max(0) as u64,
        (b as i64 + bytes).max(0) as u64,
    );
    stats.insert(sk, next).map_err(backend)?;
    Ok(next)
}

/// Ends `meta`'s invocation: counted out of the queue, listed for removal.
fn end(
    txn: &WriteTransaction,
    id: &str,
    sk: &[u8],
    meta: &Meta,
    now: u64,
) -> Result<(), StoreError> {
    add_stats(txn, sk, -1, -(meta.bytes as i64))?;
    let mut ended = txn.open_table(ENDED).map_err(backend)?;
    ended
        .insert(cat(&now.to_be_bytes(), id.as_bytes()).as_slice(), ())
        .map_err(backend)?;
    Ok(())
}

/// Removes up to [`PURGE_BATCH`] records that ended before `cutoff`.
fn purge(txn: &WriteTransaction, cutoff: u64) -> Result<(), StoreError> {
    let mut ended = txn.open_table(ENDED).map_err(backend)?;
    let old: Vec<Vec<u8>> = ended
        .range(..cutoff.to_be_bytes().as_slice())
        .map_err(backend)?
        .take(PURGE_BATCH)
        .map(|e| e.map(|(k, _)| k.value().to_vec()).map_err(backend))
        .collect::<Result<_, _>>()?;
    for key in old {
        ended.remove(key.as_slice()).map_err(backend)?;
        let id = String::from_utf8_lossy(&key[8..]).into_owned();
        let Some(meta) = get_meta(txn, &id)? else {
            continue;
        };
        if let (Some(k), Ok(scope)) = (&meta.idempotency_key, InvocationId(id.clone()).scope()) {
            let mut idem = txn.open_table(IDEMPOTENCY).map_err(backend)?;
            idem.remove(encode(&[&scope.namespace, &scope.agent, k]).as_slice())
                .map_err(backend)?;
        }
        for table in [RECORDS, INPUTS, METADATA, RESULTS] {
            txn.open_table(table)
                .map_err(backend)?
                .remove(id.as_str())
                .map_err(backend)?;
        }
    }
    Ok(())
}

fn bytes_of(
    txn: &WriteTransaction,
    table: TableDefinition<&str, &[u8]>,
    id: &str,
) -> Result<Vec<u8>, StoreError> {
    let t = txn.open_table(table).map_err(backend)?;
    let v = t.get(id).map_err(backend)?;
    Ok(v.map(|v| v.value().to_vec()).unwrap_or_default())
}

/// The running invocation `id` if `fence` is its current token.
fn fenced_meta(
    txn: &WriteTransaction,
    id: &InvocationId,
    fence: u64,
) -> Result<Option<Meta>, StoreError> {
    Ok(get_meta(txn, id.as_str())?.filter(|m| m.state == State::Running && m.fence == fence))
}

fn claim(
    txn: &WriteTransaction,
    scope: &Scope,
    replica: &str,
    lease: u64,
    now: u64,
) -> Result<Option<Claim>, StoreError> {
    let sk = scope_key(scope);
    let mut running = txn.open_table(RUNNING).map_err(backend)?;
    let mut expired = None;
    for entry in running.range(sk.as_slice()..).map_err(backend)? {
        let (k, deadline) = entry.map_err(backend)?;
        let Some(id) = k.value().strip_prefix(sk.as_slice()) else {
            break;
        };
        if deadline.value() <= now {
            expired = Some(String::from_utf8_lossy(id).into_owned());
            break;
        }
    }
    let (id, reclaimed) = match expired {
        Some(id) => (id, true),
        None => {
            let mut queue = txn.open_table(QUEUE).map_err(backend)?;
            let first = queue
                .range(sk.as_slice()..)
                .map_err(backend)?
                .next()
                .transpose()
                .map_err(backend)?
                .filter(|(k, _)| k.value().starts_with(&sk))
                .map(|(k, v)| (k.value().to_vec(), v.value().to_string()));
            let Some((key, id)) = first else {
                return Ok(None);
            };
            queue.remove(key.as_slice()).map_err(backend)?;
            (id, false)
        }
    };
    let mut meta =
        get_meta(txn, &id)?.ok_or_else(|| backend(format!("queued {id} has no record")))?;
    if reclaimed {
        if let Some(last) = meta.attempts.last_mut() {
            last.end = Some("leaseExpired".into());
        }
    }
    meta.fence += 1;
    meta.state = State::Running;
    meta.attempts.push(Attempt {
        replica: replica.to_string(),
        started_ms: now,
        end: None,
    });
    running
        .insert(cat(&sk, id.as_bytes()).as_slice(), now + lease)
        .map_err(backend)?;
    put_meta(txn, &id, &meta)?;
    Ok(Some(Claim {
        input: bytes_of(txn, INPUTS, &id)?,
        metadata: bytes_of(txn, METADATA, &id)?,
        id: InvocationId(id),
        attempt: meta.attempts.len() as u32,
        fence: meta.fence,
        reclaimed,
    }))
}

/// Whether the agent has anything to claim (a read, so idle polling costs
/// no write or fsync).
fn claimable(db: &Database, scope: &Scope, now: u64) -> Result<bool, StoreError> {
    let sk = scope_key(scope);
    let txn = db.begin_read().map_err(backend)?;
    let queue = txn.open_table(QUEUE).map_err(backend)?;
    if let Some(first) = queue.range(sk.as_slice()..).map_err(backend)?.next() {
        if first.map_err(backend)?.0.value().starts_with(&sk) {
            return Ok(true);
        }
    }
    let running = txn.open_table(RUNNING).map_err(backend)?;
    for entry in running.range(sk.as_slice()..).map_err(backend)? {
        let (k, deadline) = entry.map_err(backend)?;
        if !k.value().starts_with(&sk) {
            break;
        }
        if deadline.value() <= now {
            return Ok(true);
        }
    }
    Ok(false)
}

#[async_trait::async_trait]
impl StateStore for RedbStore {
    fn kv(&self) -> Arc<dyn KeyValueBackend> {
        self.kv.clone()
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
        let claim = (replica.to_string(), lease.as_millis() as u64);
        self.submit_as(new, bound, Some(claim)).await
    }

    async fn claim(
        &self,
        scope: &Scope,
        replica: &str,
        lease: Duration,
    ) -> Result<Option<Claim>, StoreError> {
        let (db, s) = (self.db.clone(), scope.clone());
        let any = tokio::task::spawn_blocking(move || claimable(&db, &s, now_ms()))
            .await
            .map_err(|e| backend(format!("task: {e}")))??;
        if !any {
            return Ok(None);
        }
        let (scope, replica) = (scope.clone(), replica.to_string());
        let lease = lease.as_millis() as u64;
        self.write(false, move |txn, now| {
            claim(txn, &scope, &replica, lease, now).map(Step::Commit)
        })
        .await
    }

    async fn renew(
        &self,
        id: &InvocationId,
        fence: u64,
        lease: Duration,
    ) -> Result<Result<(), Fenced>, StoreError> {
        let id = id.clone();
        let lease = lease.as_millis() as u64;
        self.write(false, move |txn, now| {
            if fenced_meta(txn, &id, fence)?.is_none() {
                return Ok(Step::Abort(Err(Fenced)));
            }
            let sk = scope_key(&id.scope()?);
            let mut running = txn.open_table(RUNNING).map_err(backend)?;
            running
                .insert(cat(&sk, id.as_str().as_bytes()).as_slice(), now + lease)
                .map_err(backend)?;
            Ok(Step::Commit(Ok(())))
        })
        .await
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
        let id = id.clone();
        self.write(true, move |txn, now| {
            let Some(mut meta) = fenced_meta(txn, &id, fence)? else {
                return Ok(Step::Abort(Completed::Fenced));
            };
            if let Some((kv_scope, changes)) = &kv {
                match redb_store::apply(txn, kv_scope, changes) {
                    Ok(()) => {}
                    Err(e @ (KeyValueError::Backend(_) | KeyValueError::Unknown(_))) => {
                        return Err(e.into())
                    }
                    Err(refused) => return Ok(Step::Abort(Completed::KeyValueConflict(refused))),
                }
            }
            let sk = scope_key(&scope);
            meta.state = outcome.state;
            if let Some(last) = meta.attempts.last_mut() {
                last.end = Some(outcome.state.as_str().into());
            }
            put_meta(txn, id.as_str(), &meta)?;
            txn.open_table(RESULTS)
                .map_err(backend)?
                .insert(id.as_str(), outcome.result.as_slice())
                .map_err(backend)?;
            txn.open_table(RUNNING)
                .map_err(backend)?
                .remove(cat(&sk, id.as_str().as_bytes()).as_slice())
                .map_err(backend)?;
            end(txn, id.as_str(), &sk, &meta, now)?;
            Ok(Step::Commit(Completed::Completed))
        })
        .await
    }

    async fn release(
        &self,
        id: &InvocationId,
        fence: u64,
    ) -> Result<Result<(), Fenced>, StoreError> {
        let id = id.clone();
        self.write(false, move |txn, _| {
            let Some(mut meta) = fenced_meta(txn, &id, fence)? else {
                return Ok(Step::Abort(Err(Fenced)));
            };
            let sk = scope_key(&id.scope()?);
            // The releaser hands the work over: its token is spent.
            meta.fence += 1;
            meta.state = State::Queued;
            if let Some(last) = meta.attempts.last_mut() {
                last.end = Some("released".into());
            }
            put_meta(txn, id.as_str(), &meta)?;
            txn.open_table(RUNNING)
                .map_err(backend)?
                .remove(cat(&sk, id.as_str().as_bytes()).as_slice())
                .map_err(backend)?;
            txn.open_table(QUEUE)
                .map_err(backend)?
                .insert(cat(&sk, &meta.seq.to_be_bytes()).as_slice(), id.as_str())
                .map_err(backend)?;
            Ok(Step::Commit(Ok(())))
        })
        .await
    }

    async fn get(&self, id: &InvocationId) -> Result<Option<Record>, StoreError> {
        id.scope()?;
        let (db, id) = (self.db.clone(), id.clone());
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(backend)?;
            let get = |table: TableDefinition<&str, &[u8]>| -> Result<Option<Vec<u8>>, StoreError> {
                let t = txn.open_table(table).map_err(backend)?;
                let v = t.get(id.as_str()).map_err(backend)?;
                Ok(v.map(|v| v.value().to_vec()))
            };
            let Some(meta) = get(RECORDS)? else {
                return Ok(None);
            };
            let meta: Meta = serde_json::from_slice(&meta).map_err(backend)?;
            Ok(Some(Record {
                state: meta.state,
                input: get(INPUTS)?.unwrap_or_default(),
                metadata: get(METADATA)?.unwrap_or_default(),
                idempotency_key: meta.idempotency_key,
                created_ms: meta.created_ms,
                attempts: meta.attempts,
                result: get(RESULTS)?,
                id,
            }))
        })
        .await
        .map_err(|e| backend(format!("task: {e}")))?
    }

    async fn cancel(&self, id: &InvocationId) -> Result<Cancelled, StoreError> {
        let sk = scope_key(&id.scope()?);
        let id = id.clone();
        self.write(true, move |txn, now| {
            let Some(mut meta) = get_meta(txn, id.as_str())? else {
                return Ok(Step::Abort(Cancelled::NotFound));
            };
            let was = meta.state;
            match was {
                s if s.is_end() => return Ok(Step::Abort(Cancelled::AlreadyEnded(s))),
                State::Queued => {
                    let mut queue = txn.open_table(QUEUE).map_err(backend)?;
                    queue
                        .remove(cat(&sk, &meta.seq.to_be_bytes()).as_slice())
                        .map_err(backend)?;
                }
                _ => {
                    let mut running = txn.open_table(RUNNING).map_err(backend)?;
                    running
                        .remove(cat(&sk, id.as_str().as_bytes()).as_slice())
                        .map_err(backend)?;
                    if let Some(last) = meta.attempts.last_mut() {
                        last.end = Some("cancelled".into());
                    }
                }
            }
            // The running attempt's token is spent: its commit is refused.
            meta.fence += 1;
            meta.state = State::Cancelled;
            put_meta(txn, id.as_str(), &meta)?;
            end(txn, id.as_str(), &sk, &meta, now)?;
            Ok(Step::Commit(Cancelled::Cancelled(was)))
        })
        .await
    }

    async fn depth(&self, scope: &Scope) -> Result<Depth, StoreError> {
        let (db, sk) = (self.db.clone(), scope_key(scope));
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(backend)?;
            let count = |n: &mut u64, k: &[u8]| k.starts_with(&sk).then(|| *n += 1).is_some();
            let mut queued = 0;
            let queue = txn.open_table(QUEUE).map_err(backend)?;
            for entry in queue.range(sk.as_slice()..).map_err(backend)? {
                if !count(&mut queued, entry.map_err(backend)?.0.value()) {
                    break;
                }
            }
            let mut running = 0;
            let table = txn.open_table(RUNNING).map_err(backend)?;
            for entry in table.range(sk.as_slice()..).map_err(backend)? {
                if !count(&mut running, entry.map_err(backend)?.0.value()) {
                    break;
                }
            }
            let stats = txn.open_table(QUEUE_STATS).map_err(backend)?;
            let bytes = stats
                .get(sk.as_slice())
                .map_err(backend)?
                .map_or(0, |v| v.value().1);
            Ok(Depth {
                queued,
                running,
                bytes,
            })
        })
        .await
        .map_err(|e| backend(format!("task: {e}")))?
    }

    async fn reserve(
        &self,
        scope: &Scope,
        prompt: u64,
        completion: u64,
        per_minute: u64,
    ) -> Result<Result<Hold, BudgetRefused>, StoreError> {
        let now = now_ms();
        let mut budgets = self.lock();
        let window = budgets.entry(scope.clone()).or_default();
        let hold_cutoff = now.saturating_sub(MAX_HOLD.as_millis() as u64);
        window.held.retain(|_, (at, _)| *at > hold_cutoff);
        while window
            .used
            .front()
            .is_some_and(|(at, _)| *at + 60_000 <= now)
        {
            window.used.pop_front();
        }
        let used: u64 = window.used.iter().map(|(_, n)| n).sum();
        let committed = used + window.held.values().map(|(_, n)| n).sum::<u64>();
        let room = per_minute.saturating_sub(committed);
        if room <= prompt {
            // Until enough used tokens leave the window for room > prompt.
            let need = committed + prompt + 1 - per_minute;
            let mut freed = 0;
            let mut retry = Duration::from_secs(60);
            for (at, n) in &window.used {
                freed += n;
                if freed >= need {
                    retry = Duration::from_millis((at + 60_000).saturating_sub(now));
                    break;
                }
            }
            return Ok(Err(BudgetRefused {
                committed,
                per_minute,
                prompt,
                retry_after: retry,
            }));
        }
        let tokens = prompt + completion.min(room - prompt);
        let id = uuid::Uuid::new_v4().simple().to_string();
        window.held.insert(id.clone(), (now, tokens));
        Ok(Ok(Hold { id, tokens }))
    }

    async fn settle(&self, scope: &Scope, hold: &Hold, used: u64) -> Result<(), StoreError> {
        let mut budgets = self.lock();
        let window = budgets.entry(scope.clone()).or_default();
        window.held.remove(&hold.id);
        if used > 0 {
            window.used.push_back((now_ms(), used));
        }
        Ok(())
    }
}
