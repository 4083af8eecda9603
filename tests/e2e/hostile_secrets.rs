//! Secret values handed to an agent never come back out through the host:
//! not in its log (records, stdout, stderr, its own WARN lines), its spans,
//! its audit log, nor in the invocation's error. This module installs the test
//! binary's one global log subscriber writing into a buffer, span creation
//! (with every field a trace exporter would send) included.

use std::io::Write;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use agent_host::InvocationError;
use agent_host_e2e::guests;
use agent_host_e2e::support::{task, Harness};
use serde_json::json;
use tracing_subscriber::filter::{dynamic_filter_fn, FilterExt};
use tracing_subscriber::prelude::*;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const SECRET: &str = "tok-9f8e7d6c5b4a";

/// One capture open at a time (the tests of this module take turns).
static SERIAL: Mutex<()> = Mutex::new(());
/// Whether a capture is open: the subscriber records nothing otherwise.
static CAPTURING: AtomicBool = AtomicBool::new(false);

/// The buffer of the global subscriber, installed on first use. Every test of
/// the binary logs to it, so it records at trace level (the host's own filter,
/// `--log trace`, as `serve` installs it) only while a capture is open:
/// otherwise the whole suite would pay for trace logging, wasmtime's and
/// cranelift's included, into a buffer growing for the whole run.
fn subscriber() -> &'static Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        // Asked at every call (never cached per call site): the answer changes.
        let while_capturing = dynamic_filter_fn(|_, _| CAPTURING.load(Ordering::SeqCst));
        let filter = agent_host::telemetry::log_filter("trace").unwrap();
        tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(move || writer.clone())
                    .with_span_events(tracing_subscriber::fmt::format::FmtSpan::NEW)
                    .with_ansi(false)
                    .with_filter(while_capturing.and(filter)),
            )
            .init();
        captured
    })
}

/// An open capture: everything the host logs until it is dropped (other
/// tests' lines included, as they share the process), added to the buffer.
struct Capture {
    buffer: &'static Captured,
    _turn: MutexGuard<'static, ()>,
}

impl Capture {
    fn open(turn: MutexGuard<'static, ()>) -> Self {
        let buffer = subscriber();
        CAPTURING.store(true, Ordering::SeqCst);
        Capture {
            buffer,
            _turn: turn,
        }
    }
}

impl Deref for Capture {
    type Target = Captured;

    fn deref(&self) -> &Captured {
        self.buffer
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        // Before `_turn` is released: the next capture starts after this one ends.
        CAPTURING.store(false, Ordering::SeqCst);
    }
}

fn turn() -> MutexGuard<'static, ()> {
    // A failed test must not fail the next one with a poisoned lock.
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Everything the host logs from now until the returned capture is dropped,
/// spans' fields included.
fn captured() -> Capture {
    Capture::open(turn())
}

/// The subscriber is global to the test binary: other modules' tests, run
/// while no capture is open, neither log at trace level nor fill the buffer.
#[test]
fn the_shared_subscriber_records_nothing_while_no_capture_is_open() {
    let turn = turn();
    subscriber();
    tracing::error!(target: "agent_host", "a line outside any capture");
    let capture = Capture::open(turn);
    tracing::error!(target: "agent_host", "a line inside a capture");

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("a line inside a capture"), "{logs}");
    assert!(
        !logs.contains("a line outside any capture"),
        "a line logged while no capture was open was recorded:\n{logs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_declared_secret_is_redacted_from_logs_and_errors() {
    let captured = captured();

    let h = Harness::new();
    std::fs::create_dir_all(h.dir.path().join("secrets/api")).unwrap();
    std::fs::write(h.dir.path().join("secrets/api/token"), SECRET).unwrap();
    let agent = h.agent(
        "leaker",
        guests::LEAK_SECRET,
        "  capabilities:\n    env:\n      - { name: TOKEN, valueFrom: { secretKeyRef: { name: api, key: token } } }\n",
    );
    let inv = agent.invoke(task(json!({}))).await;
    match &inv.result {
        Err(InvocationError::Agent { kind, message }) => {
            assert_eq!(*kind, "upstream");
            assert_eq!(message, "server rejected token [REDACTED]");
        }
        other => panic!("expected the agent's error, got {other:?}"),
    }

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("token is [REDACTED]"),
        "the log record arrived, redacted:\n{logs}"
    );
    assert!(logs.contains("stdout token=[REDACTED]"), "{logs}");
    assert!(logs.contains("stderr token=[REDACTED]"), "{logs}");
    assert!(
        !logs.contains(SECRET),
        "the secret reached the host log:\n{logs}"
    );
}

/// A PEM-style key: the host must redact each line, not only the whole value.
const PEM: &str = "-----BEGIN TEST KEY-----\nMIIBVwIBADANBgkqhkiG9w0BAQEFAASCAUEwggE9AgEAAkEAq7BFUpkGp3\nQ2VjcmV0U2Vjb25kTGluZU9mVGhlS2V5TWF0ZXJpYWxGb3JUZXN0c0\n-----END TEST KEY-----";

#[tokio::test(flavor = "multi_thread")]
async fn a_multi_line_secret_is_redacted_from_stdout_the_line_cut_denials_spans_and_audit() {
    let captured = captured();
    let mut h = Harness::new();
    std::fs::create_dir_all(h.dir.path().join("secrets/tls")).unwrap();
    std::fs::write(h.dir.path().join("secrets/tls/key"), PEM).unwrap();
    let data = h.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let audit_path = h.dir.path().join("audit.jsonl");
    let audit = agent_host::audit::AuditLog::open(&audit_path).unwrap();
    h.runtime.set_audit_log(audit.clone());
    let agent = h.agent(
        "pem-leaker",
        guests::LEAK_SECRET_WIDE,
        &format!(
            "  capabilities:\n    env:\n      - {{ name: TOKEN, valueFrom: {{ secretKeyRef: {{ name: tls, key: key }} }} }}\n    filesystem:\n      - {{ hostPath: {}, guestPath: /data }}\n    http:\n      - {{ url: 'http://127.0.0.1:9/granted/', methods: [GET] }}\n",
            data.display()
        ),
    );
    let inv = agent
        .invoke(task(
            json!({ "url": "http://127.0.0.1:9/refused", "dir": "/data" }),
        ))
        .await;
    let out = agent_host_e2e::support::output_json(&inv);
    assert_eq!(out["denied"], true, "{out}");
    audit.close();

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let audit_text = std::fs::read_to_string(&audit_path).unwrap();
    let second_line = PEM.lines().nth(1).unwrap();
    for (place, text) in [("host log and spans", &logs), ("audit log", &audit_text)] {
        for line in PEM.lines() {
            assert!(
                !text.contains(line),
                "{line:?} reached the {place}:\n{text}"
            );
        }
        // A fragment of the key line: what a cut inside it would leave.
        assert!(
            !text.contains(&second_line[..12]),
            "part of a key line reached the {place}"
        );
        assert!(
            !text.contains(&second_line[second_line.len() - 12..]),
            "part of a key line reached the {place}"
        );
    }
    assert!(
        logs.contains("[REDACTED] straddled"),
        "the straddling line arrived, redacted:\n{logs}"
    );
    assert!(
        logs.contains("token=[REDACTED]"),
        "the denial was logged, redacted:\n{logs}"
    );
    assert!(
        logs.contains("file.open"),
        "the open's span was logged:\n{logs}"
    );
    assert!(
        audit_text.contains("token=[REDACTED]"),
        "the denial was audited, redacted:\n{audit_text}"
    );
}
