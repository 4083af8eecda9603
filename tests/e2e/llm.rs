//! The `llm` capability end to end: a real guest asks a local
//! OpenAI-compatible server through the host, within its budgets.

use agent_host::cap::Kind;
use agent_host_e2e::guests;
use agent_host_e2e::support::{output_json, task, Harness, TestServer};
use serde_json::{json, Value};

const REPLY: &str = r#"{
  "choices": [{ "message": { "role": "assistant", "content": "",
      "tool_calls": [{ "id": "call_1", "type": "function",
        "function": { "name": "page_oncall", "arguments": "{\"team\":\"db\"}" } }] },
    "finish_reason": "tool_calls" }],
  "usage": { "prompt_tokens": 40, "completion_tokens": 9 }
}"#;

pub(crate) fn grant(base: &str, extra: &str) -> String {
    format!(
        "  capabilities:\n    llm: {{ provider: openai, model: test-model, endpoint: \"{base}/v1/\"{extra} }}\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_guest_gets_tool_calls_and_the_host_counts_tokens() {
    let server = TestServer::start(|_, _, _| (200, REPLY.to_string())).await;
    let h = Harness::new();
    let agent = h.agent("probe", guests::LLM_PROBE, &grant(&server.base(), ""));
    let inv = agent
        .invoke(task(json!({ "prompt": "disk full on db-1" })))
        .await;
    let out = output_json(&inv);
    let answer = &out["answers"][0];
    assert_eq!(answer["toolCalls"][0]["name"], "page_oncall", "{out}");
    assert_eq!(answer["finish"], "FinishReason::ToolCalls");
    assert_eq!(
        (
            inv.usage.caps.llm.llm_requests,
            inv.usage.caps.llm.llm_tokens
        ),
        (1, 49)
    );
    let seen = server.requests();
    assert_eq!(seen[0].uri, "/v1/chat/completions");
    let body: Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(body["model"], "test-model");
    assert_eq!(body["messages"][1]["content"], "disk full on db-1");
    assert_eq!(body["tools"][0]["function"]["name"], "page_oncall");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_request_budget_refuses_the_extra_call_without_sending_it() {
    let server = TestServer::start(|_, _, _| (200, REPLY.to_string())).await;
    let h = Harness::new();
    let agent = h.agent(
        "probe",
        guests::LLM_PROBE,
        &grant(&server.base(), ", maxRequestsPerInvocation: 1"),
    );
    let out = output_json(&agent.invoke(task(json!({ "calls": 2 }))).await);
    assert!(out["answers"][0]["error"].is_null(), "{out}");
    let refused = out["answers"][1]["error"].as_str().unwrap();
    assert!(
        refused.contains("BudgetExceeded") && refused.contains("maxRequestsPerInvocation"),
        "{refused}"
    );
    assert_eq!(
        server.requests().len(),
        1,
        "the refused call was never sent"
    );
}

/// Without the grant `llm` is linked with every call denied: `denied`, no
/// request sent, the denial counted.
#[tokio::test(flavor = "multi_thread")]
async fn a_guest_without_the_grant_is_denied_at_call() {
    let h = Harness::new();
    let agent = h.agent("ungranted", guests::LLM_PROBE, "");
    let inv = agent.invoke(task(json!({ "prompt": "x" }))).await;
    let out = output_json(&inv);
    let error = out["answers"][0]["error"].to_string();
    assert!(
        error.contains("spec.capabilities.llm is not granted"),
        "{out}"
    );
    assert_eq!(inv.usage.caps.llm.llm_requests, 0);
    assert_eq!(
        inv.usage.ungranted_denied.get(Kind::Llm),
        1,
        "{:?}",
        inv.usage
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_key_comes_from_the_secret_file_and_429_is_retried_after_retry_after() {
    let server = TestServer::start_full(|_, before| match before {
        0 => (429, vec![("retry-after", "1".into())], "{}".into()),
        _ => (200, vec![], REPLY.into()),
    })
    .await;
    let h = Harness::new();
    let secret = h.dir.path().join("secrets/openai");
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(secret.join("api-key"), "sk-e2e-42\n").unwrap();
    let agent = h.agent(
        "probe",
        guests::LLM_PROBE,
        &grant(
            &server.base(),
            ", apiKeySecretRef: { name: openai, key: api-key }",
        ),
    );
    let started = std::time::Instant::now();
    let out = output_json(&agent.invoke(task(json!({}))).await);
    assert_eq!(
        out["answers"][0]["toolCalls"][0]["name"], "page_oncall",
        "{out}"
    );
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "waited Retry-After"
    );
    let seen = server.requests();
    assert_eq!(seen.len(), 2, "one refusal, one retry");
    for r in &seen {
        let auth = r
            .headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .map(|(_, v)| v.as_str());
        assert_eq!(auth, Some("Bearer sk-e2e-42"));
    }
    // The guest never saw the key.
    assert!(!out.to_string().contains("sk-e2e-42"));
}

#[tokio::test(flavor = "multi_thread")]
async fn switching_to_anthropic_is_a_manifest_change_only() {
    let reply = r#"{ "content": [
        { "type": "text", "text": "Paging." },
        { "type": "tool_use", "id": "toolu_1", "name": "page_oncall", "input": { "team": "db" } } ],
      "stop_reason": "tool_use", "usage": { "input_tokens": 30, "output_tokens": 12 } }"#;
    let server = TestServer::start(move |_, _, _| (200, reply.to_string())).await;
    let h = Harness::new();
    let agent = h.agent(
        "probe",
        guests::LLM_PROBE,
        &format!(
            "  capabilities:\n    llm: {{ provider: anthropic, model: claude-test, endpoint: \"{}/v1/\" }}\n",
            server.base()
        ),
    );
    let inv = agent.invoke(task(json!({ "prompt": "disk full" }))).await;
    let out = output_json(&inv);
    assert_eq!(out["answers"][0]["content"], "Paging.");
    assert_eq!(out["answers"][0]["toolCalls"][0]["name"], "page_oncall");
    assert_eq!(inv.usage.caps.llm.llm_tokens, 42);
    let seen = server.requests();
    assert_eq!(seen[0].uri, "/v1/messages");
    assert!(seen[0]
        .headers
        .iter()
        .any(|(k, v)| k == "anthropic-version" && v == "2023-06-01"));
    let body: Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(body["system"], "You triage alerts.");
    assert_eq!(body["model"], "claude-test");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_budget_refuses_the_call_after_it_is_spent() {
    let server = TestServer::start(|_, _, _| (200, REPLY.to_string())).await;
    let h = Harness::new();
    // The probe's request is 127 bytes of text: its prompt counts as 43
    // tokens before sending (issue 12), so 80 leaves 37 for the completion
    // and, once 49 are spent, the same prompt no longer fits.
    let agent = h.agent(
        "probe",
        guests::LLM_PROBE,
        &grant(&server.base(), ", maxTokensPerInvocation: 80"),
    );
    let inv = agent.invoke(task(json!({ "calls": 2 }))).await;
    let out = output_json(&inv);
    assert!(out["answers"][0]["error"].is_null(), "{out}");
    let refused = out["answers"][1]["error"].as_str().unwrap();
    assert!(refused.contains("maxTokensPerInvocation"), "{refused}");
    assert_eq!(server.requests().len(), 1);
    let sent: Value = serde_json::from_str(&server.requests()[0].body).unwrap();
    assert_eq!(
        sent["max_tokens"], 37,
        "asked for no more than the budget left after the prompt's estimate"
    );
    assert_eq!(inv.usage.caps.llm.llm_tokens, 49);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prompt_larger_than_the_token_budget_is_refused_unsent() {
    let server = TestServer::start(|_, _, _| (200, REPLY.to_string())).await;
    let h = Harness::new();
    let agent = h.agent(
        "probe",
        guests::LLM_PROBE,
        &grant(&server.base(), ", maxTokensPerInvocation: 10000"),
    );
    // 60 KB counts as 20,000 tokens: more than the whole budget.
    let inv = agent
        .invoke(task(json!({ "prompt": "x".repeat(60_000) })))
        .await;
    let out = output_json(&inv);
    let refused = out["answers"][0]["error"].as_str().unwrap_or_default();
    assert!(
        refused.contains("BudgetExceeded") && refused.contains("maxTokensPerInvocation"),
        "{out}"
    );
    assert!(server.requests().is_empty(), "the prompt was sent");
    assert_eq!(
        (
            inv.usage.caps.llm.llm_requests,
            inv.usage.caps.llm.llm_tokens
        ),
        (0, 0)
    );
}

/// A model server that answers after `delay`, reporting 40 prompt tokens and
/// every completion token it was asked for (`max_tokens`).
pub(crate) async fn slow_greedy_model(delay: std::time::Duration) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut data = Vec::new();
                let mut buf = [0u8; 4096];
                let (head_end, length) = loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => data.extend_from_slice(&buf[..n]),
                    }
                    if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (end + 4, length);
                    }
                };
                while data.len() < head_end + length {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => data.extend_from_slice(&buf[..n]),
                    }
                }
                let body: Value = serde_json::from_slice(&data[head_end..]).unwrap_or_default();
                let asked = body["max_tokens"].as_u64().unwrap_or(0);
                tokio::time::sleep(delay).await;
                let reply = json!({
                    "choices": [{ "message": { "role": "assistant", "content": "ok" }, "finish_reason": "stop" }],
                    "usage": { "prompt_tokens": 40, "completion_tokens": asked },
                })
                .to_string();
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                    reply.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_invocations_cannot_overspend_tokens_per_minute() {
    const PER_MINUTE: u64 = 400;
    let addr = slow_greedy_model(std::time::Duration::from_millis(500)).await;
    let h = Harness::new();
    let agent = std::sync::Arc::new(h.agent(
        "probe",
        guests::LLM_PROBE,
        &format!(
            "{}  limits: {{ maxConcurrency: 6 }}\n",
            grant(
                &format!("http://{addr}"),
                &format!(", tokensPerMinute: {PER_MINUTE}")
            )
        ),
    ));
    // All six ask while none has been charged yet.
    let runs: Vec<_> = (0..6)
        .map(|_| {
            let agent = agent.clone();
            tokio::spawn(async move { agent.invoke(task(json!({}))).await })
        })
        .collect();
    let mut spent = 0;
    let mut refused = 0;
    for run in runs {
        let inv = run.await.unwrap();
        spent += inv.usage.caps.llm.llm_tokens;
        let out = output_json(&inv);
        if let Some(e) = out["answers"][0]["error"].as_str() {
            assert!(e.contains("tokensPerMinute"), "{out}");
            refused += 1;
        }
    }
    assert!(
        spent <= PER_MINUTE,
        "{spent} tokens spent in one minute against tokensPerMinute {PER_MINUTE}"
    );
    assert!(refused >= 3, "only {refused} of 6 were refused");
}

/// The triage example end to end against the local model server: the model
/// picks `create_ticket`, the agent calls the ticket API through its HTTP
/// grant and records the alert; the same alert again is a duplicate that
/// reaches neither the model nor the ticket API.
#[tokio::test(flavor = "multi_thread")]
async fn triage_uses_the_tool_the_model_picks_and_recognises_duplicates() {
    let model = TestServer::start(|_, _, _| {
        (200, r#"{
          "choices": [{ "message": { "role": "assistant", "content": "",
              "tool_calls": [{ "id": "c1", "type": "function", "function": {
                "name": "create_ticket", "arguments": "{\"title\":\"Disk 91% on db-1\",\"severity\":\"medium\"}" } }] },
            "finish_reason": "tool_calls" }],
          "usage": { "prompt_tokens": 120, "completion_tokens": 20 } }"#.to_string())
    })
    .await;
    let tickets = TestServer::start(|_, _, _| (201, r#"{"id": 7}"#.to_string())).await;
    let pager = TestServer::start(|_, _, _| (200, "{}".to_string())).await;
    let h = Harness::new();
    let spec = format!(
        "  capabilities:\n    llm: {{ provider: openai, model: test-model, endpoint: \"{m}/v1/\" }}\n    keyValue: {{ maxBytes: 1Mi, buckets: [handled] }}\n    http:\n      - {{ url: \"{t}/api/issues\", methods: [POST] }}\n      - {{ url: \"{p}/page\", methods: [POST] }}\n    env:\n      - {{ name: TICKETS_URL, value: \"{t}/api/issues\" }}\n      - {{ name: PAGER_URL, value: \"{p}/page\" }}\n",
        m = model.base(),
        t = tickets.base(),
        p = pager.base()
    );
    let agent = h.agent("triage", guests::TRIAGE, &spec);
    let alert =
        json!({ "id": "a-1", "alert": "DiskFilling", "service": "db", "summary": "91% used" });
    let first = output_json(&agent.invoke(task(alert.clone())).await);
    assert_eq!(first["duplicate"], false, "{first}");
    assert_eq!(first["decision"]["tool"], "create_ticket");
    let sent = tickets.requests();
    assert_eq!(sent.len(), 1);
    let ticket: Value = serde_json::from_str(&sent[0].body).unwrap();
    assert_eq!(ticket["arguments"]["severity"], "medium");
    assert!(pager.requests().is_empty());

    let again = output_json(&agent.invoke(task(alert)).await);
    assert_eq!(again["duplicate"], true, "{again}");
    assert_eq!(again["decision"]["tool"], "create_ticket");
    assert_eq!(
        model.requests().len(),
        1,
        "the duplicate never reached the model"
    );
    assert_eq!(tickets.requests().len(), 1, "nor the ticket API");
}

/// Each model call leaves an audit record with the model and its tokens; the
/// prompt appears only when the operator switches it on.
#[tokio::test(flavor = "multi_thread")]
async fn model_calls_are_audited_without_the_prompt_unless_switched_on() {
    let server = TestServer::start(|_, _, _| (200, REPLY.to_string())).await;
    for prompts in [false, true] {
        let mut h = Harness::with_config(|c| c.audit_llm_prompts = prompts);
        let path = h.dir.path().join("audit.jsonl");
        let log = agent_host::audit::AuditLog::open(&path).unwrap();
        h.runtime.set_audit_log(log.clone());
        let agent = h.agent("probe", guests::LLM_PROBE, &grant(&server.base(), ""));
        output_json(
            &agent
                .invoke(task(json!({ "prompt": "db-1 is down" })))
                .await,
        );
        log.close();
        let records: Vec<Value> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let call = records
            .iter()
            .find(|r| r["capability"] == "llm")
            .unwrap_or_else(|| panic!("no llm record: {records:?}"));
        assert_eq!(call["target"], "openai test-model");
        assert_eq!(call["decision"], "allow");
        assert!(call["action"]
            .as_str()
            .unwrap()
            .contains("40 prompt + 9 completion tokens"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.contains("db-1 is down"),
            prompts,
            "prompt in the audit log: {prompts}"
        );
    }
}

/// The guest SDK's `llm::complete` through the real host: messages, tools and
/// options built with the SDK reach the model as the provider expects, tool
/// calls come back decoded, the tool result goes back in the next turn, and
/// the request budget's refusal is the SDK's `BudgetExceeded` (reported by
/// `?` as a capability denial), never sent.
#[tokio::test(flavor = "multi_thread")]
async fn the_sdk_runs_a_tool_conversation_and_types_the_budget_refusal() {
    let server = TestServer::start(|_, _, _| (200, REPLY.to_string())).await;
    let h = Harness::new();
    let agent = h.agent(
        "sdk",
        guests::LLM_SDK,
        &grant(&server.base(), ", maxRequestsPerInvocation: 2"),
    );
    let inv = agent
        .invoke(task(json!({ "prompt": "db-1 is down", "calls": 3 })))
        .await;
    let out = output_json(&inv);
    let turns = out["turns"].as_array().unwrap();
    assert_eq!(turns[0]["pagedTeams"], json!(["db"]), "{out}");
    assert_eq!(turns[0]["tokens"], 49, "{out}");
    assert_eq!(turns[1]["pagedTeams"], json!(["db"]), "{out}");
    let refused = &turns[2]["error"];
    assert_eq!(refused["variant"], "BudgetExceeded", "{out}");
    assert_eq!(refused["agentError"], "capability-denied", "{out}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("maxRequestsPerInvocation"),
        "{out}"
    );
    assert_eq!(
        (
            inv.usage.caps.llm.llm_requests,
            inv.usage.caps.llm.llm_tokens
        ),
        (2, 98)
    );

    let seen = server.requests();
    assert_eq!(seen.len(), 2, "the refused turn was never sent");
    let first: Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(first["messages"][0]["role"], "system");
    assert_eq!(first["messages"][1]["content"], "db-1 is down");
    let tool = &first["tools"][0]["function"];
    assert_eq!(tool["name"], "page_oncall");
    assert_eq!(tool["parameters"]["properties"]["team"]["type"], "string");
    assert_eq!(first["max_tokens"], 64);
    let second: Value = serde_json::from_str(&seen[1].body).unwrap();
    let messages = second["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 4, "{second}");
    assert_eq!(messages[2]["role"], "assistant");
    assert_eq!(messages[2]["tool_calls"][0]["id"], "call_1");
    assert_eq!(messages[3]["role"], "tool");
    assert_eq!(messages[3]["tool_call_id"], "call_1");
    assert_eq!(messages[3]["content"], "paged db");
}
