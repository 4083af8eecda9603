//! Hostile agents and callers against a real `serve` process: store (issues 12, 14).

use std::thread;
use std::time::{Duration, Instant};

use super::{guests, Reply, Serve};

/// Polls `/v1/invocations/{id}` until the invocation has ended.
fn ended(serve: &Serve, id: &str) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = serve.get(&format!("/v1/invocations/{id}"));
        let state = r.body["state"].as_str().unwrap_or_default();
        if !matches!(state, "queued" | "running") {
            return r;
        }
        assert!(Instant::now() < deadline, "{id} never ended: {}", r.body);
        thread::sleep(Duration::from_millis(20));
    }
}

/// Async and keyed results live in the state store (issue 14), not in the
/// server's memory: hundreds of megabytes of them leave its memory where it
/// was, and every one stays readable (no `ResultEvicted` any more).
#[test]
fn durable_results_live_in_the_store_and_leave_the_servers_memory_bounded() {
    const BUDGET_MIB: u64 = 16;
    const CALLS: usize = 200;
    const OUTPUT: usize = 1_000_000;
    let dir = tempfile::tempdir().unwrap();
    let manifest = guests::write_manifest(
        dir.path(),
        "big",
        guests::BIG_OUTPUT,
        "  limits: { maxConcurrency: 2, maxQueue: 1000 }\n",
    );
    let budget = format!("{BUDGET_MIB}Mi");
    let serve = Serve::start(dir.path(), &[&manifest], &["--max-result-bytes", &budget]);
    let input = format!(r#"{{"bytes":{OUTPUT}}}"#);
    // Warm up (compile caches, allocator, instance slots) before measuring.
    for _ in 0..4 {
        assert_eq!(serve.invoke("big", &input).status, 200);
    }
    let rss_before = serve.rss_kib();

    let key = [("Idempotency-Key", "first-task")];
    let keyed = serve.post("/v1/agents/big/invocations?async=true", &key, &input);
    assert_eq!(keyed.status, 202, "{}", keyed.body);
    let keyed_id = keyed.body["id"].as_str().unwrap().to_string();
    ended(&serve, &keyed_id);
    let ids: Vec<String> = (0..CALLS)
        .map(|_| {
            let r = serve.post("/v1/agents/big/invocations?async=true", &[], &input);
            assert_eq!(r.status, 202, "{}", r.body);
            r.body["id"].as_str().unwrap().to_string()
        })
        .collect();
    ended(&serve, ids.last().unwrap());
    let rss_after = serve.rss_kib();
    assert!(
        rss_after < rss_before + (BUDGET_MIB + 48) * 1024,
        "{CALLS} results of {OUTPUT} bytes grew the server from {rss_before} KiB to {rss_after} KiB against a {budget} budget"
    );

    // Every result is readable in full, the oldest too.
    for id in ids[..4].iter().chain(&ids[CALLS - 4..]) {
        let r = ended(&serve, id);
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["state"], "succeeded");
        assert_eq!(r.body["output"].as_str().unwrap().len(), OUTPUT - 2);
    }
    // A retried key gets the stored result and does not run again.
    let retry = serve.post("/v1/agents/big/invocations", &key, &input);
    assert_eq!(retry.status, 200, "{}", retry.body);
    assert_eq!(retry.body["id"], keyed_id.as_str());
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    let runs = format!(
        "agent_host_invocations_total{{agent=\"big\",outcome=\"ok\"}} {}",
        4 + 1 + CALLS
    );
    let metrics = serve.metrics();
    assert!(metrics.contains(&runs), "{runs} not in\n{metrics}");

    // A well-behaved call is served afterwards.
    let r = serve.invoke("big", r#"{"bytes":1}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["state"], "succeeded");
}
