//! `tokensPerMinute` across replicas (issue 14, promise 5): two runtimes,
//! each with its own connection to one real `redis-server`, spend from one
//! window in the state store; without the store each spends its own.

use std::sync::Arc;
use std::time::Duration;

use agent_host::state_store::redis::RedisStore;
use agent_host::state_store::{StateStore, DEFAULT_RETENTION};
use agent_host::{Invocation, PreparedAgent};
use agent_host_e2e::guests;
use agent_host_e2e::support::{output_json, task, Harness};
use agent_host_test_guests::RedisServer;
use serde_json::json;

use crate::llm::{grant, slow_greedy_model};

const PER_MINUTE: u64 = 400;

/// A replica of agent `name`: its own runtime and, with `redis`, its own
/// store connection.
async fn replica(redis: Option<&str>, name: &str, spec: &str) -> (Harness, Arc<PreparedAgent>) {
    let mut h = Harness::new();
    if let Some(url) = redis {
        let store = RedisStore::connect(url, DEFAULT_RETENTION).await.unwrap();
        h.runtime
            .use_state_store(Arc::new(store) as Arc<dyn StateStore>);
    }
    let agent = Arc::new(h.agent(name, guests::LLM_PROBE, spec));
    (h, agent)
}

/// Tokens spent and the refusals, by answer.
fn tally(invocations: &[Invocation]) -> (u64, Vec<String>) {
    let mut spent = 0;
    let mut refused = Vec::new();
    for inv in invocations {
        spent += inv.usage.caps.llm.llm_tokens;
        let out = output_json(inv);
        for answer in out["answers"].as_array().unwrap() {
            if let Some(e) = answer["error"].as_str() {
                refused.push(e.to_string());
            }
        }
    }
    (spent, refused)
}

/// Three invocations on each of two replicas, all asking before any is
/// charged (the model answers after 500 ms).
async fn burst(redis: Option<&str>, spec: &str) -> Vec<Invocation> {
    let (_a, a) = replica(redis, "burst", spec).await;
    let (_b, b) = replica(redis, "burst", spec).await;
    let runs: Vec<_> = [&a, &a, &a, &b, &b, &b]
        .into_iter()
        .map(|agent| {
            let agent = agent.clone();
            tokio::spawn(async move { agent.invoke(task(json!({}))).await })
        })
        .collect();
    let mut done = Vec::new();
    for run in runs {
        done.push(run.await.unwrap());
    }
    done
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_on_one_redis_spend_from_one_tokens_per_minute_window() {
    let redis = RedisServer::start();
    let model = slow_greedy_model(Duration::from_millis(500)).await;
    let spec = format!(
        "{}  limits: {{ maxConcurrency: 3 }}\n",
        grant(
            &format!("http://{model}"),
            &format!(", tokensPerMinute: {PER_MINUTE}")
        )
    );

    // Control: per-process windows let two replicas spend twice the limit.
    let (alone, _) = tally(&burst(None, &spec).await);
    assert!(
        alone > PER_MINUTE,
        "the control did not overspend ({alone} tokens): the test cannot tell shared from per-process windows"
    );

    let (spent, refused) = tally(&burst(Some(&redis.url), &spec).await);
    assert!(
        spent <= PER_MINUTE,
        "{spent} tokens spent by two replicas in one minute against tokensPerMinute {PER_MINUTE}"
    );
    assert!(refused.len() >= 3, "only {} of 6 refused", refused.len());
    for e in &refused {
        assert!(
            e.contains("BudgetExceeded")
                && e.contains("tokensPerMinute")
                && e.contains("across replicas"),
            "{e}"
        );
    }

    // What one replica spent is seen by the other: once the first has used
    // the window up, the second's very first call is refused, unsent.
    let (_a, a) = replica(Some(&redis.url), "serial", &spec).await;
    let (_b, b) = replica(Some(&redis.url), "serial", &spec).await;
    let first = a.invoke(task(json!({ "calls": 5 }))).await;
    let (used, refused) = tally(std::slice::from_ref(&first));
    assert!(
        used <= PER_MINUTE && !refused.is_empty(),
        "the first replica spent {used} with refusals {refused:?}"
    );
    let second = b.invoke(task(json!({}))).await;
    let out = output_json(&second);
    let e = out["answers"][0]["error"].as_str().unwrap_or_default();
    assert!(
        e.contains("BudgetExceeded") && e.contains("tokensPerMinute"),
        "{out}"
    );
    assert_eq!(
        (
            second.usage.caps.llm.llm_requests,
            second.usage.caps.llm.llm_denied
        ),
        (0, 1)
    );
}
