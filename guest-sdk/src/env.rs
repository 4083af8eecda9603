//! Environment variables granted by the manifest.
//!
//! Only the variables listed in `spec.capabilities.env` exist inside the
//! agent; everything else in the host's environment is invisible.

use crate::AgentError;

/// The value of `name`, or `None` if the manifest does not declare it (or the
/// value is not valid Unicode).
pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The value of `name`, or [`AgentError::CapabilityDenied`] naming the
/// variable when the manifest does not declare it.
///
/// ```no_run
/// let url = agent_host_guest::env::require("METRICS_URL")?;
/// # Ok::<(), agent_host_guest::AgentError>(())
/// ```
pub fn require(name: &str) -> Result<String, AgentError> {
    var(name).ok_or_else(|| {
        AgentError::CapabilityDenied(format!(
            "environment variable `{name}` is not set: declare it in spec.capabilities.env"
        ))
    })
}
