//! `agent-host serve` as a platform runs it: a real server process on
//! loopback, a real HTTP client, real signals.

use std::io::BufReader;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use agent_host_test_guests as guests;
use serde_json::Value;

use crate::support::{read_http_request, HostProcess, Reply, BIN};

// Hostile scenarios, one module per area; they share `Serve` and the helpers here.
#[path = "serve/audit.rs"]
mod audit;
#[path = "serve/auth.rs"]
mod auth;
#[path = "serve/durable.rs"]
mod durable;
#[path = "serve/fs.rs"]
mod fs;
#[path = "serve/key_value.rs"]
mod key_value;
#[path = "serve/store.rs"]
mod store;
#[path = "serve/store_url.rs"]
mod store_url;

/// `agent-host serve` of manifest files (`crate::support::HostProcess`).
struct Serve(HostProcess);

impl Deref for Serve {
    type Target = HostProcess;

    fn deref(&self) -> &HostProcess {
        &self.0
    }
}

impl DerefMut for Serve {
    fn deref_mut(&mut self) -> &mut HostProcess {
        &mut self.0
    }
}

impl Serve {
    /// Starts `agent-host serve` on an ephemeral port with an audit log in `dir`.
    fn start(dir: &Path, manifests: &[&Path], extra: &[&str]) -> Self {
        let serve = Serve(HostProcess::start(dir, "serve.log", |cmd| {
            cmd.args(extra);
            for m in manifests {
                cmd.arg("-f").arg(m);
            }
        }));
        assert_eq!(serve.get("/readyz").status, 200, "{}", serve.logs());
        serve
    }

    fn invoke(&self, agent: &str, body: &str) -> Reply {
        self.post(&format!("/v1/agents/{agent}/invocations"), &[], body)
    }

    fn metrics(&self) -> String {
        let mut resp = self
            .http
            .get(format!("{}/metrics", self.base))
            .call()
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.body_mut().read_to_string().unwrap()
    }
}

fn audit_verify(path: &Path) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .args(["audit", "verify"])
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

pub(crate) fn audit_records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A `slow_tally` agent whose side effects land in `<dir>/data/tally`.
fn tally_manifest(dir: &Path, limits: &str) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let spec = format!(
        "  capabilities:\n    filesystem:\n      - {{ hostPath: {}, guestPath: /data, readOnly: false }}\n  limits: {limits}\n",
        data.display()
    );
    guests::write_manifest(dir, "tally", guests::SLOW_TALLY, &spec)
}

fn tally_lines(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("data/tally"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

#[test]
fn sync_and_async_invocations_round_trip_with_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let agents = dir.path().join("agents");
    std::fs::create_dir(&agents).unwrap();
    guests::write_manifest(
        &agents,
        "hello",
        guests::HELLO,
        "  limits: { maxInputBytes: 64 }\n",
    );
    guests::write_manifest(
        &agents,
        "spinner",
        guests::SPIN_FOREVER,
        "  limits: { fuel: 5000000 }\n",
    );
    // A directory of manifests hosts every agent in it.
    let serve = Serve::start(dir.path(), &[&agents], &[]);

    let r = serve.invoke("hello", r#"{"name":"sync"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["state"], "succeeded");
    assert_eq!(r.body["output"]["greeting"], "hello, sync");
    assert!(r.body["usage"]["fuelConsumed"].as_u64().unwrap() > 0);

    let r = serve.post(
        "/v1/agents/hello/invocations?async=true",
        &[],
        r#"{"name":"later"}"#,
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    let location = r.headers["location"].to_str().unwrap().to_string();
    assert_eq!(location, format!("/v1/invocations/{id}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let done = loop {
        let r = serve.get(&location);
        assert_eq!(r.status, 200, "{}", r.body);
        if r.body["state"] == "succeeded" {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "async invocation never finished: {}",
            r.body
        );
        thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(done.body["id"], id.as_str());
    assert_eq!(done.body["output"]["greeting"], "hello, later");

    // A budget breach is the invocation's outcome, not a server error.
    let r = serve.invoke("spinner", "{}");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["state"], "failed");
    assert_eq!(r.body["outcome"], "FuelExhausted");
    assert_eq!(r.body["error"]["code"], "FuelExhausted");

    let cases = [
        ("/v1/agents/nobody/invocations", "{}", 404, "UnknownAgent"),
        (
            "/v1/agents/hello/invocations",
            "{not json",
            400,
            "InvalidInput",
        ),
        (
            "/v1/agents/hello/invocations",
            &format!(r#"{{"name":"{}"}}"#, "x".repeat(100)),
            413,
            "InputTooLarge",
        ),
        (
            "/v1/agents/hello/invocations?async=maybe",
            "{}",
            400,
            "InvalidQuery",
        ),
    ];
    for (path, body, status, code) in cases {
        let r = serve.post(path, &[], body);
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (status, Some(code)),
            "{path}: {}",
            r.body
        );
        assert!(!r.body["error"]["message"].as_str().unwrap().is_empty());
    }
    let r = serve.get("/v1/invocations/not-an-id");
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (404, Some("UnknownInvocation"))
    );
    assert_eq!(serve.get("/healthz").status, 200);
}

#[test]
fn one_idempotency_key_runs_the_agent_once() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = tally_manifest(dir.path(), "{ maxConcurrency: 4 }");
    let serve = Serve::start(dir.path(), &[&manifest], &[]);
    let body = r#"{"sleepMs":400}"#;
    let key = [("Idempotency-Key", "order-17")];

    let replies: Vec<Reply> = thread::scope(|s| {
        let a = s.spawn(|| serve.post("/v1/agents/tally/invocations", &key, body));
        thread::sleep(Duration::from_millis(50));
        let b = s.spawn(|| serve.post("/v1/agents/tally/invocations", &key, body));
        vec![a.join().unwrap(), b.join().unwrap()]
    });
    for r in &replies {
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["state"], "succeeded");
    }
    assert_eq!(
        replies[0].body["id"], replies[1].body["id"],
        "both callers see the one invocation"
    );
    assert_eq!(replies[1].headers["idempotent-replayed"], "true");
    assert_eq!(tally_lines(dir.path()), 1, "the agent ran once");

    // A later retry gets the stored result; still one run.
    let again = serve.post("/v1/agents/tally/invocations", &key, body);
    assert_eq!(again.body, replies[0].body);
    assert_eq!(tally_lines(dir.path()), 1);

    let other = serve.post("/v1/agents/tally/invocations", &key, r#"{"sleepMs":1}"#);
    assert_eq!(other.status, 422, "{}", other.body);
    assert_eq!(other.body["error"]["code"], "IdempotencyKeyReused");

    // A new key is a new task.
    let fresh = serve.post(
        "/v1/agents/tally/invocations",
        &[("Idempotency-Key", "order-18")],
        body,
    );
    assert_eq!(fresh.status, 200);
    assert_ne!(fresh.body["id"], replies[0].body["id"]);
    assert_eq!(tally_lines(dir.path()), 2);
}

#[test]
fn full_agent_refuses_with_429_keeps_memory_bounded_and_finishes_accepted_work() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = tally_manifest(
        dir.path(),
        "{ maxConcurrency: 2, maxQueue: 2, timeout: 30s }",
    );
    let serve = Serve::start(dir.path(), &[&manifest], &[]);
    // Warm up (compile caches, allocator slots) before measuring memory.
    assert_eq!(serve.invoke("tally", r#"{"sleepMs":0}"#).status, 200);
    let rss_before = serve.rss_kib();

    let body = r#"{"sleepMs":3000}"#;
    let replies: Vec<Reply> = thread::scope(|s| {
        let workers: Vec<_> = (0..8)
            .map(|_| s.spawn(|| serve.invoke("tally", body)))
            .collect();
        // While 2 run and 2 wait, hammer the full agent.
        thread::sleep(Duration::from_millis(300));
        let flood: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    (0..100)
                        .map(|_| serve.invoke("tally", body).status)
                        .collect::<Vec<u16>>()
                })
            })
            .collect();
        let flooded: Vec<u16> = flood.into_iter().flat_map(|h| h.join().unwrap()).collect();
        assert!(
            flooded.iter().all(|s| *s == 429),
            "a full agent accepts nothing more: {flooded:?}"
        );
        workers.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok: Vec<&Reply> = replies.iter().filter(|r| r.status == 200).collect();
    let refused: Vec<&Reply> = replies.iter().filter(|r| r.status == 429).collect();
    assert_eq!(
        (ok.len(), refused.len()),
        (4, 4),
        "2 running + 2 queued accepted, the rest refused"
    );
    for r in &refused {
        assert_eq!(r.body["error"]["code"], "QueueFull");
        assert_eq!(r.headers["retry-after"], "1");
    }
    for r in &ok {
        assert_eq!(r.body["state"], "succeeded", "{}", r.body);
    }
    assert_eq!(
        tally_lines(dir.path()),
        1 + 4,
        "all accepted work completed"
    );

    let rss_after = serve.rss_kib();
    assert!(
        rss_after < rss_before + 32 * 1024,
        "408 refused requests grew the server from {rss_before} KiB to {rss_after} KiB"
    );
    let metrics = serve.metrics();
    assert!(
        metrics.contains(
            "agent_host_requests_rejected_total{agent=\"tally\",reason=\"QueueFull\"} 404"
        ),
        "{metrics}"
    );
}

#[test]
fn sigterm_lets_in_flight_work_finish_refuses_new_work_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = tally_manifest(dir.path(), "{ timeout: 30s }");
    let mut serve = Serve::start(dir.path(), &[&manifest], &["--shutdown-grace", "20s"]);

    let in_flight = thread::scope(|s| {
        let slow = s.spawn(|| serve.invoke("tally", r#"{"sleepMs":1500}"#));
        wait_for_metric(
            &serve,
            "agent_host_invocations_in_flight{agent=\"tally\"} 1",
        );
        serve.signal("TERM");
        // Readiness drops and new work is refused while the slow one runs.
        let deadline = Instant::now() + Duration::from_secs(5);
        while serve.get("/readyz").status != 503 {
            assert!(Instant::now() < deadline, "readiness never turned false");
            thread::sleep(Duration::from_millis(10));
        }
        let refused = serve.invoke("tally", r#"{"sleepMs":0}"#);
        assert_eq!(refused.status, 503, "{}", refused.body);
        assert_eq!(refused.body["error"]["code"], "Draining");
        slow.join().unwrap()
    });
    assert_eq!(in_flight.status, 200, "{}", in_flight.body);
    assert_eq!(in_flight.body["state"], "succeeded");
    assert_eq!(
        serve.wait_exit(Duration::from_secs(15)),
        Some(0),
        "{}",
        serve.logs()
    );
    assert_eq!(tally_lines(dir.path()), 1);

    let (code, out) = audit_verify(&serve.audit);
    assert_eq!(code, Some(0), "{out}");
    let records = audit_records(&serve.audit);
    let kinds: Vec<&str> = records
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"host.start"));
    assert_eq!(kinds.last(), Some(&"host.stop"));
    let end = records
        .iter()
        .find(|r| r["kind"] == "invocation.end")
        .unwrap();
    assert_eq!(end["outcome"], "ok");
    assert_eq!(end["invocation"], in_flight.body["id"]);
    // The tally file write left a capability record between start and end.
    assert!(
        records.iter().any(|r| r["kind"] == "capability"
            && r["capability"] == "filesystem"
            && r["decision"] == "allow"
            && r["action"] == "open-write"
            && r["target"] == "/data/tally"),
        "{records:?}"
    );
}

#[test]
fn work_still_running_after_the_grace_period_is_cancelled_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = tally_manifest(dir.path(), "{ timeout: 60s }");
    let mut serve = Serve::start(dir.path(), &[&manifest], &["--shutdown-grace", "300ms"]);
    let reply = thread::scope(|s| {
        let slow = s.spawn(|| serve.invoke("tally", r#"{"sleepMs":20000}"#));
        wait_for_metric(
            &serve,
            "agent_host_invocations_in_flight{agent=\"tally\"} 1",
        );
        serve.signal("INT");
        slow.join().unwrap()
    });
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.body["state"], "cancelled");
    assert_eq!(
        serve.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        serve.logs()
    );
    assert_eq!(
        tally_lines(dir.path()),
        0,
        "the cancelled task had no effect"
    );
    assert_eq!(audit_verify(&serve.audit).0, Some(0));
    let records = audit_records(&serve.audit);
    let end = records
        .iter()
        .find(|r| r["kind"] == "invocation.end")
        .unwrap();
    assert_eq!(end["outcome"], "Cancelled");
    assert_eq!(records.last().unwrap()["cancelled"], 1);
}

fn wait_for_metric(serve: &Serve, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !serve.metrics().lines().any(|l| l == line) {
        assert!(Instant::now() < deadline, "metric never showed {line}");
        thread::sleep(Duration::from_millis(10));
    }
}

fn promtool() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("promtool"))
            .find(|p| p.is_file())
    });
    found.expect("promtool not found: install Debian's prometheus package (make setup does)")
}

/// Fails the test unless `promtool check metrics` accepts `text`.
fn assert_promtool_accepts(text: &str) {
    let mut check = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metrics_pass_promtool_and_count_the_invocations_made() {
    let dir = tempfile::tempdir().unwrap();
    let hello = guests::write_manifest(dir.path(), "hello", guests::HELLO, "");
    let spinner = guests::write_manifest(
        dir.path(),
        "spinner",
        guests::SPIN_FOREVER,
        "  limits: { fuel: 5000000 }\n",
    );
    let serve = Serve::start(dir.path(), &[&hello, &spinner], &[]);
    for i in 0..3 {
        assert_eq!(
            serve
                .invoke("hello", &format!(r#"{{"name":"m{i}"}}"#))
                .status,
            200
        );
    }
    assert_eq!(
        serve.invoke("spinner", "{}").body["outcome"],
        "FuelExhausted"
    );
    assert_eq!(serve.invoke("hello", "[1,").status, 400);

    let text = serve.metrics();
    assert_promtool_accepts(&text);

    let sample = |line: &str| text.lines().any(|l| l == line);
    assert!(
        sample("agent_host_invocations_total{agent=\"hello\",outcome=\"ok\"} 3"),
        "{text}"
    );
    assert!(
        sample("agent_host_invocations_total{agent=\"spinner\",outcome=\"FuelExhausted\"} 1"),
        "{text}"
    );
    assert!(
        sample("agent_host_invocation_duration_seconds_count{agent=\"hello\"} 3"),
        "{text}"
    );
    assert!(
        sample("agent_host_invocation_fuel_count{agent=\"spinner\"} 1"),
        "{text}"
    );
    assert!(
        sample("agent_host_requests_rejected_total{agent=\"hello\",reason=\"InvalidInput\"} 1"),
        "{text}"
    );
    assert!(
        sample("agent_host_invocations_in_flight{agent=\"hello\"} 0"),
        "{text}"
    );
    assert!(
        sample("agent_host_compile_cache_lookups_total{result=\"miss\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("agent_host_host_calls_total{agent=\"hello\",capability=\"log\"}"),
        "{text}"
    );
}

#[test]
fn tampering_with_one_audit_record_fails_verify_at_that_record() {
    let dir = tempfile::tempdir().unwrap();
    let hello = guests::write_manifest(dir.path(), "hello", guests::HELLO, "");
    let mut serve = Serve::start(dir.path(), &[&hello], &[]);
    for i in 0..3 {
        assert_eq!(
            serve
                .invoke("hello", &format!(r#"{{"name":"t{i}"}}"#))
                .status,
            200
        );
    }
    serve.signal("TERM");
    assert_eq!(serve.wait_exit(Duration::from_secs(10)), Some(0));
    let (code, out) = audit_verify(&serve.audit);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("9 records"),
        "start + loaded + 3 × (start, end) + stop: {out}"
    );

    let text = std::fs::read_to_string(&serve.audit).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    // Record 5 (line 6) is the second invocation's end: make it look cheaper.
    assert!(
        lines[5].contains("\"kind\":\"invocation.end\""),
        "{}",
        lines[5]
    );
    let fuel = audit_records(&serve.audit)[5]["fuel"].as_u64().unwrap();
    lines[5] = lines[5].replace(&format!("\"fuel\":{fuel}"), "\"fuel\":1");
    std::fs::write(&serve.audit, lines.join("\n") + "\n").unwrap();
    let (code, out) = audit_verify(&serve.audit);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("record 5 (line 6)"), "{out}");

    // A restarted host refuses to extend a broken chain (fails closed).
    let broken = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--audit-log"])
        .arg(&serve.audit)
        .arg("-f")
        .arg(&hello)
        .env("AGENT_HOST_CACHE_DIR", dir.path().join("cache"))
        .output()
        .unwrap();
    let _ = &serve.log;
    assert_eq!(broken.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&broken.stderr).contains("cannot continue the hash chain"));
}

/// A minimal OTLP/HTTP receiver: decodes each export with the official
/// protobuf types and keeps `(trace id hex, span name)` of every span.
/// `(trace id hex, span name)` of every span received.
type ReceivedSpans = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

fn otlp_receiver() -> (String, ReceivedSpans) {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message as _;
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let spans = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = spans.clone();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let sink = sink.clone();
            thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut conn = conn;
                loop {
                    let Some((_, body)) = read_http_request(&mut reader) else {
                        return;
                    };
                    let request = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
                    for rs in request.resource_spans {
                        for ss in rs.scope_spans {
                            for span in ss.spans {
                                sink.lock().unwrap().push((hex(&span.trace_id), span.name));
                            }
                        }
                    }
                    conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n").unwrap();
                }
            });
        }
    });
    (format!("http://{addr}"), spans)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn traces_are_exported_over_otlp_as_children_of_the_callers_trace() {
    let dir = tempfile::tempdir().unwrap();
    let (endpoint, spans) = otlp_receiver();
    let manifest = tally_manifest(dir.path(), "{ timeout: 30s }");
    let mut serve = Serve::start(dir.path(), &[&manifest], &["--otlp-endpoint", &endpoint]);
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let r = serve.post(
        "/v1/agents/tally/invocations",
        &[("traceparent", &traceparent)],
        r#"{"sleepMs":0}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    serve.signal("TERM");
    assert_eq!(
        serve.wait_exit(Duration::from_secs(15)),
        Some(0),
        "{}",
        serve.logs()
    );
    let spans = spans.lock().unwrap().clone();
    let in_trace: Vec<&str> = spans
        .iter()
        .filter(|(t, _)| t == trace_id)
        .map(|(_, n)| n.as_str())
        .collect();
    assert!(in_trace.contains(&"invocation"), "{spans:?}");
    assert!(
        in_trace.contains(&"file.open"),
        "the tally write is a child span: {spans:?}"
    );
}

#[test]
fn capability_denials_reach_the_response_metrics_and_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("notes.txt"), "granted").unwrap();
    let spec = format!(
        "  capabilities:\n    filesystem:\n      - {{ hostPath: {}, guestPath: /data, readOnly: true }}\n",
        data.display()
    );
    let probe = guests::write_manifest(dir.path(), "probe", guests::FS_PROBE, &spec);
    let mut serve = Serve::start(dir.path(), &[&probe], &[]);
    let read = serve.invoke("probe", r#"{"op":"read","path":"/data/notes.txt"}"#);
    assert_eq!(read.body["usage"]["fileDenied"], 0, "{}", read.body);
    for probe in [
        r#"{"op":"write","path":"/data/notes.txt","data":"x"}"#,
        r#"{"op":"read","path":"/data/../../etc/passwd"}"#,
    ] {
        let r = serve.invoke("probe", probe);
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["usage"]["fileDenied"], 1, "{probe}: {}", r.body);
    }
    let metrics = serve.metrics();
    assert!(
        metrics.lines().any(|l| l
            == "agent_host_capability_denials_total{agent=\"probe\",capability=\"filesystem\"} 2"),
        "{metrics}"
    );
    serve.signal("TERM");
    assert_eq!(serve.wait_exit(Duration::from_secs(10)), Some(0));
    let records = audit_records(&serve.audit);
    let fs: Vec<(&str, &str, &str)> = records
        .iter()
        .filter(|r| r["kind"] == "capability")
        .map(|r| {
            (
                r["action"].as_str().unwrap(),
                r["target"].as_str().unwrap(),
                r["decision"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        fs.contains(&("open-read", "/data/notes.txt", "allow")),
        "{fs:?}"
    );
    assert!(
        fs.contains(&("open-write", "/data/notes.txt", "deny")),
        "{fs:?}"
    );
    assert!(
        fs.iter()
            .any(|(_, t, d)| t.ends_with("etc/passwd") && *d == "deny"),
        "{fs:?}"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("notes.txt")).unwrap(),
        "granted"
    );
}

/// Without `--max-instances`, `serve -f` reserves instance slots for exactly
/// what its agents may run at once (each slot reserves address space for its
/// linear memories, so the process's virtual size shows the pool), and the
/// flag still overrides it.
#[test]
fn instance_pool_is_sized_to_the_agents_max_concurrency() {
    let start = |extra: &[&str]| {
        let dir = tempfile::tempdir().unwrap();
        let manifest = guests::write_manifest(
            dir.path(),
            "few",
            guests::HELLO,
            "  limits: { maxConcurrency: 4 }\n",
        );
        let serve = Serve::start(dir.path(), &[&manifest], extra);
        let reply = serve.invoke("few", r#"{"name":"pool"}"#);
        assert_eq!(reply.status, 200, "{}", serve.logs());
        (serve, dir)
    };
    let (sized, _d1) = start(&[]);
    let (fixed, _d2) = start(&["--max-instances", "400"]);
    let gib = |kib: u64| kib / (1024 * 1024);
    let (sized_gib, fixed_gib) = (
        gib(sized.status_kib("VmSize:")),
        gib(fixed.status_kib("VmSize:")),
    );
    // At least one 4 GiB memory reservation per slot.
    assert!(
        fixed_gib >= sized_gib + 396 * 4,
        "400 slots reserve more than 4: {fixed_gib} GiB vs {sized_gib} GiB"
    );
    assert!(
        sized_gib < 100 * 4,
        "4 slots reserve far less than 100 would: {sized_gib} GiB"
    );
}

/// An acknowledged invocation's key-value writes survive the host being
/// killed (SIGKILL) right after the response; a restarted host continues
/// from them.
#[test]
fn acknowledged_key_value_writes_survive_sigkill() {
    sigkill_while_committing(&[]);
    let redis = guests::RedisServer::start();
    sigkill_while_committing(&["--store", &redis.url]);
}

/// The SIGKILL scenario with the embedded store, or with `extra` choosing another.
fn sigkill_while_committing(extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let manifest = guests::write_manifest(
        dir.path(),
        "counter",
        guests::KV_COUNTER,
        "  capabilities:\n    keyValue: { maxBytes: 1Mi }\n",
    );
    let count = |serve: &Serve| -> u64 {
        let reply = serve.invoke("counter", "{}");
        assert_eq!(reply.status, 200, "{}", serve.logs());
        reply.body["output"]["count"].as_u64().unwrap()
    };
    let mut serve = Serve::start(dir.path(), &[&manifest], extra);
    assert_eq!(count(&serve), 1);
    assert_eq!(count(&serve), 2);
    serve.signal("KILL");
    serve.wait_exit(Duration::from_secs(10));
    let mut serve = Serve::start(dir.path(), &[&manifest], extra);
    assert_eq!(
        count(&serve),
        3,
        "both acknowledged commits survived the kill"
    );

    // Killed in the middle of a stream of commits: whatever survived is whole
    // (the two keys each commit writes agree) and nothing acknowledged is lost.
    let acknowledged = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(3));
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let (base, acknowledged) = (serve.base.clone(), acknowledged.clone());
            thread::spawn(move || {
                let http: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(5)))
                    .build()
                    .into();
                while let Ok(mut resp) = http
                    .post(format!("{base}/v1/agents/counter/invocations"))
                    .send("{}")
                {
                    let text = resp.body_mut().read_to_string().unwrap_or_default();
                    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    if let Some(n) = body["output"]["count"].as_u64() {
                        acknowledged.fetch_max(n, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(400));
    serve.signal("KILL");
    serve.wait_exit(Duration::from_secs(10));
    for w in writers {
        w.join().unwrap();
    }
    let serve = Serve::start(dir.path(), &[&manifest], extra);
    let reply = serve.invoke("counter", "{}");
    let (count, mirror) = (
        reply.body["output"]["count"].as_u64().unwrap(),
        reply.body["output"]["mirrorBefore"].as_u64().unwrap(),
    );
    assert_eq!(
        mirror + 1,
        count,
        "counter and mirror were committed together"
    );
    let acked = acknowledged.load(std::sync::atomic::Ordering::SeqCst);
    assert!(acked > 3, "commits were streaming when the host was killed");
    assert!(
        count > acked,
        "every acknowledged commit survived: {acked} acknowledged, now {count}"
    );
}

use crate::model;

/// `--audit-llm-prompts` puts the prompt in the model call's audit record;
/// without it the record has the model and tokens only.
#[test]
fn audit_llm_prompts_flag_puts_the_prompt_in_the_audit_log() {
    let model = model::Model::start();
    for (flag, expected) in [(None, false), (Some("--audit-llm-prompts"), true)] {
        let dir = tempfile::tempdir().unwrap();
        let probe =
            guests::write_manifest(dir.path(), "probe", guests::LLM_PROBE, &model.grant(""));
        let extra: Vec<&str> = flag.into_iter().collect();
        let mut serve = Serve::start(dir.path(), &[&probe], &extra);
        let r = serve.invoke("probe", r#"{"prompt":"db-1 is down"}"#);
        assert_eq!(r.body["usage"]["llmTokens"], 49, "{}", r.body);
        serve.signal("TERM");
        assert_eq!(serve.wait_exit(Duration::from_secs(10)), Some(0));
        let records = audit_records(&serve.audit);
        let call = records
            .iter()
            .find(|r| r["capability"] == "llm")
            .unwrap_or_else(|| panic!("no llm record: {records:?}"));
        assert_eq!(
            call.to_string().contains("db-1 is down"),
            expected,
            "{flag:?}: {call}"
        );
    }
}

/// After one allowed and one denied HTTP call, the tool-call series name the
/// rule that allowed the first and `none` for the second, and promtool
/// accepts the exposition.
#[test]
fn tool_call_metrics_show_allowed_and_denied_http_calls_by_rule() {
    let upstream = model::Model::start();
    let dir = tempfile::tempdir().unwrap();
    let rule = format!("{}/api/", upstream.base);
    let spec =
        format!("  capabilities:\n    http:\n      - {{ url: \"{rule}\", methods: [GET] }}\n");
    let probe = guests::write_manifest(dir.path(), "probe", guests::HTTP_PROBE, &spec);
    let serve = Serve::start(dir.path(), &[&probe], &[]);
    let allowed = serve.invoke(
        "probe",
        &format!(r#"{{"method":"GET","url":"{}/api/x"}}"#, upstream.base),
    );
    assert_eq!(allowed.body["usage"]["httpRequests"], 1, "{}", allowed.body);
    let denied = serve.invoke(
        "probe",
        &format!(r#"{{"method":"GET","url":"{}/admin"}}"#, upstream.base),
    );
    assert_eq!(denied.body["usage"]["httpDenied"], 1, "{}", denied.body);

    let text = serve.metrics();
    assert_promtool_accepts(&text);
    for line in [
        format!(r#"agent_host_tool_call_decisions_total{{agent="probe",capability="http",rule="{rule}",decision="allowed"}} 1"#),
        r#"agent_host_tool_call_decisions_total{agent="probe",capability="http",rule="none",decision="denied"} 1"#.to_string(),
        format!(r#"agent_host_tool_call_duration_seconds_count{{agent="probe",capability="http",rule="{rule}"}} 1"#),
        format!(r#"agent_host_tool_call_retries_total{{agent="probe",capability="http",rule="{rule}"}} 0"#),
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
}
