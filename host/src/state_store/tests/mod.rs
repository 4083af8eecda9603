//! One suite of the store's promises (see the module doc), run against the
//! embedded store, one Redis server and a three-primary Redis Cluster, plus
//! replicas racing on one store with a stale owner among them.

pub(crate) mod servers;
mod suite;

use std::sync::Arc;
use std::time::Duration;

use super::redb::RedbStore;
use super::redis::RedisStore;
use super::*;
use crate::cap::kv::redb_store::RedbBackend;
use servers::{Cluster, RedisProc};

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
    let kv = crate::cap::kv::redis_store::RedisBackend::connect(&redis.url()).unwrap();
    crate::cap::kv::tests::concurrent_increments_all_commit(Arc::new(kv)).await;
    let cluster = Cluster::start();
    let (store, _) = redis_replicas(&cluster.url()).await;
    crate::cap::kv::tests::concurrent_increments_all_commit(store.kv()).await;
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
