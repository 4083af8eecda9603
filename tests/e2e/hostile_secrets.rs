//! Secret values handed to an agent never come back out through the host:
//! not in its log (records, stdout, stderr) nor in the invocation's error.
//! This test binary installs a global log subscriber writing into a buffer.

use std::io::Write;
use std::sync::{Arc, Mutex};

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

#[tokio::test(flavor = "multi_thread")]
async fn a_declared_secret_is_redacted_from_logs_and_errors() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter("trace")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

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
