//! `triage`: decides what to do about an alert with a model and its granted
//! tools, and remembers handled alerts so a duplicate is recognised without
//! asking the model again.
//!
//! Input: `{"id": "...", "alert": "...", "service": "...", "summary": "..."}`.
//! Environment: `TICKETS_URL` and `PAGER_URL`, the two tools' endpoints
//! (granted in the manifest's `http` rules). State: bucket `handled`, one key
//! per alert id holding the decision.

use agent_host_guest::bindings::agent_host::agent::llm::{
    self, Message, Options, Request, Role, Tool,
};
use agent_host_guest::bindings::wasi::keyvalue::store;
use agent_host_guest::{env, http, Agent, AgentError, Output, Task};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
struct Alert {
    id: String,
    alert: String,
    service: String,
    #[serde(default)]
    summary: String,
}

struct Triage;

fn kv(e: store::Error) -> AgentError {
    AgentError::Upstream(format!("key-value: {e:?}"))
}

fn text(role: Role, content: String) -> Message {
    Message {
        role,
        content,
        tool_calls: vec![],
        tool_call_id: None,
    }
}

fn tools() -> Vec<Tool> {
    vec![
        Tool {
            name: "create_ticket".into(),
            description: "Opens a ticket for the owning team; for problems that can wait".into(),
            parameters: r#"{"type":"object","properties":{"title":{"type":"string"},"severity":{"type":"string","enum":["low","medium","high"]}},"required":["title","severity"]}"#.into(),
        },
        Tool {
            name: "page_oncall".into(),
            description: "Pages the on-call engineer now; for outages".into(),
            parameters: r#"{"type":"object","properties":{"reason":{"type":"string"}},"required":["reason"]}"#.into(),
        },
    ]
}

impl Agent for Triage {
    fn run(task: Task) -> Result<Output, AgentError> {
        let alert: Alert = task.input_json()?;
        let handled = store::open("handled").map_err(kv)?;
        if let Some(previous) = handled.get(&alert.id).map_err(kv)? {
            let decision: Value = serde_json::from_slice(&previous).unwrap_or(Value::Null);
            return Output::json(
                &json!({ "alert": alert.id, "duplicate": true, "decision": decision }),
            );
        }

        let request = Request {
            messages: vec![
                text(
                    Role::System,
                    "You triage production alerts. Call exactly one tool: page_oncall for outages, create_ticket otherwise.".into(),
                ),
                text(
                    Role::User,
                    format!(
                        "Alert {} on service {}: {}",
                        alert.alert, alert.service, alert.summary
                    ),
                ),
            ],
            tools: tools(),
            options: Options {
                max_tokens: Some(256),
                temperature: Some(0.0),
                top_p: None,
                stop: vec![],
            },
        };
        let answer =
            llm::complete(&request).map_err(|e| AgentError::Upstream(format!("model: {e:?}")))?;
        let call = answer
            .message
            .tool_calls
            .first()
            .ok_or_else(|| AgentError::Upstream("the model chose no tool".into()))?;
        let args: Value = serde_json::from_str(&call.arguments)
            .map_err(|e| AgentError::Upstream(format!("tool arguments: {e}")))?;
        let url = match call.name.as_str() {
            "create_ticket" => env::require("TICKETS_URL")?,
            "page_oncall" => env::require("PAGER_URL")?,
            other => return Err(AgentError::Upstream(format!("unknown tool {other}"))),
        };
        let body = json!({ "alert": alert.id, "service": alert.service, "arguments": args });
        http::post_json(&url, &body)
            .and_then(http::Response::error_for_status)
            .map_err(|e| AgentError::Upstream(format!("{}: {e}", call.name)))?;

        let decision = json!({ "tool": call.name, "arguments": args });
        handled
            .set(&alert.id, decision.to_string().as_bytes())
            .map_err(kv)?;
        Output::json(&json!({ "alert": alert.id, "duplicate": false, "decision": decision }))
    }
}

agent_host_guest::export_agent!(Triage);
