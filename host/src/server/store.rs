//! What the server remembers between requests, bounded in count, bytes and
//! time: invocations whose result may still be fetched
//! (`GET /v1/invocations/{id}`) and idempotency keys with the invocation each
//! one started.
//!
//! Result bodies are the only large thing remembered, so they have a byte
//! budget: past it the oldest ended bodies are dropped (the invocation then
//! answers `410 ResultEvicted` with its final state, so a retried key still
//! never runs the agent twice). A body is held once, in its invocation's
//! [`Phase::Done`], however many readers or keys point at the invocation.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use tokio::sync::watch;

/// Where an invocation is.
#[derive(Clone, Debug)]
pub enum Phase {
    /// Accepted, waiting for a concurrency slot.
    Queued,
    /// Running in an instance.
    Running,
    /// Ended; the response every reader gets.
    Done(Arc<Finished>),
    /// Ended, but its body was dropped to stay within the byte budget: a small
    /// `410 ResultEvicted` response naming the final state.
    Evicted(Arc<Finished>),
}

impl Phase {
    /// The `state` field of the API.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Queued => "queued",
            Phase::Running => "running",
            Phase::Done(f) | Phase::Evicted(f) => f.state,
        }
    }
}

/// The response of an ended invocation, serialised once.
#[derive(Debug)]
pub struct Finished {
    /// HTTP status of the synchronous response.
    pub status: StatusCode,
    /// `succeeded`, `failed` or `cancelled`.
    pub state: &'static str,
    /// JSON body.
    pub body: Bytes,
}

/// One invocation the server is running or remembers.
#[derive(Debug)]
pub struct Tracked {
    /// Invocation id.
    pub id: String,
    /// Agent name.
    pub agent: String,
    phase: watch::Sender<Phase>,
    ended: OnceLock<Instant>,
}

impl Tracked {
    /// A queued invocation.
    pub fn new(id: String, agent: String) -> Arc<Self> {
        Arc::new(Self {
            id,
            agent,
            phase: watch::Sender::new(Phase::Queued),
            ended: OnceLock::new(),
        })
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase.borrow().clone()
    }

    /// Moves to a phase before the end; [`Store::publish`] ends it.
    pub fn set(&self, phase: Phase) {
        debug_assert!(matches!(phase, Phase::Queued | Phase::Running));
        self.phase.send_replace(phase);
    }

    /// Waits until the invocation has ended: its response, or the
    /// `ResultEvicted` one if its body was already dropped.
    pub async fn done(&self) -> Arc<Finished> {
        let mut rx = self.phase.subscribe();
        let phase = rx
            .wait_for(|p| matches!(p, Phase::Done(_) | Phase::Evicted(_)))
            .await
            .expect("the sender lives in self");
        match &*phase {
            Phase::Done(f) | Phase::Evicted(f) => f.clone(),
            _ => unreachable!("waited for the end"),
        }
    }

    fn end(&self, finished: Arc<Finished>) {
        let _ = self.ended.set(Instant::now());
        self.phase.send_replace(Phase::Done(finished));
    }

    /// Drops the body of an ended invocation; the bytes it held.
    fn evict(&self) -> u64 {
        let Phase::Done(f) = self.phase() else {
            return 0;
        };
        let message = format!(
            "invocation {} ended {} but its result was dropped to keep the host within --max-result-bytes; it will not run again (an Idempotency-Key retry gets this answer too)",
            self.id, f.state
        );
        let body = serde_json::json!({
            "id": self.id,
            "agent": self.agent,
            "state": f.state,
            "error": { "code": "ResultEvicted", "message": message },
        });
        self.phase.send_replace(Phase::Evicted(Arc::new(Finished {
            status: StatusCode::GONE,
            state: f.state,
            body: Bytes::from(body.to_string()),
        })));
        held_bytes(&f)
    }

    fn expired(&self, now: Instant, ttl: Duration) -> bool {
        self.ended
            .get()
            .is_some_and(|t| now.duration_since(*t) >= ttl)
    }
}

/// Bytes an ended result is charged: its body plus the bookkeeping around it
/// (ids, map and queue entries), so empty bodies are not free.
const ENTRY_OVERHEAD: u64 = 512;

fn held_bytes(f: &Finished) -> u64 {
    f.body.len() as u64 + ENTRY_OVERHEAD
}

/// An idempotency key's first request.
struct KeyEntry {
    fingerprint: [u8; 32],
    tracked: Arc<Tracked>,
    created: Instant,
}

/// Limits of the store.
#[derive(Clone, Copy, Debug)]
pub struct StoreLimits {
    /// How long an ended invocation's result stays retrievable.
    pub result_ttl: Duration,
    /// Most invocations remembered at once.
    pub max_results: usize,
    /// Most bytes of ended results' bodies held at once (the newest result is
    /// kept even if it alone is larger).
    pub max_result_bytes: u64,
    /// How long an idempotency key is remembered after its first request.
    pub idempotency_ttl: Duration,
    /// Most idempotency keys remembered at once.
    pub max_keys: usize,
}

/// Outcome of presenting an idempotency key.
pub enum KeyLookup {
    /// First use: the caller must start the invocation and call [`Store::bind_key`].
    New,
    /// A request with this key and the same body started this invocation.
    Replay(Arc<Tracked>),
    /// This key was used with a different body.
    Mismatch,
}

#[derive(Default)]
struct Inner {
    results: HashMap<String, Arc<Tracked>>,
    order: VecDeque<String>,
    /// Remembered invocations that ended, in the order they ended; entries
    /// whose body was already dropped are skipped (and compacted away).
    ended: VecDeque<Arc<Tracked>>,
    /// Bytes held by bodies of remembered ended invocations.
    held: u64,
    keys: HashMap<(String, String), KeyEntry>,
}

/// The server's memory of invocations and keys.
pub struct Store {
    inner: Mutex<Inner>,
    limits: StoreLimits,
}

/// The store is at its limit and nothing in it has expired.
#[derive(Debug)]
pub struct StoreFull;

impl Store {
    /// An empty store.
    pub fn new(limits: StoreLimits) -> Self {
        Self {
            inner: Mutex::default(),
            limits,
        }
    }

    /// Runs `f` with the store locked: key lookup and binding happen atomically,
    /// so two concurrent requests with one key start one invocation.
    pub fn with_lock<R>(&self, f: impl FnOnce(&mut Locked<'_>) -> R) -> R {
        let mut inner = self.inner.lock().expect("store lock");
        f(&mut Locked {
            inner: &mut inner,
            limits: self.limits,
        })
    }

    /// The remembered invocation `id`.
    pub fn get(&self, id: &str) -> Option<Arc<Tracked>> {
        let inner = self.inner.lock().expect("store lock");
        inner
            .results
            .get(id)
            .filter(|t| !t.expired(Instant::now(), self.limits.result_ttl))
            .cloned()
    }

    /// Drops expired results and keys.
    pub fn purge(&self) {
        self.with_lock(|l| l.purge(Instant::now()));
    }

    /// Ends `tracked` with `finished`. If the store remembers it, its body is
    /// charged to the byte budget and the oldest other ended bodies are
    /// dropped until the budget holds.
    pub fn publish(&self, tracked: &Arc<Tracked>, finished: Finished) {
        let finished = Arc::new(finished);
        let mut inner = self.inner.lock().expect("store lock");
        tracked.end(finished.clone());
        let remembered = inner
            .results
            .get(&tracked.id)
            .is_some_and(|t| Arc::ptr_eq(t, tracked));
        if !remembered {
            return;
        }
        inner.held += held_bytes(&finished);
        inner.ended.push_back(tracked.clone());
        // The newest stays even alone over budget: its own caller may not
        // have read it yet.
        while inner.held > self.limits.max_result_bytes && inner.ended.len() > 1 {
            let oldest = inner.ended.pop_front().expect("len > 1");
            inner.held -= oldest.evict();
        }
        if inner.ended.len() > 2 * inner.results.len() + 16 {
            inner.ended.retain(|t| matches!(t.phase(), Phase::Done(_)));
        }
    }

    /// Bytes of result bodies held now.
    pub fn held_bytes(&self) -> u64 {
        self.inner.lock().expect("store lock").held
    }
}

/// The store, locked.
pub struct Locked<'a> {
    inner: &'a mut Inner,
    limits: StoreLimits,
}

impl Locked<'_> {
    /// Looks `key` up for `agent`.
    pub fn lookup_key(&mut self, agent: &str, key: &str, fingerprint: &[u8; 32]) -> KeyLookup {
        let now = Instant::now();
        let k = (agent.to_string(), key.to_string());
        match self.inner.keys.get(&k) {
            Some(e) if now.duration_since(e.created) >= self.limits.idempotency_ttl => {
                self.inner.keys.remove(&k);
                KeyLookup::New
            }
            Some(e) if &e.fingerprint == fingerprint => KeyLookup::Replay(e.tracked.clone()),
            Some(_) => KeyLookup::Mismatch,
            None => KeyLookup::New,
        }
    }

    /// Checks there is room for one more key (purging expired ones if needed).
    pub fn reserve_key(&mut self) -> Result<(), StoreFull> {
        if self.inner.keys.len() >= self.limits.max_keys {
            self.purge(Instant::now());
        }
        if self.inner.keys.len() >= self.limits.max_keys {
            return Err(StoreFull);
        }
        Ok(())
    }

    /// Remembers that `key` started `tracked`.
    pub fn bind_key(&mut self, key: &str, fingerprint: [u8; 32], tracked: Arc<Tracked>) {
        self.inner.keys.insert(
            (tracked.agent.clone(), key.to_string()),
            KeyEntry {
                fingerprint,
                tracked,
                created: Instant::now(),
            },
        );
    }

    /// Remembers `tracked` so its result can be fetched by id. Past the limit the
    /// oldest ended invocations are forgotten first.
    pub fn remember(&mut self, tracked: Arc<Tracked>) {
        let now = Instant::now();
        while self.inner.results.len() >= self.limits.max_results {
            let oldest_ended = self.inner.order.iter().position(|id| {
                self.inner
                    .results
                    .get(id)
                    .is_none_or(|t| t.ended.get().is_some())
            });
            match oldest_ended {
                Some(at) => {
                    let id = self.inner.order.remove(at).expect("position is in range");
                    self.forget(&id);
                }
                // Everything remembered is still running: admission bounds that.
                None => break,
            }
        }
        self.purge(now);
        self.inner.order.push_back(tracked.id.clone());
        self.inner.results.insert(tracked.id.clone(), tracked);
    }

    /// Forgets result `id`, dropping its body: a key may still point at the
    /// invocation (and answer `ResultEvicted`), but holds no body.
    fn forget(&mut self, id: &str) {
        if let Some(t) = self.inner.results.remove(id) {
            self.inner.held -= t.evict();
        }
    }

    fn purge(&mut self, now: Instant) {
        let ttl = self.limits.result_ttl;
        while let Some(id) = self.inner.order.front() {
            match self.inner.results.get(id) {
                Some(t) if !t.expired(now, ttl) => break,
                _ => {
                    let id = self.inner.order.pop_front().expect("front exists");
                    self.forget(&id);
                }
            }
        }
        let key_ttl = self.limits.idempotency_ttl;
        self.inner
            .keys
            .retain(|_, e| now.duration_since(e.created) < key_ttl);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_results: usize, max_keys: usize) -> StoreLimits {
        StoreLimits {
            result_ttl: Duration::from_secs(60),
            max_results,
            max_result_bytes: u64::MAX,
            idempotency_ttl: Duration::from_secs(60),
            max_keys,
        }
    }

    fn done(body_bytes: usize) -> Finished {
        Finished {
            status: StatusCode::OK,
            state: "succeeded",
            body: Bytes::from(vec![b'x'; body_bytes]),
        }
    }

    fn body_of(t: &Tracked) -> (StatusCode, serde_json::Value) {
        match t.phase() {
            Phase::Evicted(f) => (f.status, serde_json::from_slice(&f.body).unwrap()),
            Phase::Done(f) => (
                f.status,
                serde_json::Value::String(format!("{} bytes", f.body.len())),
            ),
            other => panic!("not ended: {}", other.name()),
        }
    }

    #[test]
    fn a_key_replays_its_invocation_and_refuses_another_body() {
        let store = Store::new(limits(10, 10));
        let t = Tracked::new("i1".into(), "a".into());
        store.with_lock(|l| {
            assert!(matches!(l.lookup_key("a", "k", &[1; 32]), KeyLookup::New));
            l.reserve_key().unwrap();
            l.bind_key("k", [1; 32], t.clone());
        });
        store.with_lock(|l| {
            assert!(
                matches!(l.lookup_key("a", "k", &[1; 32]), KeyLookup::Replay(r) if r.id == "i1")
            );
            assert!(matches!(
                l.lookup_key("a", "k", &[2; 32]),
                KeyLookup::Mismatch
            ));
            // Keys are per agent.
            assert!(matches!(l.lookup_key("b", "k", &[2; 32]), KeyLookup::New));
            assert!(l.reserve_key().is_ok());
        });
        let full = Store::new(limits(10, 1));
        full.with_lock(|l| {
            l.bind_key("k", [1; 32], t.clone());
            assert!(
                l.reserve_key().is_err(),
                "one live key fills a store of one"
            );
        });
    }

    #[test]
    fn results_are_bounded_and_running_ones_are_kept() {
        let store = Store::new(limits(2, 10));
        let a = Tracked::new("a".into(), "x".into());
        let b = Tracked::new("b".into(), "x".into());
        let c = Tracked::new("c".into(), "x".into());
        store.with_lock(|l| {
            l.remember(a.clone());
            l.remember(b.clone());
        });
        store.publish(&b, done(0));
        store.with_lock(|l| l.remember(c.clone()));
        assert!(store.get("a").is_some(), "a is still running: kept");
        assert!(store.get("b").is_none(), "b ended first: forgotten");
        assert!(store.get("c").is_some());
    }

    #[test]
    fn ended_bodies_past_the_byte_budget_are_dropped_oldest_first() {
        const BODY: usize = 1000;
        let cost = BODY as u64 + ENTRY_OVERHEAD;
        let store = Store::new(StoreLimits {
            max_result_bytes: 3 * cost,
            ..limits(100, 100)
        });
        let all: Vec<_> = (0..5)
            .map(|i| Tracked::new(format!("i{i}"), "a".into()))
            .collect();
        store.with_lock(|l| {
            l.reserve_key().unwrap();
            l.bind_key("k0", [0; 32], all[0].clone());
            for t in &all {
                l.remember(t.clone());
            }
        });
        for t in &all {
            store.publish(t, done(BODY));
        }
        assert_eq!(store.held_bytes(), 3 * cost, "three bodies fit the budget");
        for t in &all[2..] {
            assert!(matches!(store.get(&t.id).unwrap().phase(), Phase::Done(_)));
        }
        for t in &all[..2] {
            let (status, body) = body_of(&store.get(&t.id).expect("the id is still known"));
            assert_eq!(status, StatusCode::GONE);
            assert_eq!(body["error"]["code"], "ResultEvicted");
            assert_eq!(body["state"], "succeeded", "the final state is still told");
        }
        // The key of an evicted result still replays (never runs again).
        store.with_lock(|l| match l.lookup_key("a", "k0", &[0; 32]) {
            KeyLookup::Replay(t) => assert!(matches!(t.phase(), Phase::Evicted(_))),
            _ => panic!("a live key was forgotten"),
        });
    }

    #[test]
    fn a_result_larger_than_the_budget_is_kept_until_the_next_one_ends() {
        let store = Store::new(StoreLimits {
            max_result_bytes: 10,
            ..limits(100, 100)
        });
        let a = Tracked::new("a".into(), "x".into());
        let b = Tracked::new("b".into(), "x".into());
        store.with_lock(|l| {
            l.remember(a.clone());
            l.remember(b.clone());
        });
        store.publish(&a, done(100));
        assert!(
            matches!(a.phase(), Phase::Done(_)),
            "its caller may not have read it"
        );
        store.publish(&b, done(100));
        assert!(matches!(a.phase(), Phase::Evicted(_)));
        assert_eq!(store.held_bytes(), 100 + ENTRY_OVERHEAD);
    }

    #[test]
    fn forgetting_a_result_by_count_releases_its_bytes() {
        let store = Store::new(limits(1, 10));
        let a = Tracked::new("a".into(), "x".into());
        let b = Tracked::new("b".into(), "x".into());
        store.with_lock(|l| l.remember(a.clone()));
        store.publish(&a, done(100));
        store.with_lock(|l| l.remember(b.clone()));
        assert!(store.get("a").is_none());
        assert!(
            matches!(a.phase(), Phase::Evicted(_)),
            "no key or reader keeps the body alive"
        );
        assert_eq!(store.held_bytes(), 0);
    }
}
