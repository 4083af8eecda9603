//! A slow agent with two side effects, for the replica and crash tests: it
//! increments the key-value counter `counter` (bucket `state`) by one, POSTs
//! `{"task": <invocation id>}` to `sink` when the input names one (a rule with
//! `idempotencyKey: true` makes the host add the header), then sleeps
//! `sleepMs`. `{"op": "read"}` only reports the counter. Tests count both
//! effects to prove each invocation committed exactly once however often it
//! ran.

use std::time::Duration;

use agent_host_guest::kv::Store;
use agent_host_guest::{http, Agent, AgentError, Output, Task};
use serde_json::json;

struct CountAndNotify;

impl Agent for CountAndNotify {
    fn run(task: Task) -> Result<Output, AgentError> {
        let input: serde_json::Value = task.input_json()?;
        let state = Store::open("state")?;
        if input["op"] == "read" {
            return Output::json(&json!({ "count": state.counter("counter")? }));
        }
        let count = state.increment("counter", 1)?;
        let mut sink_status = None;
        if let Some(sink) = input["sink"].as_str() {
            let response = http::post_json(sink, &json!({ "task": task.id }))
                .map_err(|e| AgentError::Upstream(format!("sink {sink}: {e}")))?;
            sink_status = Some(response.status);
        }
        let ms = input["sleepMs"].as_u64().unwrap_or(0);
        std::thread::sleep(Duration::from_millis(ms));
        Output::json(&json!({ "count": count, "task": task.id, "sinkStatus": sink_status }))
    }
}

agent_host_guest::export_agent!(CountAndNotify);
