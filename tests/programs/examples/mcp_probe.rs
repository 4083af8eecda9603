//! MCP tools probe: runs the task input's `steps` in order — `{"op": "list"}`
//! or `{"op": "call", "server", "tool", "arguments"}` (`arguments` sent as
//! given: an object, or any text under `raw`) — and returns each step's
//! result or typed error as JSON, plus every environment variable and file
//! the guest can see, so tests can check that no credential reached it.

use agent_host_guest::bindings::agent_host::agent::tools::{self, Error};
use agent_host_guest::{Agent, AgentError, Output, Task};
use serde_json::{json, Value};

struct McpProbe;

fn error(e: Error) -> Value {
    let (kind, message) = match e {
        Error::Denied(m) => ("denied", m),
        Error::InvalidArguments(m) => ("invalid-arguments", m),
        Error::ToolError(m) => ("tool-error", m),
        Error::Upstream(m) => ("upstream", m),
        Error::BudgetExceeded(m) => ("budget-exceeded", m),
    };
    json!({ "error": kind, "message": message })
}

impl Agent for McpProbe {
    fn run(task: Task) -> Result<Output, AgentError> {
        let input: Value = task.input_json()?;
        let mut results = Vec::new();
        for step in input["steps"].as_array().into_iter().flatten() {
            results.push(match step["op"].as_str() {
                Some("list") => match tools::list_tools() {
                    Ok(tools) => json!({ "tools": tools.iter().map(|t| json!({
                        "server": t.server, "name": t.name,
                        "description": t.description,
                        "inputSchema": serde_json::from_str::<Value>(&t.input_schema).unwrap_or(Value::Null),
                    })).collect::<Vec<_>>() }),
                    Err(e) => error(e),
                },
                Some("call") => {
                    let arguments = match step.get("raw").and_then(Value::as_str) {
                        Some(raw) => raw.to_string(),
                        None => step["arguments"].to_string(),
                    };
                    let server = step["server"].as_str().unwrap_or_default();
                    let tool = step["tool"].as_str().unwrap_or_default();
                    match tools::call_tool(server, tool, &arguments) {
                        Ok(r) => json!({
                            "text": r.text,
                            "content": serde_json::from_str::<Value>(&r.content).unwrap_or(Value::Null),
                            "structured": r.structured.as_deref().map(|s| serde_json::from_str::<Value>(s).unwrap_or(Value::Null)),
                        }),
                        Err(e) => error(e),
                    }
                }
                other => return Err(AgentError::InvalidInput(format!("unknown op {other:?}"))),
            });
        }
        let env: Vec<(String, String)> = std::env::vars().collect();
        Output::json(&json!({ "results": results, "env": env }))
    }
}

agent_host_guest::export_agent!(McpProbe);
