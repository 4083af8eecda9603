//! Issue 14's promises with real processes: several `agent-host serve`
//! replicas on one real `redis-server` (or a three-primary Redis Cluster, or
//! the embedded store), a real downstream API, and the signals a platform
//! sends — SIGKILL, SIGSTOP/SIGCONT past the lease, SIGTERM on scale-down,
//! Redis restarted or unreachable. Each test breaks one promise on purpose
//! and checks that it holds: every acknowledged invocation ends on some
//! replica, any replica answers for it, key-value commits count once, side
//! effects repeat only with the same `Idempotency-Key`.

use std::path::{Path, PathBuf};

use agent_host_test_guests as guests;

// One module per kind of fault; they share the harness (`fleet`, `sink`).
#[path = "replicas/api.rs"]
mod api;
#[path = "replicas/budgets.rs"]
mod budgets;
#[path = "replicas/crash.rs"]
mod crash;
#[path = "replicas/embedded.rs"]
mod embedded;
#[path = "replicas/fleet.rs"]
mod fleet;
#[path = "replicas/harness.rs"]
mod harness;
#[path = "replicas/sink.rs"]
mod sink;
#[path = "replicas/store_faults.rs"]
mod store_faults;

/// The `count_and_notify` agent every scenario runs.
const COUNTER: &str = "counter";

/// Writes `<dir>/agents/counter.yaml`: `count_and_notify` with a key-value
/// grant, an HTTP rule to `sink` that adds an `Idempotency-Key` when
/// `keyed`, `maxConcurrency` per replica and a queue big enough for the
/// scenario. Returns the manifest directory.
fn counter_agents(dir: &Path, sink: Option<&str>, keyed: bool, concurrency: u32) -> PathBuf {
    let agents = dir.join("agents");
    std::fs::create_dir_all(&agents).unwrap();
    // The component imports wasi:http, so it needs a rule even when no
    // scenario input names a sink (port 1: nothing listens there).
    let url = sink.unwrap_or("http://127.0.0.1:1/");
    let key = if keyed { ", idempotencyKey: true" } else { "" };
    let spec = format!(
        "  capabilities:\n    keyValue: {{ maxBytes: 1Mi }}\n    http:\n      - {{ url: \"{url}\", methods: [POST]{key} }}\n  limits: {{ maxConcurrency: {concurrency}, maxQueue: 1000, timeout: 30s }}\n"
    );
    guests::write_manifest(&agents, COUNTER, guests::COUNT_AND_NOTIFY, &spec);
    agents
}

/// The input of one counted invocation: sleep `ms`, notify `sink` if any.
fn counted(sink: Option<&str>, ms: u64) -> String {
    match sink {
        Some(url) => serde_json::json!({ "sink": url, "sleepMs": ms }).to_string(),
        None => serde_json::json!({ "sleepMs": ms }).to_string(),
    }
}
