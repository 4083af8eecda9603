//! A slow agent with a visible side effect: sleeps `sleepMs` (default 0), then
//! appends one line (the task id) to `/data/tally` when a `/data` mount is
//! granted. Serve-mode tests count the lines to prove a task ran exactly once.

use std::io::Write as _;
use std::time::Duration;

use agent_host_guest::{Agent, AgentError, Output, Task};

struct SlowTally;

impl Agent for SlowTally {
    fn run(task: Task) -> Result<Output, AgentError> {
        let input: serde_json::Value = task.input_json()?;
        let ms = input["sleepMs"].as_u64().unwrap_or(0);
        std::thread::sleep(Duration::from_millis(ms));
        if std::path::Path::new("/data").exists() {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open("/data/tally")
                .map_err(|e| AgentError::Internal(format!("/data/tally: {e}")))?;
            writeln!(file, "{}", task.id).map_err(|e| AgentError::Internal(e.to_string()))?;
        }
        Output::json(&serde_json::json!({ "slept": ms, "task": task.id }))
    }
}

agent_host_guest::export_agent!(SlowTally);
