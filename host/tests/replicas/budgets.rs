//! What replicas share besides invocations: one `tokensPerMinute` budget per
//! agent, and key-value counters that many replicas increment at once.

use agent_host_test_guests::redis::RedisProc;

use super::fleet::Fleet;
use super::{counted, counter_agents, guests, COUNTER};
use crate::model::Model;

/// Three replicas each spend what they can from one budget of 300 tokens a
/// minute (the model stand-in charges 49 a call): alone, each would spend
/// nearly all of it; together they spend it once.
#[test]
fn three_replicas_spend_one_shared_tokens_per_minute_budget() {
    const PER_MINUTE: u64 = 300;
    const CALLS_PER_REPLICA: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    let model = Model::start();
    let agents = dir.path().join("agents");
    std::fs::create_dir_all(&agents).unwrap();
    let spec = format!(
        "{}  limits: {{ maxConcurrency: 4 }}\n",
        model.grant(&format!(", tokensPerMinute: {PER_MINUTE}"))
    );
    guests::write_manifest(&agents, "probe", guests::LLM_PROBE, &spec);
    let redis = RedisProc::start(&[]);
    let mut fleet = Fleet::new(Some(redis.url()), &agents, &[]);
    fleet.grow(3);

    let (spent, refused): (Vec<u64>, Vec<usize>) = std::thread::scope(|s| {
        let runs: Vec<_> = fleet
            .replicas
            .iter()
            .map(|replica| {
                s.spawn(move || {
                    let (mut spent, mut refused) = (0, 0);
                    for _ in 0..CALLS_PER_REPLICA {
                        let r = replica.invoke("probe", "{}");
                        assert_eq!(r.status, 200, "{}: {}", replica.name, r.body);
                        spent += r.body["usage"]["llmTokens"].as_u64().unwrap_or(0);
                        let answer = &r.body["output"]["answers"][0];
                        if let Some(e) = answer["error"].as_str() {
                            assert!(e.contains("tokensPerMinute"), "{}", r.body);
                            refused += 1;
                        }
                    }
                    (spent, refused)
                })
            })
            .collect();
        runs.into_iter().map(|h| h.join().unwrap()).unzip()
    });
    let spent: u64 = spent.iter().sum();
    let refused: usize = refused.iter().sum();
    eprintln!("3 replicas: {spent} tokens spent, {refused} calls refused");
    assert!(
        spent <= PER_MINUTE,
        "{spent} tokens spent in one minute by three replicas against tokensPerMinute {PER_MINUTE}"
    );
    assert!(spent > 0, "the budget refused everything");
    assert!(
        refused >= 3 * CALLS_PER_REPLICA - (PER_MINUTE / 49) as usize,
        "only {refused} calls refused"
    );
}

/// Many sync invocations on three replicas at once, each only incrementing
/// one counter: none fails on a conflict, and the counter is their number.
#[test]
fn contended_increments_across_replicas_all_commit_and_the_counter_is_exact() {
    const THREADS_PER_REPLICA: usize = 4;
    const CALLS_PER_THREAD: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisProc::start(&[]);
    let agents = counter_agents(dir.path(), None, false, 8);
    let mut fleet = Fleet::new(Some(redis.url()), &agents, &[]);
    fleet.grow(3);
    std::thread::scope(|s| {
        for replica in &fleet.replicas {
            for _ in 0..THREADS_PER_REPLICA {
                s.spawn(move || {
                    for _ in 0..CALLS_PER_THREAD {
                        let r = replica.invoke(COUNTER, &counted(None, 0));
                        assert_eq!(r.status, 200, "{}: {}", replica.name, r.body);
                        assert_eq!(r.body["state"], "succeeded", "{}: {}", replica.name, r.body);
                    }
                });
            }
        }
    });
    let total = 3 * THREADS_PER_REPLICA * CALLS_PER_THREAD;
    assert_eq!(fleet.replicas[2].counter(COUNTER), total as u64);
}
