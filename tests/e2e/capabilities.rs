//! Each capability with its grant works, and without it is denied: env,
//! filesystem, outgoing HTTP.

use agent_host_e2e::guests;
use agent_host_e2e::support::{output_json, task, Harness, TestServer};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn only_declared_env_vars_exist_in_the_guest() {
    // Variables of the host's own environment that must not leak.
    agent_host_e2e::support::pod_host_environment();
    let h = Harness::new();
    std::fs::create_dir_all(h.dir.path().join("secrets/tickets")).unwrap();
    std::fs::write(h.dir.path().join("secrets/tickets/token"), "tok-123\n").unwrap();
    let agent = h.agent(
        "env",
        guests::ENV_PROBE,
        "  capabilities:\n    env:\n      - { name: CLUSTER, value: prod }\n      - { name: TOKEN, valueFrom: { secretKeyRef: { name: tickets, key: token } } }\n",
    );
    let out = output_json(&agent.invoke(task(json!({}))).await);
    assert_eq!(out["vars"], json!({"CLUSTER": "prod", "TOKEN": "tok-123"}));
    assert_eq!(out["args"], json!([]));
    assert!(
        std::env::var("PATH").is_ok(),
        "the host itself has an environment"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_env_declared_means_an_empty_environment() {
    let h = Harness::new();
    let agent = h.agent("env-none", guests::ENV_PROBE, "");
    let out = output_json(&agent.invoke(task(json!({}))).await);
    assert_eq!(out["vars"], json!({}));
}

fn fs_agent(h: &Harness) -> agent_host::PreparedAgent {
    let ro = h.dir.path().join("ro");
    let rw = h.dir.path().join("rw");
    std::fs::create_dir_all(ro.join("sub")).unwrap();
    std::fs::create_dir_all(&rw).unwrap();
    std::fs::write(ro.join("runbook.md"), "# Runbook\nrestart it").unwrap();
    std::fs::write(h.dir.path().join("outside.txt"), "secret outside the mount").unwrap();
    h.agent(
        "fs",
        guests::FS_PROBE,
        "  capabilities:\n    filesystem:\n      - { hostPath: ro, guestPath: /data, readOnly: true }\n      - { hostPath: rw, guestPath: /scratch, readOnly: false }\n",
    )
}

async fn fs(agent: &agent_host::PreparedAgent, input: serde_json::Value) -> serde_json::Value {
    output_json(&agent.invoke(task(input)).await)
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_inside_a_preopen_succeed() {
    let h = Harness::new();
    let agent = fs_agent(&h);
    let out = fs(&agent, json!({"op": "read", "path": "/data/runbook.md"})).await;
    assert_eq!(out, json!({"ok": true, "data": "# Runbook\nrestart it"}));
}

#[tokio::test(flavor = "multi_thread")]
async fn paths_outside_the_preopens_are_denied() {
    let h = Harness::new();
    let agent = fs_agent(&h);
    for path in [
        "/data/../outside.txt",
        "/data/sub/../../outside.txt",
        "/etc/passwd",
        "/outside.txt",
        "outside.txt",
    ] {
        let out = fs(&agent, json!({"op": "read", "path": path})).await;
        assert_eq!(out["ok"], false, "{path} must not be readable: {out}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn read_only_preopen_refuses_every_write() {
    let h = Harness::new();
    let agent = fs_agent(&h);
    for op in [
        json!({"op": "write", "path": "/data/new.txt", "data": "x"}),
        json!({"op": "write", "path": "/data/runbook.md", "data": "overwritten"}),
        json!({"op": "create_dir", "path": "/data/newdir"}),
        json!({"op": "remove", "path": "/data/runbook.md"}),
        json!({"op": "rename", "path": "/data/runbook.md", "to": "/data/moved.md"}),
    ] {
        let out = fs(&agent, op.clone()).await;
        assert_eq!(out["ok"], false, "{op} must be denied: {out}");
    }
    let untouched = std::fs::read_to_string(h.dir.path().join("ro/runbook.md")).unwrap();
    assert_eq!(untouched, "# Runbook\nrestart it");
    assert!(!h.dir.path().join("ro/new.txt").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn read_write_preopen_allows_writes() {
    let h = Harness::new();
    let agent = fs_agent(&h);
    let out = fs(
        &agent,
        json!({"op": "write", "path": "/scratch/note.txt", "data": "hi"}),
    )
    .await;
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!(
        std::fs::read_to_string(h.dir.path().join("rw/note.txt")).unwrap(),
        "hi"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_filesystem_grant_means_nothing_is_visible() {
    let h = Harness::new();
    let agent = h.agent("fs-none", guests::FS_PROBE, "");
    for path in ["/", "/etc/passwd", "."] {
        let out = fs(&agent, json!({"op": "list", "path": path})).await;
        assert_eq!(out["ok"], false, "{path}: {out}");
    }
}

async fn http_setup(h: &Harness) -> (TestServer, TestServer, agent_host::PreparedAgent) {
    let allowed = TestServer::start(|_, _, _| (200, r#"{"pong":true}"#.into())).await;
    let other = TestServer::start(|_, _, _| (200, "{}".into())).await;
    let spec = format!(
        "  capabilities:\n    http:\n      - {{ url: \"{}/api/\", methods: [GET] }}\n  limits: {{ maxHttpRequests: 10 }}\n",
        allowed.base()
    );
    let agent = h.agent("http", guests::HTTP_PROBE, &spec);
    (allowed, other, agent)
}

#[tokio::test(flavor = "multi_thread")]
async fn declared_url_and_method_reach_the_server() {
    let h = Harness::new();
    let (allowed, _other, agent) = http_setup(&h).await;
    let inv = agent
        .invoke(task(
            json!({"method": "GET", "url": format!("{}/api/ping", allowed.base())}),
        ))
        .await;
    let out = output_json(&inv);
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!(out["status"], 200);
    assert_eq!(allowed.requests().len(), 1);
    assert_eq!(allowed.requests()[0].uri, "/api/ping");
    assert_eq!(inv.usage.caps.http.http_requests, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn undeclared_host_port_scheme_method_or_path_is_denied_and_never_sent() {
    let h = Harness::new();
    let (allowed, other, agent) = http_setup(&h).await;
    let port = allowed.addr.port();
    let cases = [
        ("GET", format!("http://localhost:{port}/api/ping")), // host
        ("GET", format!("{}/api/ping", other.base())),        // port
        ("GET", format!("https://127.0.0.1:{port}/api/ping")), // scheme
        ("POST", format!("{}/api/ping", allowed.base())),     // method
        ("GET", format!("{}/admin", allowed.base())),         // path
        ("GET", format!("{}/api/../admin", allowed.base())),  // dot segments
    ];
    for (method, url) in &cases {
        let inv = agent
            .invoke(task(json!({"method": method, "url": url})))
            .await;
        let out = output_json(&inv);
        assert_eq!(out["ok"], false, "{method} {url}: {out}");
        assert_eq!(
            out["denied"], true,
            "{method} {url} must fail as HTTP-request-denied: {out}"
        );
        assert_eq!(inv.usage.caps.http.http_denied, 1);
    }
    assert!(
        allowed.requests().is_empty(),
        "denied requests reached the server: {:?}",
        allowed.requests()
    );
    assert!(
        other.requests().is_empty(),
        "denied requests reached the other server"
    );
}
