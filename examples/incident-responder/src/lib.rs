//! `incident-responder`: what an on-call engineer does first when an alert
//! fires, as an agent. Given an alert it (1) reads where the metrics and
//! ticket APIs live from its granted environment, (2) queries the current
//! value of the alert's metric from a Prometheus-compatible API, (3) reads
//! the alert's runbook from the read-only `/runbooks` mount, and (4) opens a
//! ticket carrying all of it.
//!
//! Every step is logged; the output lists the steps taken.

mod alert;
mod metrics;
mod runbook;
mod tickets;

use agent_host_guest::{env, log, Agent, AgentError, Output, Task};
use serde_json::json;

use alert::Alert;

struct IncidentResponder;

impl Agent for IncidentResponder {
    fn run(task: Task) -> Result<Output, AgentError> {
        let alert: Alert = task.input_json()?;
        alert.validate()?;
        let fields = [
            ("taskId", task.id.as_str()),
            ("alert", &alert.alert),
            ("service", &alert.service),
        ];
        log::record(log::Level::Info, "handling alert", &fields);
        let mut actions = Vec::new();

        let metrics_url = env::require("METRICS_URL")?;
        let tickets_url = env::require("TICKETS_URL")?;
        actions.push("read METRICS_URL and TICKETS_URL from the environment".to_owned());

        let query = metrics::query_for(&alert);
        let metric = metrics::instant_value(&metrics_url, &query)?;
        let shown = metric.map_or_else(|| "no samples".to_owned(), |v| v.to_string());
        log::record(
            log::Level::Info,
            "queried metric",
            &[("query", &query), ("value", &shown)],
        );
        actions.push(format!("queried {query}: {shown}"));

        let runbook = runbook::read(&alert.alert)?;
        log::record(
            log::Level::Info,
            "read runbook",
            &[("path", &runbook.path), ("title", &runbook.title)],
        );
        actions.push(format!("read runbook {}", runbook.path));

        let ticket = tickets::open(&tickets_url, &alert, metric, &runbook.title, &task.id)?;
        log::record(
            log::Level::Info,
            "opened ticket",
            &[("ticket", &ticket.to_string())],
        );
        actions.push(format!("opened ticket {ticket}"));

        Output::json(&json!({
            "ticket": ticket,
            "metric": metric,
            "runbook": runbook.title,
            "actions": actions,
        }))
    }
}

agent_host_guest::export_agent!(IncidentResponder);
