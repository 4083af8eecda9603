//! Probe: sends the HTTP request chosen by the input through the SDK and
//! reports the response or the error (denied or not), to test HTTP grants.
//! With `{"requests": [...]}` it sends each in order and reports each.

use agent_host_guest::{
    http::{self, HttpError},
    Agent, AgentError, Output, Task,
};
use serde::Deserialize;
use serde_json::{json, Value};

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

#[derive(Deserialize)]
#[serde(untagged)]
enum Inputs {
    Many { requests: Vec<Input> },
    One(Input),
}

fn send(input: &Input) -> Value {
    let headers: Vec<(&str, &str)> = input
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let body = input.body.as_deref().map(str::as_bytes);
    match http::request(&input.method, &input.url, &headers, body) {
        Ok(response) => {
            json!({ "ok": true, "status": response.status, "body": response.text() })
        }
        Err(e) => json!({
            "ok": false,
            "denied": matches!(e, HttpError::Denied { .. }),
            "error": format!("{e:?}"),
        }),
    }
}

struct HttpProbe;

impl Agent for HttpProbe {
    fn run(task: Task) -> Result<Output, AgentError> {
        match task.input_json()? {
            Inputs::One(input) => Output::json(&send(&input)),
            Inputs::Many { requests } => {
                Output::json(&requests.iter().map(send).collect::<Vec<_>>())
            }
        }
    }
}

agent_host_guest::export_agent!(HttpProbe);
