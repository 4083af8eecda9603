//! Asking a Prometheus-compatible API (`GET <base>query?query=...`) for the
//! current value of the metric behind an alert.

use agent_host_guest::{http, AgentError};
use serde::Deserialize;

use crate::alert::Alert;

/// The PromQL instant query that shows what an alert is about.
pub fn query_for(alert: &Alert) -> String {
    let service = &alert.service;
    match alert.alert.as_str() {
        "HighErrorRate" => {
            format!(r#"rate(http_requests_total{{service="{service}",code=~"5.."}}[5m])"#)
        }
        "HighLatency" => format!(
            r#"histogram_quantile(0.99, rate(http_request_duration_seconds_bucket{{service="{service}"}}[5m]))"#
        ),
        _ => format!(r#"up{{service="{service}"}}"#),
    }
}

#[derive(Deserialize)]
struct QueryResponse {
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    data: Option<QueryData>,
}

#[derive(Deserialize)]
struct QueryData {
    result: Vec<Sample>,
}

#[derive(Deserialize)]
struct Sample {
    /// `[<unix seconds>, "<value>"]`: Prometheus sends the value as a string.
    value: (serde_json::Value, String),
}

/// Runs `query` against `base` (ending in `/api/v1/`) and returns the first
/// sample's value, or `None` when the query matched no series.
pub fn instant_value(base: &str, query: &str) -> Result<Option<f64>, AgentError> {
    let url = format!("{base}query?query={}", http::encode_component(query));
    let answer: QueryResponse = http::get_json(&url)?;
    if answer.status != "success" {
        let why = answer.error.unwrap_or_else(|| answer.status.clone());
        return Err(AgentError::Upstream(format!("metrics query failed: {why}")));
    }
    let Some(sample) = answer.data.and_then(|d| d.result.into_iter().next()) else {
        return Ok(None);
    };
    let value = sample.value.1.parse::<f64>().map_err(|e| {
        AgentError::Upstream(format!(
            "metrics value {:?} is not a number: {e}",
            sample.value.1
        ))
    })?;
    Ok(Some(value))
}
