//! The values exchanged with the host on every invocation, with helpers for
//! JSON input and output.

use serde::{de::DeserializeOwned, Serialize};

/// One unit of work handed to the agent (generated from WIT `types.task`).
pub use crate::bindings::agent_host::agent::types::Task;

/// What a successful run returns (generated from WIT `types.output`).
pub use crate::bindings::agent_host::agent::types::Output;

/// Why the agent could not complete its task (generated from WIT
/// `types.agent-error`): `InvalidInput`, `CapabilityDenied`, `Upstream` or
/// `Internal`, each with a message the host reports verbatim.
pub use crate::bindings::agent_host::agent::types::AgentError;

impl Task {
    /// Parses the task input (a JSON document) into `T`.
    ///
    /// Fails with [`AgentError::InvalidInput`] carrying serde's message (which
    /// names the line, column and offending field) when the input does not fit.
    pub fn input_json<T: DeserializeOwned>(&self) -> Result<T, AgentError> {
        serde_json::from_str(&self.input)
            .map_err(|e| AgentError::InvalidInput(format!("task input: {e}")))
    }

    /// The value of the first metadata entry named `key`, if the caller sent one.
    pub fn metadata_value(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl Output {
    /// An output holding `value` serialised as JSON.
    ///
    /// Fails with [`AgentError::Internal`] if `value` cannot be serialised
    /// (for example a map with non-string keys).
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Output, AgentError> {
        serde_json::to_string(value)
            .map(|data| Output { data })
            .map_err(|e| AgentError::Internal(format!("cannot serialise output: {e}")))
    }

    /// An output holding `text` as a JSON string (quoted and escaped), so the
    /// output stays a valid JSON document.
    pub fn text(text: impl AsRef<str>) -> Output {
        Output {
            data: serde_json::Value::from(text.as_ref()).to_string(),
        }
    }

    /// An output whose data is `data` verbatim. The host expects a JSON
    /// document; use this when the agent already holds serialised JSON.
    pub fn raw(data: impl Into<String>) -> Output {
        Output { data: data.into() }
    }
}
