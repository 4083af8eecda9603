//! CPU-bound agent for the metering benchmark: parses its input, a log-event
//! document `{"events":[...]}`, and transforms it (filter, group, aggregate,
//! sort) into a per-service summary. `{"generate": KiB, "seed": N}` instead
//! returns such a document of about that size, so the benchmark gets its
//! input without a second copy of the generator.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use agent_host_guest::{Agent, AgentError, Output, Task};
use serde_json::{json, Value};

const SERVICES: [&str; 8] = [
    "checkout",
    "payments",
    "search",
    "auth",
    "inventory",
    "shipping",
    "email",
    "ledger",
];
const LEVELS: [&str; 4] = ["debug", "info", "warn", "error"];

struct JsonTransform;

impl Agent for JsonTransform {
    fn run(task: Task) -> Result<Output, AgentError> {
        let input: Value = task.input_json()?;
        if let Some(kib) = input["generate"].as_u64() {
            let seed = input["seed"].as_u64().unwrap_or(7);
            return Ok(Output::raw(generate(kib as usize * 1024, seed)));
        }
        Output::json(&summarise(&input, task.input.len()))
    }
}

/// A log-event document `{"events":[...]}` of at least `bytes` bytes.
fn generate(bytes: usize, mut state: u64) -> String {
    let mut next = move || {
        // xorshift64*: deterministic, no host randomness needed.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut out = String::with_capacity(bytes + 256);
    out.push_str("{\"events\":[");
    let mut i = 0u64;
    while out.len() < bytes {
        if i > 0 {
            out.push(',');
        }
        let r = next();
        let _ = write!(
            out,
            "{{\"id\":{i},\"service\":\"{}\",\"level\":\"{}\",\"latencyMs\":{:.3},\"status\":{},\"tags\":[\"region-{}\",\"pod-{}\"],\"message\":\"request {i} handled\"}}",
            SERVICES[(r % 8) as usize],
            LEVELS[((r >> 8) % 4) as usize],
            ((r >> 16) % 100_000) as f64 / 97.0,
            [200, 200, 200, 201, 404, 500, 503][((r >> 40) % 7) as usize],
            (r >> 48) % 4,
            (r >> 52) % 64,
        );
        i += 1;
    }
    out.push_str("]}");
    out
}

/// Per service: count, errors, mean and max latency of the non-debug events;
/// services sorted by error count.
fn summarise(doc: &Value, bytes: usize) -> Value {
    #[derive(Default)]
    struct Agg {
        count: u64,
        errors: u64,
        total_ms: f64,
        max_ms: f64,
    }
    let events = doc["events"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let mut by_service: BTreeMap<&str, Agg> = BTreeMap::new();
    for e in events.iter().filter(|e| e["level"] != "debug") {
        let agg = by_service
            .entry(e["service"].as_str().unwrap_or("?"))
            .or_default();
        let ms = e["latencyMs"].as_f64().unwrap_or(0.0);
        agg.count += 1;
        agg.errors += u64::from(e["status"].as_u64().unwrap_or(0) >= 500);
        agg.total_ms += ms;
        agg.max_ms = agg.max_ms.max(ms);
    }
    let mut services: Vec<Value> = by_service
        .iter()
        .map(|(name, a)| {
            json!({
                "service": name,
                "count": a.count,
                "errors": a.errors,
                "meanLatencyMs": a.total_ms / a.count.max(1) as f64,
                "maxLatencyMs": a.max_ms,
            })
        })
        .collect();
    services.sort_by_key(|s| std::cmp::Reverse(s["errors"].as_u64().unwrap_or(0)));
    json!({ "bytes": bytes, "events": events.len(), "services": services })
}

agent_host_guest::export_agent!(JsonTransform);
