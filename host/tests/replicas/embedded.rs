//! The embedded store (redb under `--state-dir`, no `--store`): a single host
//! SIGKILLed with accepted work running and queued completes that work after
//! its restart, and the results and idempotency keys it had survive.

use std::time::Duration;

use super::fleet::{assert_all_succeeded, attempt_replicas, Fleet};
use super::{counted, counter_agents, COUNTER};

#[test]
fn a_single_host_killed_and_restarted_completes_accepted_work_and_keeps_results_and_keys() {
    const WORK: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let agents = counter_agents(dir.path(), None, false, 2);
    let mut fleet = Fleet::new(None, &agents, &[]);
    fleet.grow(1);
    let host = fleet.get("r1");
    let first = host.invoke_keyed(COUNTER, "before-the-kill", &counted(None, 0));
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["state"], "succeeded", "{}", first.body);
    let ids: Vec<String> = (0..WORK)
        .map(|_| host.submit(COUNTER, &counted(None, 500)))
        .collect();
    fleet.wait_until("the host to run some", Duration::from_secs(10), || {
        ids.iter()
            .any(|id| host.invocation(id).body["state"] == "running")
    });
    let mut killed = fleet.take("r1");
    killed.signal("KILL");
    assert_eq!(killed.wait_exit(Duration::from_secs(5)), None);
    drop(killed);

    let host = fleet.restart("r1", "restarted.log");
    let ended = fleet.wait_ended(&host, &ids, Duration::from_secs(30));
    assert_all_succeeded(&ended);
    assert!(
        ended.values().any(|b| attempt_replicas(b).len() >= 2),
        "no invocation that was running at the kill ran again"
    );
    let replay = host.invoke_keyed(COUNTER, "before-the-kill", &counted(None, 0));
    assert_eq!(replay.status, 200, "{}", replay.body);
    assert_eq!(
        replay
            .headers
            .get("idempotent-replayed")
            .map(|v| v.to_str().unwrap()),
        Some("true")
    );
    assert_eq!(replay.body["id"], first.body["id"]);
    assert_eq!(replay.body["output"], first.body["output"]);
    let id = first.body["id"].as_str().unwrap();
    assert_eq!(host.invocation(id).body["state"], "succeeded");
    assert_eq!(host.counter(COUNTER), 1 + WORK as u64);
}
