//! The `mcp` capability end to end: a real guest lists and calls tools of a
//! remote MCP server — the official Python SDK's server side
//! (`tests/e2e/mcp/server.py`), started here and recording every request it
//! receives — through the host, under the grant's tool list, credential,
//! address policy and budgets.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent_host::cap::Kind;
use agent_host_e2e::guests;
use agent_host_e2e::support::{output_json, task, Harness};
use serde_json::{json, Value};

const TOKEN: &str = "mcp-e2e-token-7f3a";

/// The Python MCP server, killed on drop.
struct RemoteServer {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl RemoteServer {
    fn start(flags: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("requests.jsonl");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/e2e/mcp/server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg("--log")
            .arg(&log)
            .args(flags)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs (scripts/install-tools.sh installs the mcp package)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .unwrap_or_else(|| panic!("server.py did not start: {line:?}"))
            .parse()
            .unwrap();
        Self {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    /// Every request the server received.
    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The JSON-RPC methods received, in order.
    fn methods(&self) -> Vec<String> {
        self.requests()
            .iter()
            .filter_map(|r| serde_json::from_str::<Value>(r["body"].as_str()?).ok())
            .filter_map(|b| b["method"].as_str().map(str::to_string))
            .collect()
    }

    /// The names of the tools called.
    fn called(&self) -> Vec<String> {
        self.requests()
            .iter()
            .filter_map(|r| serde_json::from_str::<Value>(r["body"].as_str()?).ok())
            .filter(|b| b["method"] == "tools/call")
            .map(|b| b["params"]["name"].as_str().unwrap().to_string())
            .collect()
    }
}

impl Drop for RemoteServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A harness whose secrets hold the server's token.
fn harness() -> Harness {
    let h = Harness::new();
    let secret = h.dir.path().join("secrets/tickets-mcp");
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(secret.join("token"), format!("{TOKEN}\n")).unwrap();
    h
}

fn grant(url: &str, extra: &str) -> String {
    format!(
        "  capabilities:\n    mcp:\n      - name: tickets\n        url: \"{url}\"\n        tools: [search, fail, slow, huge]\n        credentials: {{ secretKeyRef: {{ name: tickets-mcp, key: token }} }}\n{extra}"
    )
}

fn call(tool: &str, arguments: Value) -> Value {
    json!({ "op": "call", "server": "tickets", "tool": tool, "arguments": arguments })
}

async fn run(agent: &agent_host::PreparedAgent, steps: Value) -> (Value, agent_host::Invocation) {
    let inv = agent.invoke(task(json!({ "steps": steps }))).await;
    (output_json(&inv), inv)
}

/// The list shows exactly the granted tools the server offers, with their
/// schemas; a granted call returns the tool's result; the credential reaches
/// the server on every request and appears nowhere the guest can see.
#[tokio::test(flavor = "multi_thread")]
async fn the_agent_lists_its_granted_tools_and_calls_one_with_the_hosts_credential() {
    let server = RemoteServer::start(&["--token", TOKEN]);
    let h = harness();
    let agent = h.agent("probe", guests::MCP_PROBE, &grant(&server.url(), ""));
    let (out, inv) = run(
        &agent,
        json!([{ "op": "list" }, call("search", json!({ "query": "db-1", "limit": 2 }))]),
    )
    .await;
    let tools = out["results"][0]["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["search", "fail", "slow", "huge"], "{out}");
    assert!(tools.iter().all(|t| t["server"] == "tickets"));
    let schema = &tools[0]["inputSchema"];
    assert_eq!(schema["properties"]["query"]["type"], "string", "{out}");
    assert_eq!(schema["required"], json!(["query"]), "{out}");
    assert_eq!(tools[0]["description"], "Searches the ticket tracker.");

    let result = &out["results"][1];
    assert_eq!(
        result["structured"],
        json!({ "query": "db-1", "hits": ["db-1-0", "db-1-1"] }),
        "{out}"
    );
    assert!(result["text"].as_str().unwrap().contains("db-1-1"), "{out}");

    let requests = server.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert_eq!(
            r["headers"]["authorization"],
            format!("Bearer {TOKEN}"),
            "{r}"
        );
    }
    assert_eq!(server.called(), ["search"]);
    assert!(
        !out.to_string().contains(TOKEN),
        "the guest saw the token: {out}"
    );
    let usage = &inv.usage.caps.mcp;
    assert_eq!((usage.mcp_calls, usage.mcp_denied), (1, 0));
    assert!(usage.mcp_response_bytes > 0);
}

/// A tool outside the grant is neither listed nor sent, nor is a server the
/// manifest does not name; both are typed denials.
#[tokio::test(flavor = "multi_thread")]
async fn a_tool_not_granted_is_refused_without_reaching_the_server() {
    let server = RemoteServer::start(&[]);
    let h = harness();
    let agent = h.agent("probe", guests::MCP_PROBE, &grant(&server.url(), ""));
    let (out, inv) = run(
        &agent,
        json!([
            call("create_ticket", json!({ "title": "x", "priority": 1 })),
            { "op": "call", "server": "billing", "tool": "search", "arguments": {} },
            { "op": "list" },
        ]),
    )
    .await;
    assert_eq!(out["results"][0]["error"], "denied", "{out}");
    assert!(out["results"][0]["message"]
        .as_str()
        .unwrap()
        .contains("create_ticket"));
    assert_eq!(out["results"][1]["error"], "denied", "{out}");
    let listed = out["results"][2]["tools"].as_array().unwrap();
    assert!(listed.iter().all(|t| t["name"] != "create_ticket"), "{out}");
    assert!(server.called().is_empty(), "{:?}", server.methods());
    for r in server.requests() {
        assert!(
            !r["body"].as_str().unwrap().contains("create_ticket"),
            "{r}"
        );
    }
    assert_eq!(inv.usage.caps.mcp.mcp_denied, 2);
}

/// `maxCallsPerInvocation` holds: the call past it is refused unsent.
#[tokio::test(flavor = "multi_thread")]
async fn the_per_invocation_call_budget_holds() {
    let server = RemoteServer::start(&["--json-response", "--stateless"]);
    let h = harness();
    let agent = h.agent(
        "probe",
        guests::MCP_PROBE,
        &grant(&server.url(), "        maxCallsPerInvocation: 2\n"),
    );
    let step = call("search", json!({ "query": "q" }));
    let (out, inv) = run(&agent, json!([step, step, step])).await;
    assert!(out["results"][0]["structured"].is_object(), "{out}");
    assert!(out["results"][1]["structured"].is_object(), "{out}");
    assert_eq!(out["results"][2]["error"], "budget-exceeded", "{out}");
    assert!(out["results"][2]["message"]
        .as_str()
        .unwrap()
        .contains("maxCallsPerInvocation"));
    assert_eq!(server.called(), ["search", "search"]);
    assert_eq!(inv.usage.caps.mcp.mcp_calls, 2);

    // The budget is per invocation: the next one may call again.
    let (out, _) = run(&agent, json!([step])).await;
    assert!(out["results"][0]["structured"].is_object(), "{out}");
}

/// Arguments that are not an object, or do not match the tool's input
/// schema, are refused before anything is sent, naming the field; the tool's
/// own failure is a `tool-error` with its message.
#[tokio::test(flavor = "multi_thread")]
async fn invalid_arguments_are_refused_unsent_and_tool_failures_are_typed() {
    let server = RemoteServer::start(&[]);
    let h = harness();
    let agent = h.agent("probe", guests::MCP_PROBE, &grant(&server.url(), ""));
    let (out, _) = run(
        &agent,
        json!([
            call("search", json!({ "query": 5 })),
            { "op": "call", "server": "tickets", "tool": "search", "raw": "[1, 2]" },
            { "op": "call", "server": "tickets", "tool": "search", "raw": "{not json" },
            call("fail", json!({ "reason": "tracker is read-only" })),
        ]),
    )
    .await;
    let r = &out["results"];
    assert_eq!(r[0]["error"], "invalid-arguments", "{out}");
    assert!(
        r[0]["message"]
            .as_str()
            .unwrap()
            .contains("arguments/query"),
        "{out}"
    );
    assert_eq!(r[1]["error"], "invalid-arguments", "{out}");
    assert_eq!(r[2]["error"], "invalid-arguments", "{out}");
    assert_eq!(r[3]["error"], "tool-error", "{out}");
    assert!(
        r[3]["message"]
            .as_str()
            .unwrap()
            .contains("tracker is read-only"),
        "{out}"
    );
    assert_eq!(server.called(), ["fail"]);
}

/// The server's address obeys the same policy as outgoing HTTP: a name that
/// resolves to loopback is refused unless the grant allows it, before any
/// request is made; granting the range lets it through.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_on_a_non_granted_address_is_refused() {
    let server = RemoteServer::start(&[]);
    let h = harness();
    let url = format!("http://localhost:{}/mcp", server.port);
    let agent = h.agent("probe", guests::MCP_PROBE, &grant(&url, ""));
    let (out, inv) = run(
        &agent,
        json!([{ "op": "list" }, call("search", json!({ "query": "q" }))]),
    )
    .await;
    assert_eq!(out["results"][0]["error"], "denied", "{out}");
    assert!(
        out["results"][0]["message"]
            .as_str()
            .unwrap()
            .contains("loopback"),
        "{out}"
    );
    assert_eq!(out["results"][1]["error"], "denied", "{out}");
    assert!(server.requests().is_empty(), "{:?}", server.requests());
    assert_eq!(inv.usage.caps.mcp.mcp_denied, 2);

    let allowed = h.agent(
        "allowed",
        guests::MCP_PROBE,
        &grant(&url, "        allowedCidrs: [127.0.0.0/8, \"::1/128\"]\n"),
    );
    let (out, _) = run(&allowed, json!([call("search", json!({ "query": "q" }))])).await;
    assert!(out["results"][0]["structured"].is_object(), "{out}");
}

/// A slow tool is cut off at the server's timeout and a huge answer at the
/// response budget; the invocation goes on and reports both, typed.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_or_huge_response_is_bounded() {
    let server = RemoteServer::start(&[]);
    let h = harness();
    let agent = h.agent(
        "probe",
        guests::MCP_PROBE,
        &grant(
            &server.url(),
            "        timeout: 1s\n        maxResponseBytesPerInvocation: 64Ki\n",
        ),
    );
    let started = Instant::now();
    let (out, inv) = run(
        &agent,
        json!([
            call("slow", json!({ "seconds": 30 })),
            call("huge", json!({ "size": 4_000_000 })),
            call("search", json!({ "query": "after" })),
        ]),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(out["results"][0]["error"], "upstream", "{out}");
    assert!(
        out["results"][0]["message"]
            .as_str()
            .unwrap()
            .contains("no answer within"),
        "{out}"
    );
    assert_eq!(out["results"][1]["error"], "budget-exceeded", "{out}");
    // Nothing left to read an answer with: the next call is not sent.
    assert_eq!(out["results"][2]["error"], "budget-exceeded", "{out}");
    assert_eq!(server.called(), ["slow", "huge"]);
    assert!(
        inv.usage.caps.mcp.mcp_response_bytes <= 64 * 1024,
        "{:?}",
        inv.usage.caps.mcp
    );
}

/// A wrong credential is the server's refusal, reported as `upstream`
/// without the token in it.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_credential_is_an_upstream_error() {
    let server = RemoteServer::start(&["--token", "another-token"]);
    let h = harness();
    let agent = h.agent("probe", guests::MCP_PROBE, &grant(&server.url(), ""));
    let (out, _) = run(&agent, json!([call("search", json!({ "query": "q" }))])).await;
    assert_eq!(out["results"][0]["error"], "upstream", "{out}");
    assert!(
        out["results"][0]["message"]
            .as_str()
            .unwrap()
            .contains("401"),
        "{out}"
    );
    assert!(!out.to_string().contains(TOKEN));
}

/// Without `spec.capabilities.mcp` the `tools` interface is linked with every
/// call denied: listed nothing, called nothing, each denial counted.
#[tokio::test(flavor = "multi_thread")]
async fn a_guest_without_the_grant_is_denied_at_call() {
    let h = Harness::new();
    let agent = h.agent("ungranted", guests::MCP_PROBE, "");
    let (out, inv) = run(&agent, json!([{ "op": "list" }, call("search", json!({}))])).await;
    for r in out["results"].as_array().unwrap() {
        assert_eq!(r["error"], "denied", "{out}");
        assert!(r["message"]
            .as_str()
            .unwrap()
            .contains("spec.capabilities.mcp is not granted"));
    }
    assert_eq!(
        inv.usage.ungranted_denied.get(Kind::Mcp),
        2,
        "{:?}",
        inv.usage
    );
}

/// Each list and call leaves an audit record naming the server, the tool,
/// the decision, the duration and the bytes; refusals say why.
#[tokio::test(flavor = "multi_thread")]
async fn every_call_is_audited() {
    let server = RemoteServer::start(&[]);
    let mut h = harness();
    let path = h.dir.path().join("audit.jsonl");
    let log = agent_host::audit::AuditLog::open(&path).unwrap();
    h.runtime.set_audit_log(log.clone());
    let agent = h.agent("probe", guests::MCP_PROBE, &grant(&server.url(), ""));
    run(
        &agent,
        json!([
            call("search", json!({ "query": "q" })),
            call("create_ticket", json!({}))
        ]),
    )
    .await;
    log.close();
    let records: Vec<Value> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &Value| r["capability"] == "mcp")
        .collect();
    let actions: Vec<&str> = records
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert!(
        actions[0].starts_with("list: 4 of 4 granted tools offered: ok in "),
        "{records:?}"
    );
    assert!(actions[1].starts_with("call search: ok in "), "{records:?}");
    assert!(actions[1].contains(" bytes"), "{records:?}");
    assert_eq!(records[1]["target"], "tickets");
    assert_eq!(records[1]["decision"], "allow");
    assert_eq!(records[2]["decision"], "deny");
    assert!(
        records[2]["reason"]
            .as_str()
            .unwrap()
            .contains("create_ticket"),
        "{records:?}"
    );
}
