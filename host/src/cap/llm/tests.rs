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
pub(super) fn conversation() -> Request {
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

mod client {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    use axum::routing::post;
    use serde_json::{json, Value};

    use super::conversation;
    use crate::cap::llm::client::{CallError, Endpoint};
    use crate::manifest::LlmProvider;

    /// A stand-in provider: answers 429 with `Retry-After: 1` `fail_first`
    /// times, then `reply`; records every request's headers and body.
    async fn provider(
        path: &'static str,
        fail_first: usize,
        reply: Value,
    ) -> (String, Arc<Mutex<Vec<(HeaderMap, Value)>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let app = axum::Router::new().route(
            path,
            post(move |headers: HeaderMap, body: axum::Json<Value>| {
                let (log, reply) = (log.clone(), reply.clone());
                async move {
                    let mut log = log.lock().unwrap();
                    log.push((headers, body.0));
                    if log.len() <= fail_first {
                        (
                            StatusCode::TOO_MANY_REQUESTS,
                            [("retry-after", "1")],
                            "slow down",
                        )
                            .into_response()
                    } else {
                        axum::Json(reply).into_response()
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}/v1/"), seen)
    }

    fn endpoint(provider: LlmProvider, base: &str) -> Endpoint {
        Endpoint {
            provider,
            model: "test-model".into(),
            base: url::Url::parse(base).unwrap(),
            api_key: Some("sk-test-123".into()),
        }
    }

    #[tokio::test]
    async fn openai_429_with_retry_after_is_retried_then_answered() {
        let reply = json!({
            "choices": [{ "message": { "role": "assistant", "content": "ack" }, "finish_reason": "stop" }],
            "usage": { "prompt_tokens": 10, "completion_tokens": 2 }
        });
        let (base, seen) = provider("/v1/chat/completions", 1, reply).await;
        let started = Instant::now();
        let (response, attempts) = endpoint(LlmProvider::Openai, &base)
            .complete(
                &conversation(),
                64,
                Instant::now() + Duration::from_secs(10),
            )
            .await
            .unwrap();
        assert_eq!((response.message.content.as_str(), attempts), ("ack", 2));
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "Retry-After was honoured"
        );
        let seen = seen.lock().unwrap();
        let (headers, body) = &seen[1];
        assert_eq!(headers["authorization"], "Bearer sk-test-123");
        assert_eq!(body["model"], "test-model");
        assert_eq!(body["max_tokens"], 64);
        assert_eq!(body["messages"][1]["content"], "disk full on db-1");
    }

    #[tokio::test]
    async fn anthropic_requests_carry_the_key_and_version_headers() {
        let reply = json!({
            "content": [{ "type": "text", "text": "fine" }],
            "stop_reason": "end_turn",
            "usage": { "input_tokens": 5, "output_tokens": 1 }
        });
        let (base, seen) = provider("/v1/messages", 0, reply).await;
        let (response, _) = endpoint(LlmProvider::Anthropic, &base)
            .complete(
                &conversation(),
                32,
                Instant::now() + Duration::from_secs(10),
            )
            .await
            .unwrap();
        assert_eq!(response.message.content, "fine");
        let seen = seen.lock().unwrap();
        assert_eq!(seen[0].0["x-api-key"], "sk-test-123");
        assert_eq!(seen[0].0["anthropic-version"], "2023-06-01");
        assert_eq!(seen[0].1["system"], "You triage alerts.");
    }

    #[tokio::test]
    async fn retries_stop_at_the_deadline() {
        let (base, seen) = provider("/v1/chat/completions", usize::MAX, json!({})).await;
        let started = Instant::now();
        let err = endpoint(LlmProvider::Openai, &base)
            .complete(
                &conversation(),
                64,
                Instant::now() + Duration::from_millis(1500),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, CallError::Upstream(ref m) if m.contains("429")),
            "{err:?}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "no wait past the deadline"
        );
        assert_eq!(
            seen.lock().unwrap().len(),
            2,
            "one retry fits before the deadline"
        );
    }
}

mod grant {
    use crate::cap::llm::LlmGrant;

    fn manifest_grant(yaml: &str) -> crate::manifest::LlmSpec {
        serde_norway::from_str(yaml).unwrap()
    }

    #[test]
    fn the_key_comes_from_the_mounted_secret_and_a_missing_one_fails_the_load() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("openai")).unwrap();
        std::fs::write(dir.path().join("openai/api-key"), "sk-live-1\n").unwrap();
        let g = manifest_grant(
            "{ provider: openai, model: gpt-4o-mini, apiKeySecretRef: { name: openai, key: api-key } }",
        );
        let compiled = LlmGrant::configure(&g, dir.path()).unwrap();
        assert_eq!(compiled.endpoint.api_key.as_deref(), Some("sk-live-1"));
        assert_eq!(
            compiled.endpoint.base.as_str(),
            "https://api.openai.com/v1/"
        );
        let err = LlmGrant::configure(&g, &dir.path().join("elsewhere")).unwrap_err();
        assert_eq!(err.field, "spec.capabilities.llm.apiKeySecretRef");
    }

    fn compiled(yaml: &str) -> LlmGrant {
        LlmGrant::configure(&manifest_grant(yaml), std::path::Path::new("/nonexistent")).unwrap()
    }

    #[test]
    fn the_key_is_redacted_everywhere_and_never_printed_by_debug() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("openai")).unwrap();
        std::fs::write(dir.path().join("openai/api-key"), "sk-live-debug-7\n").unwrap();
        let agent = crate::manifest::Agent::from_yaml(&format!(
            "apiVersion: {}\nkind: Agent\nmetadata: {{ name: demo }}\nspec:\n  component: {{ path: a.wasm }}\n  capabilities:\n    llm: {{ provider: openai, model: m, apiKeySecretRef: {{ name: openai, key: api-key }} }}\n",
            crate::manifest::API_VERSION
        ))
        .unwrap();
        let host = crate::cap::HostStates::new(&crate::config::HostConfig::default());
        let grants =
            crate::cap::Grants::configure(&host, &agent, dir.path(), dir.path(), true).unwrap();
        assert_eq!(
            crate::redact::redact("Bearer sk-live-debug-7", grants.secrets()),
            "Bearer [REDACTED]"
        );
        let llm = grants.llm.as_ref().unwrap();
        for debug in [
            format!("{grants:?}"),
            format!("{llm:?}"),
            format!("{:?}", llm.endpoint),
        ] {
            assert!(!debug.contains("sk-live-debug-7"), "{debug}");
        }
        assert!(format!("{:?}", llm.endpoint).contains("[REDACTED]"));
    }

    #[tokio::test]
    async fn budgets_refuse_the_request_that_would_exceed_them() {
        let compiled = compiled(
            "{ provider: anthropic, model: m, maxTokensPerInvocation: 100, maxRequestsPerInvocation: 3, tokensPerMinute: 250 }",
        );
        let mut budget = compiled.budget();
        let first = budget.admit(0, Some(500)).await.unwrap();
        assert_eq!(first.max_tokens, 100, "asks for no more than is left");
        budget.settle(first, 60, 30).await;
        let second = budget.admit(0, None).await.unwrap();
        assert_eq!(second.max_tokens, 10);
        budget.settle(second, 20, 10).await;
        let refused = budget.admit(0, None).await.unwrap_err();
        assert!(refused.contains("maxTokensPerInvocation"), "{refused}");

        // The per-minute rate is shared by the agent's invocations.
        let mut other = compiled.budget();
        let a = other.admit(0, None).await.unwrap();
        assert_eq!(a.max_tokens, 100);
        other.settle(a, 100, 60).await;
        let refused = compiled.budget().admit(0, None).await.unwrap_err();
        assert!(refused.contains("tokensPerMinute"), "{refused}");

        let rate_free = LlmGrant {
            rate: None,
            ..compiled.clone()
        };
        let mut r = rate_free.budget();
        for _ in 0..3 {
            let admitted = r.admit(0, Some(1)).await.unwrap();
            r.release(admitted).await;
        }
        assert!(r
            .admit(0, Some(1))
            .await
            .unwrap_err()
            .contains("maxRequestsPerInvocation"));
    }

    #[tokio::test]
    async fn a_prompt_that_cannot_fit_the_token_budget_is_refused_before_sending() {
        let compiled = compiled("{ provider: openai, model: m, maxTokensPerInvocation: 1000 }");
        let mut budget = compiled.budget();
        let refused = budget.admit(1000, Some(1)).await.unwrap_err();
        assert!(
            refused.contains("maxTokensPerInvocation") && refused.contains("not sent"),
            "{refused}"
        );
        assert_eq!((budget.requests_made, budget.tokens_used), (0, 0));
        // A prompt that fits leaves the rest for the completion.
        let admitted = budget.admit(900, None).await.unwrap();
        assert_eq!(admitted.max_tokens, 100);
        budget.release(admitted).await;
        assert_eq!(budget.admit(999, None).await.unwrap().max_tokens, 1);
    }

    #[test]
    fn the_prompt_estimate_counts_every_text_byte_at_three_per_token() {
        use crate::cap::llm::{estimate_prompt_tokens, PROMPT_BYTES_PER_TOKEN};
        let mut request = super::conversation();
        let base = estimate_prompt_tokens(&request);
        assert_eq!(base, 65, "194 bytes of text, rounded up");
        request.messages[1].content.push_str(&"x".repeat(3 << 20));
        assert_eq!(
            estimate_prompt_tokens(&request),
            base + (3 << 20) / PROMPT_BYTES_PER_TOKEN,
            "a 3 MiB prompt counts as 1Mi tokens"
        );
    }

    #[tokio::test]
    async fn concurrent_invocations_cannot_be_admitted_against_the_same_minute() {
        let compiled = compiled("{ provider: openai, model: m, tokensPerMinute: 300 }");
        let (mut a, mut b, mut c) = (compiled.budget(), compiled.budget(), compiled.budget());
        // Three invocations ask before any is charged.
        let first = a.admit(50, Some(200)).await.unwrap();
        assert_eq!(first.max_tokens, 200);
        let second = b.admit(30, Some(200)).await.unwrap();
        assert_eq!(
            second.max_tokens, 20,
            "only what the first left is reserved"
        );
        let refused = c.admit(1, Some(1)).await.unwrap_err();
        assert!(refused.contains("tokensPerMinute"), "{refused}");
        // Settling to the actual usage gives back what was not used.
        a.settle(first, 40, 60).await;
        let third = c.admit(1, Some(1000)).await.unwrap();
        assert_eq!(third.max_tokens, 300 - 100 - 50 - 1);
        // A failed or cancelled call gives its reservation back.
        b.release(second).await;
        drop(third);
        assert_eq!(c.admit(0, Some(1000)).await.unwrap().max_tokens, 200);
    }
}
