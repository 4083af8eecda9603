//! Answers an operations question with a model that looks things up in
//! tools on a remote MCP server: model → tool call → MCP call → model, until
//! the model answers. The agent holds neither the model's API key nor the MCP
//! server's token, and sees only the tools its manifest grants.

use agent_host_guest::llm::{self, Message, Options};
use agent_host_guest::{log, tools, Agent, AgentError, Output, Task};
use serde::Deserialize;
use serde_json::json;

/// Model turns before giving up (each is one model request).
const MAX_TURNS: usize = 4;

#[derive(Deserialize)]
struct Question {
    question: String,
}

struct OpsAssistant;

impl Agent for OpsAssistant {
    fn run(task: Task) -> Result<Output, AgentError> {
        let input: Question = task.input_json()?;
        let granted = tools::list()?;
        let offered = tools::model_tools(&granted);
        let mut messages = vec![
            Message::system(
                "You answer questions about production services. Look facts up with the tools; answer in one or two sentences.",
            ),
            Message::user(input.question),
        ];
        let mut used = Vec::new();
        for _ in 0..MAX_TURNS {
            let options = Options {
                max_tokens: Some(400),
                ..Options::default()
            };
            let reply = llm::complete(&messages, &offered, options)?;
            messages.push(reply.message.clone());
            if reply.tool_calls().is_empty() {
                return Output::json(&json!({
                    "answer": reply.text(),
                    "toolCalls": used,
                    "toolsOffered": granted.iter().map(|t| format!("{}/{}", t.server, t.name)).collect::<Vec<_>>(),
                }));
            }
            for call in reply.tool_calls() {
                log::record(log::Level::Info, "tool call", &[("tool", &call.name)]);
                used.push(json!({ "tool": call.name, "arguments": call.arguments }));
                messages.push(tools::answer(&granted, call)?);
            }
        }
        Err(AgentError::Upstream(format!(
            "the model still asked for tools after {MAX_TURNS} turns"
        )))
    }
}

agent_host_guest::export_agent!(OpsAssistant);
