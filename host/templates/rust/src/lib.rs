//! `{{name}}`: greets `input.name`. Start here: read the task input, reach
//! what the manifest grants through the SDK (`http`, `kv`, `llm`, `tools`,
//! `env`, `log`), return JSON.

use agent_host_guest::{log, Agent, AgentError, Output, Task};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
struct Input {
    name: Option<String>,
}

struct Main;

impl Agent for Main {
    fn run(task: Task) -> Result<Output, AgentError> {
        let input: Input = task.input_json()?;
        let name = input.name.unwrap_or_else(|| "world".into());
        log::info(&format!("greeting {name}"));
        Output::json(&json!({ "greeting": format!("hello, {name}") }))
    }
}

agent_host_guest::export_agent!(Main);
