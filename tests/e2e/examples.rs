//! The shipped examples do their job under their manifests.

use agent_host_e2e::guests;
use agent_host_e2e::support::{output_json, task, Harness, TestServer};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn hello_greets_echoes_and_reports_usage() {
    let h = Harness::new();
    let agent = h.agent(
        "hello",
        guests::HELLO,
        "  limits: { memory: 32Mi, timeout: 5s }\n",
    );
    let inv = agent.invoke(task(json!({"name": "Ada"}))).await;
    let out = output_json(&inv);
    assert_eq!(out["greeting"], "hello, Ada");
    assert_eq!(out["echo"], json!({"name": "Ada"}));
    assert_eq!(out["taskId"], inv.id.as_str());
    let u = &inv.usage;
    assert!(u.fuel_consumed > 0 && u.fuel_consumed < agent.limits().fuel);
    assert!(u.peak_memory_bytes > 0 && u.peak_memory_bytes <= 32 << 20);
    assert!(u.log_records >= 2, "log record and stdout line: {u:?}");
    assert_eq!(u.host_calls.get("log"), Some(&1));
    assert!(u.output_bytes > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn incident_responder_queries_metrics_reads_the_runbook_and_files_a_ticket() {
    let server = TestServer::start(|method, uri, _body| match (method, uri) {
        ("GET", u) if u.starts_with("/api/v1/query") => (
            200,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"0.27"]}]}}"#
                .into(),
        ),
        ("POST", "/api/issues") => (201, r#"{"id": 42}"#.into()),
        _ => (404, "{}".into()),
    })
    .await;
    let h = Harness::new();
    let runbooks = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/incident-responder/runbooks")
        .canonicalize()
        .unwrap();
    let runbooks = runbooks.display();
    let base = server.base();
    let spec = format!(
        "  capabilities:
    http:
      - {{ url: \"{base}/api/v1/\", methods: [GET] }}
      - {{ url: \"{base}/api/issues\", methods: [POST] }}
    filesystem:
      - {{ hostPath: {runbooks}, guestPath: /runbooks, readOnly: true }}
    env:
      - {{ name: METRICS_URL, value: \"{base}/api/v1/\" }}
      - {{ name: TICKETS_URL, value: \"{base}/api/issues\" }}
  limits: {{ maxHttpRequests: 5, timeout: 10s }}
"
    );
    let agent = h.agent("incident-responder", guests::INCIDENT_RESPONDER, &spec);
    let alert = json!({"alert": "HighErrorRate", "service": "checkout", "severity": "critical"});
    let inv = agent.invoke(task(alert)).await;
    let out = output_json(&inv);

    assert_eq!(out["ticket"], 42);
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(
        requests[0].uri.starts_with("/api/v1/query?query="),
        "{:?}",
        requests[0]
    );
    let ticket: serde_json::Value = serde_json::from_str(&requests[1].body).unwrap();
    assert_eq!(ticket["title"], "[critical] HighErrorRate on checkout");
    assert_eq!(ticket["taskId"], inv.id.as_str());
    let runbook_title = std::fs::read_to_string(format!("{runbooks}/HighErrorRate.md")).unwrap();
    assert_eq!(
        ticket["runbook"],
        runbook_title
            .lines()
            .next()
            .unwrap()
            .trim_start_matches("# ")
    );
    assert_eq!(inv.usage.caps.http.http_requests, 2);
    assert_eq!(inv.usage.caps.http.http_denied, 0);
    assert!(inv.usage.host_calls.get("filesystem").copied().unwrap_or(0) > 0);
    assert!(inv.usage.host_calls.get("env").copied().unwrap_or(0) > 0);
}

/// A demo endpoints script (Python, standard library only) on free loopback
/// ports, stopped on drop.
struct DemoEndpoints {
    child: std::process::Child,
    /// Its stdout, kept open: the script logs there after the ready line.
    _stdout: std::io::BufReader<std::process::ChildStdout>,
    /// The ports of its `ready name=port ...` line, in order.
    ports: Vec<u16>,
}

impl DemoEndpoints {
    fn start(script: &str, args: &[&str]) -> Self {
        use std::io::BufRead as _;
        let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut child = std::process::Command::new("python3")
            .arg(workspace.join(script))
            .args(args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("python3 {script}: {e}"));
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut ready = String::new();
        stdout.read_line(&mut ready).unwrap();
        let ports = ready
            .strip_prefix("ready ")
            .unwrap_or_else(|| panic!("{script} did not start: {ready:?}"))
            .split_whitespace()
            .map(|kv| kv.split_once('=').unwrap().1.parse().unwrap())
            .collect();
        Self {
            child,
            _stdout: stdout,
            ports,
        }
    }
}

impl Drop for DemoEndpoints {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET http://127.0.0.1:{port}{path}` answered with JSON (HTTP/1.0: the
/// server closes the connection after the body).
fn get_json(port: u16, path: &str) -> serde_json::Value {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    let (_, body) = reply.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(body).unwrap()
}

/// What `make demo` shows: the shipped triage manifest (only its component
/// path and loopback ports changed), its model key from a mounted secret,
/// against the demo's model stand-in and tickets API. The stand-in answers
/// only with that key and with a tool call; the first alert files one ticket
/// and reports the model's tokens, the same alert again is recognised through
/// key-value state without the model or the ticket API.
#[tokio::test(flavor = "multi_thread")]
async fn triage_against_the_demo_model_stand_in_files_one_ticket_and_skips_the_duplicate() {
    triage_files_one_ticket_and_skips_the_duplicate(
        "examples/triage/agent.yaml",
        "../../target/guests/wasm32-wasip2/release/triage.wasm",
        guests::TRIAGE,
    )
    .await;
}

/// The same for the triage agent written in Python, with its own manifest.
#[tokio::test(flavor = "multi_thread")]
async fn triage_in_python_does_the_same_as_the_rust_triage() {
    let component = guests::python_guest("examples/triage-python", "triage");
    triage_files_one_ticket_and_skips_the_duplicate(
        "examples/triage-python/agent.yaml",
        "../../target/guests/python/triage.wasm",
        &component,
    )
    .await;
}

async fn triage_files_one_ticket_and_skips_the_duplicate(
    example: &str,
    shipped_component: &str,
    component: &str,
) {
    let h = Harness::new();
    let key = h.dir.path().join("secrets/model-provider/api-key");
    std::fs::create_dir_all(key.parent().unwrap()).unwrap();
    std::fs::write(&key, "sk-demo-test\n").unwrap();
    let model = DemoEndpoints::start(
        "examples/triage/endpoints.py",
        &["--api-key-file", key.to_str().unwrap(), "0", "0"],
    );
    let tickets = DemoEndpoints::start("examples/incident-responder/endpoints.py", &["0", "0"]);
    let (model_port, pager_port, tickets_port) = (model.ports[0], model.ports[1], tickets.ports[1]);

    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(example),
    )
    .unwrap();
    let manifest = shipped
        .replace(shipped_component, component)
        .replace("127.0.0.1:18091", &format!("127.0.0.1:{tickets_port}"))
        .replace("127.0.0.1:18092", &format!("127.0.0.1:{model_port}"))
        .replace("127.0.0.1:18093", &format!("127.0.0.1:{pager_port}"));
    let path = h.dir.path().join("triage.yaml");
    std::fs::write(&path, manifest).unwrap();
    let agent = h.load(&path).unwrap();

    let alert: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/triage/alert.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let first = agent.invoke(task(alert.clone())).await;
    let out = output_json(&first);
    assert_eq!(out["duplicate"], false, "{example}: {out}");
    assert_eq!(out["decision"]["tool"], "create_ticket", "{example}: {out}");
    assert_eq!(first.usage.caps.llm.llm_requests, 1);
    assert!(first.usage.caps.llm.llm_tokens > 0, "{:?}", first.usage);
    assert_eq!(
        first.usage.caps.key_value.key_value,
        Some(agent_host::cap::key_value::KeyValueCommit::Committed)
    );
    let filed = get_json(tickets_port, "/api/issues");
    assert_eq!(filed.as_array().unwrap().len(), 1, "{filed}");
    assert_eq!(filed[0]["alert"], alert["id"]);

    let again = agent.invoke(task(alert)).await;
    let out = output_json(&again);
    assert_eq!(out["duplicate"], true, "{example}: {out}");
    assert_eq!(out["decision"]["tool"], "create_ticket", "{example}: {out}");
    assert_eq!(again.usage.caps.llm.llm_requests, 0);
    assert_eq!(get_json(model_port, "/v1/requests")["completions"], 1);
    assert_eq!(
        get_json(tickets_port, "/api/issues")
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// `hello` in Python answers every input exactly as the Rust `hello` does:
/// the same output bytes, the same outcome for input it refuses.
#[tokio::test(flavor = "multi_thread")]
async fn hello_in_python_answers_exactly_as_the_rust_hello() {
    let python = guests::python_guest("examples/hello-python", "hello");
    hello_answers_as_the_rust_hello(&python, &[]).await;
}

/// The same for `hello` in TypeScript, on the inputs JavaScript numbers can
/// write back as serde does (a float like `1.0` comes back as `1`).
#[tokio::test(flavor = "multi_thread")]
async fn hello_in_typescript_answers_exactly_as_the_rust_hello() {
    let ts = guests::ts_guest("examples/hello-ts", "hello");
    hello_answers_as_the_rust_hello(&ts, &["1e-7"]).await;
}

async fn hello_answers_as_the_rust_hello(component: &str, skip: &[&str]) {
    let h = Harness::new();
    let limits = "  limits: { memory: 32Mi, timeout: 5s }\n";
    let rust = h.agent("hello", guests::HELLO, limits);
    let other = h.agent("hello", component, limits);
    for input in [
        r#"{"name": "Ada"}"#,
        "{}",
        "",
        r#"{"name": "é✓", "extra": [1, 2.5, null, {"b": true, "a": "x"}]}"#,
        r#"{"small": 1e-7}"#,
        "[1, 2]",
        "not json",
        r#"{"name": 7}"#,
    ] {
        if skip.iter().any(|s| input.contains(s)) {
            continue;
        }
        let fixed = || agent_host::TaskInput {
            id: Some("fixed-id".into()),
            input: input.into(),
            metadata: vec![],
        };
        let (r, o) = (rust.invoke(fixed()).await, other.invoke(fixed()).await);
        match (&r.result, &o.result) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{component} {input}"),
            (Err(a), Err(b)) => assert_eq!(a.code(), b.code(), "{input}: {a} / {b}"),
            (a, b) => panic!("{component} {input}: rust {a:?}, other {b:?}"),
        }
    }
}

/// What `make demo` shows of the MCP capability: the shipped ops-assistant
/// manifest (component path and loopback ports changed) against the demo's
/// model and MCP stand-ins. The model asks for the two granted tools, the
/// host calls them on the MCP server with the token from the mounted secret,
/// and the model answers from their results; the ungranted
/// `restart_service` is never offered.
#[tokio::test(flavor = "multi_thread")]
async fn ops_assistant_answers_through_the_demo_model_and_mcp_stand_ins() {
    let h = Harness::new();
    let secrets = h.dir.path().join("secrets");
    for (dir, value) in [
        ("model-provider/api-key", "sk-demo-test"),
        ("status-mcp/token", "mcp-demo-test"),
    ] {
        let file = secrets.join(dir);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, format!("{value}\n")).unwrap();
    }
    let endpoints = DemoEndpoints::start(
        "examples/ops-assistant/endpoints.py",
        &[
            "--api-key-file",
            secrets.join("model-provider/api-key").to_str().unwrap(),
            "--token-file",
            secrets.join("status-mcp/token").to_str().unwrap(),
            "0",
            "0",
        ],
    );
    let (model_port, mcp_port) = (endpoints.ports[0], endpoints.ports[1]);
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/ops-assistant/agent.yaml"),
    )
    .unwrap();
    let manifest = shipped
        .replace(
            "../../target/guests/wasm32-wasip2/release/ops_assistant.wasm",
            guests::OPS_ASSISTANT,
        )
        .replace("127.0.0.1:18094", &format!("127.0.0.1:{model_port}"))
        .replace("127.0.0.1:18095", &format!("127.0.0.1:{mcp_port}"));
    let path = h.dir.path().join("ops-assistant.yaml");
    std::fs::write(&path, manifest).unwrap();
    let agent = h.load(&path).unwrap();
    let question: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../examples/ops-assistant/question.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let inv = agent.invoke(task(question)).await;
    let out = output_json(&inv);
    assert_eq!(
        out["toolsOffered"],
        serde_json::json!(["status/service_status", "status/recent_deploys"]),
        "{out}"
    );
    let answer = out["answer"].as_str().unwrap();
    assert!(
        answer.contains("degraded") && answer.contains("d-1234"),
        "{out}"
    );
    assert_eq!(inv.usage.caps.llm.llm_requests, 2);
    assert_eq!(inv.usage.caps.mcp.mcp_calls, 2);
    let served = get_json(mcp_port, "/calls");
    let tools: Vec<&str> = served
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["tool"].as_str().unwrap())
        .collect();
    assert_eq!(tools, ["service_status", "recent_deploys"], "{served}");
}

/// `make demo` needs the wasm target and the guest toolchains (componentize-py,
/// Node.js), not the Debian and PyPI tools of the tests (prometheus, wrk,
/// redis: about 340 MB), and builds every example it runs.
#[test]
fn make_demo_installs_only_the_guest_toolchains_and_builds_every_example() {
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let plan = std::process::Command::new("make")
        .args(["-n", "demo"])
        .current_dir(&workspace)
        .output()
        .expect("make");
    assert!(plan.status.success(), "{plan:?}");
    let plan = String::from_utf8(plan.stdout).unwrap();
    assert!(plan.contains("install-tools.sh --guests-only"), "{plan}");
    assert!(
        !plan
            .lines()
            .any(|l| l.trim() == "./scripts/install-tools.sh"),
        "{plan}"
    );
    assert!(plan.contains("rustup target add wasm32-wasip2"), "{plan}");
    for example in [
        "-p triage",
        "-p ops-assistant",
        "examples/hello-python",
        "examples/triage-python",
        "examples/hello-ts",
    ] {
        assert!(plan.contains(example), "{example} not built: {plan}");
    }
}
