//! Durable invocations (issue 14) against real `serve` processes: async and
//! keyed work recorded in the state store before it is acknowledged, answered
//! by any replica, surviving SIGKILL, cancelled by `DELETE`, handed back on
//! SIGTERM.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{guests, tally_manifest, Reply, Serve};

const COUNTER: &str = "  capabilities:\n    keyValue: { maxBytes: 1Mi }\n  limits: { maxConcurrency: 2, maxQueue: 100, timeout: 30s }\n";

/// A replica of `manifests` in `dir/<name>`, named `name`, on `store` (the
/// embedded one when `None`).
fn replica(
    dir: &Path,
    name: &str,
    manifests: &[&Path],
    store: Option<&str>,
    extra: &[&str],
) -> Serve {
    let home = dir.join(name);
    std::fs::create_dir_all(&home).unwrap();
    let mut args = vec!["--replica-name", name];
    if let Some(url) = store {
        args.extend(["--store", url]);
    }
    args.extend(extra);
    Serve::start(&home, manifests, &args)
}

fn submit(serve: &Serve, agent: &str, body: &str) -> String {
    let r = serve.post(
        &format!("/v1/agents/{agent}/invocations?async=true"),
        &[],
        body,
    );
    assert_eq!(r.status, 202, "{}", r.body);
    r.body["id"].as_str().unwrap().to_string()
}

/// Polls `GET /v1/invocations/{id}` on `serve` until `done` holds.
fn poll(serve: &Serve, id: &str, within: Duration, done: impl Fn(&Value) -> bool) -> Reply {
    let deadline = Instant::now() + within;
    loop {
        let r = serve.get(&format!("/v1/invocations/{id}"));
        if r.status == 200 && done(&r.body) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "{id}: {} {}\n{}",
            r.status,
            r.body,
            serve.logs()
        );
        thread::sleep(Duration::from_millis(25));
    }
}

fn ended(r: &Value) -> bool {
    !matches!(r["state"].as_str(), Some("queued" | "running"))
}

#[test]
fn an_async_invocation_accepted_by_one_replica_is_answered_by_another() {
    let redis = guests::RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let manifest = tally_manifest(dir.path(), "{ maxConcurrency: 2, timeout: 30s }");
    let a = replica(dir.path(), "a", &[&manifest], Some(&redis.url), &[]);
    let b = replica(dir.path(), "b", &[&manifest], Some(&redis.url), &[]);

    let id = submit(&a, "tally", r#"{"sleepMs":300}"#);
    // Known to the other replica at once, before it ends.
    let early = b.get(&format!("/v1/invocations/{id}"));
    assert_eq!(early.status, 200, "{}", early.body);
    assert_eq!(early.body["id"], id.as_str());
    let done = poll(&b, &id, Duration::from_secs(20), ended);
    assert_eq!(done.body["state"], "succeeded", "{}", done.body);
    assert_eq!(done.body["output"]["slept"], 300);
    let attempts = done.body["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{}", done.body);
    let ran_on = attempts[0]["replica"].as_str().unwrap();
    assert!(matches!(ran_on, "a" | "b"), "{}", done.body);
    assert_eq!(attempts[0]["end"], "succeeded");

    // An idempotency key sent to either replica names the same invocation.
    let key = [("Idempotency-Key", "ticket-9")];
    let first = a.post("/v1/agents/tally/invocations", &key, r#"{"sleepMs":0}"#);
    assert_eq!(first.status, 200, "{}", first.body);
    let again = b.post("/v1/agents/tally/invocations", &key, r#"{"sleepMs":0}"#);
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["id"], first.body["id"]);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(super::tally_lines(dir.path()), 2, "each task ran once");
}

#[test]
fn embedded_store_completes_accepted_async_work_after_sigkill_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = guests::write_manifest(dir.path(), "counter", guests::KV_COUNTER, COUNTER);
    // A lease longer than the test: the restarted host takes over its dead
    // life's work at once, not when the lease runs out.
    let lease = ["--lease", "120s"];
    let mut host = replica(dir.path(), "host", &[&manifest], None, &lease);
    let body = r#"{"incrementOnly":true,"sleepMs":400}"#;
    let ids: Vec<String> = (0..8).map(|_| submit(&host, "counter", body)).collect();
    poll(&host, &ids[0], Duration::from_secs(20), |r| {
        r["state"] == "running"
    });
    host.signal("KILL");
    host.wait_exit(Duration::from_secs(10));

    // The same state dir: the same embedded store.
    let host = replica(dir.path(), "host", &[&manifest], None, &lease);
    for id in &ids {
        let r = poll(&host, id, Duration::from_secs(30), ended);
        assert_eq!(r.body["state"], "succeeded", "{}", r.body);
    }
    let metrics = host.metrics();
    let reclaims = metrics
        .lines()
        .find_map(|l| l.strip_prefix("agent_host_lease_reclaims_total{agent=\"counter\"} "))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(
        reclaims >= Some(1),
        "the dead life's work was reclaimed:\n{metrics}"
    );
    // Every accepted increment committed exactly once, re-runs included.
    let r = host.invoke("counter", "{}");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["output"]["count"],
        ids.len() as u64 + 1,
        "{}",
        r.body
    );
}

#[test]
fn delete_cancels_queued_and_running_work_which_then_never_commits() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = tally_manifest(dir.path(), "{ maxConcurrency: 1, timeout: 30s }");
    let host = replica(dir.path(), "host", &[&manifest], None, &[]);
    let running = submit(&host, "tally", r#"{"sleepMs":3000}"#);
    let queued = submit(&host, "tally", r#"{"sleepMs":0}"#);
    poll(&host, &running, Duration::from_secs(20), |r| {
        r["state"] == "running"
    });

    for id in [&queued, &running] {
        let r = host.delete(&format!("/v1/invocations/{id}"));
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["state"], "cancelled", "{}", r.body);
        let r = host.get(&format!("/v1/invocations/{id}"));
        assert_eq!(r.body["state"], "cancelled", "{}", r.body);
        let r = host.delete(&format!("/v1/invocations/{id}"));
        assert_eq!(r.status, 409, "{}", r.body);
        assert_eq!(r.body["error"]["code"], "AlreadyEnded");
    }
    thread::sleep(Duration::from_millis(3500));
    assert_eq!(super::tally_lines(dir.path()), 0, "neither ran to its end");
    // The slot of the stopped run is free again.
    let r = host.post(
        "/v1/agents/tally/invocations",
        &[("Idempotency-Key", "after")],
        r#"{"sleepMs":0}"#,
    );
    assert_eq!(r.body["state"], "succeeded", "{}", r.body);
    let r = host.delete("/v1/invocations/not-an-id");
    assert_eq!(r.status, 404, "{}", r.body);
}

#[test]
fn sigterm_hands_queued_and_running_work_to_another_replica() {
    let redis = guests::RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let manifest = tally_manifest(dir.path(), "{ maxConcurrency: 1, timeout: 30s }");
    let grace = ["--shutdown-grace", "300ms"];
    let mut a = replica(dir.path(), "a", &[&manifest], Some(&redis.url), &grace);
    let ids: Vec<String> = (0..4)
        .map(|_| submit(&a, "tally", r#"{"sleepMs":1500}"#))
        .collect();
    poll(&a, &ids[0], Duration::from_secs(20), |r| {
        r["state"] == "running"
    });
    a.signal("TERM");
    assert_eq!(
        a.wait_exit(Duration::from_secs(15)),
        Some(0),
        "{}",
        a.logs()
    );

    let b = replica(dir.path(), "b", &[&manifest], Some(&redis.url), &[]);
    for id in &ids {
        let r = poll(&b, id, Duration::from_secs(30), ended);
        assert_eq!(
            r.body["state"], "succeeded",
            "nothing cancelled: {}",
            r.body
        );
        let last = r.body["attempts"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        assert_eq!(last["replica"], "b", "{}", r.body);
    }
    let first = b.get(&format!("/v1/invocations/{}", ids[0]));
    let attempts = first.body["attempts"].as_array().unwrap();
    assert_eq!(attempts[0]["replica"], "a", "{}", first.body);
    assert_eq!(attempts[0]["end"], "released", "{}", first.body);
    let metrics = b.metrics();
    assert!(
        metrics.contains("agent_host_redeliveries_total{agent=\"tally\"} 1"),
        "{metrics}"
    );
}

/// A `redis-server` with append-only persistence fsynced at every write, on
/// a fixed port and directory so that it can be killed and started again.
struct PersistentRedis {
    child: std::process::Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl PersistentRedis {
    fn start(dir: &Path, port: u16) -> Self {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen");
            thread::sleep(Duration::from_millis(20));
        }
        PersistentRedis {
            child,
            port,
            dir: dir.to_path_buf(),
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn restart(&mut self) {
        self.kill();
        *self = Self::start(&self.dir.clone(), self.port);
    }
}

impl Drop for PersistentRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
fn an_unreachable_store_refuses_new_durable_work_with_503_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let redis_dir = dir.path().join("redis");
    std::fs::create_dir_all(&redis_dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let mut redis = PersistentRedis::start(&redis_dir, port);
    let manifest = tally_manifest(dir.path(), "{ maxConcurrency: 1, timeout: 30s }");
    let host = replica(
        dir.path(),
        "a",
        &[&manifest],
        Some(&redis.url()),
        &["--lease", "2s"],
    );
    let acknowledged: Vec<String> = (0..3)
        .map(|_| submit(&host, "tally", r#"{"sleepMs":500}"#))
        .collect();

    redis.kill();
    host.wait("readiness false while the store is down", || {
        host.get("/readyz").status == 503
    });
    assert_eq!(host.get("/readyz").body["store"], "unreachable");
    let refused = host.post("/v1/agents/tally/invocations?async=true", &[], "{}");
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.body["error"]["code"], "StoreUnavailable");
    assert_eq!(refused.headers["retry-after"], "1");
    // Plain synchronous work does not need the store.
    let sync = host.invoke("tally", r#"{"sleepMs":0}"#);
    assert_eq!(sync.body["state"], "succeeded", "{}", sync.body);

    redis.restart();
    host.wait("readiness back with the store", || host.ready());
    for id in &acknowledged {
        let r = poll(&host, id, Duration::from_secs(30), ended);
        assert_eq!(r.body["state"], "succeeded", "{}", r.body);
    }
    let later = submit(&host, "tally", r#"{"sleepMs":0}"#);
    let r = poll(&host, &later, Duration::from_secs(20), ended);
    assert_eq!(r.body["state"], "succeeded", "{}", r.body);
}

#[test]
fn the_durable_queue_is_bounded_across_replicas_and_refuses_past_it_with_429() {
    let redis = guests::RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    // maxQueue + maxConcurrency = 3 queued or running, all replicas together.
    let manifest = tally_manifest(
        dir.path(),
        "{ maxConcurrency: 1, maxQueue: 2, timeout: 30s }",
    );
    let a = replica(dir.path(), "a", &[&manifest], Some(&redis.url), &[]);
    let b = replica(dir.path(), "b", &[&manifest], Some(&redis.url), &[]);
    let slow = r#"{"sleepMs":1500}"#;
    let ids = [
        submit(&a, "tally", slow),
        submit(&a, "tally", slow),
        submit(&b, "tally", slow),
    ];
    for serve in [&a, &b] {
        let r = serve.post("/v1/agents/tally/invocations?async=true", &[], slow);
        assert_eq!(r.status, 429, "{}", r.body);
        assert_eq!(r.body["error"]["code"], "QueueFull");
        assert_eq!(r.headers["retry-after"], "1");
        assert!(r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("maxQueue"));
    }
    for id in &ids {
        let r = poll(&b, id, Duration::from_secs(30), ended);
        assert_eq!(r.body["state"], "succeeded", "{}", r.body);
    }
    // Room again once they ended.
    submit(&b, "tally", r#"{"sleepMs":0}"#);
    let metrics = a.metrics();
    assert!(
        metrics
            .contains("agent_host_requests_rejected_total{agent=\"tally\",reason=\"QueueFull\"} 1"),
        "{metrics}"
    );
}
