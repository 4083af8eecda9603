//! Attack: emits `input.records` log records and `input.stdout_lines` stdout
//! lines, to test the host's per-invocation log and output bounds.

use std::io::Write;

use agent_host_guest::{log, Agent, AgentError, Output, Task};
use serde::Deserialize;
use serde_json::json;

/// `{"records": N, "stdout_lines": M}`.
#[derive(Deserialize)]
struct Input {
    #[serde(default)]
    records: u64,
    #[serde(default)]
    stdout_lines: u64,
}

struct LogFlood;

impl Agent for LogFlood {
    fn run(task: Task) -> Result<Output, AgentError> {
        let input: Input = task.input_json()?;
        for i in 0..input.records {
            log::record(log::Level::Info, "flood record", &[("i", &i.to_string())]);
        }
        let mut stdout = std::io::stdout().lock();
        for i in 0..input.stdout_lines {
            // Ignore write errors: the host may close stdout once its bound is hit.
            let _ = writeln!(stdout, "flood line {i}");
        }
        let _ = stdout.flush();
        Output::json(&json!({ "records": input.records, "stdout_lines": input.stdout_lines }))
    }
}

agent_host_guest::export_agent!(LogFlood);
