//! Attack: floods the host with refused capability uses carrying huge
//! targets — opens of multi-megabyte paths outside every mount, HTTP requests
//! to ungranted URLs tens of KiB long — to grow the audit log, the host's
//! stderr and its memory. Reports how many of each were refused.

use agent_host_guest::bindings::wasi::filesystem::preopens;
use agent_host_guest::bindings::wasi::filesystem::types::{DescriptorFlags, OpenFlags, PathFlags};
use agent_host_guest::{http, Agent, AgentError, Output, Task};
use serde::Deserialize;
use serde_json::json;

/// `{"opens": n, "mount": "/data", "relative": "../", "openWrite": false,
/// "pathBytes": size, "requests": n, "url": "http://...", "urlBytes": size}`:
/// `opens` raw `open-at`s (for writing with `openWrite`, e.g. on a read-only
/// mount) on the preopen `mount` of `relative` + `pathBytes` bytes (raw, so
/// the guest spends no fuel scanning a huge path), then `requests` GETs of
/// `url` padded with a query to `urlBytes` bytes.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Input {
    #[serde(default)]
    opens: u32,
    #[serde(default = "data")]
    mount: String,
    #[serde(default = "up")]
    relative: String,
    #[serde(default)]
    open_write: bool,
    #[serde(default)]
    path_bytes: usize,
    #[serde(default)]
    requests: u32,
    #[serde(default)]
    url: String,
    #[serde(default)]
    url_bytes: usize,
}

fn data() -> String {
    "/data".into()
}

fn up() -> String {
    "../".into()
}

/// Opens `path` under the preopen mounted at `mount`; `Err` when refused or absent.
fn open_at(mount: &str, path: &str, write: bool) -> Result<(), ()> {
    let dirs = preopens::get_directories();
    let (dir, _) = dirs.iter().find(|(_, at)| at == mount).ok_or(())?;
    let (oflags, flags) = if write {
        (OpenFlags::CREATE, DescriptorFlags::WRITE)
    } else {
        (OpenFlags::empty(), DescriptorFlags::READ)
    };
    dir.open_at(PathFlags::empty(), path, oflags, flags)
        .map(drop)
        .map_err(drop)
}

struct DenialFlood;

impl Agent for DenialFlood {
    fn run(task: Task) -> Result<Output, AgentError> {
        let input: Input = task.input_json()?;
        let path = format!("{}{}", input.relative, "p".repeat(input.path_bytes));
        let mut refused_opens = 0;
        for _ in 0..input.opens {
            if open_at(&input.mount, &path, input.open_write).is_err() {
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
