//! `agent-host:agent/tools` for guests. A server is connected on first use in
//! an invocation (handshake and tool list, counted against its byte budget);
//! a call is checked — server and tool granted, call budget left, arguments
//! a JSON object matching the tool's input schema — before anything is sent.
//! Every list and call is audited (server, tool, decision, duration, bytes)
//! and recorded for the tool-call metrics; the credential is redacted from
//! everything handed back to the guest.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};
use wasmtime::component::HasData;

use super::client::{Answer, ByteBudget, ExchangeError, Session, MAX_LIST_PAGES};
use super::{McpGrant, Server, MAX_ARGUMENT_BYTES};
use crate::audit::{CapabilityAudit, Decision};
use crate::bindings::agent_host::agent::tools::{self, Error, Tool, ToolResult};
use crate::cap::tool_call::{Sent, ToolCall};
use crate::cap::Kind;

/// JSON-RPC "invalid params": the server refused the arguments.
const INVALID_PARAMS: i64 = -32602;

/// One invocation's MCP access.
pub struct McpSession {
    grant: Arc<McpGrant>,
    servers: Vec<ServerState>,
    deadline: Instant,
    audit: CapabilityAudit,
    /// Tool calls sent.
    pub calls: u32,
    /// Lists and calls refused (not granted, over budget, bad arguments).
    pub denied: u32,
    /// Each list and call, for the tool-call metrics.
    pub records: Vec<ToolCall>,
}

struct ServerState {
    budget: ByteBudget,
    calls: u32,
    connected: Option<Connected>,
    /// Why connecting failed: not tried again in this invocation, so a guest
    /// looping on a dead server costs one attempt.
    broken: Option<String>,
}

struct Connected {
    session: Session,
    tools: Vec<Listed>,
}

/// A granted tool the server offers.
struct Listed {
    name: String,
    description: String,
    schema: Value,
    validator: Option<Result<jsonschema::Validator, String>>,
}

impl McpSession {
    /// A session under `grant` ending at `deadline`, recording in `audit`.
    pub fn new(grant: Arc<McpGrant>, deadline: Instant, audit: CapabilityAudit) -> Self {
        Self {
            servers: grant
                .servers
                .iter()
                .map(|s| ServerState {
                    budget: ByteBudget::new(s.max_response_bytes),
                    calls: 0,
                    connected: None,
                    broken: None,
                })
                .collect(),
            grant,
            deadline,
            audit,
            calls: 0,
            denied: 0,
            records: Vec::new(),
        }
    }

    /// Bytes every server sent in this invocation.
    pub fn response_bytes(&self) -> u64 {
        self.grant
            .servers
            .iter()
            .zip(&self.servers)
            .map(|(s, state)| s.max_response_bytes - state.budget.left())
            .sum()
    }

    /// Ends the servers' sessions in the background (best effort).
    pub fn close(self) {
        for (server, state) in self.grant.servers.iter().zip(self.servers) {
            if let Some(c) = state.connected {
                let server = server.clone();
                tokio::spawn(async move { server.close(c.session).await });
            }
        }
    }

    fn redact(&self, text: &str) -> String {
        crate::redact::redact(text, self.grant.secrets()).into_owned()
    }

    /// Audits and counts a refusal; returns the error for the guest.
    fn refuse(&mut self, server: Option<&Server>, action: &str, error: Error) -> Error {
        self.denied += 1;
        let why = match &error {
            Error::Denied(m)
            | Error::InvalidArguments(m)
            | Error::BudgetExceeded(m)
            | Error::ToolError(m)
            | Error::Upstream(m) => m.clone(),
        };
        let target = server.map_or_else(|| "none".to_string(), |s| s.name.clone());
        self.audit
            .record(Kind::Mcp, action, &target, Decision::Deny, None, Some(&why));
        self.records.push(ToolCall::denied(
            Kind::Mcp,
            server.map(|s| s.name.as_str().into()),
        ));
        error
    }

    /// Audits and records an exchange that was sent.
    fn sent(
        &mut self,
        server: &Server,
        action: &str,
        started: Instant,
        before: u64,
        failure: Option<&ExchangeError>,
    ) {
        let index = server.index;
        let bytes = before.saturating_sub(self.servers[index].budget.left());
        let latency = started.elapsed();
        let outcome = match failure {
            None => "ok".to_string(),
            Some(ExchangeError::Budget(_)) => "response over budget".to_string(),
            Some(ExchangeError::Upstream(kind, _)) => format!("failed ({})", kind.as_str()),
            Some(ExchangeError::Prohibited(_)) => "refused".to_string(),
        };
        self.audit.record(
            Kind::Mcp,
            &format!(
                "{action}: {outcome} in {} ms, {bytes} bytes",
                latency.as_millis()
            ),
            &server.name,
            Decision::Allow,
            Some(&server.field()),
            None,
        );
        self.records.push(ToolCall::sent(
            Kind::Mcp,
            server.name.as_str().into(),
            Sent {
                latency,
                failure: failure.and_then(ExchangeError::failure),
                retries: 0,
            },
        ));
    }

    /// The error the guest sees for a failed exchange with `server`.
    fn failed(&mut self, server: &Server, action: &str, e: ExchangeError) -> Error {
        match e {
            ExchangeError::Prohibited(why) => self.refuse(
                Some(server),
                action,
                Error::Denied(format!(
                    "server `{}` ({}): {why}; grant it in {}.allowedCidrs",
                    server.name,
                    server.url,
                    server.field()
                )),
            ),
            ExchangeError::Budget(why) => Error::BudgetExceeded(format!(
                "server `{}`: {}.maxResponseBytesPerInvocation: {why}",
                server.name,
                server.field()
            )),
            ExchangeError::Upstream(_, why) => {
                Error::Upstream(self.redact(&format!("server `{}`: {why}", server.name)))
            }
        }
    }

    /// Connects to server `index` unless this invocation already did: the
    /// handshake, then the granted tools it lists.
    async fn connect(&mut self, index: usize) -> Result<(), Error> {
        if self.servers[index].connected.is_some() {
            return Ok(());
        }
        if let Some(why) = &self.servers[index].broken {
            return Err(Error::Upstream(format!(
                "{why} (not retried within this invocation)"
            )));
        }
        let server = self.grant.servers[index].clone();
        let budget = self.servers[index].budget.clone();
        let before = budget.left();
        let started = Instant::now();
        let listed = async {
            let mut session = server.connect(&budget, self.deadline).await?;
            let mut tools = Vec::new();
            let mut cursor: Option<String> = None;
            for _ in 0..MAX_LIST_PAGES {
                let params = match &cursor {
                    Some(c) => json!({ "cursor": c }),
                    None => json!({}),
                };
                let (answer, _) = server
                    .exchange(
                        &mut session,
                        "tools/list",
                        params,
                        true,
                        &budget,
                        self.deadline,
                    )
                    .await?;
                let result = match answer {
                    Some(Answer::Result(r)) => r,
                    Some(Answer::Error(code, message)) => {
                        return Err(ExchangeError::Upstream(
                            crate::cap::tool_call::Failure::Upstream,
                            format!("tools/list refused ({code}): {message}"),
                        ))
                    }
                    None => unreachable!("a request is answered or fails"),
                };
                for tool in result
                    .get("tools")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let Some(name) = tool.get("name").and_then(Value::as_str) else {
                        continue;
                    };
                    if !server.tools.iter().any(|t| t == name)
                        || tools.iter().any(|t: &Listed| t.name == name)
                    {
                        continue;
                    }
                    tools.push(Listed {
                        name: name.to_string(),
                        description: tool
                            .get("description")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        schema: tool
                            .get("inputSchema")
                            .cloned()
                            .unwrap_or_else(|| json!({ "type": "object" })),
                        validator: None,
                    });
                }
                cursor = result
                    .get("nextCursor")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                if cursor.is_none() {
                    break;
                }
            }
            Ok((session, tools))
        }
        .await;
        match listed {
            Ok((session, tools)) => {
                let action = format!(
                    "list: {} of {} granted tools offered",
                    tools.len(),
                    server.tools.len()
                );
                self.sent(&server, &action, started, before, None);
                self.servers[index].connected = Some(Connected { session, tools });
                Ok(())
            }
            Err(e) => {
                if !matches!(e, ExchangeError::Prohibited(_)) {
                    self.sent(&server, "list", started, before, Some(&e));
                }
                let error = self.failed(&server, "list", e);
                if let Error::Upstream(why) | Error::BudgetExceeded(why) = &error {
                    self.servers[index].broken = Some(why.clone());
                }
                Err(error)
            }
        }
    }

    async fn list(&mut self) -> Result<Vec<Tool>, Error> {
        let mut out = Vec::new();
        for index in 0..self.grant.servers.len() {
            self.connect(index).await?;
            let server = &self.grant.servers[index];
            let connected = self.servers[index].connected.as_ref().expect("connected");
            for tool in &connected.tools {
                out.push(Tool {
                    server: server.name.clone(),
                    name: tool.name.clone(),
                    description: self.redact(&tool.description),
                    input_schema: self.redact(&tool.schema.to_string()),
                });
            }
        }
        Ok(out)
    }

    async fn call(
        &mut self,
        server_name: &str,
        name: &str,
        arguments: &str,
    ) -> Result<ToolResult, Error> {
        let action = format!("call {name}");
        let Some((index, server)) = self.grant.server(server_name).map(|(i, s)| (i, s.clone()))
        else {
            let granted: Vec<&str> = self.grant.servers.iter().map(|s| s.name.as_str()).collect();
            return Err(self.refuse(
                None,
                &action,
                Error::Denied(format!(
                    "no MCP server `{server_name}` is granted (spec.capabilities.mcp: [{}])",
                    granted.join(", ")
                )),
            ));
        };
        if !server.tools.iter().any(|t| t == name) {
            return Err(self.refuse(
                Some(&server),
                &action,
                Error::Denied(format!(
                    "tool `{name}` of server `{server_name}` is not granted ({}.tools: [{}])",
                    server.field(),
                    server.tools.join(", ")
                )),
            ));
        }
        if self.servers[index].calls >= server.max_calls {
            return Err(self.refuse(
                Some(&server),
                &action,
                Error::BudgetExceeded(format!(
                    "{}.maxCallsPerInvocation: all {} calls to `{server_name}` used; not sent",
                    server.field(),
                    server.max_calls
                )),
            ));
        }
        if arguments.len() > MAX_ARGUMENT_BYTES {
            return Err(self.refuse(
                Some(&server),
                &action,
                Error::InvalidArguments(format!(
                    "{} bytes of arguments; at most {MAX_ARGUMENT_BYTES}",
                    arguments.len()
                )),
            ));
        }
        let arguments: Value = match serde_json::from_str(arguments) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => {
                return Err(self.refuse(
                    Some(&server),
                    &action,
                    Error::InvalidArguments("the arguments must be a JSON object".into()),
                ))
            }
            Err(e) => {
                return Err(self.refuse(
                    Some(&server),
                    &action,
                    Error::InvalidArguments(format!("the arguments are not JSON: {e}")),
                ))
            }
        };
        self.connect(index).await?;
        let connected = self.servers[index].connected.as_mut().expect("connected");
        let Some(tool) = connected.tools.iter_mut().find(|t| t.name == name) else {
            return Err(Error::Upstream(format!(
                "server `{server_name}` does not offer tool `{name}`; not sent"
            )));
        };
        let validator = tool
            .validator
            .get_or_insert_with(|| crate::manifest::compile_json_schema(&tool.schema));
        let mismatch = match validator {
            Ok(v) => crate::manifest::first_schema_error(v, &arguments)
                .err()
                .map(|m| {
                    let at = if m.field.is_empty() {
                        "arguments".to_string()
                    } else {
                        format!("arguments{}", m.field)
                    };
                    format!("{at}: {}; not sent", m.message)
                }),
            // The server's fault, not the agent's: not charged as a denial.
            Err(why) => {
                let why = format!(
                    "server `{server_name}` gives tool `{name}` an input schema the host cannot check arguments against ({why}); not sent"
                );
                return Err(Error::Upstream(self.redact(&why)));
            }
        };
        if let Some(why) = mismatch {
            return Err(self.refuse(Some(&server), &action, Error::InvalidArguments(why)));
        }
        if self.servers[index].budget.left() == 0 {
            // The tool would run but its answer could not be read.
            let why = format!(
                "{}.maxResponseBytesPerInvocation: all {} bytes from `{server_name}` used; not sent",
                server.field(),
                server.max_response_bytes
            );
            return Err(self.refuse(Some(&server), &action, Error::BudgetExceeded(why)));
        }
        let state = &mut self.servers[index];
        state.calls += 1;
        self.calls += 1;
        let budget = state.budget.clone();
        let before = budget.left();
        let started = Instant::now();
        let mut session = state.connected.take().expect("connected");
        let params = json!({ "name": name, "arguments": arguments });
        let result = server
            .exchange(
                &mut session.session,
                "tools/call",
                params,
                true,
                &budget,
                self.deadline,
            )
            .await;
        self.servers[index].connected = Some(session);
        let answer = match result {
            Ok((Some(answer), _)) => answer,
            Ok((None, _)) => unreachable!("a request is answered or fails"),
            Err(e) => {
                self.sent(&server, &action, started, before, Some(&e));
                return Err(self.failed(&server, &action, e));
            }
        };
        self.sent(&server, &action, started, before, None);
        match answer {
            Answer::Error(INVALID_PARAMS, message) => {
                Err(Error::InvalidArguments(self.redact(&message)))
            }
            Answer::Error(code, message) => Err(Error::Upstream(self.redact(&format!(
                "server `{server_name}` refused the call ({code}): {message}"
            )))),
            Answer::Result(result) => {
                let content = result.get("content").cloned().unwrap_or_else(|| json!([]));
                let text = content
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|c| c.get("type").and_then(Value::as_str) == Some("text"))
                    .filter_map(|c| c.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("\n");
                let text = self.redact(&text);
                if result.get("isError").and_then(Value::as_bool) == Some(true) {
                    return Err(Error::ToolError(text));
                }
                Ok(ToolResult {
                    text,
                    content: self.redact(&content.to_string()),
                    structured: result
                        .get("structuredContent")
                        .filter(|v| !v.is_null())
                        .map(|v| self.redact(&v.to_string())),
                })
            }
        }
    }
}

/// What the `tools` host calls work on: the session (`None` without the
/// grant) and the store's core (where an ungranted call is denied).
pub struct McpView<'a>(pub Option<&'a mut McpSession>, pub &'a mut crate::cap::Core);

/// `HasData` marker for [`McpView`].
pub struct HasMcp;

impl HasData for HasMcp {
    type Data<'a> = McpView<'a>;
}

impl McpView<'_> {
    fn not_granted(&mut self, action: &str) -> wasmtime::Result<Error> {
        Ok(Error::Denied(self.1.deny_ungranted(
            Kind::Mcp,
            action,
            "spec.capabilities.mcp",
        )?))
    }
}

impl tools::Host for McpView<'_> {
    async fn list_tools(&mut self) -> wasmtime::Result<Result<Vec<Tool>, Error>> {
        Ok(match self.0.as_deref_mut() {
            None => Err(self.not_granted("list")?),
            Some(session) => session.list().await,
        })
    }

    async fn call_tool(
        &mut self,
        server: String,
        name: String,
        arguments: String,
    ) -> wasmtime::Result<Result<ToolResult, Error>> {
        Ok(match self.0.as_deref_mut() {
            None => Err(self.not_granted(&format!("call {name}"))?),
            Some(session) => session.call(&server, &name, &arguments).await,
        })
    }
}
