//! The `llm` capability's tokens-per-minute window kept in the store
//! ([`crate::state_store::budget::StoreBudgets`]): two replicas' handles
//! spend from one window, a dropped call's reservation comes back, and a
//! store that cannot be reached admits nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::RETENTION;
use crate::cap::key_value::Scope;
use crate::cap::llm::TokenBudgets;
use crate::state_store::budget::StoreBudgets;
use crate::state_store::redis::RedisStore;
use agent_host_test_guests::redis::RedisProc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_one_window_and_an_unreachable_store_admits_nothing() {
    let redis = RedisProc::start(&[]);
    let replica = || async {
        let store = RedisStore::connect(&redis.url(), RETENTION).await.unwrap();
        StoreBudgets::new(Arc::new(store))
    };
    let (a, b) = (replica().await, replica().await);
    let scope = Scope {
        namespace: "team".into(),
        agent: "triage".into(),
    };
    let (wa, wb) = (a.budget(&scope, 300), b.budget(&scope, 300));
    assert!(wa.shared() && wa.per_minute() == 300);

    let first = wa.reserve(50, 200).await.unwrap();
    assert_eq!(first.tokens, 250);
    let second = wb.reserve(30, 200).await.unwrap();
    assert_eq!(second.tokens, 50, "only what the other replica left");
    let refused = wa.reserve(1, 1).await.unwrap_err();
    assert!(
        refused.contains("tokensPerMinute") && refused.contains("across replicas"),
        "{refused}"
    );

    // A call dropped mid-flight gives its reservation back without awaiting.
    wb.abandon(second);
    wa.settle(first, 100).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = wb.reserve(0, 1000).await.unwrap();
        let tokens = r.tokens;
        wb.settle(r, 0).await;
        if tokens == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the abandoned 50 never came back ({tokens} free)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    drop(redis);
    let down = tokio::time::timeout(Duration::from_secs(30), wa.reserve(1, 1))
        .await
        .expect("a reserve on an unreachable store returns");
    let e = down.unwrap_err();
    assert!(
        e.contains("tokensPerMinute") && e.contains("could not be checked"),
        "{e}"
    );
}
