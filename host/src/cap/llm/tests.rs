use serde_json::json;

use super::provider::*;
use crate::bindings::agent_host::agent::llm::{
    FinishReason, Message, Options, Request, Role, Tool, ToolCall,
};

fn msg(role: Role, content: &str) -> Message {
    Message {
        role,
        content: content.into(),
        tool_calls: vec![],
        tool_call_id: None,
    }
}

/// A conversation with every shape: system prompt, user turn, an assistant
/// turn asking for a tool, the tool's answer, tools and sampling options.
fn conversation() -> Request {
    Request {
        messages: vec![
            msg(Role::System, "You triage alerts."),
            msg(Role::User, "disk full on db-1"),
            Message {
                tool_calls: vec![ToolCall {
                    id: "call_1".into(),
                    name: "runbook".into(),
                    arguments: r#"{"alert":"DiskFull"}"#.into(),
                }],
                ..msg(Role::Assistant, "")
            },
            Message {
                tool_call_id: Some("call_1".into()),
                ..msg(Role::Tool, "delete old WAL segments")
            },
        ],
        tools: vec![Tool {
            name: "runbook".into(),
            description: "Reads the runbook of an alert".into(),
            parameters: r#"{"type":"object","properties":{"alert":{"type":"string"}}}"#.into(),
        }],
        options: Options {
            max_tokens: Some(256),
            temperature: Some(0.5),
            top_p: None,
            stop: vec!["END".into()],
        },
    }
}

#[test]
fn openai_requests_carry_roles_tool_calls_and_options() {
    let body = openai_body("gpt-4o-mini", &conversation(), Some(256));
    assert_eq!(body["model"], "gpt-4o-mini");
    let m = body["messages"].as_array().unwrap();
    assert_eq!(m.len(), 4);
    assert_eq!(
        m[0],
        json!({ "role": "system", "content": "You triage alerts." })
    );
    assert_eq!(m[2]["tool_calls"][0]["function"]["name"], "runbook");
    assert_eq!(
        m[2]["tool_calls"][0]["function"]["arguments"],
        r#"{"alert":"DiskFull"}"#
    );
    assert_eq!(m[3]["role"], "tool");
    assert_eq!(m[3]["tool_call_id"], "call_1");
    assert_eq!(
        body["tools"][0]["function"]["parameters"]["properties"]["alert"]["type"],
        "string"
    );
    assert_eq!(
        (body["max_tokens"].clone(), body["temperature"].clone()),
        (json!(256), json!(0.5))
    );
    assert_eq!(body["stop"], json!(["END"]));
    assert!(body.get("top_p").is_none());
}

#[test]
fn openai_replies_with_tool_calls_and_usage_are_read() {
    let reply = json!({
        "choices": [{
            "message": { "role": "assistant", "content": null, "tool_calls": [
                { "id": "call_9", "type": "function",
                  "function": { "name": "page_oncall", "arguments": "{\"team\":\"db\"}" } }
            ]},
            "finish_reason": "tool_calls"
        }],
        "usage": { "prompt_tokens": 120, "completion_tokens": 17, "total_tokens": 137 }
    });
    let r = openai_response(&reply).unwrap();
    assert_eq!(r.finish_reason, FinishReason::ToolCalls);
    assert_eq!(r.message.tool_calls[0].name, "page_oncall");
    assert_eq!(r.message.tool_calls[0].arguments, r#"{"team":"db"}"#);
    assert_eq!(
        (r.usage.prompt_tokens, r.usage.completion_tokens),
        (120, 17)
    );
    assert!(openai_response(&json!({ "error": "nope" })).is_err());
}

#[test]
fn anthropic_requests_lift_the_system_prompt_and_use_content_blocks() {
    let body = anthropic_body("claude-3-5-haiku-latest", &conversation(), 256);
    assert_eq!(body["system"], "You triage alerts.");
    assert_eq!(body["max_tokens"], 256);
    let m = body["messages"].as_array().unwrap();
    assert_eq!(m.len(), 3, "the system message is not a turn");
    assert_eq!(
        m[0],
        json!({ "role": "user", "content": "disk full on db-1" })
    );
    assert_eq!(m[1]["content"][0]["type"], "tool_use");
    assert_eq!(m[1]["content"][0]["input"], json!({ "alert": "DiskFull" }));
    assert_eq!(m[2]["role"], "user");
    assert_eq!(m[2]["content"][0]["type"], "tool_result");
    assert_eq!(m[2]["content"][0]["tool_use_id"], "call_1");
    assert_eq!(body["tools"][0]["input_schema"]["type"], "object");
    assert_eq!(body["stop_sequences"], json!(["END"]));
}

#[test]
fn anthropic_replies_with_text_and_tool_use_are_read() {
    let reply = json!({
        "content": [
            { "type": "text", "text": "Paging the database team." },
            { "type": "tool_use", "id": "toolu_1", "name": "page_oncall", "input": { "team": "db" } }
        ],
        "stop_reason": "tool_use",
        "usage": { "input_tokens": 90, "output_tokens": 30 }
    });
    let r = anthropic_response(&reply).unwrap();
    assert_eq!(r.message.content, "Paging the database team.");
    assert_eq!(r.finish_reason, FinishReason::ToolCalls);
    assert_eq!(r.message.tool_calls[0].id, "toolu_1");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&r.message.tool_calls[0].arguments).unwrap(),
        json!({ "team": "db" })
    );
    assert_eq!((r.usage.prompt_tokens, r.usage.completion_tokens), (90, 30));
    let stop =
        json!({ "content": [{ "type": "text", "text": "ok" }], "stop_reason": "max_tokens" });
    assert_eq!(
        anthropic_response(&stop).unwrap().finish_reason,
        FinishReason::Length
    );
}
