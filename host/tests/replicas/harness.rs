//! The harness itself, with nothing of issue 14's durable work: replicas
//! start on one Redis and serve, share key-value state through it, take the
//! signals the scenarios send; the sink records keys; a Redis restarts on its
//! data. If one of these fails, the scenarios' failures say nothing.

use std::time::Duration;

use agent_host_test_guests::redis::RedisProc;

use super::fleet::Fleet;
use super::sink::Sink;
use super::{counted, counter_agents, COUNTER};

/// Replicas with only the flags every `serve` has (`-f`, `--store`).
fn plain_fleet(redis: &RedisProc, agents: &std::path::Path, n: usize) -> Fleet {
    let args = vec!["-f".to_string(), agents.display().to_string()];
    let mut fleet = Fleet::with_args(Some(redis.url()), args);
    fleet.grow(n);
    fleet
}

#[test]
fn replicas_on_one_redis_serve_sync_requests_and_share_key_value_state() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisProc::start(&[]);
    let sink = Sink::start();
    let agents = counter_agents(dir.path(), Some(&sink.url), false, 4);
    let fleet = plain_fleet(&redis, &agents, 3);
    assert_eq!(fleet.replicas.len(), 3);
    let mut tasks = Vec::new();
    for replica in &fleet.replicas {
        let r = replica.invoke(COUNTER, &counted(Some(&sink.url), 0));
        assert_eq!(r.status, 200, "{}: {}", replica.name, r.body);
        assert_eq!(r.body["state"], "succeeded", "{}", r.body);
        assert_eq!(r.body["output"]["sinkStatus"], 200, "{}", r.body);
        tasks.push(r.body["output"]["task"].as_str().unwrap().to_string());
    }
    assert_eq!(fleet.replicas[0].counter(COUNTER), 3);
    let seen: Vec<String> = sink.keys_by_task().into_keys().collect();
    tasks.sort();
    assert_eq!(seen, tasks, "the sink saw one request per invocation");
    assert!(
        sink.requests().iter().all(|r| r.key.is_none()),
        "no rule asked for keys"
    );
    assert!(fleet.replicas[1].metric("agent_host_invocations_total") >= 1.0);
}

#[test]
fn the_sink_records_each_request_with_its_idempotency_key() {
    let sink = Sink::start();
    let http: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    for key in [Some("inv-1"), Some("inv-1"), None] {
        let mut req = http.post(&sink.url);
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        let r = req.send(r#"{"task":"t1"}"#).unwrap();
        assert_eq!(r.status(), 200);
    }
    let seen = sink.requests();
    let keys: Vec<Option<&str>> = seen.iter().map(|r| r.key.as_deref()).collect();
    assert_eq!(keys, [Some("inv-1"), Some("inv-1"), None]);
    assert_eq!(seen[0].body["task"], "t1");
    assert_eq!(sink.keys_by_task()["t1"].len(), 2);
}

#[test]
fn a_replica_stopped_continued_and_killed_behaves_as_signalled() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisProc::start(&[]);
    let agents = counter_agents(dir.path(), None, false, 2);
    let mut fleet = plain_fleet(&redis, &agents, 2);
    let r1 = fleet.get("r1");
    r1.signal("STOP");
    let r = fleet.get("r2").invoke(COUNTER, &counted(None, 0));
    assert_eq!(r.status, 200, "r2 serves while r1 is stopped: {}", r.body);
    let stopped = std::fs::read_to_string(format!("/proc/{}/stat", r1.pid())).unwrap();
    assert!(stopped.contains(") T "), "r1 is not stopped: {stopped}");
    r1.signal("CONT");
    assert!(r1.ready(), "r1 answers again after SIGCONT");
    let mut r2 = fleet.take("r2");
    r2.signal("KILL");
    assert_eq!(r2.wait_exit(Duration::from_secs(5)), None);
    assert_eq!(fleet.get("r1").counter(COUNTER), 1);
}

#[test]
fn a_redis_with_an_append_only_file_restarts_on_its_data() {
    let set = |port: u16, args: &[&str]| {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    for sig in ["TERM", "KILL"] {
        let mut redis = RedisProc::start(&["--appendonly", "yes", "--appendfsync", "always"]);
        let port = redis.port;
        assert_eq!(set(port, &["set", "acknowledged", "yes"]), "OK");
        redis.stop(sig);
        assert!(!redis.answers(), "stopped by SIG{sig}");
        redis.restart();
        assert_eq!(redis.port, port);
        assert_eq!(set(port, &["get", "acknowledged"]), "yes", "after SIG{sig}");
    }
}
