//! One suite of the store's promises (see the module doc), run against the
//! embedded store, one Redis server and a three-primary Redis Cluster, plus
//! replicas racing on one store with a stale owner among them.

mod budget;
mod suite;

use std::sync::Arc;
use std::time::Duration;

use super::redb::RedbStore;
use super::redis::RedisStore;
use super::*;
use crate::cap::key_value::redb_store::RedbBackend;
use agent_host_test_guests::redis::{Cluster, RedisProc};

/// Ended records are kept this long in the suite (one case checks removal).
const RETENTION: Duration = Duration::from_secs(2);

fn redb_store() -> (tempfile::TempDir, Arc<dyn StateStore>) {
    let dir = tempfile::tempdir().unwrap();
    let kv = RedbBackend::open(&dir.path().join("kv.redb")).unwrap();
    let store = RedbStore::open(Arc::new(kv), RETENTION).unwrap();
    (dir, Arc::new(store))
}

/// Two handles with separate connections: two replicas.
async fn redis_replicas(url: &str) -> (Arc<dyn StateStore>, Arc<dyn StateStore>) {
    let a = RedisStore::connect(url, RETENTION).await.unwrap();
    let b = RedisStore::connect(url, RETENTION).await.unwrap();
    (Arc::new(a), Arc::new(b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_promises_hold_on_redb() {
    let (_dir, store) = redb_store();
    suite::run(store.clone(), store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_promises_hold_on_redis() {
    let redis = RedisProc::start(&[]);
    let (a, b) = redis_replicas(&redis.url()).await;
    suite::run(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_promises_hold_on_a_three_primary_redis_cluster() {
    let cluster = Cluster::start();
    let (a, b) = redis_replicas(&cluster.url()).await;
    suite::run(a, b).await;
    let spread = cluster.keys_per_node();
    assert!(
        spread.iter().filter(|n| **n > 0).count() >= 2,
        "the suite's agents landed on one node only ({spread:?}): the cluster was not exercised"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_increments_of_one_key_all_commit_and_the_total_is_exact_on_redis() {
    let redis = RedisProc::start(&[]);
    let kv =
        crate::cap::key_value::redis_store::RedisBackend::connect(redis.url().as_str()).unwrap();
    crate::cap::key_value::tests::concurrent_increments_all_commit(Arc::new(kv)).await;
    let cluster = Cluster::start();
    let (store, _) = redis_replicas(&cluster.url()).await;
    crate::cap::key_value::tests::concurrent_increments_all_commit(store.kv()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_owner_is_fenced_and_the_counter_stays_exact_with_replicas_on_redis() {
    let redis = RedisProc::start(&[]);
    let url = redis.url();
    suite::replicas_race(|| {
        let url = url.clone();
        async move {
            Arc::new(RedisStore::connect(&url, RETENTION).await.unwrap()) as Arc<dyn StateStore>
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_owner_is_fenced_and_the_counter_stays_exact_with_replicas_on_a_cluster() {
    let cluster = Cluster::start();
    let url = cluster.url();
    suite::replicas_race(|| {
        let url = url.clone();
        async move {
            Arc::new(RedisStore::connect(&url, RETENTION).await.unwrap()) as Arc<dyn StateStore>
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_owner_is_fenced_and_the_counter_stays_exact_with_workers_on_redb() {
    let (_dir, store) = redb_store();
    suite::replicas_race(|| {
        let store = store.clone();
        async move { store }
    })
    .await;
}

#[test]
fn invocation_ids_carry_their_agent_and_malformed_ones_are_refused() {
    let scope = Scope {
        namespace: "sre".into(),
        agent: "triage.v2".into(),
    };
    let id = InvocationId::new(&scope);
    assert_eq!(
        InvocationId::parse(id.as_str()).unwrap().scope().unwrap(),
        scope
    );
    for bad in [
        "",
        "abc",
        "00.1234",
        &format!("{}x", id),
        "zz.0123456789abcdef0123456789abcdef",
    ] {
        assert!(
            matches!(InvocationId::parse(bad), Err(StoreError::BadId(_))),
            "{bad:?} was accepted"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_value_data_in_the_untagged_layout_is_carried_over_on_connect() {
    use crate::cap::key_value::redb_store::encode;
    let redis = RedisProc::start(&[]);
    let scope = Scope {
        namespace: "team".into(),
        agent: "triage".into(),
    };
    // What a host before the hash tag wrote: a counter of 41 and a set.
    let old = |kind: &str, parts: &[&str]| {
        let mut k = format!("agent-host/{kind}/").into_bytes();
        k.extend(encode(&[&scope.namespace, &scope.agent]));
        k.extend(encode(parts));
        k
    };
    let client = ::redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let _: () = ::redis::pipe()
        .set(old("d", &["c", "n"]), &41u64.to_le_bytes()[..])
        .set(old("v", &["c", "n"]), 7)
        .sadd(old("k", &["c"]), "n")
        .set(old("u", &[]), 9)
        .set(old("n", &[]), 7)
        .query(&mut conn)
        .unwrap();
    let store = RedisStore::connect(&redis.url(), RETENTION).await.unwrap();
    let kv = store.kv();
    let mut t = crate::cap::key_value::Transaction::new(kv.clone(), scope.clone(), vec![], 1 << 20);
    assert_eq!(t.keys("c").await.unwrap(), ["n"]);
    assert_eq!(t.increment("c", "n", 1).await.unwrap(), 42);
    t.commit().await.unwrap();
    assert_eq!(kv.usage(&scope).await.unwrap(), 9);
    let untagged: Vec<Vec<u8>> = ::redis::cmd("KEYS")
        .arg("agent-host/[dvkun]/*")
        .query(&mut conn)
        .unwrap();
    assert!(untagged.is_empty(), "left untagged: {untagged:?}");
    // The key-value backend alone (`--kv-redis`) migrates too; once done,
    // a pass is not repeated.
    let _: () = ::redis::cmd("DEL")
        .arg("agent-host/kv-layout-tagged")
        .query(&mut conn)
        .unwrap();
    let _: () = ::redis::cmd("SET")
        .arg(old("d", &["c", "m"]))
        .arg(&1u64.to_le_bytes()[..])
        .query(&mut conn)
        .unwrap();
    crate::cap::key_value::redis_store::RedisBackend::connect(redis.url().as_str()).unwrap();
    let mut t = crate::cap::key_value::Transaction::new(kv, scope.clone(), vec![], 1 << 20);
    assert_eq!(t.increment("c", "n", 0).await.unwrap(), 42);
    assert_eq!(t.increment("c", "m", 0).await.unwrap(), 1);
    let _: () = ::redis::cmd("SET")
        .arg(old("d", &["c", "late"]))
        .arg("x")
        .query(&mut conn)
        .unwrap();
    crate::cap::key_value::redis_store::RedisBackend::connect(redis.url().as_str()).unwrap();
    let late: i64 = ::redis::cmd("EXISTS")
        .arg(old("d", &["c", "late"]))
        .query(&mut conn)
        .unwrap();
    assert_eq!(late, 1, "a finished migration does not scan again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_work_survives_reopening_the_embedded_store_and_a_dead_owners_lease_is_reclaimed()
{
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv.redb");
    let open = || {
        let kv = RedbBackend::open(&path).unwrap();
        Arc::new(RedbStore::open(Arc::new(kv), RETENTION).unwrap()) as Arc<dyn StateStore>
    };
    let scope = Scope {
        namespace: "".into(),
        agent: "a".into(),
    };
    let bound = QueueBound {
        max_items: 10,
        max_bytes: 1 << 20,
        max_input_bytes: 1 << 20,
    };
    let (running, queued) = {
        let store = open();
        let mut ids = Vec::new();
        for (input, key) in [("running", "k1"), ("queued", "k2")] {
            let new = NewInvocation {
                id: InvocationId::new(&scope),
                input: input.into(),
                metadata: vec![],
                idempotency_key: Some(key.into()),
            };
            ids.push(new.id.clone());
            store.submit(new, bound).await.unwrap();
        }
        let claim = store
            .claim(&scope, "before", Duration::from_millis(300))
            .await
            .unwrap();
        assert_eq!(claim.unwrap().id, ids[0]);
        (ids[0].clone(), ids[1].clone())
        // The host stops here, the store dropped mid-run. (Dropped cleanly,
        // the claim is kept; after a SIGKILL the claim, committed without
        // fsync, may be lost instead, putting the work back in the queue:
        // either way it runs again.)
    };
    let store = open();
    let retry = NewInvocation {
        id: InvocationId::new(&scope),
        input: b"queued".to_vec(),
        metadata: vec![],
        idempotency_key: Some("k2".into()),
    };
    assert_eq!(
        store.submit(retry, bound).await.unwrap(),
        Submitted::Duplicate(queued.clone())
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let first = store
        .claim(&scope, "after", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (&first.id, first.reclaimed, first.attempt),
        (&running, true, 2)
    );
    let second = store
        .claim(&scope, "after", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (&second.id, second.input.as_slice()),
        (&queued, &b"queued"[..])
    );
}

/// Not a check: figures for the closing note. 32 tasks, each looping
/// submit → claim → increment a shared counter → complete (4 store round
/// trips per invocation on Redis: submit, claim, the counter's first read,
/// complete). Run: `cargo test --lib state_store::tests::measure -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn measure_durable_invocations_per_second_at_c32() {
    async fn measure(name: &str, store: Arc<dyn StateStore>) {
        const PER_TASK: usize = 100;
        let scope = Scope {
            namespace: "bench".into(),
            agent: name.into(),
        };
        let bound = QueueBound {
            max_items: 10_000,
            max_bytes: 1 << 30,
            max_input_bytes: 1 << 20,
        };
        let started = std::time::Instant::now();
        let tasks = (0..32).map(|_| {
            let (store, scope) = (store.clone(), scope.clone());
            tokio::spawn(async move {
                for _ in 0..PER_TASK {
                    let new = NewInvocation {
                        id: InvocationId::new(&scope),
                        input: vec![b'x'; 100],
                        metadata: vec![],
                        idempotency_key: Some(uuid::Uuid::new_v4().to_string()),
                    };
                    store.submit(new, bound).await.unwrap();
                    let c = store
                        .claim(&scope, "r", Duration::from_secs(30))
                        .await
                        .unwrap()
                        .unwrap();
                    let mut t = crate::cap::key_value::Transaction::new(
                        store.kv(),
                        scope.clone(),
                        vec![],
                        1 << 20,
                    );
                    t.increment("c", "n", 1).await.unwrap();
                    let outcome = Outcome {
                        state: State::Succeeded,
                        result: vec![b'y'; 100],
                    };
                    let done = store
                        .complete(&c.id, c.fence, outcome, t.into_intent())
                        .await
                        .unwrap();
                    assert_eq!(done, Completed::Completed);
                }
            })
        });
        for t in futures::future::join_all(tasks).await {
            t.unwrap();
        }
        let n = 32 * PER_TASK;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{name}: {n} durable invocations in {secs:.2}s = {:.0}/s",
            n as f64 / secs
        );
    }
    let (_dir, redb) = redb_store();
    measure("redb", redb).await;
    let redis = RedisProc::start(&[]);
    let (store, _) = redis_replicas(&redis.url()).await;
    measure("redis", store).await;
    let aof = RedisProc::start(&["--appendonly", "yes", "--appendfsync", "everysec"]);
    let (store, _) = redis_replicas(&aof.url()).await;
    measure("redis-aof-everysec", store).await;
    let cluster = Cluster::start();
    let (store, _) = redis_replicas(&cluster.url()).await;
    measure("redis-cluster", store).await;
}
