//! Model probe: asks the granted model `calls` times (default 1) with the
//! task input's `prompt` and one tool (`page_oncall`), and returns every
//! answer or error as JSON, so tests can see tool calls, usage and budgets.

use agent_host_guest::bindings::agent_host::agent::llm::{
    self, Message, Options, Request, Role, Tool,
};
use agent_host_guest::{Agent, AgentError, Output, Task};
use serde_json::{json, Value};

struct LlmProbe;

impl Agent for LlmProbe {
    fn run(task: Task) -> Result<Output, AgentError> {
        let input: Value = task.input_json()?;
        let request = Request {
            messages: vec![
                Message {
                    role: Role::System,
                    content: "You triage alerts.".into(),
                    tool_calls: vec![],
                    tool_call_id: None,
                },
                Message {
                    role: Role::User,
                    content: input["prompt"].as_str().unwrap_or("hello").into(),
                    tool_calls: vec![],
                    tool_call_id: None,
                },
            ],
            tools: vec![Tool {
                name: "page_oncall".into(),
                description: "Pages the on-call engineer of a team".into(),
                parameters: r#"{"type":"object","properties":{"team":{"type":"string"}}}"#.into(),
            }],
            options: Options {
                max_tokens: Some(128),
                temperature: None,
                top_p: None,
                stop: vec![],
            },
        };
        let mut answers = Vec::new();
        for _ in 0..input["calls"].as_u64().unwrap_or(1) {
            answers.push(match llm::complete(&request) {
                Ok(r) => json!({
                    "content": r.message.content,
                    "toolCalls": r.message.tool_calls.iter()
                        .map(|c| json!({ "name": c.name, "arguments": c.arguments }))
                        .collect::<Vec<_>>(),
                    "finish": format!("{:?}", r.finish_reason),
                    "tokens": r.usage.prompt_tokens + r.usage.completion_tokens,
                }),
                Err(e) => json!({ "error": format!("{e:?}") }),
            });
        }
        Output::json(&json!({ "answers": answers }))
    }
}

agent_host_guest::export_agent!(LlmProbe);
