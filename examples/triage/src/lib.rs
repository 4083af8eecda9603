//! `triage`: decides what to do about an alert with a model and its granted
//! tools, and remembers handled alerts so a duplicate is recognised without
//! asking the model again.
//!
//! Input: `{"id": "...", "alert": "...", "service": "...", "summary": "..."}`.
//! Environment: `TICKETS_URL` and `PAGER_URL`, the two tools' endpoints
//! (granted in the manifest's `http` rules). State: bucket `handled`, one key
//! per alert id holding the decision.

use agent_host_guest::kv::Store;
use agent_host_guest::llm::{self, Message, Options, Tool};
use agent_host_guest::{env, http, Agent, AgentError, Output, Task};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Deserialize)]
struct Alert {
    id: String,
    alert: String,
    service: String,
    #[serde(default)]
    summary: String,
}

/// What was done about an alert, kept in the `handled` bucket.
#[derive(Serialize, Deserialize)]
struct Decision {
    tool: String,
    arguments: Value,
}

struct Triage;

fn tools() -> [Tool; 2] {
    [
        Tool::new(
            "create_ticket",
            "Opens a ticket for the owning team; for problems that can wait",
            &json!({
                "type": "object",
                "properties": {
                    "title": { "type": "string" },
                    "severity": { "type": "string", "enum": ["low", "medium", "high"] }
                },
                "required": ["title", "severity"]
            }),
        ),
        Tool::new(
            "page_oncall",
            "Pages the on-call engineer now; for outages",
            &json!({
                "type": "object",
                "properties": { "reason": { "type": "string" } },
                "required": ["reason"]
            }),
        ),
    ]
}

impl Agent for Triage {
    fn run(task: Task) -> Result<Output, AgentError> {
        let alert: Alert = task.input_json()?;
        let handled = Store::open("handled")?;
        if let Some(decision) = handled.get_json::<Decision>(&alert.id)? {
            return Output::json(
                &json!({ "alert": alert.id, "duplicate": true, "decision": decision }),
            );
        }

        let messages = [
            Message::system(
                "You triage production alerts. Call exactly one tool: page_oncall for outages, create_ticket otherwise.",
            ),
            Message::user(format!(
                "Alert {} on service {}: {}",
                alert.alert, alert.service, alert.summary
            )),
        ];
        let options = Options {
            max_tokens: Some(256),
            temperature: Some(0.0),
            ..Options::default()
        };
        let answer = llm::complete(&messages, &tools(), options)?;
        let call = answer
            .tool_calls()
            .first()
            .ok_or_else(|| AgentError::Upstream("the model chose no tool".into()))?;
        let arguments: Value = call.arguments_json()?;
        let url = match call.name.as_str() {
            "create_ticket" => env::require("TICKETS_URL")?,
            "page_oncall" => env::require("PAGER_URL")?,
            other => {
                return Err(AgentError::Upstream(format!(
                    "the model called unknown tool `{other}`"
                )))
            }
        };
        let body = json!({ "alert": alert.id, "service": alert.service, "arguments": arguments });
        http::post_json(&url, &body)?;

        let decision = Decision {
            tool: call.name.clone(),
            arguments,
        };
        handled.set_json(&alert.id, &decision)?;
        Output::json(&json!({ "alert": alert.id, "duplicate": false, "decision": decision }))
    }
}

agent_host_guest::export_agent!(Triage);
