//! Outgoing HTTP against SSRF: what the guest asks for cannot change which
//! server is contacted, and nothing the host was not told to allow is reached.

use agent_host_e2e::guests;
use agent_host_e2e::support::{output_json, task, Harness, TestServer};
use serde_json::json;

async fn probe(
    agent: &agent_host::PreparedAgent,
    input: serde_json::Value,
) -> (serde_json::Value, agent_host::Invocation) {
    let inv = agent.invoke(task(input)).await;
    (output_json(&inv), inv)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_name_resolving_to_loopback_is_refused_unless_the_rule_grants_the_cidr() {
    let server = TestServer::start(|_, _, _| (200, "{}".into())).await;
    let port = server.addr.port();
    let h = Harness::new();
    let url = format!("http://localhost:{port}/api/ping");
    let rule = format!("      - {{ url: \"http://localhost:{port}/api/\", methods: [GET]");

    let ungranted = h.agent(
        "ssrf",
        guests::HTTP_PROBE,
        &format!("  capabilities:\n    http:\n{rule} }}\n"),
    );
    let (out, inv) = probe(&ungranted, json!({"method": "GET", "url": url})).await;
    assert_eq!(out["denied"], true, "{out}");
    assert!(
        out["error"]
            .as_str()
            .unwrap()
            .contains(&format!("localhost:{port}")),
        "{out}"
    );
    assert_eq!(inv.usage.caps.http.http_denied, 1);
    assert!(
        server.requests().is_empty(),
        "the loopback server was reached"
    );

    let granted = h.agent(
        "ssrf-granted",
        guests::HTTP_PROBE,
        &format!(
            "  capabilities:\n    http:\n{rule}, allowedCidrs: [\"127.0.0.0/8\", \"::1/128\"] }}\n"
        ),
    );
    let (out, _) = probe(&granted, json!({"method": "GET", "url": url})).await;
    assert_eq!(out["status"], 200, "{out}");
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn redirects_are_returned_to_the_guest_not_followed() {
    let target = TestServer::start(|_, _, _| (200, "{}".into())).await;
    let location = format!("{}/internal", target.base());
    let redirector = TestServer::start(move |_, _, _| (302, location.clone())).await;
    let h = Harness::new();
    let agent = h.agent(
        "redirect",
        guests::HTTP_PROBE,
        &format!(
            "  capabilities:\n    http:\n      - {{ url: \"{}/\", methods: [GET] }}\n",
            redirector.base()
        ),
    );
    let (out, inv) = probe(
        &agent,
        json!({"method": "GET", "url": format!("{}/go", redirector.base())}),
    )
    .await;
    assert_eq!(out["status"], 302, "{out}");
    assert_eq!(inv.usage.caps.http.http_requests, 1);
    assert!(
        target.requests().is_empty(),
        "the redirect was followed by the host"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn forbidden_and_hop_by_hop_headers_are_refused() {
    let server = TestServer::start(|_, _, _| (200, "{}".into())).await;
    let h = Harness::new();
    let agent = h.agent(
        "headers",
        guests::HTTP_PROBE,
        &format!(
            "  capabilities:\n    http:\n      - {{ url: \"{}/\", methods: [GET] }}\n",
            server.base()
        ),
    );
    for header in [
        "Host",
        "Proxy-Authorization",
        "Proxy-Anything",
        "Connection",
        "Transfer-Encoding",
        "TE",
        "Upgrade",
    ] {
        let input = json!({"method": "GET", "url": format!("{}/x", server.base()), "headers": [[header, "evil.example"]]});
        let (out, _) = probe(&agent, input).await;
        assert_eq!(out["ok"], false, "{header} was accepted: {out}");
        assert!(
            out["error"].as_str().unwrap().contains("Forbidden"),
            "{header}: {out}"
        );
    }
    assert!(
        server.requests().is_empty(),
        "a request with a forbidden header was sent"
    );
    let (out, _) = probe(&agent, json!({"method": "GET", "url": format!("{}/x", server.base()), "headers": [["X-Trace", "1"]]})).await;
    assert_eq!(out["status"], 200, "ordinary headers still work: {out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn response_bodies_over_the_cap_fail_in_the_guest() {
    let server = TestServer::start(|_, uri, _| {
        (
            200,
            "x".repeat(if uri == "/big" { 256 * 1024 } else { 1024 }),
        )
    })
    .await;
    let h = Harness::new();
    let agent = h.agent(
        "body-cap",
        guests::HTTP_PROBE,
        &format!(
            "  capabilities:\n    http:\n      - {{ url: \"{}/\", methods: [GET] }}\n  limits: {{ maxHttpResponseBytes: 64Ki }}\n",
            server.base()
        ),
    );
    let (out, _) = probe(
        &agent,
        json!({"method": "GET", "url": format!("{}/big", server.base())}),
    )
    .await;
    assert_eq!(out["ok"], false, "{out}");
    assert!(
        out["error"]
            .as_str()
            .unwrap()
            .contains("response body size exceeds limit: 65536"),
        "{out}"
    );
    let (out, _) = probe(
        &agent,
        json!({"method": "GET", "url": format!("{}/small", server.base())}),
    )
    .await;
    assert_eq!(out["status"], 200, "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn userinfo_cannot_redirect_a_request_to_another_host() {
    let allowed = TestServer::start(|_, _, _| (200, "{}".into())).await;
    let h = Harness::new();
    let agent = h.agent(
        "userinfo",
        guests::HTTP_PROBE,
        &format!(
            "  capabilities:\n    http:\n      - {{ url: \"{}/\", methods: [GET] }}\n",
            allowed.base()
        ),
    );
    let sneaky = format!("http://{}@evil.example/x", allowed.addr);
    let (out, inv) = probe(&agent, json!({"method": "GET", "url": sneaky})).await;
    assert_eq!(out["ok"], false, "{out}");
    assert_eq!(inv.usage.caps.http.http_requests, 0);
    assert!(allowed.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_peer_cannot_hold_the_invocation_past_its_timeout() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let h = Harness::new();
    let agent = h.agent(
        "silent",
        guests::HTTP_PROBE,
        &format!("  capabilities:\n    http:\n      - {{ url: \"http://{addr}/\", methods: [GET] }}\n  limits: {{ timeout: 500ms }}\n"),
    );
    let inv = agent
        .invoke(task(
            json!({"method": "GET", "url": format!("http://{addr}/hang")}),
        ))
        .await;
    assert!(
        matches!(inv.result, Err(agent_host::InvocationError::Timeout { .. })),
        "{:?}",
        inv.result
    );
    assert!(
        inv.usage.wall_time_us < 3_000_000,
        "held for {} µs",
        inv.usage.wall_time_us
    );
    let next = agent
        .invoke(task(json!({"method": "GET", "url": "http://127.0.0.1:1/"})))
        .await;
    assert!(
        next.result.is_ok(),
        "the agent still serves: {:?}",
        next.result
    );
}

/// A loopback server that records each raw request line (before any HTTP
/// library could normalise it) and answers `200 {}`.
async fn raw_line_server() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = lines.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&head);
                seen.lock()
                    .unwrap()
                    .push(text.lines().next().unwrap_or_default().to_string());
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
                    )
                    .await;
            });
        }
    });
    (addr, lines)
}

#[tokio::test(flavor = "multi_thread")]
async fn paths_a_server_reads_as_another_path_never_leave_the_host() {
    let (addr, lines) = raw_line_server().await;
    let h = Harness::new();
    let agent = h.agent(
        "path-confusion",
        guests::HTTP_PROBE,
        &format!("  capabilities:\n    http:\n      - {{ url: \"http://{addr}/api/\", methods: [GET] }}\n"),
    );
    // Each is under /api/ to a WHATWG parser, and elsewhere to common servers.
    for path in [
        r"/admin\..\api/x",
        "/api/..;/admin",
        "/api/x%2f..%2f..%2fadmin",
        "/api/x%5C..%5C..%5Cadmin",
        "/api/%2e%2e/admin",
    ] {
        let url = format!("http://{addr}{path}");
        let (out, inv) = probe(&agent, json!({"method": "GET", "url": url})).await;
        assert_eq!(out["denied"], true, "{path}: {out}");
        assert_eq!(
            (
                inv.usage.caps.http.http_requests,
                inv.usage.caps.http.http_denied
            ),
            (0, 1),
            "{path}"
        );
    }
    assert!(
        lines.lock().unwrap().is_empty(),
        "the server saw: {:?}",
        lines.lock().unwrap()
    );

    let (out, _) = probe(
        &agent,
        json!({"method": "GET", "url": format!("http://{addr}/api/ok;v=1?q=%2F..")}),
    )
    .await;
    assert_eq!(out["status"], 200, "{out}");
    assert_eq!(
        *lines.lock().unwrap(),
        ["GET /api/ok;v=1?q=%2F.. HTTP/1.1"],
        "the server sees exactly the checked path"
    );
}
