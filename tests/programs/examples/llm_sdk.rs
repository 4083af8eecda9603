//! Model calls through the SDK (`agent_host_guest::llm`), not raw bindings:
//! a conversation of up to `calls` turns (default 1) about the input's
//! `prompt`, with one tool (`page_oncall`). Each answer's tool calls are
//! decoded with `arguments_json` and answered with `Message::tool_result`
//! in the next turn; each turn reports the answer or the SDK's typed error.

use agent_host_guest::llm::{self, Message, Options, Tool};
use agent_host_guest::{Agent, AgentError, Output, Task};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
struct Page {
    team: String,
}

/// The SDK's error variant, the `AgentError` case `?` would report, and the message.
fn typed(e: llm::Error) -> Value {
    let variant = match &e {
        llm::Error::Denied(_) => "Denied",
        llm::Error::BudgetExceeded(_) => "BudgetExceeded",
        llm::Error::InvalidRequest(_) => "InvalidRequest",
        llm::Error::Upstream(_) => "Upstream",
        llm::Error::ToolArguments { .. } => "ToolArguments",
    };
    let message = e.to_string();
    let case = match AgentError::from(e) {
        AgentError::InvalidInput(_) => "invalid-input",
        AgentError::CapabilityDenied(_) => "capability-denied",
        AgentError::Upstream(_) => "upstream",
        AgentError::Internal(_) => "internal",
    };
    json!({ "variant": variant, "agentError": case, "message": message })
}

struct LlmSdk;

impl Agent for LlmSdk {
    fn run(task: Task) -> Result<Output, AgentError> {
        let input: Value = task.input_json()?;
        let tools = [Tool::new(
            "page_oncall",
            "Pages the on-call engineer of a team",
            &json!({ "type": "object", "properties": { "team": { "type": "string" } } }),
        )];
        let mut messages = vec![
            Message::system("You triage alerts."),
            Message::user(input["prompt"].as_str().unwrap_or("hello")),
        ];
        let mut turns = Vec::new();
        for _ in 0..input["calls"].as_u64().unwrap_or(1) {
            let options = Options {
                max_tokens: Some(64),
                ..Options::default()
            };
            let answer = match llm::complete(&messages, &tools, options) {
                Ok(answer) => answer,
                Err(e) => {
                    turns.push(json!({ "error": typed(e) }));
                    continue;
                }
            };
            let mut teams = Vec::new();
            let mut results = Vec::new();
            for call in answer.tool_calls() {
                let page: Page = call.arguments_json()?;
                results.push(Message::tool_result(
                    &call.id,
                    format!("paged {}", page.team),
                ));
                teams.push(page.team);
            }
            turns.push(json!({
                "text": answer.text(),
                "pagedTeams": teams,
                "tokens": answer.usage.prompt_tokens + answer.usage.completion_tokens,
            }));
            messages.push(answer.message);
            messages.extend(results);
        }
        Output::json(&json!({ "turns": turns }))
    }
}

agent_host_guest::export_agent!(LlmSdk);
