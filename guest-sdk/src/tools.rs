//! Tools on remote MCP servers the manifest grants (`spec.capabilities.mcp`).
//!
//! The host is the MCP client: it connects only where the manifest allows,
//! adds the server's credentials (the agent never holds them), shows only the
//! granted tools and keeps each server within its per-invocation budgets of
//! calls and response bytes. An agent loop is: [`list`] the tools, offer them
//! to the model with [`model_tools`], and answer each tool call the model makes
//! with [`answer`], which runs it on its MCP server:
//!
//! ```no_run
//! use agent_host_guest::{llm, tools};
//!
//! let granted = tools::list()?;
//! let mut messages = vec![llm::Message::user("Is checkout healthy?")];
//! loop {
//!     let reply = llm::complete(&messages, &tools::model_tools(&granted), llm::Options::default())?;
//!     messages.push(reply.message.clone());
//!     if reply.tool_calls().is_empty() {
//!         break;
//!     }
//!     for call in reply.tool_calls() {
//!         // The tool's result, or its error as text the model can act on.
//!         messages.push(tools::answer(&granted, call)?);
//!     }
//! }
//! # Ok::<(), agent_host_guest::AgentError>(())
//! ```

use crate::bindings::agent_host::agent::tools as wit;
use crate::llm;
use crate::AgentError;

/// A tool the agent may call (generated from WIT `tools.tool`).
pub use wit::Tool;
/// What a tool returned (generated from WIT `tools.tool-result`).
pub use wit::ToolResult;

/// Why a tool could not be listed or called. Converts to [`AgentError`] so `?`
/// in [`Agent::run`](crate::Agent::run) reports it with the right case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The server or tool is not granted; nothing was sent.
    #[error("MCP tool denied by the host: {0}")]
    Denied(String),
    /// The arguments do not match the tool's input schema (not sent), or the
    /// server refused them.
    #[error("invalid tool arguments: {0}")]
    InvalidArguments(String),
    /// The tool ran and reported an error.
    #[error("the tool failed: {0}")]
    ToolError(String),
    /// The server failed, timed out, was unreachable or broke the protocol.
    #[error("MCP server failed: {0}")]
    Upstream(String),
    /// A budget of the manifest (calls or response bytes per invocation).
    #[error("MCP call refused, over budget: {0}")]
    BudgetExceeded(String),
}

impl From<wit::Error> for Error {
    fn from(e: wit::Error) -> Error {
        match e {
            wit::Error::Denied(m) => Error::Denied(m),
            wit::Error::InvalidArguments(m) => Error::InvalidArguments(m),
            wit::Error::ToolError(m) => Error::ToolError(m),
            wit::Error::Upstream(m) => Error::Upstream(m),
            wit::Error::BudgetExceeded(m) => Error::BudgetExceeded(m),
        }
    }
}

impl From<Error> for AgentError {
    /// Policy refusals ([`Error::Denied`], [`Error::BudgetExceeded`]) become
    /// [`AgentError::CapabilityDenied`]; arguments the agent built wrong,
    /// [`AgentError::Internal`]; the server's and the tool's failures,
    /// [`AgentError::Upstream`].
    fn from(e: Error) -> AgentError {
        match e {
            Error::Denied(_) | Error::BudgetExceeded(_) => {
                AgentError::CapabilityDenied(e.to_string())
            }
            Error::InvalidArguments(_) => AgentError::Internal(e.to_string()),
            Error::ToolError(_) | Error::Upstream(_) => AgentError::Upstream(e.to_string()),
        }
    }
}

/// The granted tools of every granted server, with their input schemas.
pub fn list() -> Result<Vec<Tool>, Error> {
    wit::list_tools().map_err(Error::from)
}

/// Calls tool `name` of `server` with `arguments` (a JSON object).
pub fn call(server: &str, name: &str, arguments: &serde_json::Value) -> Result<ToolResult, Error> {
    wit::call_tool(server, name, &arguments.to_string()).map_err(Error::from)
}

impl ToolResult {
    /// The structured result decoded into `T`, when the tool gave one.
    pub fn structured_json<T: serde::de::DeserializeOwned>(
        &self,
    ) -> Option<Result<T, serde_json::Error>> {
        self.structured.as_deref().map(serde_json::from_str)
    }
}

impl Tool {
    /// The name the model sees: `server__tool`, cut to the 64 letters,
    /// digits, `_` and `-` that model APIs accept.
    pub fn model_name(&self) -> String {
        let name: String = format!("{}__{}", self.server, self.name)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        name.chars().take(64).collect()
    }
}

/// `tools` as model tool definitions (see [`Tool::model_name`]).
pub fn model_tools(tools: &[Tool]) -> Vec<llm::Tool> {
    tools
        .iter()
        .map(|t| llm::Tool {
            name: t.model_name(),
            description: t.description.clone(),
            parameters: t.input_schema.clone(),
        })
        .collect()
}

/// Runs the model's tool `call` on its MCP server. Err only for what the model
/// cannot fix (a tool outside `tools`, a denial, a spent budget, a failed
/// server); the tool's own error and invalid arguments are returned as text.
pub fn run_model_call(tools: &[Tool], call: &llm::ToolCall) -> Result<String, Error> {
    let Some(tool) = tools.iter().find(|t| t.model_name() == call.name) else {
        return Err(Error::Denied(format!(
            "the model called `{}`, which is not one of the listed tools",
            call.name
        )));
    };
    match wit::call_tool(&tool.server, &tool.name, &call.arguments).map_err(Error::from) {
        Ok(result) => Ok(result.structured.unwrap_or(result.text)),
        Err(e @ (Error::ToolError(_) | Error::InvalidArguments(_))) => Ok(format!("error: {e}")),
        Err(e) => Err(e),
    }
}

/// [`run_model_call`] as the `tool` message that answers `call`.
pub fn answer(tools: &[Tool], call: &llm::ToolCall) -> Result<llm::Message, Error> {
    run_model_call(tools, call).map(|text| llm::Message::tool_result(call.id.clone(), text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(server: &str, name: &str) -> Tool {
        Tool {
            server: server.into(),
            name: name.into(),
            description: String::new(),
            input_schema: "{}".into(),
        }
    }

    #[test]
    fn model_names_are_what_model_apis_accept() {
        assert_eq!(tool("tickets", "search").model_name(), "tickets__search");
        assert_eq!(tool("docs", "fs.read/v2").model_name(), "docs__fs_read_v2");
        let long = tool("s", &"x".repeat(100)).model_name();
        assert_eq!(long.len(), 64);
    }

    #[test]
    fn policy_refusals_stay_distinct_from_tool_failures() {
        let denied = AgentError::from(Error::from(wit::Error::Denied("tool `x`".into())));
        assert!(matches!(denied, AgentError::CapabilityDenied(m) if m.contains("tool `x`")));
        let failed = AgentError::from(Error::from(wit::Error::ToolError("no such ticket".into())));
        assert!(matches!(failed, AgentError::Upstream(_)));
        let invalid = AgentError::from(Error::from(wit::Error::InvalidArguments("id".into())));
        assert!(matches!(invalid, AgentError::Internal(_)));
    }
}
