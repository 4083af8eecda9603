//! Attack: returns an output of exactly `input.bytes` bytes (a JSON string of
//! 'x's), to test the `maxOutputBytes` limit.

use agent_host_guest::{Agent, AgentError, Output, Task};
use serde::Deserialize;

/// `{"bytes": N}`.
#[derive(Deserialize)]
struct Input {
    bytes: usize,
}

struct BigOutput;

impl Agent for BigOutput {
    fn run(task: Task) -> Result<Output, AgentError> {
        let Input { bytes } = task.input_json()?;
        let data = match bytes {
            0 => String::new(),
            1 => "0".to_owned(),
            n => format!("\"{}\"", "x".repeat(n - 2)),
        };
        Ok(Output::raw(data))
    }
}

agent_host_guest::export_agent!(BigOutput);
