//! Probe: reports every environment variable, argument and the working
//! directory the agent can see, to prove only declared variables leak in.

use std::collections::BTreeMap;

use agent_host_guest::{Agent, AgentError, Output, Task};
use serde_json::json;

struct EnvProbe;

impl Agent for EnvProbe {
    fn run(_task: Task) -> Result<Output, AgentError> {
        let vars: BTreeMap<String, String> = std::env::vars().collect();
        let args: Vec<String> = std::env::args().collect();
        let cwd = match std::env::current_dir() {
            Ok(dir) => dir.display().to_string(),
            Err(e) => format!("error: {e}"),
        };
        Output::json(&json!({ "vars": vars, "args": args, "cwd": cwd }))
    }
}

agent_host_guest::export_agent!(EnvProbe);
