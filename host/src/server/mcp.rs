//! Every hosted agent as one MCP tool, named after the agent: `/mcp`
//! (streamable HTTP, stateless) on the serve router, and `agent-host mcp`
//! over stdio. `tools/call` goes through [`api::invoke_direct`], so it is
//! admitted, budgeted, metered and audited exactly like
//! `POST /v1/agents/{agent}/invocations`.
//!
//! * Arguments are checked against `spec.tool.inputSchema` before anything
//!   runs; a mismatch is a tool error (`isError`) with code
//!   `InvalidArguments` naming the field (MCP 2025-11-25: input validation
//!   errors are tool execution errors, so a model can correct itself).
//! * An agent without `spec.tool` is still a tool: its input schema is an
//!   open `{"type": "object"}` and its description says so.
//! * The result's `_meta` carries the invocation id, its outcome and usage
//!   report (`agent-host.dev/invocation`, `agent-host.dev/outcome`,
//!   `agent-host.dev/usage`); failures add `agent-host.dev/error`.
//! * On `/mcp`, a `tools/call` of the 2025 revisions that passes every check
//!   of the SDK is answered without the SDK's per-request service
//!   ([`direct`]); the SDK answers everything else.

mod direct;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorCode, ErrorData,
    Implementation, InitializeResult, JsonObject, ListToolsResult, MetaObject,
    PaginatedRequestParams, ProgressNotificationParam, ProtocolVersion, ServerCapabilities, Tool,
    ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, ServerHandler};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::api::{self, ApiError};
use super::auth::{authorize, Caller};
use super::Shared;
use crate::runtime::PreparedAgent;

/// MCP protocol versions served: from 2025-03-26 (the first with streamable
/// HTTP) to 2026-07-28.
pub const PROTOCOL_VERSIONS: &[ProtocolVersion] = &[
    ProtocolVersion::V_2025_03_26,
    ProtocolVersion::V_2025_06_18,
    ProtocolVersion::V_2025_11_25,
    ProtocolVersion::V_2026_07_28,
];

/// `_meta` keys of tool results.
const META_INVOCATION: &str = "agent-host.dev/invocation";
const META_OUTCOME: &str = "agent-host.dev/outcome";
const META_USAGE: &str = "agent-host.dev/usage";
const META_ERROR: &str = "agent-host.dev/error";

/// The MCP server of a host: one per request (stateless HTTP) or per stdio session.
#[derive(Clone)]
pub struct McpTools {
    shared: Arc<Shared>,
    /// Who calls when the request says nothing (stdio: the local user).
    default_caller: String,
    /// Whether the transport can push `notifications/tools/list_changed`
    /// (stdio: yes; stateless HTTP: no session to push on).
    list_changed: bool,
}

impl McpTools {
    pub(super) fn new(shared: Arc<Shared>, default_caller: &str) -> Self {
        Self {
            shared,
            default_caller: default_caller.to_string(),
            list_changed: false,
        }
    }

    /// Advertises `tools.listChanged`: the caller sends
    /// `notifications/tools/list_changed` when a tool changes.
    pub fn notifying_list_changes(mut self) -> Self {
        self.list_changed = true;
        self
    }

    /// The caller of this request: the authenticated identity the auth layer
    /// put in the HTTP request, else the peer address, else the default.
    fn caller(&self, context: &RequestContext<RoleServer>) -> Caller {
        self.caller_of(context.extensions.get::<http::request::Parts>())
    }

    /// The caller of the HTTP request `parts` (none over stdio).
    fn caller_of(&self, parts: Option<&http::request::Parts>) -> Caller {
        if let Some(caller) = parts.and_then(|p| p.extensions.get::<Caller>()) {
            return caller.clone();
        }
        let peer = parts.and_then(|p| {
            p.extensions
                .get::<axum::extract::ConnectInfo<SocketAddr>>()
                .map(|c| c.0.to_string())
        });
        Caller::anonymous(peer.unwrap_or_else(|| self.default_caller.clone()))
    }

    /// The tools `caller` may call: agents serving now and allowed to it.
    fn tools(&self, caller: &Caller) -> Vec<Tool> {
        self.shared
            .agents
            .values()
            .filter_map(|h| h.current())
            .filter(|a| authorize(caller, spec_callers(a)).is_ok())
            .map(|a| tool_of(&a))
            .collect()
    }
}

/// The agent's `spec.callers`.
fn spec_callers(agent: &PreparedAgent) -> Option<&[String]> {
    agent.callers()
}

/// The agent's tool description.
fn tool_of(agent: &PreparedAgent) -> Tool {
    let name = agent.name().to_string();
    let Some(compiled) = agent.tool() else {
        let description = format!(
            "Runs the agent {name}. It declares no spec.tool: any JSON object is accepted as its task input."
        );
        let mut open = JsonObject::new();
        open.insert("type".into(), "object".into());
        return Tool::new(name, description, open);
    };
    let spec = &compiled.spec;
    let mut tool = Tool::new(
        name,
        spec.description.clone(),
        compiled.input_schema.clone(),
    );
    tool.output_schema = compiled.output_schema.clone();
    if let Some(a) = &spec.annotations {
        tool.title = a.title.clone();
        tool.annotations = Some(ToolAnnotations::from_raw(
            a.title.clone(),
            a.read_only_hint,
            a.destructive_hint,
            a.idempotent_hint,
            a.open_world_hint,
        ));
    }
    tool
}

/// A tool error: `isError`, the code and message as text and in `_meta`.
fn tool_error(
    code: &str,
    message: &str,
    mut meta: JsonObject,
    extra: Option<Value>,
) -> CallToolResult {
    let mut error = json!({ "code": code, "message": message });
    if let (Some(Value::Object(extra)), Value::Object(error)) = (extra, &mut error) {
        error.extend(extra);
    }
    meta.insert(META_ERROR.into(), error);
    let mut result = CallToolResult::error(vec![ContentBlock::text(format!("{code}: {message}"))]);
    result.meta = Some(MetaObject(meta));
    result
}

impl From<ApiError> for CallToolResult {
    fn from(e: ApiError) -> Self {
        tool_error(e.code, &e.message, JsonObject::new(), None)
    }
}

/// What a tool result takes from the HTTP API's body of an ended
/// invocation (read into these fields only: the body's other fields are
/// skipped, not built).
#[derive(serde::Deserialize)]
struct Ended {
    id: Option<Value>,
    outcome: Option<Value>,
    usage: Option<Value>,
    output: Option<Value>,
    error: Option<Value>,
}

/// The tool result of an ended invocation, from the HTTP API's response body.
fn result_of(agent: &PreparedAgent, body: &[u8]) -> CallToolResult {
    let Ok(body) = serde_json::from_slice::<Ended>(body) else {
        return tool_error(
            "HostError",
            "the invocation's result is unreadable",
            JsonObject::new(),
            None,
        );
    };
    let mut meta = JsonObject::new();
    for (key, field) in [
        (META_INVOCATION, body.id),
        (META_OUTCOME, body.outcome),
        (META_USAGE, body.usage),
    ] {
        if let Some(v) = field {
            meta.insert(key.into(), v);
        }
    }
    if let Some(error) = body.error {
        let code = error["code"].as_str().unwrap_or("HostError");
        let message = error["message"].as_str().unwrap_or_default();
        return tool_error(code, message, meta, None);
    }
    let output = body.output.unwrap_or(Value::Null);
    let mut result = match agent.tool() {
        Some(tool) if tool.has_output_schema() => {
            if let Err(m) = tool.check_output(&output) {
                let message = format!(
                    "the agent's output does not match spec.tool.outputSchema at {:?}: {}",
                    m.field, m.message
                );
                return tool_error(
                    "OutputSchemaMismatch",
                    &message,
                    meta,
                    Some(json!({ "field": m.field })),
                );
            }
            let mut r = CallToolResult::success(vec![ContentBlock::text(output.to_string())]);
            r.structured_content = Some(output);
            r
        }
        _ => {
            let text = match output {
                Value::String(s) => s,
                other => other.to_string(),
            };
            CallToolResult::success(vec![ContentBlock::text(text)])
        }
    };
    result.meta = Some(MetaObject(meta));
    result
}

impl ServerHandler for McpTools {
    fn get_info(&self) -> InitializeResult {
        let capabilities = ServerCapabilities::builder().enable_tools();
        let capabilities = if self.list_changed {
            capabilities.enable_tool_list_changed().build()
        } else {
            capabilities.build()
        };
        InitializeResult::new(capabilities)
            .with_server_info(Implementation::new("agent-host", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Each tool runs one hosted agent as a sandboxed WebAssembly component under its manifest's grants and budgets.",
            )
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(PROTOCOL_VERSIONS)
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        let agent = self.shared.agents.get(name)?.current()?;
        Some(tool_of(&agent))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let caller = self.caller(&context);
        // Specs change under a followed Agent: clients must not cache the list.
        Ok(ListToolsResult::with_all_items(self.tools(&caller)).with_ttl_ms(0))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let caller = self.caller(&context);
        let call = self.call(request, caller, context.ct.clone());
        let Some(token) = context.meta.get_progress_token() else {
            return call.await;
        };
        // The client asked for progress: while the invocation runs, one
        // notification per interval (where the transport carries them: stdio,
        // and HTTP clients that accept an event stream), so a long call is
        // seen to be alive and can be timed out on silence instead of length.
        let peer = context.peer.clone();
        let ticker = async move {
            let started = std::time::Instant::now();
            let first = tokio::time::Instant::now() + PROGRESS_EVERY;
            let mut every = tokio::time::interval_at(first, PROGRESS_EVERY);
            loop {
                every.tick().await;
                let seconds = started.elapsed().as_secs_f64();
                let note = ProgressNotificationParam::new(token.clone(), seconds)
                    .with_message(format!("running for {seconds:.0} s"));
                if peer.notify_progress(note).await.is_err() {
                    return std::future::pending().await;
                }
            }
        };
        tokio::pin!(call);
        tokio::select! {
            result = &mut call => result,
            never = ticker => never,
        }
    }
}

/// How often a running `tools/call` that carries a progress token is reported.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl McpTools {
    /// `tools/call` of `request` by `caller`, whatever the transport; `cancel`
    /// stops the invocation where it stands.
    async fn call(
        &self,
        request: CallToolRequestParams,
        caller: Caller,
        cancel: CancellationToken,
    ) -> Result<CallToolResponse, ErrorData> {
        let name = request.name.as_ref();
        let unknown = || {
            ErrorData::invalid_params(
                format!("unknown tool {name:?}: tools/list names the tools this host serves"),
                None,
            )
        };
        let hosted = self.shared.agents.get(name).ok_or_else(unknown)?;
        let Some(agent) = hosted.current() else {
            return Ok(api::unavailable(name).into_tool_result().into());
        };
        if let Err(denied) = authorize(&caller, spec_callers(&agent)) {
            // Audited and counted like the HTTP API's 403.
            self.shared.metrics.rejected(name, "Forbidden");
            let _ = super::auth::deny(
                &self.shared,
                &caller,
                format!("MCP tools/call {name}"),
                Some(name),
                super::auth::forbidden(&denied),
            );
            return Err(ErrorData::new(
                ErrorCode::INVALID_REQUEST,
                format!(
                    "caller {:?} may not call tool {name:?} (spec.callers)",
                    caller.name
                ),
                Some(json!({ "code": "Forbidden" })),
            ));
        }
        let arguments = Value::Object(request.arguments.unwrap_or_default());
        if let Some(tool) = agent.tool() {
            if let Err(m) = tool.check_input(&arguments) {
                self.shared.metrics.rejected(name, "InvalidArguments");
                let message = format!(
                    "the arguments do not match the input schema of tool {name:?} at {:?}: {}",
                    m.field, m.message
                );
                let extra = json!({ "field": m.field });
                return Ok(tool_error(
                    "InvalidArguments",
                    &message,
                    JsonObject::new(),
                    Some(extra),
                )
                .into());
            }
        }
        let input = arguments.to_string();
        let finished = match api::invoke_direct(
            &self.shared,
            hosted,
            &agent,
            input,
            caller.name,
            cancel,
        )
        .await
        {
            Ok(f) => f,
            Err(e) => return Ok(CallToolResult::from(e).into()),
        };
        Ok(result_of(&agent, &finished.body).into())
    }
}

impl ApiError {
    fn into_tool_result(self) -> CallToolResult {
        self.into()
    }
}

/// How `/mcp` is served (operator settings).
#[derive(Clone, Debug)]
pub struct McpConfig {
    /// `Host` header values accepted (names or `name:port`), against DNS
    /// rebinding; empty accepts any host.
    pub allowed_hosts: Vec<String>,
}

/// Loopback only, as the SDK defaults: a browser page on another origin
/// cannot reach a local host through a rebound DNS name.
pub const DEFAULT_ALLOWED_HOSTS: &[&str] = &["localhost", "127.0.0.1", "::1"];

impl Default for McpConfig {
    fn default() -> Self {
        Self {
            allowed_hosts: DEFAULT_ALLOWED_HOSTS
                .iter()
                .map(|h| h.to_string())
                .collect(),
        }
    }
}

/// Largest MCP request body (JSON-RPC envelope and arguments), as the SDK
/// defaults: larger task inputs go through the HTTP API.
pub const MAX_MCP_REQUEST_BYTES: usize = 4 << 20;

/// The `/mcp` route: the SDK's service behind the server's input budget
/// (`--max-buffered-input`), which it shares with the HTTP API.
pub(super) fn route(shared: Arc<Shared>, config: &McpConfig) -> axum::routing::MethodRouter {
    let service = Arc::new(service(shared.clone(), config));
    let direct = Arc::new(direct::Direct::new(
        McpTools::new(shared.clone(), "unknown"),
        &config.allowed_hosts,
    ));
    axum::routing::any(move |request: axum::extract::Request| {
        let (shared, service, direct) = (shared.clone(), service.clone(), direct.clone());
        async move { bounded(&shared, &service, &direct, request).await }
    })
}

/// Reserves what the body may take (its declared length, else the most an
/// MCP request may be) until the request is answered, refusing past the
/// budget; a `tools/call` the SDK would pass is answered directly
/// ([`direct`]), any other request by the SDK.
async fn bounded(
    shared: &Shared,
    service: &rmcp::transport::StreamableHttpService<
        McpTools,
        rmcp::transport::streamable_http_server::session::never::NeverSessionManager,
    >,
    direct: &direct::Direct,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    use http_body_util::BodyExt as _;
    let declared = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let most = MAX_MCP_REQUEST_BYTES as u64;
    if declared.is_some_and(|n| n > most) {
        return (
            http::StatusCode::PAYLOAD_TOO_LARGE,
            format!("an MCP request is at most {most} bytes; larger task inputs go through the HTTP API"),
        )
            .into_response();
    }
    let _reserved = match api::reserve(shared, declared.unwrap_or(most)) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    // Read here, under --body-timeout, as the HTTP API reads its bodies.
    let (parts, body) = request.into_parts();
    let limited = http_body_util::Limited::new(body, MAX_MCP_REQUEST_BYTES);
    let read = tokio::time::timeout(shared.body_timeout, limited.collect());
    let body = match read.await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return (
                http::StatusCode::PAYLOAD_TOO_LARGE,
                format!("an MCP request is at most {most} bytes; larger task inputs go through the HTTP API"),
            )
                .into_response()
        }
        Ok(Err(e)) => {
            return (http::StatusCode::BAD_REQUEST, format!("could not read the request body: {e}"))
                .into_response()
        }
        Err(_) => {
            return (
                http::StatusCode::REQUEST_TIMEOUT,
                format!("the request body did not arrive within {:?}", shared.body_timeout),
            )
                .into_response()
        }
    };
    if let Some(call) = direct.eligible(&parts, &body) {
        return direct.answer(&parts, call).await;
    }
    let request = http::Request::from_parts(parts, http_body_util::Full::new(body));
    // Boxed: the SDK's future is large, and every request's future would
    // otherwise be as large (allocated and moved per request).
    Box::pin(service.handle(request)).await.into_response()
}

/// `/mcp`: stateless streamable HTTP (no session any one replica must keep),
/// JSON responses unless the handler streams.
fn service(
    shared: Arc<Shared>,
    config: &McpConfig,
) -> rmcp::transport::StreamableHttpService<
    McpTools,
    rmcp::transport::streamable_http_server::session::never::NeverSessionManager,
> {
    let http = rmcp::transport::StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_max_request_body_bytes(MAX_MCP_REQUEST_BYTES)
        .with_allowed_hosts(config.allowed_hosts.clone());
    let tools = McpTools::new(shared, "unknown");
    rmcp::transport::StreamableHttpService::new(move || Ok(tools.clone()), Arc::default(), http)
}
