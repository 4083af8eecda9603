//! Key-value state (`spec.capabilities.keyValue`): writes commit only when
//! `run` returns ok, agents are isolated, the quota holds and concurrent
//! commits conflict instead of losing an update — each against the embedded
//! backend and against a real Redis server on loopback.

use agent_host::cap::kv::KvError;
use agent_host::config::KvStore;
use agent_host::runtime::LoadError;
use agent_host::{InvocationError, PreparedAgent};
use agent_host_e2e::guests;
use agent_host_e2e::support::{output_json, task, Harness};
use guests::RedisServer;
use serde_json::json;

const GRANT: &str =
    "  capabilities:\n    keyValue: { maxBytes: 1Mi }\n  limits: { fuel: 50000000, timeout: 2s }\n";

/// One harness per backend (the Redis server lives as long as its harness).
fn backends() -> Vec<(&'static str, Harness, Option<RedisServer>)> {
    let redis = RedisServer::start();
    let url = redis.url.clone();
    vec![
        ("embedded", Harness::new(), None),
        (
            "redis",
            Harness::with_config(|c| c.kv_store = KvStore::Redis(url)),
            Some(redis),
        ),
    ]
}

async fn count(agent: &PreparedAgent) -> u64 {
    let inv = agent.invoke(task(json!({}))).await;
    output_json(&inv)["count"].as_u64().unwrap()
}

async fn ending(agent: &PreparedAgent, then: &str) -> InvocationError {
    let inv = agent.invoke(task(json!({ "then": then }))).await;
    inv.result.expect_err("this ending fails the invocation")
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_commit_on_ok_and_vanish_on_every_failure() {
    for (backend, h, _redis) in backends() {
        let agent = h.agent("counter", guests::KV_COUNTER, GRANT);
        assert_eq!(count(&agent).await, 1, "{backend}");
        assert_eq!(
            count(&agent).await,
            2,
            "{backend}: the first write committed"
        );

        assert!(matches!(
            ending(&agent, "trap").await,
            InvocationError::Trap { .. }
        ));
        assert!(matches!(
            ending(&agent, "fail").await,
            InvocationError::Agent { .. }
        ));
        assert!(matches!(
            ending(&agent, "spin").await,
            InvocationError::FuelExhausted { .. }
        ));
        let slow = h.agent(
            "counter",
            guests::KV_COUNTER,
            "  capabilities:\n    keyValue: { maxBytes: 1Mi }\n  limits: { fuel: 100000000000000, timeout: 300ms }\n",
        );
        assert!(matches!(
            ending(&slow, "spin").await,
            InvocationError::Timeout { .. }
        ));
        assert_eq!(
            count(&agent).await,
            3,
            "{backend}: trap, error result, fuel exhaustion and timeout left nothing behind"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_do_not_share_keys() {
    for (backend, h, _redis) in backends() {
        let a = h.agent("agent-a", guests::KV_COUNTER, GRANT);
        let b = h.agent("agent-b", guests::KV_COUNTER, GRANT);
        assert_eq!(count(&a).await, 1, "{backend}");
        assert_eq!(count(&a).await, 2, "{backend}");
        assert_eq!(
            count(&b).await,
            1,
            "{backend}: same bucket and key, another agent's"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_quota_and_the_bucket_list_are_enforced() {
    for (backend, h, _redis) in backends() {
        // "counter" + 8 bytes = 15 bytes: over a 10-byte quota.
        let tiny = h.agent(
            "tiny",
            guests::KV_COUNTER,
            "  capabilities:\n    keyValue: { maxBytes: 10 }\n",
        );
        match ending(&tiny, "ok").await {
            InvocationError::Agent { message, .. } => {
                assert!(message.contains("quota"), "{backend}: {message}")
            }
            other => panic!("{backend}: the guest should see the quota error: {other:?}"),
        }
        // Each key fits, together they do not: refused at commit, typed.
        let small = h.agent(
            "small",
            guests::KV_COUNTER,
            "  capabilities:\n    keyValue: { maxBytes: 40 }\n",
        );
        let inv = small.invoke(task(json!({}))).await;
        assert!(
            matches!(
                inv.result,
                Err(InvocationError::KeyValue {
                    error: KvError::Quota { limit: 40, .. }
                })
            ),
            "{backend}: {:?}",
            inv.result
        );
        let listed = h.agent(
            "listed",
            guests::KV_COUNTER,
            "  capabilities:\n    keyValue: { maxBytes: 1Mi, buckets: [state] }\n",
        );
        assert_eq!(count(&listed).await, 1, "{backend}");
        let inv = listed.invoke(task(json!({ "bucket": "other" }))).await;
        match inv.result {
            Err(InvocationError::Agent { message, .. }) => {
                assert!(message.contains("AccessDenied"), "{backend}: {message}")
            }
            other => panic!("{backend}: an unlisted bucket must be refused: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_commits_conflict_instead_of_losing_an_update() {
    for (backend, h, _redis) in backends() {
        let agent = std::sync::Arc::new(h.agent("racer", guests::KV_COUNTER, GRANT));
        // Both read counter = 0, then sleep; the second commit must be refused.
        let race = |agent: std::sync::Arc<PreparedAgent>| async move {
            agent
                .invoke(task(json!({ "then": "sleep", "sleepMs": 300 })))
                .await
        };
        let (one, two) = tokio::join!(race(agent.clone()), race(agent.clone()));
        let outcomes = [one.outcome(), two.outcome()];
        assert!(
            outcomes.contains(&"ok") && outcomes.contains(&"KeyValueConflict"),
            "{backend}: {outcomes:?}"
        );
        let conflict = [one, two].into_iter().find(|i| i.result.is_err()).unwrap();
        assert!(matches!(
            conflict.result,
            Err(InvocationError::KeyValue {
                error: KvError::Conflict { .. }
            })
        ));
        assert_eq!(
            count(&agent).await,
            2,
            "{backend}: exactly one racer committed"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_using_key_value_without_the_grant_is_refused_at_load() {
    let h = Harness::new();
    let manifest = h.manifest("ungranted", guests::KV_COUNTER, "");
    match h.load(&manifest) {
        Err(LoadError::UngrantedImports { refused, .. }) => {
            assert!(refused
                .iter()
                .any(|b| b.import.starts_with("wasi:keyvalue/")));
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("loaded without the grant"),
    }
}
