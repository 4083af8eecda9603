//! What the server remembers between requests, bounded in count and time:
//! invocations whose result may still be fetched (`GET /v1/invocations/{id}`)
//! and idempotency keys with the invocation each one started.

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
}

impl Phase {
    /// The `state` field of the API.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Queued => "queued",
            Phase::Running => "running",
            Phase::Done(f) => f.state,
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

    /// Moves to `phase`.
    pub fn set(&self, phase: Phase) {
        if matches!(phase, Phase::Done(_)) {
            let _ = self.ended.set(Instant::now());
        }
        self.phase.send_replace(phase);
    }

    /// Waits until the invocation has ended.
    pub async fn done(&self) -> Arc<Finished> {
        let mut rx = self.phase.subscribe();
        let phase = rx
            .wait_for(|p| matches!(p, Phase::Done(_)))
            .await
            .expect("the sender lives in self");
        match &*phase {
            Phase::Done(f) => f.clone(),
            _ => unreachable!("waited for Done"),
        }
    }

    fn expired(&self, now: Instant, ttl: Duration) -> bool {
        self.ended
            .get()
            .is_some_and(|t| now.duration_since(*t) >= ttl)
    }
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
                    self.inner.results.remove(&id);
                }
                // Everything remembered is still running: admission bounds that.
                None => break,
            }
        }
        self.purge(now);
        self.inner.order.push_back(tracked.id.clone());
        self.inner.results.insert(tracked.id.clone(), tracked);
    }

    fn purge(&mut self, now: Instant) {
        let ttl = self.limits.result_ttl;
        while let Some(id) = self.inner.order.front() {
            match self.inner.results.get(id) {
                Some(t) if !t.expired(now, ttl) => break,
                _ => {
                    let id = self.inner.order.pop_front().expect("front exists");
                    self.inner.results.remove(&id);
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
            idempotency_ttl: Duration::from_secs(60),
            max_keys,
        }
    }

    fn done() -> Phase {
        Phase::Done(Arc::new(Finished {
            status: StatusCode::OK,
            state: "succeeded",
            body: Bytes::new(),
        }))
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
        b.set(done());
        store.with_lock(|l| l.remember(c.clone()));
        assert!(store.get("a").is_some(), "a is still running: kept");
        assert!(store.get("b").is_none(), "b ended first: forgotten");
        assert!(store.get("c").is_some());
    }
}
