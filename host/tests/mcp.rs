//! The MCP endpoint with the official Python MCP SDK as the client (pinned in
//! scripts/install-tools.sh): `serve`'s `/mcp` (stateless streamable HTTP)
//! and `agent-host mcp` over stdio, each through one session script
//! (`mcp/client.py`) whose report is checked here against what the host
//! recorded (audit log, metrics).

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;

use agent_host_test_guests as guests;
use serde_json::Value;

use crate::support::{HostProcess, BIN};

const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp/client.py");

const ECHO_TOOL: &str = "  tool:
    description: Echoes its arguments back.
    inputSchema:
      type: object
      properties:
        message: { type: string }
        count: { type: integer, minimum: 0 }
      required: [message]
      additionalProperties: false
    outputSchema:
      type: object
      properties:
        message: { type: string }
      required: [message]
    annotations: { title: Echo, readOnlyHint: true, idempotentHint: true, openWorldHint: false }
";

/// echo (with spec.tool), spinner (no spec.tool, a fuel budget it breaches),
/// sleeper (blocks until cancelled).
fn agents(dir: &Path) -> Vec<PathBuf> {
    vec![
        guests::write_manifest(dir, "echo", guests::ECHO, ECHO_TOOL),
        guests::write_manifest(
            dir,
            "spinner",
            guests::SPIN_FOREVER,
            "  limits: { fuel: 5000000 }\n",
        ),
        guests::write_manifest(
            dir,
            "sleeper",
            guests::SLEEP_FOREVER,
            "  limits: { timeout: 60s }\n",
        ),
    ]
}

/// `agent-host serve` of `manifests` with `extra` arguments.
fn serve(dir: &Path, manifests: &[PathBuf], extra: &[&str]) -> HostProcess {
    HostProcess::start(dir, "serve.log", |cmd| {
        cmd.args(extra);
        for m in manifests {
            cmd.arg("-f").arg(m);
        }
    })
}

/// The client's `lead` arguments, then `agent-host mcp` with `extra` and
/// every manifest, the host's cache and state under `dir`.
fn stdio_client(dir: &Path, lead: &[&str], extra: &[&str], manifests: &[PathBuf]) -> Value {
    let mut args: Vec<&str> = lead.to_vec();
    args.extend([BIN, "mcp"]);
    args.extend(extra);
    for m in manifests {
        args.extend(["-f", m.to_str().unwrap()]);
    }
    run_client(
        &args,
        &[
            ("AGENT_HOST_CACHE_DIR", &dir.join("cache")),
            ("AGENT_HOST_STATE_DIR", &dir.join("state")),
        ],
    )
}

fn run_client(args: &[&str], envs: &[(&str, &Path)]) -> Value {
    let mut cmd = Command::new("python3");
    cmd.arg(CLIENT).args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the MCP client failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn audit(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// What every transport must show, from the client's report and the audit log.
fn check_session(report: &Value, version: &str, audit_log: &Path, cancels: bool) {
    assert_eq!(report["protocolVersion"], version, "{report}");

    // Tools as declared; the agent without spec.tool takes any object.
    let tools = report["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["echo", "sleeper", "spinner"], "{report}");
    let echo = &tools[0];
    assert_eq!(echo["description"], "Echoes its arguments back.");
    assert_eq!(
        echo["inputSchema"]["required"],
        serde_json::json!(["message"])
    );
    assert_eq!(echo["inputSchema"]["properties"]["count"]["minimum"], 0);
    assert_eq!(
        echo["outputSchema"]["required"],
        serde_json::json!(["message"])
    );
    assert_eq!(echo["annotations"]["readOnlyHint"], true);
    assert_eq!(echo["annotations"]["openWorldHint"], false);
    assert_eq!(echo["title"], "Echo");
    assert_eq!(
        tools[2]["inputSchema"],
        serde_json::json!({"type": "object"})
    );

    // A call: structured output (there is an output schema) and the usage report.
    let call = &report["call"];
    assert_ne!(call["isError"], true, "{call}");
    assert_eq!(
        call["structuredContent"],
        serde_json::json!({"message": "hi", "count": 2})
    );
    assert_eq!(call["_meta"]["agent-host.dev/outcome"], "ok", "{call}");
    let usage = &call["_meta"]["agent-host.dev/usage"];
    assert!(usage["fuelConsumed"].as_u64().unwrap() > 0, "{call}");
    assert!(usage["wallTimeUs"].as_u64().is_some(), "{call}");

    // Invalid arguments: a tool error naming the field, and nothing ran.
    let invalid = &report["invalid"];
    assert_eq!(invalid["isError"], true, "{invalid}");
    let error = &invalid["_meta"]["agent-host.dev/error"];
    assert_eq!(error["code"], "InvalidArguments", "{invalid}");
    assert_eq!(error["field"], "/count", "{invalid}");
    assert!(
        invalid["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("/count"),
        "{invalid}"
    );

    // A budget breach: a tool error with the typed code and the usage.
    let breach = &report["breach"];
    assert_eq!(breach["isError"], true, "{breach}");
    assert_eq!(
        breach["_meta"]["agent-host.dev/error"]["code"],
        "FuelExhausted"
    );
    assert_eq!(breach["_meta"]["agent-host.dev/outcome"], "FuelExhausted");
    assert!(
        breach["_meta"]["agent-host.dev/usage"]["fuelConsumed"]
            .as_u64()
            .unwrap()
            > 0
    );

    assert!(
        report["unknown"].as_str().unwrap().contains("unknown tool"),
        "{report}"
    );

    // Cancelling the call cancelled the invocation (not its 60 s timeout).
    if cancels {
        let end = &report["sleeperEnd"];
        assert_eq!(end["outcome"], "Cancelled", "{report}");
    }

    // The audit: echo started exactly once (the invalid call never ran).
    let records = audit(audit_log);
    let starts = |agent: &str| {
        records
            .iter()
            .filter(|r| r["kind"] == "invocation.start" && r["agent"] == agent)
            .count()
    };
    assert_eq!(starts("echo"), 1, "{records:#?}");
    assert_eq!(starts("spinner"), 1);
    assert_eq!(starts("sleeper"), usize::from(cancels));
}

#[test]
fn serve_mcp_endpoint_serves_agents_as_tools_to_the_python_sdk() {
    let dir = tempfile::tempdir().unwrap();
    let host = serve(dir.path(), &agents(dir.path()), &[]);
    let url = format!("{}/mcp", host.base);
    let audit_log = host.audit.to_str().unwrap().to_string();
    let report = run_client(&["http", &url, "legacy", &audit_log], &[]);
    check_session(&report, "2025-11-25", &host.audit, false);
    let metrics = host.get("/metrics").body;
    let metrics = metrics.as_str().unwrap();
    assert!(
        metrics.contains(
            "agent_host_requests_rejected_total{agent=\"echo\",reason=\"InvalidArguments\"} 1"
        ),
        "{metrics}"
    );
}

#[test]
fn serve_mcp_endpoint_speaks_the_2026_protocol_and_cancels_on_a_closed_stream() {
    let dir = tempfile::tempdir().unwrap();
    let host = serve(dir.path(), &agents(dir.path()), &[]);
    let url = format!("{}/mcp", host.base);
    let audit_log = host.audit.to_str().unwrap().to_string();
    let report = run_client(&["http", &url, "2026-07-28", &audit_log], &[]);
    check_session(&report, "2026-07-28", &host.audit, true);
}

#[test]
fn serve_mcp_endpoint_refuses_hosts_not_allowed_and_oversized_requests() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = agents(dir.path());
    let start = |extra: &[&str]| serve(dir.path(), &manifests, extra);
    let initialize = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let post = |host: &HostProcess, host_header: &str| {
        HostProcess::reply(
            host.http
                .post(format!("{}/mcp", host.base))
                .header("host", host_header)
                .header("accept", "application/json, text/event-stream")
                .content_type("application/json")
                .send(initialize),
        )
    };
    // Loopback only by default: a rebound DNS name is refused.
    let host = start(&[]);
    assert_eq!(post(&host, "evil.example.com").status, 403);
    assert_eq!(post(&host, "localhost").status, 200);
    // A body past the MCP request bound is refused before it is read.
    let addr = host.base.trim_start_matches("http://").to_string();
    let mut tcp = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        tcp,
        "POST /mcp HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: {}\r\n\r\n",
        5 << 20
    )
    .unwrap();
    let mut status = String::new();
    std::io::BufReader::new(tcp).read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    drop(host);
    let host = start(&["--mcp-allowed-hosts", "agents.example.svc"]);
    assert_eq!(post(&host, "agents.example.svc:8080").status, 200);
    assert_eq!(post(&host, "localhost").status, 403);
}

#[test]
fn stdio_mcp_serves_agents_as_tools_to_the_python_sdk() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = agents(dir.path());
    let audit_log = dir.path().join("audit.jsonl");
    let log = audit_log.to_str().unwrap();
    let report = stdio_client(
        dir.path(),
        &["stdio", log, "legacy"],
        &["--audit-log", log],
        &manifests,
    );
    check_session(&report, "2025-11-25", &audit_log, true);
    // A long call with a progress token is reported while it runs (every second).
    let progress = report["progress"].as_array().unwrap();
    assert!(!progress.is_empty(), "{report}");
    assert!(
        progress[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("running for"),
        "{report}"
    );
    let records = audit(&audit_log);
    assert!(
        records
            .iter()
            .any(|r| r["kind"] == "invocation.start" && r["caller"] == "stdio"),
        "{records:#?}"
    );
}

#[test]
fn stdio_mcp_sends_list_changed_when_a_manifest_changes() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = agents(dir.path());
    let echo = manifests[0].to_str().unwrap();
    let report = stdio_client(dir.path(), &["change", echo, "legacy"], &[], &manifests);
    assert_eq!(
        report["capabilities"]["tools"]["listChanged"], true,
        "{report}"
    );
    assert_eq!(report["before"]["echo"], "Echoes its arguments back.");
    // A new spec serves from the next call, and the client was told.
    assert_eq!(
        report["edited"]["echo"], "Echoes, second edition.",
        "{report}"
    );
    // A manifest that no longer loads withdraws its tool (fail closed).
    assert!(report["broken"].get("echo").is_none(), "{report}");
    assert!(report["broken"].get("spinner").is_some(), "{report}");
    assert_eq!(report["restored"]["echo"], "Echoes its arguments back.");
}

/// Caller authentication covers `/mcp` like the HTTP API: no token 401, a
/// caller outside `spec.callers` neither sees nor may call the tool (the
/// refusal audited with its name), an allowed caller calls it.
#[test]
fn serve_mcp_endpoint_authenticates_callers_and_honours_spec_callers() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("caller-tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    std::fs::write(tokens.join("pager"), "pager-0123").unwrap();
    std::fs::write(tokens.join("ci"), "ci-4567").unwrap();
    let restricted = guests::write_manifest(
        dir.path(),
        "restricted",
        guests::ECHO,
        "  callers: [pager]\n",
    );
    let host = HostProcess::start(dir.path(), "serve.log", |cmd| {
        cmd.arg("-f")
            .arg(&restricted)
            .arg("--caller-tokens")
            .arg(&tokens);
    });
    let rpc = |token: Option<&str>, body: &str| {
        let mut req = host
            .http
            .post(format!("{}/mcp", host.base))
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        HostProcess::reply(req.content_type("application/json").send(body.to_string()))
    };
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#;
    let call = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"restricted","arguments":{"message":"hi"}}}"#;

    let r = rpc(None, list);
    assert_eq!(r.status, 401, "{}", r.body);
    let r = rpc(Some("wrong"), call);
    assert_eq!(r.status, 401, "{}", r.body);

    let r = rpc(Some("ci-4567"), list);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["result"]["tools"],
        serde_json::json!([]),
        "ci does not see the tool: {}",
        r.body
    );
    let r = rpc(Some("ci-4567"), call);
    assert_eq!(r.body["error"]["data"]["code"], "Forbidden", "{}", r.body);

    let r = rpc(Some("pager-0123"), list);
    assert_eq!(
        r.body["result"]["tools"][0]["name"], "restricted",
        "{}",
        r.body
    );
    let r = rpc(Some("pager-0123"), call);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["result"]["isError"], false, "{}", r.body);

    // The audit log is written behind the requests: wait for the records.
    host.wait("the audit records", || {
        audit(&host.audit)
            .iter()
            .any(|e| e["kind"] == "invocation.end")
    });
    let records = audit(&host.audit);
    assert!(
        records
            .iter()
            .any(|e| e["kind"] == "request.denied" && e["caller"] == "ci" && e["status"] == 403),
        "{records:?}"
    );
    assert!(
        records
            .iter()
            .any(|e| e["kind"] == "invocation.start" && e["caller"] == "pager"),
        "{records:?}"
    );
    assert!(!records
        .iter()
        .any(|e| e["kind"] == "invocation.start" && e["caller"] == "ci"));
}

/// `tools/call` of the 2025 revisions is answered without the SDK's
/// per-request service (`server/mcp/direct.rs`); the answer must be the
/// SDK's: each call is sent as the Python SDK sends it (the direct path) and
/// with a weighted `Accept` entry (which only the SDK answers), and the two
/// replies match in status, content type and JSON-RPC body (invocation ids
/// and timings aside). The SDK logs each request it serves itself, which
/// shows which path answered. A `Host` outside the allow list is refused on
/// both.
#[test]
fn serve_mcp_tools_call_is_answered_as_the_sdk_answers_it() {
    let dir = tempfile::tempdir().unwrap();
    let host = serve(
        dir.path(),
        &agents(dir.path()),
        &["--log", "info,rmcp=info"],
    );
    let sdk_served = || host.logs().matches("Service initialized as server").count();
    let call = |accept: &str, host_header: &str, body: &str| {
        HostProcess::reply(
            host.http
                .post(format!("{}/mcp", host.base))
                .header("host", host_header)
                .header("accept", accept)
                .header("mcp-protocol-version", "2025-11-25")
                .content_type("application/json")
                .send(body.to_string()),
        )
    };
    let masked = |mut body: Value| {
        if let Some(meta) = body["result"]["_meta"].as_object_mut() {
            meta.insert("agent-host.dev/invocation".into(), "*".into());
            if let Some(usage) = meta
                .get_mut("agent-host.dev/usage")
                .and_then(Value::as_object_mut)
            {
                usage.insert("wallTimeUs".into(), 0.into());
            }
        }
        body
    };
    let bodies = [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi","count":2}}}"#,
        r#"{"jsonrpc":"2.0","id":"two","method":"tools/call","params":{"name":"echo","arguments":{"message":"hi","count":-1},"_meta":{"progressToken":7}}}"#,
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"spinner","arguments":{}}}"#,
        r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"nobody","arguments":{}}}"#,
    ];
    for body in bodies {
        let before = sdk_served();
        let direct = call("application/json, text/event-stream", "localhost", body);
        assert_eq!(sdk_served(), before, "the direct path answered {body}");
        let sdk = call("application/json;q=1, text/event-stream", "localhost", body);
        host.wait("the SDK's log line", || sdk_served() > before);
        assert_eq!(direct.status, sdk.status, "{body}");
        assert_eq!(
            direct.headers.get("content-type"),
            sdk.headers.get("content-type"),
            "{body}"
        );
        assert_eq!(masked(direct.body), masked(sdk.body), "{body}");
    }
    let body = bodies[0];
    for accept in [
        "application/json, text/event-stream",
        "application/json;q=1, text/event-stream",
    ] {
        assert_eq!(call(accept, "evil.example.com", body).status, 403);
    }
}

/// A client that closes its connection while a `tools/call` of a 2025
/// revision runs (the direct path) cancels the invocation, as the SDK
/// cancels its handler: the audit records the end as `Cancelled`, long
/// before the agent's 60 s timeout.
#[test]
fn serve_mcp_tools_call_of_2025_is_cancelled_when_the_client_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let host = serve(dir.path(), &agents(dir.path()), &[]);
    let addr = host.base.trim_start_matches("http://").to_string();
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"sleeper","arguments":{}}}"#;
    let mut tcp = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        tcp,
        "POST /mcp HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\nmcp-protocol-version: 2025-11-25\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let ended = |kind: &str| {
        audit(&host.audit)
            .into_iter()
            .find(|r| r["kind"] == kind && r["agent"] == "sleeper")
    };
    host.wait("the sleeper to start", || {
        ended("invocation.start").is_some()
    });
    drop(tcp);
    host.wait("the sleeper to end", || ended("invocation.end").is_some());
    assert_eq!(ended("invocation.end").unwrap()["outcome"], "Cancelled");
}
