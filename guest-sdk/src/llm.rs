//! Chat completions from the model the manifest grants (`spec.capabilities.llm`).
//!
//! The host calls the provider on the agent's behalf: the agent names no
//! endpoint and holds no API key, and the manifest's token and request budgets
//! are checked before anything is sent. The provider and model are the
//! manifest's choice, so switching them needs no agent change.
//!
//! ```no_run
//! use agent_host_guest::llm::{self, Message, Options, Tool};
//! use serde::Deserialize;
//! use serde_json::json;
//!
//! #[derive(Deserialize)]
//! struct Page {
//!     reason: String,
//! }
//!
//! let messages = [
//!     Message::system("You triage alerts. Page for outages."),
//!     Message::user("db-1 is down"),
//! ];
//! let tools = [Tool::new(
//!     "page_oncall",
//!     "Pages the on-call engineer",
//!     &json!({ "type": "object", "properties": { "reason": { "type": "string" } } }),
//! )];
//! let options = Options { max_tokens: Some(256), ..Options::default() };
//! // Past a budget of the manifest -> `llm::Error::BudgetExceeded`, nothing sent.
//! let answer = llm::complete(&messages, &tools, options)?;
//! for call in answer.tool_calls() {
//!     let page: Page = call.arguments_json()?;
//!     println!("{} asked to page: {}", call.name, page.reason);
//! }
//! # Ok::<(), agent_host_guest::llm::Error>(())
//! ```

use serde::de::DeserializeOwned;

use crate::bindings::agent_host::agent::llm as wit;
use crate::AgentError;

/// Why the model stopped (generated from WIT `llm.finish-reason`).
pub use wit::FinishReason;
/// One chat message (generated from WIT `llm.message`); build it with
/// [`Message::system`], [`Message::user`], [`Message::assistant`] or
/// [`Message::tool_result`], or keep the model's reply as is.
pub use wit::Message;
/// Sampling options (generated from WIT `llm.options`); [`Options::default`]
/// leaves every one to the provider.
pub use wit::Options;
/// The model's answer (generated from WIT `llm.response`).
pub use wit::Response;
/// Who wrote a message (generated from WIT `llm.role`).
pub use wit::Role;
/// A function the model may ask for (generated from WIT `llm.tool`); build it
/// with [`Tool::new`].
pub use wit::Tool;
/// A function call the model asked for (generated from WIT `llm.tool-call`).
pub use wit::ToolCall;
/// Tokens one request consumed (generated from WIT `llm.usage`).
pub use wit::Usage;

/// Why a completion failed. Converts to [`AgentError`] so `?` in
/// [`Agent::run`](crate::Agent::run) reports it with the right case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The agent has no `spec.capabilities.llm` grant.
    #[error("model call denied by the host: {0}")]
    Denied(String),
    /// A budget of the manifest (tokens or requests per invocation, tokens per
    /// minute) would be exceeded; the request was not sent. The message names
    /// the budget.
    #[error("model call refused, over budget: {0}")]
    BudgetExceeded(String),
    /// The host refused the request as malformed (too large, bad tool schema...).
    #[error("invalid model request: {0}")]
    InvalidRequest(String),
    /// The provider failed or refused after the host's retries.
    #[error("model provider failed: {0}")]
    Upstream(String),
    /// The model called a tool with arguments that do not fit the tool's type.
    #[error("the model's arguments for tool `{tool}` do not fit: {message}")]
    ToolArguments {
        /// The tool the model called.
        tool: String,
        /// serde's message (line, column, field).
        message: String,
    },
}

impl From<wit::Error> for Error {
    fn from(e: wit::Error) -> Error {
        match e {
            wit::Error::Denied(m) => Error::Denied(m),
            wit::Error::BudgetExceeded(m) => Error::BudgetExceeded(m),
            wit::Error::InvalidRequest(m) => Error::InvalidRequest(m),
            wit::Error::Upstream(m) => Error::Upstream(m),
        }
    }
}

impl From<Error> for AgentError {
    /// [`Error::Denied`] and [`Error::BudgetExceeded`] become
    /// [`AgentError::CapabilityDenied`] (the host refused by policy: the grant
    /// or its budgets); a request the host found malformed is the agent's bug,
    /// [`AgentError::Internal`]; provider failures and unusable tool arguments
    /// become [`AgentError::Upstream`].
    fn from(e: Error) -> AgentError {
        match e {
            Error::Denied(_) | Error::BudgetExceeded(_) => {
                AgentError::CapabilityDenied(e.to_string())
            }
            Error::InvalidRequest(_) => AgentError::Internal(e.to_string()),
            Error::Upstream(_) | Error::ToolArguments { .. } => AgentError::Upstream(e.to_string()),
        }
    }
}

impl Default for Options {
    /// No token cap beyond the manifest's, the provider's sampling, no stop sequences.
    fn default() -> Options {
        Options {
            max_tokens: None,
            temperature: None,
            top_p: None,
            stop: Vec::new(),
        }
    }
}

impl Message {
    fn text(role: Role, content: impl Into<String>) -> Message {
        Message {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    /// Instructions for the model.
    pub fn system(content: impl Into<String>) -> Message {
        Message::text(Role::System, content)
    }

    /// The user's (or the task's) words.
    pub fn user(content: impl Into<String>) -> Message {
        Message::text(Role::User, content)
    }

    /// An earlier answer of the model, as text.
    pub fn assistant(content: impl Into<String>) -> Message {
        Message::text(Role::Assistant, content)
    }

    /// The result of the tool call `call_id` (a [`ToolCall::id`]).
    pub fn tool_result(call_id: impl Into<String>, content: impl Into<String>) -> Message {
        Message {
            tool_call_id: Some(call_id.into()),
            ..Message::text(Role::Tool, content)
        }
    }
}

impl Tool {
    /// A tool named `name` whose arguments object follows the JSON Schema `parameters`.
    pub fn new(
        name: impl Into<String>,
        description: impl Into<String>,
        parameters: &serde_json::Value,
    ) -> Tool {
        Tool {
            name: name.into(),
            description: description.into(),
            parameters: parameters.to_string(),
        }
    }
}

impl ToolCall {
    /// The call's arguments decoded into `T`; [`Error::ToolArguments`] naming
    /// the tool if the model's JSON does not fit.
    pub fn arguments_json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_str(&self.arguments).map_err(|e| Error::ToolArguments {
            tool: self.name.clone(),
            message: e.to_string(),
        })
    }
}

impl Response {
    /// The tool calls the model asked for, in its order (empty if none).
    pub fn tool_calls(&self) -> &[ToolCall] {
        &self.message.tool_calls
    }

    /// The answer's text (may be empty when it only carries tool calls).
    pub fn text(&self) -> &str {
        &self.message.content
    }
}

/// Sends `messages` (with the `tools` the model may call) to the granted
/// model and returns its answer.
///
/// The host refuses the call, unsent, with [`Error::Denied`] without the grant
/// and [`Error::BudgetExceeded`] when a budget of the manifest would be
/// passed; [`Error::Upstream`] means the provider failed after the host's retries.
pub fn complete(messages: &[Message], tools: &[Tool], options: Options) -> Result<Response, Error> {
    let request = wit::Request {
        messages: messages.to_vec(),
        tools: tools.to_vec(),
        options,
    };
    wit::complete(&request).map_err(Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_refusal_stays_distinct_from_an_upstream_failure() {
        let budget = Error::from(wit::Error::BudgetExceeded("maxTokensPerInvocation".into()));
        assert_eq!(
            budget,
            Error::BudgetExceeded("maxTokensPerInvocation".into())
        );
        assert!(
            matches!(AgentError::from(budget), AgentError::CapabilityDenied(m) if m.contains("maxTokensPerInvocation"))
        );
        let upstream = Error::from(wit::Error::Upstream("503".into()));
        assert!(matches!(
            AgentError::from(upstream),
            AgentError::Upstream(_)
        ));
        let invalid = Error::from(wit::Error::InvalidRequest("bad schema".into()));
        assert!(matches!(AgentError::from(invalid), AgentError::Internal(_)));
    }

    #[test]
    fn tool_arguments_that_do_not_fit_name_the_tool() {
        let call = ToolCall {
            id: "c1".into(),
            name: "page_oncall".into(),
            arguments: "{\"team\": 7}".into(),
        };
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Page {
            team: String,
        }
        match call.arguments_json::<Page>() {
            Err(Error::ToolArguments { tool, .. }) => assert_eq!(tool, "page_oncall"),
            other => panic!("{other:?}"),
        }
    }
}
