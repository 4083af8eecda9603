//! Any replica answers for every durable invocation: an async invocation
//! accepted by one is read from the others, one `Idempotency-Key` sent to all
//! three at once runs the agent once, and a cancel sent to another replica
//! than the one that accepted the work stops it.

use std::sync::Barrier;
use std::time::Duration;

use agent_host_test_guests::redis::{Cluster, RedisProc};
use serde_json::Value;

use super::fleet::{attempt_replicas, Fleet};
use super::{counted, counter_agents, COUNTER};

/// Submits to r1, reads from r2 and r3 (also by the `Location` r1 gave).
fn answered_by_every_replica(store: String) {
    let dir = tempfile::tempdir().unwrap();
    let agents = counter_agents(dir.path(), None, false, 4);
    let mut fleet = Fleet::new(Some(store), &agents, &[]);
    fleet.grow(3);
    let r = fleet
        .get("r1")
        .submit_reply(COUNTER, &[], &counted(None, 300));
    let id = super::fleet::accepted_id("r1", &r);
    let location = r.headers["location"].to_str().unwrap().to_string();
    for name in ["r2", "r3"] {
        let early = fleet.get(name).get(&location);
        assert_eq!(early.status, 200, "{name}: {}", early.body);
        assert_eq!(early.body["id"], id.as_str(), "{name}: {}", early.body);
        let state = early.body["state"].as_str().unwrap_or_default();
        assert!(
            ["queued", "running", "succeeded"].contains(&state),
            "{name}: {}",
            early.body
        );
    }
    let ended = fleet.wait_ended(
        fleet.get("r2"),
        std::slice::from_ref(&id),
        Duration::from_secs(20),
    );
    let body = &ended[&id];
    assert_eq!(body["state"], "succeeded", "{body}");
    assert_eq!(body["output"]["count"], 1, "{body}");
    let ran_on = attempt_replicas(body);
    assert_eq!(ran_on.len(), 1, "{body}");
    assert!(["r1", "r2", "r3"].contains(&ran_on[0].as_str()), "{body}");
    let from_r3 = fleet.get("r3").invocation(&id);
    assert_eq!(from_r3.body["state"], "succeeded");
    assert_eq!(from_r3.body["output"], body["output"]);
    assert_eq!(from_r3.body["attempts"], body["attempts"]);
}

#[test]
fn an_async_invocation_accepted_by_one_replica_is_answered_by_the_other_two() {
    let redis = RedisProc::start(&[]);
    answered_by_every_replica(redis.url());
}

#[test]
fn an_async_invocation_is_answered_by_every_replica_on_a_three_primary_redis_cluster() {
    let cluster = Cluster::start();
    answered_by_every_replica(cluster.url());
}

#[test]
fn one_idempotency_key_sent_to_three_replicas_at_once_runs_the_agent_once() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisProc::start(&[]);
    let agents = counter_agents(dir.path(), None, false, 4);
    let mut fleet = Fleet::new(Some(redis.url()), &agents, &[]);
    fleet.grow(3);
    let body = counted(None, 500);
    let start = Barrier::new(3);
    let replies: Vec<(u16, Value, bool)> = std::thread::scope(|s| {
        let sent: Vec<_> = fleet
            .replicas
            .iter()
            .map(|replica| {
                let (start, body) = (&start, &body);
                s.spawn(move || {
                    start.wait();
                    let r = replica.invoke_keyed(COUNTER, "one-task", body);
                    let replayed = r
                        .headers
                        .get("idempotent-replayed")
                        .is_some_and(|v| v == "true");
                    (r.status, r.body, replayed)
                })
            })
            .collect();
        sent.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (status, body, _) in &replies {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body["state"], "succeeded", "{body}");
        assert_eq!(
            body["id"], replies[0].1["id"],
            "different invocations: {body}"
        );
        assert_eq!(
            body["output"], replies[0].1["output"],
            "different answers: {body}"
        );
    }
    let replayed = replies.iter().filter(|(_, _, r)| *r).count();
    assert_eq!(replayed, 2, "two of the three requests are replays");
    let again = fleet.get("r2").invoke_keyed(COUNTER, "one-task", &body);
    assert_eq!(again.body["id"], replies[0].1["id"]);
    assert_eq!(
        fleet.get("r3").counter(COUNTER),
        1,
        "the agent ran more than once"
    );
}

/// One slot per replica, both busy: the third invocation waits in the shared
/// queue (which the other replica reports as `agent_host_store_queue_depth`); a
/// cancel sent to the replica that did not accept it ends it `cancelled` and
/// it never runs.
#[test]
fn a_cancel_sent_to_another_replica_ends_queued_work_and_it_never_runs() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisProc::start(&[]);
    let agents = counter_agents(dir.path(), None, false, 1);
    let mut fleet = Fleet::new(Some(redis.url()), &agents, &[]);
    fleet.grow(2);
    let r1 = fleet.get("r1");
    let busy: Vec<String> = (0..2)
        .map(|_| r1.submit(COUNTER, &counted(None, 1500)))
        .collect();
    fleet.wait_until("both replicas busy", Duration::from_secs(10), || {
        busy.iter()
            .all(|id| r1.invocation(id).body["state"] == "running")
    });
    let waiting = r1.submit(COUNTER, &counted(None, 0));
    assert_eq!(r1.invocation(&waiting).body["state"], "queued");
    fleet.wait_until("r2 to report the queue", Duration::from_secs(5), || {
        fleet.get("r2").metric("agent_host_store_queue_depth") >= 1.0
    });
    let r = fleet.get("r2").cancel(&waiting);
    assert!(r.status < 300, "{}", r.body);
    let ended = fleet.wait_ended(r1, std::slice::from_ref(&waiting), Duration::from_secs(5));
    assert_eq!(ended[&waiting]["state"], "cancelled", "{}", ended[&waiting]);

    let ended = fleet.wait_ended(r1, &busy, Duration::from_secs(20));
    assert!(
        ended.values().all(|b| b["state"] == "succeeded"),
        "{ended:?}"
    );
    assert_eq!(r1.invocation(&waiting).body["state"], "cancelled");
    assert_eq!(
        fleet.get("r2").counter(COUNTER),
        2,
        "the cancelled invocation ran"
    );
}
