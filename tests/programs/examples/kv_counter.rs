//! Key-value probe: increments `counter` in bucket `bucket` (default
//! "state"), mirrors it under `mirror` and records the task id under `last`
//! (returning the count and the mirror it read first), then ends as `then` says —
//! `ok` (default), `trap`, `fail`, `spin` (until a budget stops it) or
//! `sleep` (`sleepMs`, then ok) — so tests can see which endings commit.
//! With `incrementOnly` it only increments `counter` (then sleeps
//! `sleepMs`): a transaction with no read, for contended-increment tests.

use agent_host_guest::bindings::wasi::keyvalue::{atomics, store};
use agent_host_guest::{Agent, AgentError, Output, Task};

struct KvCounter;

fn kv_error(e: store::Error) -> AgentError {
    AgentError::Internal(format!("key-value: {e:?}"))
}

impl Agent for KvCounter {
    fn run(task: Task) -> Result<Output, AgentError> {
        let input: serde_json::Value = task.input_json()?;
        let bucket = store::open(input["bucket"].as_str().unwrap_or("state")).map_err(kv_error)?;
        let sleep = std::time::Duration::from_millis(input["sleepMs"].as_u64().unwrap_or(0));
        if input["incrementOnly"] == true {
            let count = atomics::increment(&bucket, "counter", 1).map_err(kv_error)?;
            std::thread::sleep(sleep);
            return Output::json(&serde_json::json!({ "count": count }));
        }
        // `mirror` is written in the same transaction as `counter`: whoever
        // reads them must always see mirror == counter (all or nothing).
        let mirror_before = match bucket.get("mirror").map_err(kv_error)? {
            Some(bytes) => u64::from_le_bytes(bytes.try_into().unwrap_or([0; 8])),
            None => 0,
        };
        let count = atomics::increment(&bucket, "counter", 1).map_err(kv_error)?;
        bucket
            .set("mirror", &count.to_le_bytes())
            .map_err(kv_error)?;
        bucket.set("last", task.id.as_bytes()).map_err(kv_error)?;
        match input["then"].as_str().unwrap_or("ok") {
            "trap" => panic!("trap after writing"),
            "fail" => return Err(AgentError::Upstream("failing after writing".into())),
            "spin" => loop {
                std::hint::black_box(count);
            },
            "sleep" => std::thread::sleep(sleep),
            _ => {}
        }
        Output::json(&serde_json::json!({ "count": count, "mirrorBefore": mirror_before }))
    }
}

agent_host_guest::export_agent!(KvCounter);
