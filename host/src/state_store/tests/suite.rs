//! The cases, each on a fresh agent scope so cases never see each other's
//! work. `a` and `b` are two replicas (separate connections on Redis).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::super::*;
use super::RETENTION;
use crate::cap::key_value::Transaction;

type Store = Arc<dyn StateStore>;

static AGENTS: AtomicU64 = AtomicU64::new(0);

/// A fresh agent scope; names differ so that on a Cluster they spread over slots.
fn scope() -> Scope {
    let n = AGENTS.fetch_add(1, Ordering::Relaxed);
    Scope {
        namespace: "team".into(),
        agent: format!("agent-{n}-{}", uuid::Uuid::new_v4().simple()),
    }
}

const ROOMY: QueueBound = QueueBound {
    max_items: 1000,
    max_bytes: 1 << 20,
    max_input_bytes: 1 << 20,
};

const LEASE: Duration = Duration::from_secs(30);

fn new(scope: &Scope, input: &str, key: Option<&str>) -> NewInvocation {
    NewInvocation {
        id: InvocationId::new(scope),
        input: input.as_bytes().to_vec(),
        metadata: b"{\"via\":\"test\"}".to_vec(),
        idempotency_key: key.map(str::to_string),
    }
}

async fn submit(store: &Store, scope: &Scope, input: &str) -> InvocationId {
    let n = new(scope, input, None);
    let id = n.id.clone();
    assert_eq!(store.submit(n, ROOMY).await.unwrap(), Submitted::Accepted);
    id
}

fn ok(result: &str) -> Outcome {
    Outcome {
        state: State::Succeeded,
        result: result.as_bytes().to_vec(),
    }
}

fn txn(store: &Store, scope: &Scope) -> Transaction {
    Transaction::new(store.kv(), scope.clone(), vec![], 1 << 20)
}

async fn counter(store: &Store, scope: &Scope) -> u64 {
    txn(store, scope).increment("c", "n", 0).await.unwrap()
}

/// Runs every case in order, naming the one that fails.
pub(super) async fn run(a: Store, b: Store) {
    submit_records_and_an_idempotency_key_names_one_invocation(&a, &b).await;
    claims_take_the_oldest_first_with_a_fence_and_any_replica_reads_the_record(&a, &b).await;
    submit_claimed_records_and_claims_for_the_submitting_replica_in_one_step(&a, &b).await;
    a_lease_renewed_holds_and_an_expired_one_is_reclaimed_with_a_higher_fence(&a, &b).await;
    complete_writes_the_result_and_the_kv_changes_in_one_fenced_step(&a, &b).await;
    release_hands_work_back_at_its_place_and_keeps_its_attempts(&a, &b).await;
    cancel_ends_queued_and_running_work_and_fences_the_running_attempt(&a, &b).await;
    the_queue_is_bounded_in_items_and_bytes_across_replicas(&a, &b).await;
    the_token_budget_is_shared_by_replicas(&a, &b).await;
    ended_records_and_their_keys_go_after_the_retention(&a, &b).await;
}

async fn submit_claimed_records_and_claims_for_the_submitting_replica_in_one_step(
    a: &Store,
    b: &Store,
) {
    let s = scope();
    let first = new(&s, "sync", Some("sync-key"));
    let id = first.id.clone();
    let Taken::Claimed { fence } = a.submit_claimed(first, ROOMY, "a", LEASE).await.unwrap() else {
        panic!("a fresh key is claimed");
    };
    let record = b.get(&id).await.unwrap().unwrap();
    assert_eq!(record.state, State::Running);
    assert_eq!(record.attempts.len(), 1);
    assert_eq!(record.attempts[0].replica, "a");
    assert_eq!(record.attempts[0].end, None);
    assert_eq!(record.input, b"sync");
    // Never queued: no other replica can claim it while its lease holds.
    assert_eq!(b.claim(&s, "b", LEASE).await.unwrap(), None);
    let depth = b.depth(&s).await.unwrap();
    assert_eq!((depth.queued, depth.running), (0, 1));
    // The key names it from either replica, by either kind of submit.
    assert_eq!(
        b.submit_claimed(new(&s, "sync", Some("sync-key")), ROOMY, "b", LEASE)
            .await
            .unwrap(),
        Taken::Duplicate(id.clone())
    );
    assert_eq!(
        b.submit(new(&s, "sync", Some("sync-key")), ROOMY)
            .await
            .unwrap(),
        Submitted::Duplicate(id.clone())
    );
    assert_eq!(
        a.complete(&id, fence, ok("done"), None).await.unwrap(),
        Completed::Completed
    );
    let record = b.get(&id).await.unwrap().unwrap();
    assert_eq!(record.state, State::Succeeded);
    assert_eq!(record.result.as_deref(), Some(&b"done"[..]));

    // A submitter that dies: its short lease expires, another replica
    // reclaims the work with a higher fence and the dead one is fenced.
    let dying = new(&s, "orphan", None);
    let orphan = dying.id.clone();
    let Taken::Claimed { fence: old } = a
        .submit_claimed(dying, ROOMY, "a", Duration::from_millis(1))
        .await
        .unwrap()
    else {
        panic!("claimed");
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let taken = b.claim(&s, "b", LEASE).await.unwrap().expect("reclaimed");
    assert_eq!(
        (taken.id.clone(), taken.reclaimed, taken.attempt),
        (orphan.clone(), true, 2)
    );
    assert!(taken.fence > old);
    assert_eq!(
        a.complete(&orphan, old, ok("late"), None).await.unwrap(),
        Completed::Fenced
    );
}

async fn submit_records_and_an_idempotency_key_names_one_invocation(a: &Store, b: &Store) {
    let s = scope();
    let first = new(&s, "task", Some("key-1"));
    let id = first.id.clone();
    assert_eq!(a.submit(first, ROOMY).await.unwrap(), Submitted::Accepted);
    let record = b.get(&id).await.unwrap().expect("recorded before the ack");
    assert_eq!(record.state, State::Queued);
    assert_eq!(record.input, b"task");
    assert_eq!(record.metadata, b"{\"via\":\"test\"}");
    assert_eq!(record.idempotency_key.as_deref(), Some("key-1"));
    assert!(record.attempts.is_empty() && record.result.is_none());
    assert!(record.created_ms > 1_700_000_000_000, "store clock in ms");
    // The same key through the other replica: the first invocation, nothing new.
    let again = new(&s, "task", Some("key-1"));
    let again_id = again.id.clone();
    assert_eq!(
        b.submit(again, ROOMY).await.unwrap(),
        Submitted::Duplicate(id.clone())
    );
    assert_eq!(b.get(&again_id).await.unwrap(), None);
    // Concurrent submits with one key: exactly one accepted.
    let racers = (0..8).map(|i| {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let n = new(&s, "race", Some("key-2"));
        tokio::spawn(async move { store.submit(n, ROOMY).await.unwrap() })
    });
    let results: Vec<_> = futures::future::join_all(racers)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let accepted = results
        .iter()
        .filter(|r| **r == Submitted::Accepted)
        .count();
    assert_eq!(accepted, 1, "one key, one invocation: {results:?}");
    // Only the queued ones: `task` and one `race`.
    assert!(a.claim(&s, "r1", LEASE).await.unwrap().is_some());
    assert!(a.claim(&s, "r1", LEASE).await.unwrap().is_some());
    assert!(a.claim(&s, "r1", LEASE).await.unwrap().is_none());
    let too_big = NewInvocation {
        idempotency_key: Some("k".repeat(MAX_IDEMPOTENCY_KEY_BYTES + 1)),
        ..new(&s, "x", None)
    };
    assert!(matches!(
        a.submit(too_big, ROOMY).await,
        Err(StoreError::TooLarge {
            what: "idempotency key",
            ..
        })
    ));
}

async fn claims_take_the_oldest_first_with_a_fence_and_any_replica_reads_the_record(
    a: &Store,
    b: &Store,
) {
    let s = scope();
    let ids = [
        submit(a, &s, "one").await,
        submit(b, &s, "two").await,
        submit(a, &s, "three").await,
    ];
    assert!(
        b.claim(&scope(), "r2", LEASE).await.unwrap().is_none(),
        "another agent's queue is empty"
    );
    let first = b.claim(&s, "r2", LEASE).await.unwrap().unwrap();
    assert_eq!(
        (&first.id, first.input.as_slice(), first.attempt),
        (&ids[0], &b"one"[..], 1)
    );
    assert_eq!(first.metadata, b"{\"via\":\"test\"}");
    assert!(!first.reclaimed && first.fence >= 1);
    let second = a.claim(&s, "r1", LEASE).await.unwrap().unwrap();
    assert_eq!(second.id, ids[1]);
    let record = a.get(&ids[0]).await.unwrap().unwrap();
    assert_eq!(record.state, State::Running);
    assert_eq!(record.attempts.len(), 1);
    assert_eq!(record.attempts[0].replica, "r2");
    assert_eq!(record.attempts[0].end, None);
    assert_eq!(a.claim(&s, "r1", LEASE).await.unwrap().unwrap().id, ids[2]);
    assert!(a.claim(&s, "r1", LEASE).await.unwrap().is_none());
}

async fn a_lease_renewed_holds_and_an_expired_one_is_reclaimed_with_a_higher_fence(
    a: &Store,
    b: &Store,
) {
    let s = scope();
    let id = submit(a, &s, "slow").await;
    let lease = Duration::from_millis(400);
    let mine = a.claim(&s, "r1", lease).await.unwrap().unwrap();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(a.renew(&id, mine.fence, lease).await.unwrap(), Ok(()));
        assert!(
            b.claim(&s, "r2", lease).await.unwrap().is_none(),
            "renewed: still owned"
        );
    }
    assert_eq!(
        a.renew(&id, mine.fence + 1, lease).await.unwrap(),
        Err(Fenced)
    );
    // r1 stops renewing (paused, killed): after the lease, r2 takes it over.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let theirs = b
        .claim(&s, "r2", LEASE)
        .await
        .unwrap()
        .expect("expired lease reclaimed");
    assert_eq!(
        (&theirs.id, theirs.attempt, theirs.reclaimed),
        (&id, 2, true)
    );
    assert!(theirs.fence > mine.fence);
    assert_eq!(theirs.input, b"slow");
    assert_eq!(a.renew(&id, mine.fence, lease).await.unwrap(), Err(Fenced));
    assert_eq!(
        a.complete(&id, mine.fence, ok("late"), None).await.unwrap(),
        Completed::Fenced
    );
    let record = b.get(&id).await.unwrap().unwrap();
    let attempts: Vec<_> = record
        .attempts
        .iter()
        .map(|t| (t.replica.as_str(), t.end.as_deref()))
        .collect();
    assert_eq!(attempts, [("r1", Some("leaseExpired")), ("r2", None)]);
    assert_eq!(
        b.complete(&id, theirs.fence, ok("done"), None)
            .await
            .unwrap(),
        Completed::Completed
    );
    let record = a.get(&id).await.unwrap().unwrap();
    assert_eq!(
        (record.state, record.result.as_deref()),
        (State::Succeeded, Some(&b"done"[..]))
    );
    assert_eq!(record.attempts[1].end.as_deref(), Some("succeeded"));
}

async fn complete_writes_the_result_and_the_kv_changes_in_one_fenced_step(a: &Store, b: &Store) {
    let s = scope();
    // Increments and a set, committed with the result.
    let id = submit(a, &s, "t").await;
    let c = a.claim(&s, "r1", LEASE).await.unwrap().unwrap();
    let mut t = txn(a, &s);
    t.increment("c", "n", 5).await.unwrap();
    t.set("b", "seen", b"yes".to_vec()).await.unwrap();
    let done = a
        .complete(&id, c.fence, ok("r"), t.into_intent())
        .await
        .unwrap();
    assert_eq!(done, Completed::Completed);
    assert_eq!(counter(b, &s).await, 5);
    assert_eq!(
        txn(b, &s).get("b", "seen").await.unwrap().as_deref(),
        Some(&b"yes"[..])
    );

    // A conflicting read refuses the whole step; the attempt keeps its lease.
    let id = submit(a, &s, "t").await;
    let c = b.claim(&s, "r2", LEASE).await.unwrap().unwrap();
    let mut t = txn(b, &s);
    t.get("b", "seen").await.unwrap();
    t.set("b", "seen", b"again".to_vec()).await.unwrap();
    t.increment("c", "n", 1).await.unwrap();
    let mut racer = txn(a, &s);
    racer.set("b", "seen", b"racer".to_vec()).await.unwrap();
    racer.commit().await.unwrap();
    let refused = b
        .complete(&id, c.fence, ok("r"), t.into_intent())
        .await
        .unwrap();
    assert!(
        matches!(
            refused,
            Completed::KeyValueConflict(KeyValueError::Conflict { .. })
        ),
        "{refused:?}"
    );
    assert_eq!(
        counter(a, &s).await,
        5,
        "nothing of the refused step applied"
    );
    assert_eq!(a.get(&id).await.unwrap().unwrap().state, State::Running);
    assert_eq!(a.renew(&id, c.fence, LEASE).await.unwrap(), Ok(()));

    // A stale owner's complete applies nothing either.
    let mut stale = txn(a, &s);
    stale.increment("c", "n", 100).await.unwrap();
    let fenced = a
        .complete(&id, c.fence + 1, ok("stale"), stale.into_intent())
        .await
        .unwrap();
    assert_eq!(fenced, Completed::Fenced);
    assert_eq!(counter(a, &s).await, 5);
    let failed = Outcome {
        state: State::Failed,
        result: b"boom".to_vec(),
    };
    assert_eq!(
        b.complete(&id, c.fence, failed, None).await.unwrap(),
        Completed::Completed
    );
    let record = a.get(&id).await.unwrap().unwrap();
    assert_eq!(
        (record.state, record.result.as_deref()),
        (State::Failed, Some(&b"boom"[..]))
    );
    // Twice is refused: it has ended.
    assert_eq!(
        b.complete(&id, c.fence, ok("x"), None).await.unwrap(),
        Completed::Fenced
    );
    // Another agent's changes cannot ride on this invocation.
    let other = txn(a, &scope());
    let mut other = other;
    other.increment("c", "n", 1).await.unwrap();
    assert!(matches!(
        a.complete(&id, c.fence, ok("x"), other.into_intent()).await,
        Err(StoreError::WrongScope { .. })
    ));
}

async fn release_hands_work_back_at_its_place_and_keeps_its_attempts(a: &Store, b: &Store) {
    let s = scope();
    let first = submit(a, &s, "first").await;
    let second = submit(a, &s, "second").await;
    let c = a.claim(&s, "r1", LEASE).await.unwrap().unwrap();
    assert_eq!(c.id, first);
    assert_eq!(a.release(&first, c.fence).await.unwrap(), Ok(()));
    assert_eq!(a.release(&first, c.fence).await.unwrap(), Err(Fenced));
    assert_eq!(
        a.complete(&first, c.fence, ok("x"), None).await.unwrap(),
        Completed::Fenced
    );
    assert_eq!(b.get(&first).await.unwrap().unwrap().state, State::Queued);
    let again = b.claim(&s, "r2", LEASE).await.unwrap().unwrap();
    assert_eq!(
        (&again.id, again.attempt, again.reclaimed),
        (&first, 2, false)
    );
    assert!(again.fence > c.fence);
    assert_eq!(b.claim(&s, "r2", LEASE).await.unwrap().unwrap().id, second);
    let record = a.get(&first).await.unwrap().unwrap();
    let attempts: Vec<_> = record
        .attempts
        .iter()
        .map(|t| (t.replica.as_str(), t.end.as_deref()))
        .collect();
    assert_eq!(attempts, [("r1", Some("released")), ("r2", None)]);
}

async fn cancel_ends_queued_and_running_work_and_fences_the_running_attempt(a: &Store, b: &Store) {
    let s = scope();
    let bound = QueueBound {
        max_items: 2,
        ..ROOMY
    };
    let queued = new(&s, "q", Some("cancel-key"));
    let queued_id = queued.id.clone();
    a.submit(queued, bound).await.unwrap();
    let running = new(&s, "r", None);
    let running_id = running.id.clone();
    a.submit(running, bound).await.unwrap();
    assert_eq!(
        b.cancel(&queued_id).await.unwrap(),
        Cancelled::Cancelled(State::Queued)
    );
    let c = a.claim(&s, "r1", LEASE).await.unwrap().unwrap();
    assert_eq!(c.id, running_id, "a cancelled invocation is never claimed");
    assert_eq!(
        b.cancel(&running_id).await.unwrap(),
        Cancelled::Cancelled(State::Running)
    );
    let mut t = txn(a, &s);
    t.increment("c", "n", 1).await.unwrap();
    assert_eq!(
        a.complete(&running_id, c.fence, ok("x"), t.into_intent())
            .await
            .unwrap(),
        Completed::Fenced
    );
    assert_eq!(counter(a, &s).await, 0);
    assert_eq!(
        a.renew(&running_id, c.fence, LEASE).await.unwrap(),
        Err(Fenced)
    );
    assert_eq!(
        b.cancel(&running_id).await.unwrap(),
        Cancelled::AlreadyEnded(State::Cancelled)
    );
    let record = a.get(&running_id).await.unwrap().unwrap();
    assert_eq!(record.state, State::Cancelled);
    assert_eq!(record.attempts[0].end.as_deref(), Some("cancelled"));
    assert_eq!(
        b.cancel(&InvocationId::new(&s)).await.unwrap(),
        Cancelled::NotFound
    );
    assert!(a.claim(&s, "r1", LEASE).await.unwrap().is_none());
    // Both slots are free again; the key still names the cancelled one.
    assert_eq!(
        a.submit(new(&s, "1", None), bound).await.unwrap(),
        Submitted::Accepted
    );
    assert_eq!(
        a.submit(new(&s, "2", None), bound).await.unwrap(),
        Submitted::Accepted
    );
    assert_eq!(
        a.submit(new(&s, "3", Some("cancel-key")), bound)
            .await
            .unwrap(),
        Submitted::Duplicate(queued_id)
    );
}

async fn the_queue_is_bounded_in_items_and_bytes_across_replicas(a: &Store, b: &Store) {
    let s = scope();
    let bound = QueueBound {
        max_items: 3,
        max_bytes: 1 << 20,
        max_input_bytes: 100,
    };
    for i in 0..3 {
        let store = if i % 2 == 0 { a } else { b };
        store.submit(new(&s, "x", None), bound).await.unwrap();
    }
    let full = b.submit(new(&s, "x", None), bound).await.unwrap_err();
    assert!(
        matches!(
            full,
            StoreError::QueueFull {
                items: 3,
                max_items: 3,
                ..
            }
        ),
        "{full}"
    );
    assert!(full.to_string().contains("spec.limits.maxQueue"), "{full}");
    // Running work still counts; finished work frees its place.
    let c = a.claim(&s, "r1", LEASE).await.unwrap().unwrap();
    let depth = b.depth(&s).await.unwrap();
    assert_eq!(
        (depth.queued, depth.running, depth.bytes),
        (2, 1, 3 * (1 + 14))
    );
    assert!(b.submit(new(&s, "x", None), bound).await.is_err());
    a.complete(&c.id, c.fence, ok(""), None).await.unwrap();
    b.submit(new(&s, "x", None), bound).await.unwrap();

    // Bytes: inputs plus metadata of what is queued or running.
    let s = scope();
    let meta = new(&s, "", None).metadata.len() as u64;
    let bound = QueueBound {
        max_items: 100,
        max_bytes: 2 * (60 + meta),
        max_input_bytes: 100,
    };
    a.submit(new(&s, &"x".repeat(60), None), bound)
        .await
        .unwrap();
    b.submit(new(&s, &"x".repeat(60), None), bound)
        .await
        .unwrap();
    let full = a.submit(new(&s, "x", None), bound).await.unwrap_err();
    assert!(
        matches!(full, StoreError::QueueFull { items: 2, .. }),
        "{full}"
    );
    let too_big = a
        .submit(new(&s, &"x".repeat(101), None), bound)
        .await
        .unwrap_err();
    assert_eq!(
        too_big,
        StoreError::TooLarge {
            what: "input",
            len: 101,
            limit: 100
        }
    );
    let c = a.claim(&s, "r1", LEASE).await.unwrap().unwrap();
    a.cancel(&c.id).await.unwrap();
    a.submit(new(&s, "x", None), bound).await.unwrap();
}

async fn the_token_budget_is_shared_by_replicas(a: &Store, b: &Store) {
    let s = scope();
    let first = a.reserve(&s, 100, 500, 1000).await.unwrap().unwrap();
    assert_eq!(first.tokens, 600);
    // The other replica sees the reservation: only 400 left, 300 for completion.
    let second = b.reserve(&s, 100, 500, 1000).await.unwrap().unwrap();
    assert_eq!(second.tokens, 400);
    let refused = a.reserve(&s, 10, 10, 1000).await.unwrap().unwrap_err();
    assert_eq!((refused.committed, refused.per_minute), (1000, 1000));
    assert_eq!(
        refused.retry_after,
        Duration::from_secs(60),
        "only reservations hold the window"
    );
    assert!(refused.to_string().contains("tokensPerMinute"));
    // Settling gives back what was not used; what was used stays for a minute.
    b.settle(&s, &first, 200).await.unwrap();
    a.settle(&s, &second, 0).await.unwrap();
    let third = b.reserve(&s, 100, 10_000, 1000).await.unwrap().unwrap();
    assert_eq!(third.tokens, 800);
    let refused = a.reserve(&s, 1, 1, 1000).await.unwrap().unwrap_err();
    a.settle(&s, &third, 0).await.unwrap();
    assert_eq!(refused.committed, 1000);
    // Still refused for the 800 held; once given back, the 200 used leave
    // the window about a minute after they were settled.
    let refused = a.reserve(&s, 900, 1, 1000).await.unwrap().unwrap_err();
    assert!(
        refused.retry_after > Duration::from_secs(55)
            && refused.retry_after <= Duration::from_secs(60),
        "{:?}",
        refused.retry_after
    );
    // Another agent's window is its own.
    assert_eq!(
        b.reserve(&scope(), 100, 900, 1000)
            .await
            .unwrap()
            .unwrap()
            .tokens,
        1000
    );
}

async fn ended_records_and_their_keys_go_after_the_retention(a: &Store, b: &Store) {
    let s = scope();
    let n = new(&s, "t", Some("retained"));
    let id = n.id.clone();
    a.submit(n, ROOMY).await.unwrap();
    let c = a.claim(&s, "r1", LEASE).await.unwrap().unwrap();
    a.complete(&id, c.fence, ok("r"), None).await.unwrap();
    assert!(b.get(&id).await.unwrap().is_some());
    tokio::time::sleep(RETENTION + Duration::from_millis(300)).await;
    // (The embedded store removes ended records as part of later writes.)
    let later = new(&s, "t", Some("retained"));
    let later_id = later.id.clone();
    assert_eq!(
        a.submit(later, ROOMY).await.unwrap(),
        Submitted::Accepted,
        "the key was freed with its record"
    );
    assert_eq!(b.get(&id).await.unwrap(), None);
    assert!(b.get(&later_id).await.unwrap().is_some());
}

/// Replicas (separate store handles) race over one agent's queue, each run
/// incrementing a counter and committing with its result; one replica
/// stalls past its lease on one invocation. Every invocation succeeds once,
/// the stale owner's commit is fenced, and the counter equals the count.
pub(super) async fn replicas_race<F, Fut>(mut connect: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Store>,
{
    const N: usize = 60;
    let s = scope();
    let submitter = connect().await;
    let mut ids = Vec::new();
    for i in 0..N {
        ids.push(submit(&submitter, &s, &i.to_string()).await);
    }
    let lease = Duration::from_millis(500);
    // The stale owner: claims one, works past its lease, then commits.
    let stale_store = connect().await;
    let stale = stale_store
        .claim(&s, "stale", lease)
        .await
        .unwrap()
        .unwrap();
    let mut stale_txn = txn(&stale_store, &s);
    stale_txn.increment("c", "n", 1).await.unwrap();
    let mut workers = Vec::new();
    for w in 0..3 {
        let store = connect().await;
        let s = s.clone();
        workers.push(tokio::spawn(async move {
            let mut done = 0;
            let mut idle = 0;
            while idle < 20 {
                let Some(c) = store.claim(&s, &format!("w{w}"), lease).await.unwrap() else {
                    idle += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                idle = 0;
                let mut t = txn(&store, &s);
                t.increment("c", "n", 1).await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
                let out = store
                    .complete(&c.id, c.fence, ok("ok"), t.into_intent())
                    .await
                    .unwrap();
                assert_eq!(
                    out,
                    Completed::Completed,
                    "contended increments never conflict"
                );
                done += 1;
            }
            done
        }));
    }
    tokio::time::sleep(lease + Duration::from_millis(300)).await;
    let late = stale_store
        .complete(&stale.id, stale.fence, ok("stale"), stale_txn.into_intent())
        .await
        .unwrap();
    let mut done = 0;
    for w in workers {
        done += w.await.unwrap();
    }
    assert_eq!(
        late,
        Completed::Fenced,
        "the stale owner's commit was refused"
    );
    assert_eq!(
        done, N,
        "every invocation ran to completion once on the workers"
    );
    for id in &ids {
        let record = submitter.get(id).await.unwrap().unwrap();
        assert_eq!(record.state, State::Succeeded);
        assert_eq!(record.result.as_deref(), Some(&b"ok"[..]));
    }
    let reclaimed = submitter.get(&stale.id).await.unwrap().unwrap();
    assert_eq!(reclaimed.attempts[0].replica, "stale");
    assert_eq!(reclaimed.attempts[0].end.as_deref(), Some("leaseExpired"));
    assert_eq!(
        counter(&submitter, &s).await,
        N as u64,
        "the counter counts each invocation once"
    );
}
