//! Secret values handed to an agent never come back out through the host:
//! not in its log (records, stdout, stderr, its own WARN lines), its spans,
//! its audit log, nor in the invocation's error. This test binary installs one
//! global log subscriber writing into a buffer, span creation (with every
//! field a trace exporter would send) included.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use agent_host::InvocationError;
use agent_host_e2e::guests;
use agent_host_e2e::support::{task, Harness};
use serde_json::json;

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

/// Everything the host logs in this test binary, spans' fields included.
fn captured() -> &'static Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            // The host's own filter (`--log trace`), as `serve` installs it.
            .with_env_filter(agent_host::telemetry::log_filter("trace").unwrap())
            .with_writer(move || writer.clone())
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::NEW)
            .with_ansi(false)
            .init();
        captured
    })
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
