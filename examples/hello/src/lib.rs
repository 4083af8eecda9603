//! `hello`: the smallest useful agent. Greets `input.name` (default "world"),
//! echoes the input back, and exercises structured logging and stdout capture.

use agent_host_guest::{log, Agent, AgentError, Output, Task};
use serde::Deserialize;
use serde_json::{json, Value};

/// The task input: `{"name": "..."}`, every field optional.
#[derive(Deserialize)]
struct Input {
    name: Option<String>,
}

struct Hello;

impl Agent for Hello {
    fn run(mut task: Task) -> Result<Output, AgentError> {
        // A task sent without input counts as `{}`.
        if task.input.trim().is_empty() {
            task.input = "{}".to_owned();
        }
        let echo: Value = task.input_json()?;
        let input: Input = task.input_json()?;
        let name = input.name.unwrap_or_else(|| "world".to_owned());
        log::record(
            log::Level::Info,
            "greeting",
            &[("taskId", &task.id), ("name", &name)],
        );
        println!("hello agent handled {}", task.id);
        Output::json(&json!({
            "greeting": format!("hello, {name}"),
            "echo": echo,
            "taskId": task.id,
        }))
    }
}

agent_host_guest::export_agent!(Hello);
