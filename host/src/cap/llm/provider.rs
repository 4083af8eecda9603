//! Translation between the `llm` interface and the providers' wire formats:
//! the OpenAI chat-completions API (and compatible servers: vLLM, Ollama,
//! LiteLLM...) and the Anthropic Messages API. Pure functions, so every
//! mapping is unit-tested without a network.

use serde_json::{json, Map, Value};

use crate::bindings::agent_host::agent::llm::{
    FinishReason, Message, Request, Response, Role, ToolCall, Usage,
};

/// A reply the host could not understand.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("unexpected provider response: {0}")]
pub struct ParseError(pub String);

fn bad(what: &str) -> ParseError {
    ParseError(what.to_string())
}

fn parameters(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| json!({ "type": "object" }))
}

/// The OpenAI chat-completions body for `request` on `model`.
pub fn openai_body(model: &str, request: &Request, max_tokens: Option<u32>) -> Value {
    let messages: Vec<Value> = request
        .messages
        .iter()
        .map(|m| {
            let mut v = Map::new();
            let role = match m.role {
                Role::System => "system",
                Role::User => "user",
                Role::Assistant => "assistant",
                Role::Tool => "tool",
            };
            v.insert("role".into(), role.into());
            v.insert("content".into(), m.content.clone().into());
            if !m.tool_calls.is_empty() {
                let calls: Vec<Value> = m
                    .tool_calls
                    .iter()
                    .map(|c| {
                        json!({
                            "id": c.id,
                            "type": "function",
                            "function": { "name": c.name, "arguments": c.arguments },
                        })
                    })
                    .collect();
                v.insert("tool_calls".into(), calls.into());
            }
            if let Some(id) = &m.tool_call_id {
                v.insert("tool_call_id".into(), id.clone().into());
            }
            Value::Object(v)
        })
        .collect();
    let mut body = json!({ "model": model, "messages": messages });
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|t| {
                json!({
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": parameters(&t.parameters),
                    },
                })
            })
            .collect();
    }
    let o = &request.options;
    if let Some(n) = max_tokens {
        body["max_tokens"] = n.into();
    }
    if let Some(t) = o.temperature {
        body["temperature"] = f64::from(t).into();
    }
    if let Some(p) = o.top_p {
        body["top_p"] = f64::from(p).into();
    }
    if !o.stop.is_empty() {
        body["stop"] = o.stop.clone().into();
    }
    body
}

/// Reads an OpenAI chat-completions reply.
pub fn openai_response(body: &Value) -> Result<Response, ParseError> {
    let choice = body["choices"].get(0).ok_or_else(|| bad("no choices"))?;
    let msg = &choice["message"];
    let tool_calls = msg["tool_calls"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .map(|c| {
            Ok(ToolCall {
                id: c["id"].as_str().unwrap_or_default().to_string(),
                name: c["function"]["name"]
                    .as_str()
                    .ok_or_else(|| bad("tool call without a function name"))?
                    .to_string(),
                arguments: c["function"]["arguments"]
                    .as_str()
                    .unwrap_or("{}")
                    .to_string(),
            })
        })
        .collect::<Result<Vec<_>, ParseError>>()?;
    let finish_reason = match choice["finish_reason"].as_str() {
        Some("stop") => FinishReason::Stop,
        Some("length") => FinishReason::Length,
        Some("tool_calls" | "function_call") => FinishReason::ToolCalls,
        Some("content_filter") => FinishReason::ContentFilter,
        _ => FinishReason::Other,
    };
    Ok(Response {
        message: Message {
            role: Role::Assistant,
            content: msg["content"].as_str().unwrap_or_default().to_string(),
            tool_calls,
            tool_call_id: None,
        },
        finish_reason,
        usage: Usage {
            prompt_tokens: body["usage"]["prompt_tokens"].as_u64().unwrap_or(0) as u32,
            completion_tokens: body["usage"]["completion_tokens"].as_u64().unwrap_or(0) as u32,
        },
    })
}

/// The Anthropic Messages body for `request` on `model`. System messages become
/// the top-level `system` text; tool results become `tool_result` blocks in a
/// user turn, tool calls `tool_use` blocks in an assistant turn.
pub fn anthropic_body(model: &str, request: &Request, max_tokens: u32) -> Value {
    let system: Vec<&str> = request
        .messages
        .iter()
        .filter(|m| m.role == Role::System)
        .map(|m| m.content.as_str())
        .collect();
    let messages: Vec<Value> = request
        .messages
        .iter()
        .filter(|m| m.role != Role::System)
        .map(|m| match m.role {
            Role::Tool => json!({
                "role": "user",
                "content": [{
                    "type": "tool_result",
                    "tool_use_id": m.tool_call_id.clone().unwrap_or_default(),
                    "content": m.content,
                }],
            }),
            Role::Assistant if !m.tool_calls.is_empty() => {
                let mut blocks = Vec::new();
                if !m.content.is_empty() {
                    blocks.push(json!({ "type": "text", "text": m.content }));
                }
                for c in &m.tool_calls {
                    blocks.push(json!({
                        "type": "tool_use",
                        "id": c.id,
                        "name": c.name,
                        "input": parameters(&c.arguments),
                    }));
                }
                json!({ "role": "assistant", "content": blocks })
            }
            Role::Assistant => json!({ "role": "assistant", "content": m.content }),
            _ => json!({ "role": "user", "content": m.content }),
        })
        .collect();
    let mut body = json!({ "model": model, "max_tokens": max_tokens, "messages": messages });
    if !system.is_empty() {
        body["system"] = system.join("\n\n").into();
    }
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "description": t.description,
                    "input_schema": parameters(&t.parameters),
                })
            })
            .collect();
    }
    let o = &request.options;
    if let Some(t) = o.temperature {
        body["temperature"] = f64::from(t).into();
    }
    if let Some(p) = o.top_p {
        body["top_p"] = f64::from(p).into();
    }
    if !o.stop.is_empty() {
        body["stop_sequences"] = o.stop.clone().into();
    }
    body
}

/// Reads an Anthropic Messages reply.
pub fn anthropic_response(body: &Value) -> Result<Response, ParseError> {
    let blocks = body["content"]
        .as_array()
        .ok_or_else(|| bad("no content blocks"))?;
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for b in blocks {
        match b["type"].as_str() {
            Some("text") => text.push_str(b["text"].as_str().unwrap_or_default()),
            Some("tool_use") => tool_calls.push(ToolCall {
                id: b["id"].as_str().unwrap_or_default().to_string(),
                name: b["name"]
                    .as_str()
                    .ok_or_else(|| bad("tool_use block without a name"))?
                    .to_string(),
                arguments: b["input"].to_string(),
            }),
            _ => {}
        }
    }
    let finish_reason = match body["stop_reason"].as_str() {
        Some("end_turn" | "stop_sequence") => FinishReason::Stop,
        Some("max_tokens") => FinishReason::Length,
        Some("tool_use") => FinishReason::ToolCalls,
        Some("refusal") => FinishReason::ContentFilter,
        _ => FinishReason::Other,
    };
    Ok(Response {
        message: Message {
            role: Role::Assistant,
            content: text,
            tool_calls,
            tool_call_id: None,
        },
        finish_reason,
        usage: Usage {
            prompt_tokens: body["usage"]["input_tokens"].as_u64().unwrap_or(0) as u32,
            completion_tokens: body["usage"]["output_tokens"].as_u64().unwrap_or(0) as u32,
        },
    })
}
