//! `tools/call` on `/mcp` answered in the request's own task.
//!
//! In stateless mode the SDK (`rmcp`) answers every request by building a
//! service for it: a peer, a serve loop, four spawned tasks and four channels,
//! then the handler's response hops from task to task back to the HTTP
//! request. For an invocation of a small agent that machinery took about as
//! long as the invocation itself (perf, `make bench`'s MCP scenario). Most
//! requests on `/mcp` are `tools/call`, so those of the protocol revisions
//! with an `initialize` handshake (2025-03-26 to 2025-11-25, the version named
//! by the `MCP-Protocol-Version` header) are answered here, by the same
//! handler ([`McpTools::call`]), with the same response bytes.
//!
//! [`Direct::eligible`] takes a request only when every check the SDK makes
//! on it is known to pass — the `Host` allow list with the SDK's own
//! matching, both media types in `Accept` (entries without parameters),
//! `Content-Type`, a JSON-RPC `tools/call` request, a known version header
//! and no per-request version in `_meta` — and leaves everything else to the
//! SDK, whose answer (including every refusal) is then the only one. So this
//! path can only answer a request the SDK would have answered, and answers it
//! as the SDK's stateless JSON path does: the handler's result, stripped to
//! the pre-2026 shape, as `200 application/json`; a client that disconnects
//! cancels the invocation.

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, HOST, ORIGIN};
use http::request::Parts;
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResponse, ClientCapabilities,
    ClientNotification, ClientResult, ErrorData, JsonRpcMessage, ProtocolVersion, RequestId,
    RequestMetaObject, ServerJsonRpcMessage, ServerResult,
};
use tokio_util::sync::CancellationToken;

use super::McpTools;

/// `MCP-Protocol-Version`, as the SDK names it.
const HEADER_PROTOCOL_VERSION: &str = "mcp-protocol-version";
const JSON: &str = "application/json";
const EVENT_STREAM: &str = "text/event-stream";

/// The direct `tools/call` path of one `/mcp` route.
pub(super) struct Direct {
    tools: McpTools,
    /// `--mcp-allowed-hosts`, parsed as the SDK parses them; `None`: any host.
    allowed_hosts: Option<Vec<Authority>>,
}

/// A `tools/call` this path answers.
pub(super) struct Call {
    id: RequestId,
    params: CallToolRequestParams,
}

/// A host name (lowercase, without IPv6 brackets) and its port, if any.
#[derive(Debug, PartialEq, Eq)]
struct Authority {
    host: String,
    port: Option<u16>,
}

impl Authority {
    /// As the SDK normalises `Host` headers and allow-list entries.
    fn new(host: &str, port: Option<u16>) -> Self {
        Self {
            host: host
                .trim_matches('[')
                .trim_matches(']')
                .to_ascii_lowercase(),
            port,
        }
    }

    /// An allow-list entry: `name` (any port) or `name:port`.
    fn allowed(entry: &str) -> Option<Self> {
        let entry = entry.trim();
        if entry.is_empty() {
            return None;
        }
        Some(match http::uri::Authority::try_from(entry) {
            Ok(a) => Self::new(a.host(), a.port_u16()),
            Err(_) => Self::new(entry, None),
        })
    }

    /// Whether this entry admits `host`.
    fn admits(&self, host: &Authority) -> bool {
        self.host == host.host && self.port.is_none_or(|p| host.port == Some(p))
    }
}

impl Direct {
    pub(super) fn new(tools: McpTools, allowed_hosts: &[String]) -> Self {
        Self {
            tools,
            allowed_hosts: allow_list(allowed_hosts),
        }
    }

    /// The call in this request if the SDK would pass every check it makes
    /// and route it to its stateless JSON path; `None` leaves the request to
    /// the SDK.
    pub(super) fn eligible(&self, parts: &Parts, body: &Bytes) -> Option<Call> {
        if parts.method != http::Method::POST
            || parts.headers.contains_key(ORIGIN)
            || !host_allowed(self.allowed_hosts.as_deref(), &parts.headers)
            || !accepts_json_and_event_stream(&parts.headers)
            || !is_json(&parts.headers)
            || !handshake_version(&parts.headers)
        {
            return None;
        }
        let JsonRpcMessage::Request(request) = parse_call(body)? else {
            return None;
        };
        if per_request_version(&request.request) {
            return None;
        }
        Some(Call {
            id: request.id,
            params: request.request.params,
        })
    }

    /// Runs `call` through [`McpTools::call`] and answers as the SDK's
    /// stateless JSON path does.
    pub(super) async fn answer(&self, parts: &Parts, call: Call) -> axum::response::Response {
        use axum::response::IntoResponse as _;
        let caller = self.tools.caller_of(Some(parts));
        // Dropped with this future when the client goes away: the invocation
        // is cancelled, as the SDK cancels its handler.
        let cancel = CancellationToken::new();
        let disconnected = cancel.clone().drop_guard();
        let outcome = self.tools.call(call.params, caller, cancel).await;
        disconnected.disarm();
        let message = match outcome.and_then(legacy_result) {
            Ok(result) => ServerJsonRpcMessage::response(result, call.id),
            Err(error) => ServerJsonRpcMessage::error(error, Some(call.id)),
        };
        match serde_json::to_vec(&message) {
            Ok(body) => (
                http::StatusCode::OK,
                [(CONTENT_TYPE, http::HeaderValue::from_static(JSON))],
                Bytes::from(body),
            )
                .into_response(),
            Err(e) => (
                http::StatusCode::INTERNAL_SERVER_ERROR,
                format!("Encounter an error when serialize json response: {e}"),
            )
                .into_response(),
        }
    }
}

/// `--mcp-allowed-hosts` as the SDK reads it: empty admits any host.
fn allow_list(hosts: &[String]) -> Option<Vec<Authority>> {
    (!hosts.is_empty()).then(|| hosts.iter().filter_map(|h| Authority::allowed(h)).collect())
}

/// The `Host` header (never the URI: the SDK falls back to it, this path
/// leaves such requests to the SDK) against the allow list (`None`: any
/// host), matched as the SDK matches it.
fn host_allowed(allowed: Option<&[Authority]>, headers: &http::HeaderMap) -> bool {
    let Some(host) = headers.get(HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let Ok(host) = http::uri::Authority::try_from(host) else {
        return false;
    };
    let host = Authority::new(host.host(), host.port_u16());
    allowed.is_none_or(|allowed| allowed.iter().any(|a| a.admits(&host)))
}

/// A JSON-RPC message whose requests can only be `tools/call`.
type CallMessage = JsonRpcMessage<CallToolRequest, ClientResult, ClientNotification>;

/// The body as a message with a `tools/call` request, parsed as the SDK
/// parses it but without trying the other request types first.
///
/// The SDK reads a request as the first of its request types that parses,
/// each of which accepts only its own `method`; so a body is a
/// [`CallToolRequest`] to the SDK exactly when it parses as one here (a
/// `tools/call` whose `params` do not parse fails here and is left to the
/// SDK, which answers it). Trying the other types first, each failure an
/// allocated error, was most of the parse: about 10 µs of a request.
fn parse_call(body: &[u8]) -> Option<CallMessage> {
    serde_json::from_slice(body).ok()
}

/// The request names a protocol version in its `_meta` (which the SDK
/// checks against the header and handles as a 2026-07-28 request).
fn per_request_version(request: &CallToolRequest) -> bool {
    request
        .extensions
        .get::<RequestMetaObject>()
        .is_some_and(|meta| meta.protocol_version().is_some())
}

/// What the SDK's server handler does with a `tools/call` response for a
/// peer on a revision before 2026-07-28.
fn legacy_result(response: CallToolResponse) -> Result<ServerResult, ErrorData> {
    // The stateless peer declared no client capabilities.
    if matches!(response, CallToolResponse::Task(_)) {
        return Err(ErrorData::missing_required_client_capability(
            ClientCapabilities::builder().enable_tasks().build(),
        ));
    }
    let mut result = ServerResult::from(response);
    if matches!(result, ServerResult::InputRequiredResult(_)) {
        return Err(ErrorData::invalid_request(
            "InputRequiredResult requires negotiated protocol version 2026-07-28 or newer",
            None,
        ));
    }
    result.strip_result_type_for_legacy_peer();
    result.strip_non_object_output_for_legacy_peer();
    Ok(result)
}

/// `Accept` names both media types in entries without parameters (the SDK
/// accepts those whatever else the header says; quoted or weighted entries
/// are left to it).
fn accepts_json_and_event_stream(headers: &http::HeaderMap) -> bool {
    let (mut json, mut event_stream) = (false, false);
    for value in headers.get_all(ACCEPT) {
        let Ok(value) = value.to_str() else { continue };
        if value.contains('"') {
            return false;
        }
        for entry in value.split(',').map(str::trim) {
            json |= entry.eq_ignore_ascii_case(JSON);
            event_stream |= entry.eq_ignore_ascii_case(EVENT_STREAM);
        }
    }
    json && event_stream
}

/// `Content-Type` is JSON, as the SDK checks it.
fn is_json(headers: &http::HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| {
            let essence = h.split_once(';').map_or(h, |(essence, _)| essence);
            essence.trim().eq_ignore_ascii_case(JSON)
        })
}

/// The version header names a revision this host serves that has an
/// `initialize` handshake and predates the SDK's standard-header checks.
fn handshake_version(headers: &http::HeaderMap) -> bool {
    let Some(version) = headers
        .get(HEADER_PROTOCOL_VERSION)
        .and_then(|h| h.to_str().ok())
    else {
        return false;
    };
    super::PROTOCOL_VERSIONS.iter().any(|v| {
        v.as_str() == version
            && v.has_initialize()
            && v.as_str() < ProtocolVersion::STANDARD_HEADERS.as_str()
            && ProtocolVersion::KNOWN_VERSIONS.contains(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    fn host_allowed(list: &[&str], host: &str) -> bool {
        let list: Vec<String> = list.iter().map(|h| h.to_string()).collect();
        super::host_allowed(allow_list(&list).as_deref(), &headers(&[("host", host)]))
    }

    #[test]
    fn host_names_match_any_port_and_name_port_entries_only_theirs() {
        let loopback = ["localhost", "127.0.0.1", "::1"];
        assert!(host_allowed(&loopback, "localhost"));
        assert!(host_allowed(&loopback, "LOCALHOST:8080"));
        assert!(host_allowed(&loopback, "127.0.0.1:1234"));
        assert!(host_allowed(&loopback, "[::1]:80"));
        assert!(!host_allowed(&loopback, "evil.example.com"));
        assert!(!host_allowed(&loopback, "localhost.evil.example.com:80"));
        let svc = ["agents.example.svc:8080"];
        assert!(host_allowed(&svc, "agents.example.svc:8080"));
        assert!(!host_allowed(&svc, "agents.example.svc"));
        assert!(!host_allowed(&svc, "agents.example.svc:9090"));
        assert!(host_allowed(&[], "anything.example"));
        assert!(!host_allowed(&[], "bad host"));
    }

    #[test]
    fn accept_needs_both_media_types_without_parameters() {
        let accepts = |v: &[&str]| {
            let pairs: Vec<(&str, &str)> = v.iter().map(|v| ("accept", *v)).collect();
            accepts_json_and_event_stream(&headers(&pairs))
        };
        assert!(accepts(&["application/json, text/event-stream"]));
        assert!(accepts(&["Text/Event-Stream,APPLICATION/JSON"]));
        assert!(accepts(&["application/json", "text/event-stream"]));
        assert!(!accepts(&["application/json"]));
        assert!(!accepts(&["application/json;q=0, text/event-stream"]));
        assert!(!accepts(&["application/json;q=1, text/event-stream"]));
        assert!(!accepts(&[
            r#"application/json, text/event-stream, a/b;p="x""#
        ]));
        assert!(!accepts(&[]));
    }

    #[test]
    fn only_handshake_revisions_before_standard_headers_take_the_direct_path() {
        let version = |v: &str| handshake_version(&headers(&[("mcp-protocol-version", v)]));
        assert!(version("2025-03-26"));
        assert!(version("2025-06-18"));
        assert!(version("2025-11-25"));
        assert!(!version("2026-07-28"));
        assert!(!version("2024-11-05"));
        assert!(!version("2099-01-01"));
        assert!(!handshake_version(&headers(&[])));
    }

    /// `parse_call` finds a call exactly where the SDK's parse finds one,
    /// with the same id, params and `_meta`.
    #[test]
    fn a_body_is_a_call_exactly_when_the_sdk_reads_one() {
        use rmcp::model::{ClientJsonRpcMessage, ClientRequest, GetMeta as _};
        let bodies = [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hello","arguments":{"name":"bench"}}}"#,
            r#"{"jsonrpc":"2.0","id":"a-1","method":"tools/call","params":{"name":"echo"}}"#,
            r#"{"id":7,"params":{"arguments":{"n":[1,2.5,-3,1e400]},"name":"x"},"method":"tools/call","jsonrpc":"2.0"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{},"_meta":{"progressToken":3}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":{"io.modelcontextprotocol/protocolVersion":"2025-11-25"}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","extra":true},"extra":1}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":null}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":[1]}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[]}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"x"}}"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"tools/call","params":{"name":"x"}}"#,
            r#"{"id":1,"method":"tools/call","params":{"name":"x"}}"#,
            r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"x"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"},"result":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}]"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"},"id":2}"#,
            "not json",
        ];
        for body in bodies {
            let sdk = match serde_json::from_slice::<ClientJsonRpcMessage>(body.as_bytes()) {
                Ok(ClientJsonRpcMessage::Request(r)) => match r.request {
                    ClientRequest::CallToolRequest(call) => Some((r.id, call)),
                    _ => None,
                },
                _ => None,
            };
            let ours = match parse_call(body.as_bytes()) {
                Some(JsonRpcMessage::Request(r)) => Some((r.id, r.request)),
                _ => None,
            };
            match (sdk, ours) {
                (None, None) => {}
                (Some((sdk_id, sdk)), Some((id, ours))) => {
                    assert_eq!(sdk_id, id, "{body}");
                    assert_eq!(sdk.params, ours.params, "{body}");
                    let meta =
                        |r: &CallToolRequest| r.extensions.get::<RequestMetaObject>().cloned();
                    assert_eq!(meta(&sdk), meta(&ours), "{body}");
                    assert_eq!(
                        ClientRequest::CallToolRequest(sdk)
                            .get_meta()
                            .protocol_version()
                            .is_some(),
                        per_request_version(&ours),
                        "{body}"
                    );
                }
                (sdk, ours) => panic!(
                    "{body}: the SDK reads a call: {}, parse_call: {}",
                    sdk.is_some(),
                    ours.is_some()
                ),
            }
        }
    }

    #[test]
    fn content_type_is_checked_like_the_sdk() {
        let ct = |v: &str| is_json(&headers(&[("content-type", v)]));
        assert!(ct("application/json"));
        assert!(ct("Application/JSON; charset=utf-8"));
        assert!(!ct("text/plain"));
        assert!(!is_json(&headers(&[])));
    }
}
