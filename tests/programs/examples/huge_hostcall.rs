//! Attack: passes one string of `input.bytes` bytes to the host in a single
//! call (a log record), to make the host copy an arbitrarily large value; only
//! `spec.limits.hostcallBytes` can stop it.

use agent_host_guest::{log, Agent, AgentError, Output, Task};
use serde::Deserialize;

/// `{"bytes": N}`.
#[derive(Deserialize)]
struct Input {
    bytes: usize,
}

struct HugeHostcall;

impl Agent for HugeHostcall {
    fn run(task: Task) -> Result<Output, AgentError> {
        let Input { bytes } = task.input_json()?;
        log::info(&"x".repeat(bytes));
        Output::json(&serde_json::json!({ "sent": bytes }))
    }
}

agent_host_guest::export_agent!(HugeHostcall);
