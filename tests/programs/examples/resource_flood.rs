//! Attack: creates `input.count` host resources (monotonic-clock pollables)
//! and never drops them, to make the host's resource table grow without bound;
//! only `spec.limits.maxResources` can stop it.

use agent_host_guest::bindings::wasi::clocks::monotonic_clock;
use agent_host_guest::{Agent, AgentError, Output, Task};
use serde::Deserialize;

/// `{"count": N}`.
#[derive(Deserialize)]
struct Input {
    count: usize,
}

struct ResourceFlood;

impl Agent for ResourceFlood {
    fn run(task: Task) -> Result<Output, AgentError> {
        let Input { count } = task.input_json()?;
        let held: Vec<_> = (0..count)
            .map(|_| monotonic_clock::subscribe_duration(3_600_000_000_000))
            .collect();
        Output::json(&serde_json::json!({ "held": held.len() }))
    }
}

agent_host_guest::export_agent!(ResourceFlood);
