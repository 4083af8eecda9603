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
    fn run(task: Task) -> Result<Output, AgentError> {
        let (name, output) = greet(&task)?;
        log::record(
            log::Level::Info,
            "greeting",
            &[("taskId", &task.id), ("name", &name)],
        );
        println!("hello agent handled {}", task.id);
        Ok(output)
    }
}

/// The agent's logic without its host calls: the name greeted and the output.
/// Public so the benchmarks can run the same code natively as their baseline.
pub fn greet(task: &Task) -> Result<(String, Output), AgentError> {
    // A task sent without input counts as `{}`.
    let text = match task.input.trim() {
        "" => "{}",
        _ => task.input.as_str(),
    };
    let parse = |e: serde_json::Error| AgentError::InvalidInput(format!("task input: {e}"));
    let echo: Value = serde_json::from_str(text).map_err(parse)?;
    let input: Input = serde_json::from_str(text).map_err(parse)?;
    let name = input.name.unwrap_or_else(|| "world".to_owned());
    let output = Output::json(&json!({
        "greeting": format!("hello, {name}"),
        "echo": echo,
        "taskId": task.id,
    }))?;
    Ok((name, output))
}

agent_host_guest::export_agent!(Hello);
