//! A replica dies (SIGKILL), is scaled down (SIGTERM) or is paused past its
//! lease (SIGSTOP, then SIGCONT) while it holds work: every acknowledged
//! invocation still ends `succeeded` elsewhere, the key-value counter counts
//! each once, and a repeated side effect carries the same `Idempotency-Key`.

use std::time::Duration;

use agent_host_test_guests::redis::{Cluster, RedisProc};

use super::fleet::{assert_all_succeeded, attempt_replicas, Fleet};
use super::sink::Sink;
use super::{counted, counter_agents, COUNTER};

/// How long a counted invocation sleeps in the crash scenario: long enough
/// that a replica always has some running, short enough for a few hundred.
const CRASH_SLEEP_MS: u64 = 150;

/// Fails unless every invocation in `ids` reached the sink, all its requests
/// with one key derived from its id, and nothing else reached it.
fn assert_one_key_per_invocation(sink: &Sink, ids: &[String]) {
    let by_task = sink.keys_by_task();
    for id in ids {
        let keys = by_task
            .get(id)
            .unwrap_or_else(|| panic!("the sink never saw invocation {id}"));
        let keys: Vec<&Option<String>> = keys.iter().collect();
        let [Some(key)] = keys.as_slice() else {
            panic!("invocation {id} reached the sink with keys {keys:?}, not one");
        };
        assert!(
            key.starts_with(&format!("{id}-")),
            "{id}'s Idempotency-Key {key:?} is not derived from its id"
        );
    }
    assert_eq!(by_task.len(), ids.len(), "the sink saw unknown tasks");
}

/// `count` async invocations spread over three replicas; the second is
/// SIGKILLed while it runs some, half-way through the submissions.
fn a_replica_killed_mid_stream(store: String, count: usize) {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start();
    let agents = counter_agents(dir.path(), Some(&sink.url), true, 8);
    let mut fleet = Fleet::new(Some(store), &agents, &[]);
    fleet.grow(3);
    let input = counted(Some(&sink.url), CRASH_SLEEP_MS);
    let mut ids: Vec<String> = (0..count / 2)
        .map(|i| fleet.replicas[i % 3].submit(COUNTER, &input))
        .collect();
    fleet.wait_until("r2 to run an invocation", Duration::from_secs(10), || {
        ids.iter().any(|id| {
            let body = fleet.get("r1").invocation(id).body;
            body["state"] == "running" && attempt_replicas(&body).last().is_some_and(|r| r == "r2")
        })
    });
    let mut victim = fleet.take("r2");
    victim.signal("KILL");
    assert_eq!(
        victim.wait_exit(Duration::from_secs(5)),
        None,
        "killed by a signal"
    );
    ids.extend((count / 2..count).map(|i| fleet.replicas[i % 2].submit(COUNTER, &input)));

    let ended = fleet.wait_ended(fleet.get("r3"), &ids, Duration::from_secs(60));
    assert_all_succeeded(&ended);
    let rerun = ended
        .values()
        .filter(|b| {
            let replicas = attempt_replicas(b);
            replicas.len() >= 2 && replicas[0] == "r2"
        })
        .count();
    assert!(
        rerun > 0,
        "no invocation the killed replica was running ran again"
    );
    for metric in [
        "agent_host_lease_reclaims_total",
        "agent_host_redeliveries_total",
    ] {
        let survivors: f64 = fleet.replicas.iter().map(|r| r.metric(metric)).sum();
        assert!(survivors >= 1.0, "{metric} is {survivors} on the survivors");
    }
    assert_eq!(fleet.get("r1").counter(COUNTER), count as u64);
    assert_one_key_per_invocation(&sink, &ids);
}

#[test]
fn a_replica_killed_mid_stream_loses_nothing_and_each_invocation_commits_once() {
    let redis = RedisProc::start(&[]);
    a_replica_killed_mid_stream(redis.url(), 200);
}

#[test]
fn a_replica_killed_mid_stream_loses_nothing_on_a_three_primary_redis_cluster() {
    let cluster = Cluster::start();
    a_replica_killed_mid_stream(cluster.url(), 60);
}

/// The scale-down of an HPA: SIGTERM a replica with work running and queued;
/// the grace is shorter than the work, so its running attempt is handed back.
#[test]
fn a_replica_scaled_down_hands_its_work_back_and_nothing_is_cancelled() {
    const WORK: usize = 9;
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisProc::start(&[]);
    let agents = counter_agents(dir.path(), None, false, 1);
    let mut fleet = Fleet::new(Some(redis.url()), &agents, &["--shutdown-grace", "300ms"]);
    fleet.grow(3);
    let r1 = fleet.get("r1");
    let ids: Vec<String> = (0..WORK)
        .map(|_| r1.submit(COUNTER, &counted(None, 800)))
        .collect();
    fleet.wait_until("r1 to run an invocation", Duration::from_secs(10), || {
        ids.iter().any(|id| {
            let body = r1.invocation(id).body;
            body["state"] == "running" && attempt_replicas(&body).last().is_some_and(|r| r == "r1")
        })
    });
    let mut leaving = fleet.take("r1");
    leaving.signal("TERM");
    assert_eq!(
        leaving.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        leaving.logs()
    );

    let ended = fleet.wait_ended(fleet.get("r2"), &ids, Duration::from_secs(30));
    assert_all_succeeded(&ended);
    assert!(
        ended
            .values()
            .any(|b| attempt_replicas(b).first().is_some_and(|r| r == "r1")
                && attempt_replicas(b).len() >= 2),
        "no invocation r1 was running was run again elsewhere"
    );
    assert_eq!(fleet.get("r3").counter(COUNTER), WORK as u64);
}

/// A replica stopped (SIGSTOP: a long GC pause, a frozen node) past its lease
/// while running: another replica reclaims and completes the work; woken
/// (SIGCONT), the stale owner's commits are refused.
#[test]
fn a_replica_paused_past_its_lease_is_fenced_and_the_counter_stays_exact() {
    const WORK: usize = 3;
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisProc::start(&[]);
    let sink = Sink::start();
    let agents = counter_agents(dir.path(), Some(&sink.url), true, 4);
    let mut fleet = Fleet::new(Some(redis.url()), &agents, &[]);
    fleet.grow(1);
    let input = counted(Some(&sink.url), 2500);
    let ids: Vec<String> = (0..WORK)
        .map(|_| fleet.get("r1").submit(COUNTER, &input))
        .collect();
    fleet.wait_until("r1 to run all of them", Duration::from_secs(10), || {
        ids.iter()
            .all(|id| fleet.get("r1").invocation(id).body["state"] == "running")
    });
    fleet.get("r1").signal("STOP");
    fleet.grow(1);

    let ended = fleet.wait_ended(fleet.get("r2"), &ids, Duration::from_secs(30));
    assert_all_succeeded(&ended);
    for body in ended.values() {
        assert_eq!(attempt_replicas(body), ["r1", "r2"], "{body}");
    }
    fleet.get("r1").signal("CONT");
    fleet.wait_until(
        "r1's late commits to be fenced",
        Duration::from_secs(10),
        || fleet.get("r1").metric("agent_host_fenced_commits_total") >= 1.0,
    );
    for id in &ids {
        let body = fleet.get("r1").invocation(id).body;
        assert_eq!(body["state"], "succeeded", "{body}");
        assert_eq!(attempt_replicas(&body), ["r1", "r2"], "{body}");
    }
    assert_eq!(fleet.get("r1").counter(COUNTER), WORK as u64);
    assert_one_key_per_invocation(&sink, &ids);
}
