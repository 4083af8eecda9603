//! Key-value flood: `count` calls of `op` (`set`, `get` or `delete`) on keys
//! of `keyBytes` bytes (`prefix` then the index, zero-padded) in bucket
//! `bucket` (default "state"), with values of `size` bytes for `set`.
//! Keeps going past refusals, as a hostile agent would, and returns how many
//! calls succeeded, the index and text of the first refusal (also printed to
//! stderr when it happens), and how many were refused — so tests see exactly
//! where a budget stopped it.

use agent_host_guest::bindings::wasi::keyvalue::store;
use agent_host_guest::{Agent, AgentError, Output, Task};

struct KvFlood;

impl Agent for KvFlood {
    fn run(task: Task) -> Result<Output, AgentError> {
        let input: serde_json::Value = task.input_json()?;
        let bucket = store::open(input["bucket"].as_str().unwrap_or("state"))
            .map_err(|e| AgentError::Internal(format!("open: {e:?}")))?;
        let op = input["op"].as_str().unwrap_or("set").to_string();
        let count = input["count"].as_u64().unwrap_or(1);
        let prefix = input["prefix"].as_str().unwrap_or("k").to_string();
        let key_bytes = input["keyBytes"].as_u64().unwrap_or(16) as usize;
        let width = key_bytes.saturating_sub(prefix.len());
        let value = vec![b'v'; input["size"].as_u64().unwrap_or(0) as usize];
        let (mut ok, mut refused, mut first) = (0u64, 0u64, None);
        for i in 0..count {
            let key = format!("{prefix}{i:0width$}");
            let result = match op.as_str() {
                "get" => bucket.get(&key).map(|_| ()),
                "delete" => bucket.delete(&key),
                _ => bucket.set(&key, &value),
            };
            match result {
                Ok(()) => ok += 1,
                Err(e) => {
                    refused += 1;
                    if first.is_none() {
                        // Also on stderr: a flood may end at its timeout, before any output.
                        eprintln!("first refusal at {i}: {e:?}");
                        first = Some((i, format!("{e:?}")));
                    }
                }
            }
        }
        Output::json(&serde_json::json!({
            "ok": ok,
            "refused": refused,
            "firstRefused": first.as_ref().map(|f| f.0),
            "error": first.map(|f| f.1),
        }))
    }
}

agent_host_guest::export_agent!(KvFlood);
