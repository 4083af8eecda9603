//! Opening a ticket in the issue tracker (`POST <TICKETS_URL>` with JSON).

use agent_host_guest::{http, AgentError};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::alert::Alert;

#[derive(Deserialize)]
struct Created {
    id: Value,
}

/// Creates the ticket and returns its id (a number or a string).
pub fn open(
    url: &str,
    alert: &Alert,
    metric: Option<f64>,
    runbook: &str,
    task_id: &str,
) -> Result<Value, AgentError> {
    let ticket = json!({
        "title": format!("[{}] {} on {}", alert.severity, alert.alert, alert.service),
        "service": alert.service,
        "severity": alert.severity,
        "metric": metric,
        "runbook": runbook,
        "taskId": task_id,
    });
    let created: Created = http::post_json(url, &ticket)?.json()?;
    match created.id {
        id @ (Value::Number(_) | Value::String(_)) => Ok(id),
        other => Err(AgentError::Upstream(format!(
            "ticket API returned id {other}, expected a number or string"
        ))),
    }
}
