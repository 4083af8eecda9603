//! The conformance agent in Rust: the behaviours of
//! `tests/conformance/PROTOCOL.md`, which every guest language implements
//! alike and `tests/e2e/conformance.rs` runs through the host.

use agent_host_guest::kv::Store;
use agent_host_guest::{env, http, log, Agent, AgentError, Output, Task};
use serde_json::{json, Value};

struct Conformance;

fn outcome<T>(r: Result<T, impl std::fmt::Display>, ok: impl FnOnce(T) -> Value) -> Value {
    match r {
        Ok(v) => ok(v),
        Err(e) => json!({ "ok": false, "error": e.to_string() }),
    }
}

impl Agent for Conformance {
    fn run(task: Task) -> Result<Output, AgentError> {
        let input: Value = task.input_json()?;
        let text = |field: &str| input[field].as_str().unwrap_or_default().to_string();
        let out = match input["op"].as_str().unwrap_or_default() {
            "echo" => json!({ "echo": input["value"] }),
            "env" => {
                let names = input["names"].as_array().cloned().unwrap_or_default();
                let vars: serde_json::Map<String, Value> = names
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|n| (n.to_string(), env::var(n).map_or(Value::Null, Value::from)))
                    .collect();
                json!({ "env": vars })
            }
            "read" => outcome(
                std::fs::read_to_string(text("path")),
                |t| json!({ "ok": true, "text": t }),
            ),
            "write" => outcome(
                std::fs::write(text("path"), text("text")),
                |()| json!({ "ok": true }),
            ),
            "http" => outcome(
                http::request("GET", &text("url"), &[], None),
                |r| json!({ "ok": true, "status": r.status, "body": r.text() }),
            ),
            "log" => {
                log::record(log::Level::Info, &text("message"), &[("op", "log")]);
                json!({ "logged": true })
            }
            "spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "alloc" => {
                let mut kept: Vec<Vec<u8>> = Vec::new();
                loop {
                    kept.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&kept);
                }
            }
            "output" => {
                let n = input["bytes"].as_u64().unwrap_or(0) as usize;
                json!({ "data": "x".repeat(n) })
            }
            "kv" => {
                let store = Store::open("conformance")?;
                let count = store.increment(&text("key"), 1)?;
                if input["fail"].as_bool() == Some(true) {
                    return Err(AgentError::Internal("rolled back".into()));
                }
                json!({ "count": count })
            }
            other => return Err(AgentError::InvalidInput(format!("unknown op {other:?}"))),
        };
        Output::json(&out)
    }
}

agent_host_guest::export_agent!(Conformance);
