//! Probe: sends one HTTP request chosen by the input through the SDK and
//! reports the response or the error (denied or not), to test HTTP grants.

use agent_host_guest::{
    http::{self, HttpError},
    Agent, AgentError, Output, Task,
};
use serde::Deserialize;
use serde_json::json;

/// `{"method": "GET", "url": "...", "body": "...", "headers": [["k", "v"]]}`.
#[derive(Deserialize)]
struct Input {
    method: String,
    url: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    headers: Vec<(String, String)>,
}

struct HttpProbe;

impl Agent for HttpProbe {
    fn run(task: Task) -> Result<Output, AgentError> {
        let input: Input = task.input_json()?;
        let headers: Vec<(&str, &str)> = input
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let body = input.body.as_deref().map(str::as_bytes);
        let report = match http::request(&input.method, &input.url, &headers, body) {
            Ok(response) => {
                json!({ "ok": true, "status": response.status, "body": response.text() })
            }
            Err(e) => json!({
                "ok": false,
                "denied": matches!(e, HttpError::Denied { .. }),
                "error": format!("{e:?}"),
            }),
        };
        Output::json(&report)
    }
}

agent_host_guest::export_agent!(HttpProbe);
