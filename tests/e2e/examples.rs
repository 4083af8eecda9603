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
    assert_eq!(inv.usage.http_requests, 2);
    assert_eq!(inv.usage.http_denied, 0);
    assert!(inv.usage.host_calls.get("filesystem").copied().unwrap_or(0) > 0);
    assert!(inv.usage.host_calls.get("env").copied().unwrap_or(0) > 0);
}
