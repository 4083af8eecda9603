//! Attack: floods the host with refused capability uses carrying huge
//! targets — opens of multi-megabyte paths outside every mount, HTTP requests
//! to ungranted URLs tens of KiB long — to grow the audit log, the host's
//! stderr and its memory. Reports how many of each were refused.

use agent_host_guest::{http, Agent, AgentError, Output, Task};
use serde::Deserialize;
use serde_json::json;

/// `{"opens": n, "pathBytes": size, "requests": n, "url": "http://...", "urlBytes": size}`:
/// `opens` opens of `/data/../` + `pathBytes` bytes, then `requests` GETs of
/// `url` padded with a query to `urlBytes` bytes.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Input {
    #[serde(default)]
    opens: u32,
    #[serde(default)]
    path_bytes: usize,
    #[serde(default)]
    requests: u32,
    #[serde(default)]
    url: String,
    #[serde(default)]
    url_bytes: usize,
}

struct DenialFlood;

impl Agent for DenialFlood {
    fn run(task: Task) -> Result<Output, AgentError> {
        let input: Input = task.input_json()?;
        let path = format!("/data/../{}", "p".repeat(input.path_bytes));
        let mut refused_opens = 0;
        for _ in 0..input.opens {
            if std::fs::File::open(&path).is_err() {
                refused_opens += 1;
            }
        }
        let pad = input.url_bytes.saturating_sub(input.url.len() + 3);
        let url = format!("{}?q={}", input.url, "u".repeat(pad));
        let mut refused_requests = 0;
        for _ in 0..input.requests {
            if http::request("GET", &url, &[], None).is_err() {
                refused_requests += 1;
            }
        }
        Output::json(&json!({ "refusedOpens": refused_opens, "refusedRequests": refused_requests }))
    }
}

agent_host_guest::export_agent!(DenialFlood);
