//! Key-value state (`spec.capabilities.keyValue`): writes commit only when
//! `run` returns ok, agents are isolated, the quota holds and concurrent
//! commits conflict instead of losing an update — each against the embedded
//! backend and against a real Redis server on loopback.

use agent_host::cap::key_value::{KeyValueCommit, KeyValueError};
use agent_host::config::Store;
use agent_host::{InvocationError, PreparedAgent};
use agent_host_e2e::guests;
use agent_host_e2e::support::{output_json, task, Harness};
use guests::RedisServer;
use serde_json::{json, Value};

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
            Harness::with_config(|c| c.store = Store::redis(&url).unwrap()),
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
        // Each invocation's writes fit (69 bytes), the store's total does not:
        // refused at commit, typed. (Was one invocation whose keys passed the
        // quota together; that is now refused at the `set` that passes it.)
        let small = h.agent(
            "small",
            guests::KV_COUNTER,
            "  capabilities:\n    keyValue: { maxBytes: 100 }\n",
        );
        let first = small.invoke(task(json!({ "bucket": "a" }))).await;
        assert_eq!(first.outcome(), "ok", "{backend}: {:?}", first.result);
        let inv = small.invoke(task(json!({ "bucket": "b" }))).await;
        assert!(
            matches!(
                inv.result,
                Err(InvocationError::KeyValue {
                    error: KeyValueError::Quota { limit: 100, .. }
                })
            ),
            "{backend}: {:?}",
            inv.result
        );
        assert_eq!(
            inv.usage.caps.key_value.key_value,
            Some(KeyValueCommit::NotCommitted)
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
                error: KeyValueError::Conflict { .. }
            })
        ));
        assert_eq!(
            count(&agent).await,
            2,
            "{backend}: exactly one racer committed"
        );
    }
}

/// Increments commute: invocations that only increment one counter, all
/// open at once, all commit (they conflicted before: 25 of 40 failed) and
/// the counter counts every one.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_invocations_that_only_increment_a_counter_all_commit() {
    for (backend, h, _redis) in backends() {
        let agent = std::sync::Arc::new(h.agent("incr", guests::KV_COUNTER, GRANT));
        let runs: Vec<_> = (0..16)
            .map(|_| {
                let agent = agent.clone();
                tokio::spawn(async move {
                    let input = json!({ "incrementOnly": true, "sleepMs": 200 });
                    agent.invoke(task(input)).await
                })
            })
            .collect();
        for run in runs {
            let inv = run.await.unwrap();
            assert_eq!(inv.outcome(), "ok", "{backend}: {:?}", inv.result);
        }
        assert_eq!(
            count(&agent).await,
            17,
            "{backend}: every increment counted"
        );
    }
}

/// Without the grant the key-value imports are linked with every call
/// denied: opening a bucket is `access-denied`, counted and nothing stored.
#[tokio::test(flavor = "multi_thread")]
async fn a_component_using_key_value_without_the_grant_is_denied_at_call() {
    let h = Harness::new();
    let agent = h.agent("ungranted", guests::KV_COUNTER, "");
    assert!(agent
        .imports
        .iter()
        .filter(|b| b.import.starts_with("wasi:keyvalue/"))
        .all(|b| b.to_string().contains("every call denied")));
    let inv = agent.invoke(task(json!({}))).await;
    assert!(
        inv.result.is_err() || output_json(&inv).to_string().contains("denied"),
        "{:?}",
        inv.result
    );
    assert_eq!(
        inv.usage.caps.key_value.key_value_denied, 1,
        "{:?}",
        inv.usage
    );
    assert_eq!(inv.usage.caps.key_value.key_value, None, "{:?}", inv.usage);
}

/// A `kv_flood` agent with `maxBytes` and a generous fuel budget.
fn flood(h: &Harness, name: &str, max_bytes: &str) -> PreparedAgent {
    h.agent(
        name,
        guests::KV_FLOOD,
        &format!("  capabilities:\n    keyValue: {{ maxBytes: {max_bytes} }}\n  limits: {{ fuel: 100000000000, timeout: 10s }}\n"),
    )
}

/// Runs the flood agent; its report (`ok`, `refused`, `firstRefused`, `error`)
/// and the invocation.
async fn run_flood(agent: &PreparedAgent, input: Value) -> (Value, agent_host::Invocation) {
    let inv = agent.invoke(task(input)).await;
    (output_json(&inv), inv)
}

/// What the store holds, in the unit that tombstones would grow: the redb
/// file's bytes, or Redis's key count.
fn store_size(h: &Harness, redis: &Option<RedisServer>) -> u64 {
    match redis {
        None => std::fs::metadata(h.dir.path().join("state/kv.redb"))
            .map(|m| m.len())
            .unwrap_or(0),
        Some(redis) => {
            use std::io::{BufRead, BufReader, Write};
            let addr = redis
                .url
                .trim_start_matches("redis://")
                .trim_end_matches("/0");
            let mut conn = std::net::TcpStream::connect(addr).unwrap();
            conn.write_all(b"DBSIZE\r\n").unwrap();
            let mut line = String::new();
            BufReader::new(conn).read_line(&mut line).unwrap();
            line.trim().trim_start_matches(':').parse().unwrap()
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_set_that_takes_the_transaction_past_the_quota_is_refused_at_the_call() {
    for (backend, h, _redis) in backends() {
        let agent = flood(&h, "flood", "1Mi");
        // 20 sets of 512 KiB: the second takes the buffer past 1 MiB.
        let (report, inv) =
            run_flood(&agent, json!({ "op": "set", "count": 20, "size": 524288 })).await;
        assert_eq!(report["ok"], 1, "{backend}: {report}");
        assert_eq!(report["firstRefused"], 1, "{backend}: {report}");
        assert_eq!(report["refused"], 19, "{backend}: {report}");
        let error = report["error"].as_str().unwrap();
        assert!(
            error.contains("quota") && error.contains("maxBytes is 1048576"),
            "{backend}: {error}"
        );
        assert_eq!(
            inv.usage.caps.key_value.key_value,
            Some(KeyValueCommit::Committed),
            "{backend}"
        );
        // What fit was committed.
        let (report, _) = run_flood(&agent, json!({ "op": "get", "count": 2 })).await;
        assert_eq!(report["ok"], 2, "{backend}: {report}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_past_the_budget_and_oversized_keys_are_refused() {
    for (backend, h, _redis) in backends() {
        let agent = flood(&h, "reader", "1Mi");
        // 1,048 keys of 1,000 bytes fit in 1 MiB; the 1,049th read is refused.
        let (report, _) = run_flood(
            &agent,
            json!({ "op": "get", "count": 1100, "keyBytes": 1000 }),
        )
        .await;
        assert_eq!(report["firstRefused"], 1048, "{backend}: {report}");
        assert!(
            report["error"].as_str().unwrap().contains("quota"),
            "{backend}: {report}"
        );

        let (report, _) =
            run_flood(&agent, json!({ "op": "set", "count": 1, "keyBytes": 4097 })).await;
        assert_eq!(report["firstRefused"], 0, "{backend}: {report}");
        assert!(
            report["error"]
                .as_str()
                .unwrap()
                .contains("key of 4097 bytes is longer than the 4096-byte limit"),
            "{backend}: {report}"
        );
        let (report, inv) =
            run_flood(&agent, json!({ "op": "set", "count": 1, "keyBytes": 4096 })).await;
        assert_eq!(
            report["ok"], 1,
            "{backend}: a 4 KiB key is allowed: {report}"
        );
        assert_eq!(
            inv.usage.caps.key_value.key_value,
            Some(KeyValueCommit::Committed),
            "{backend}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deletes_of_absent_keys_do_not_grow_the_store() {
    for (backend, h, redis) in backends() {
        let agent = flood(&h, "deleter", "1Mi");
        let (report, _) = run_flood(&agent, json!({ "op": "set", "count": 1 })).await;
        assert_eq!(report["ok"], 1, "{backend}: {report}");
        let before = store_size(&h, &redis);
        // 5,000 deletes of absent 1,000-byte keys, 1,000 per invocation (each
        // read of an absence counts against the transaction's 1 MiB).
        for round in 0..5 {
            let prefix = format!("absent-{round}-");
            let (report, inv) = run_flood(
                &agent,
                json!({ "op": "delete", "count": 1000, "keyBytes": 1000, "prefix": prefix }),
            )
            .await;
            assert_eq!(report["ok"], 1000, "{backend}: {report}");
            assert_eq!(
                inv.usage.caps.key_value.key_value, None,
                "{backend}: nothing to commit"
            );
        }
        let after = store_size(&h, &redis);
        let bound = if redis.is_some() { 0 } else { 64 * 1024 };
        assert!(
            after <= before + bound,
            "{backend}: the store grew from {before} to {after}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_at_its_quota_can_still_delete_to_shrink() {
    for (backend, h, redis) in backends() {
        let agent = flood(&h, "full", "2100");
        // Two keys of 16 + 1,000 bytes: 2,032 of 2,100.
        let (report, _) = run_flood(&agent, json!({ "op": "set", "count": 2, "size": 1000 })).await;
        assert_eq!(report["ok"], 2, "{backend}: {report}");
        let inv = agent
            .invoke(task(
                json!({ "op": "set", "count": 1, "size": 1000, "prefix": "x" }),
            ))
            .await;
        assert_eq!(inv.outcome(), "KeyValueQuota", "{backend}");
        let keys_full = store_size(&h, &redis);
        let (report, inv) = run_flood(&agent, json!({ "op": "delete", "count": 1 })).await;
        assert_eq!(report["ok"], 1, "{backend}: {report}");
        assert_eq!(
            inv.usage.caps.key_value.key_value,
            Some(KeyValueCommit::Committed),
            "{backend}"
        );
        if redis.is_some() {
            assert!(
                store_size(&h, &redis) < keys_full,
                "{backend}: the delete removed the key and its version"
            );
        }
        let (report, inv) = run_flood(
            &agent,
            json!({ "op": "set", "count": 1, "size": 1000, "prefix": "x" }),
        )
        .await;
        assert_eq!(report["ok"], 1, "{backend}: room again after the delete");
        assert_eq!(inv.outcome(), "ok", "{backend}");
    }
}

/// A commit that started before the deadline runs to its end; when Redis
/// stops answering in the middle of it, the invocation says the commit's
/// outcome is unknown (it may have applied) instead of guessing either way.
#[tokio::test(flavor = "multi_thread")]
async fn a_commit_redis_never_answers_is_reported_as_unknown() {
    let redis = RedisServer::start();
    let url = redis.url.clone();
    let h = Harness::with_config(|c| c.store = Store::redis(&url).unwrap());
    let agent = h.agent("counter", guests::KV_COUNTER, GRANT);
    assert_eq!(count(&agent).await, 1);
    let signal = |sig: &str| redis.signal(sig);
    // The guest reads and buffers at once, then sleeps; Redis stops meanwhile,
    // so the commit (started well before the 2 s deadline) gets no reply.
    let invocation = agent.invoke(task(json!({ "then": "sleep", "sleepMs": 600 })));
    let stop = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        signal("STOP");
    };
    let (inv, ()) = tokio::join!(invocation, stop);
    signal("CONT");
    assert_eq!(inv.outcome(), "KeyValueError", "{:?}", inv.result);
    assert!(
        matches!(
            inv.result,
            Err(InvocationError::KeyValue {
                error: KeyValueError::Unknown(_)
            })
        ),
        "{:?}",
        inv.result
    );
    assert_eq!(
        inv.usage.caps.key_value.key_value,
        Some(KeyValueCommit::Unknown)
    );
}

/// The guest SDK's `kv::Store` through the real host: JSON values round-trip
/// and persist, `increment` keeps counters in the host's format (the raw
/// `kv_counter` probe, same agent name so same keys, reads and writes the
/// same counter), `keys`/`delete`/`exists` agree, and each refusal arrives as
/// the SDK's typed error with the `AgentError` case `?` reports.
#[tokio::test(flavor = "multi_thread")]
async fn the_sdk_store_round_trips_json_and_counters_and_types_its_errors() {
    let h = Harness::new();
    let spec = "  capabilities:\n    keyValue: { maxBytes: 1Mi, buckets: [state] }\n";
    let raw = h.agent("shared", guests::KV_COUNTER, spec);
    let sdk = h.agent("shared", guests::KV_SDK, spec);
    assert_eq!(count(&raw).await, 1);

    let first = sdk.invoke(task(json!({}))).await;
    let out = output_json(&first);
    assert_eq!(out["counterBefore"], 1, "reads the host's counter: {out}");
    assert_eq!(out["counterAfter"], 6, "{out}");
    assert_eq!(out["counterRead"], 6, "{out}");
    assert_eq!(out["previousProfile"], Value::Null, "{out}");
    assert_eq!(out["profileService"], "db", "{out}");
    assert_eq!(out["scratchListed"], true, "{out}");
    assert_eq!(out["scratchExists"], false, "{out}");
    assert_eq!(
        out["keys"],
        json!(["counter", "last", "mirror", "profile"]),
        "{out}"
    );
    let typed = |field: &str, variant: &str, case: &str| {
        assert_eq!(out[field]["variant"], variant, "{field}: {out}");
        assert_eq!(out[field]["agentError"], case, "{field}: {out}");
    };
    typed("wrongType", "Json", "internal");
    typed("notACounter", "NotACounter", "internal");
    typed("forbidden", "Denied", "capability-denied");
    let denial = out["forbidden"]["message"].as_str().unwrap();
    assert!(
        denial.contains("`forbidden`") && denial.contains("spec.capabilities.keyValue"),
        "{denial}"
    );

    // Committed: the raw probe continues the SDK's counter, and the next SDK
    // invocation finds the profile the first one stored.
    assert_eq!(count(&raw).await, 7);
    let second = output_json(&sdk.invoke(task(json!({}))).await);
    assert_eq!(second["previousProfile"], first.id.as_str(), "{second}");
    assert_eq!(second["counterAfter"], 12, "{second}");
}
