//! The task input: one firing alert.

use agent_host_guest::AgentError;
use serde::Deserialize;

/// `{"alert": "HighErrorRate", "service": "checkout", "severity": "critical"}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alert {
    /// Alert name; also names the runbook file, so it must be a plain word.
    pub alert: String,
    /// Affected service; interpolated into PromQL label matchers.
    pub service: String,
    /// Severity as the alerting system labels it (`critical`, `warning`...).
    pub severity: String,
}

impl Alert {
    /// Rejects values that could escape their slot: a path separator in the
    /// alert name, a quote in the service name.
    pub fn validate(&self) -> Result<(), AgentError> {
        check("alert", &self.alert, |c| {
            c.is_ascii_alphanumeric() || c == '_' || c == '-'
        })?;
        check("service", &self.service, |c| {
            c.is_ascii_alphanumeric() || "_-.".contains(c)
        })?;
        check("severity", &self.severity, |c| c.is_ascii_alphanumeric())
    }
}

fn check(field: &str, value: &str, allowed: impl Fn(char) -> bool) -> Result<(), AgentError> {
    if value.is_empty() || value.len() > 128 || !value.chars().all(allowed) {
        return Err(AgentError::InvalidInput(format!(
            "`{field}` must be 1 to 128 letters, digits or separators, got {value:?}"
        )));
    }
    Ok(())
}
