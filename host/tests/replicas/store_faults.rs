//! The store itself fails under the replicas: Redis restarted mid-stream (a
//! clean SIGTERM with the deploy/ persistence settings, and a SIGKILL crash
//! with `appendfsync always`), and Redis unreachable (SIGSTOP: connections
//! hang rather than fail). Nothing acknowledged is lost; while the store is
//! away new work is refused with `503 StoreUnavailable` and `/readyz` says
//! not ready; service resumes when it returns.

use std::time::{Duration, Instant};

use agent_host_test_guests::redis::RedisProc;

use super::fleet::{accepted_id, assert_all_succeeded, Fleet};
use super::{counted, counter_agents, COUNTER};

/// Invocations submitted in the restart scenario.
const WORK: usize = 40;

/// Submits invocation `i` with key `restart-<i>` until it is acknowledged
/// (202) or `within` passes; its id, or `None` while the store is away. The
/// key makes a retry of a POST whose answer was lost safe.
fn submit_keyed(fleet: &Fleet, i: usize, within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    loop {
        let replica = &fleet.replicas[i % fleet.replicas.len()];
        let key = format!("restart-{i}");
        let r = replica.submit_reply(COUNTER, &[("idempotency-key", &key)], &counted(None, 50));
        if r.status == 202 {
            return Some(accepted_id(&replica.name, &r));
        }
        assert_eq!(r.status, 503, "{}: {}", replica.name, r.body);
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Half the work acknowledged, Redis stopped by `sig` and started again on
/// its data, the rest submitted: every acknowledged invocation succeeds once.
fn redis_restarted_mid_stream(sig: &str, fsync: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = RedisProc::start(&["--appendonly", "yes", "--appendfsync", fsync]);
    let agents = counter_agents(dir.path(), None, false, 4);
    let mut fleet = Fleet::new(Some(redis.url()), &agents, &[]);
    fleet.grow(2);
    let mut ids: Vec<String> = (0..WORK / 2)
        .map(|i| submit_keyed(&fleet, i, Duration::ZERO).expect("acknowledged while Redis is up"))
        .collect();
    redis.stop(sig);
    let refused = submit_keyed(&fleet, WORK / 2, Duration::ZERO);
    assert_eq!(refused, None, "acknowledged while Redis was down");
    redis.restart();
    ids.extend((WORK / 2..WORK).map(|i| {
        submit_keyed(&fleet, i, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("not acknowledged after Redis came back\n{}", fleet.logs()))
    }));

    let ended = fleet.wait_ended(&fleet.replicas[1], &ids, Duration::from_secs(30));
    assert_all_succeeded(&ended);
    assert_eq!(fleet.replicas[0].counter(COUNTER), WORK as u64);
}

#[test]
fn redis_restarted_cleanly_mid_stream_loses_nothing_acknowledged() {
    redis_restarted_mid_stream("TERM", "everysec");
}

#[test]
fn redis_crashed_mid_stream_with_appendfsync_always_loses_nothing_acknowledged() {
    redis_restarted_mid_stream("KILL", "always");
}

#[test]
fn redis_unreachable_refuses_new_work_with_503_and_unready_then_service_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisProc::start(&[]);
    let agents = counter_agents(dir.path(), None, false, 4);
    let mut fleet = Fleet::new(Some(redis.url()), &agents, &[]);
    fleet.grow(2);
    let mut ids: Vec<String> = (0..10)
        .map(|i| fleet.replicas[i % 2].submit(COUNTER, &counted(None, 300)))
        .collect();

    redis.signal("STOP");
    // Keyed: a request refused after its write reached the stalled store may
    // still be recorded, so the caller retries it with the same key.
    let key = [("idempotency-key", "while-unreachable")];
    let asked = Instant::now();
    let r = fleet.replicas[1].submit_reply(COUNTER, &key, &counted(None, 0));
    eprintln!("while Redis is unreachable: {} {}", r.status, r.body);
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "StoreUnavailable", "{}", r.body);
    assert!(
        asked.elapsed() < Duration::from_secs(15),
        "refused only after {:?}",
        asked.elapsed()
    );
    assert!(
        r.headers.contains_key("retry-after"),
        "503 without Retry-After"
    );
    fleet.wait_until("every replica unready", Duration::from_secs(15), || {
        fleet.replicas.iter().all(|r| !r.ready())
    });

    redis.signal("CONT");
    fleet.wait_until("every replica ready again", Duration::from_secs(20), || {
        fleet.replicas.iter().all(|r| r.ready())
    });
    let retried = fleet.replicas[0].submit_reply(COUNTER, &key, &counted(None, 0));
    ids.push(accepted_id("r1", &retried));
    ids.push(fleet.replicas[0].submit(COUNTER, &counted(None, 0)));
    let ended = fleet.wait_ended(&fleet.replicas[1], &ids, Duration::from_secs(30));
    assert_all_succeeded(&ended);
    assert_eq!(fleet.replicas[0].counter(COUNTER), ids.len() as u64);
}
