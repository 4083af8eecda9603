//! `spec.capabilities`: what an agent may reach. Anything not granted here is denied.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{KubeDuration, Quantity, UrlPrefix};

/// The grants of one agent. Every list defaults to empty and every grant to absent,
/// which means denied.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Capabilities {
    /// Outgoing HTTP requests the agent may make.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<HttpRuleSpec>,
    /// Host directories mounted into the agent's filesystem.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filesystem: Vec<MountSpec>,
    /// Environment variables the agent sees; no host variable is passed through.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Access to the host's key-value store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_value: Option<KeyValueSpec>,
    /// Access to a large language model through the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm: Option<LlmSpec>,
    /// Remote MCP servers whose tools the agent may call, through the host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mcp: Vec<McpServerSpec>,
}

/// One allowed kind of HTTP request: any URL under `url`, with one of `methods`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.allowAllAddresses) && self.allowAllAddresses) || !has(self.allowedCidrs) || self.allowedCidrs.all(c, !c.endsWith('/0'))",
    "message": "allowedCidrs must not contain a /0 range (every address); set allowAllAddresses: true to mean that, or list narrower ranges"
}]))]
pub struct HttpRuleSpec {
    /// Scheme, host, port and path prefix that requests must match.
    pub url: UrlPrefix,
    /// Allowed methods; `[GET]` when omitted. An empty list is an error.
    #[serde(default = "HttpRuleSpec::default_methods")]
    pub methods: Vec<HttpMethod>,
    /// Non-public address ranges (loopback, private, link-local, unique-local...)
    /// that this rule's host may resolve to, e.g. `["10.96.0.0/12"]` for an
    /// in-cluster service. Without it such addresses are refused after DNS
    /// resolution; a rule whose host is an IP literal grants that address itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_cidrs: Vec<String>,
    /// Lets this rule's host resolve to any address, private and loopback ranges
    /// included. Off unless set: wildcard egress has to be asked for by name (and
    /// organisation policy can refuse it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_all_addresses: bool,
    /// Makes the host add `Idempotency-Key: <invocation id>-<n>` to this rule's
    /// requests (n: the request's 1-based place among all outgoing HTTP
    /// requests of the invocation), replacing any the agent set. An invocation
    /// re-run after a crash sends the same keys, so a server that honours the
    /// header applies each request once.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub idempotency_key: bool,
}

impl HttpRuleSpec {
    fn default_methods() -> Vec<HttpMethod> {
        vec![HttpMethod::Get]
    }
}

/// An HTTP method, spelled in upper case in the manifest (`GET`, `POST`, ...).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `PATCH`
    Patch,
    /// `DELETE`
    Delete,
    /// `OPTIONS`
    Options,
}

impl HttpMethod {
    /// The method as sent on the wire, e.g. `"GET"`.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Head => "HEAD",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Delete => "DELETE",
            HttpMethod::Options => "OPTIONS",
        }
    }
}

impl std::fmt::Display for HttpMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A host directory made visible to the agent at `guestPath`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MountSpec {
    /// Directory on the host; a relative path resolves against the manifest's
    /// directory on local runs. Must not contain `..`.
    pub host_path: PathBuf,
    /// Absolute path at which the agent sees the directory; unique among mounts.
    pub guest_path: String,
    /// Whether the agent is denied writes; `true` unless set to `false`, so a forgotten
    /// field fails closed.
    #[serde(default = "MountSpec::default_read_only")]
    pub read_only: bool,
}

impl MountSpec {
    fn default_read_only() -> bool {
        true
    }
}

/// One environment variable: a literal `value` or a `valueFrom` reference, not both.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EnvVar {
    /// Variable name: `[A-Za-z_][A-Za-z0-9_]*`, unique among the agent's variables.
    pub name: String,
    /// A literal value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Where to read the value from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<EnvVarSource>,
}

/// The source of an environment variable's value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EnvVarSource {
    /// A key of a Secret in the agent's namespace.
    pub secret_key_ref: SecretKeyRef,
}

/// One key of a Kubernetes Secret in the agent's namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// The Secret's name (a DNS-1123 subdomain).
    pub name: String,
    /// The key within the Secret (letters, digits, `-`, `_`, `.`).
    pub key: String,
}

/// Longest bucket name, bytes: every open bucket handle keeps its name, and
/// `maxResources` bounds only how many handles there are.
pub const MAX_BUCKET_NAME_BYTES: usize = 256;

/// Access to the host's key-value store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KeyValueSpec {
    /// Total bytes (keys plus values) the agent may store; stops it filling the store.
    pub max_bytes: Quantity,
    /// Names of the buckets the agent may open; unique.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buckets: Vec<String>,
}

/// Access to a large language model, called by the host on the agent's behalf so the
/// API key never enters the guest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LlmSpec {
    /// Which API dialect the endpoint speaks.
    pub provider: LlmProvider,
    /// The model the agent may use; requests for any other model are denied.
    pub model: String,
    /// Base URL of the API; the provider's public endpoint when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<UrlPrefix>,
    /// Secret holding the API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret_ref: Option<SecretKeyRef>,
    /// Cap on prompt plus completion tokens in one invocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens_per_invocation: Option<u64>,
    /// Cap on model calls in one invocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests_per_invocation: Option<u32>,
    /// Cap on tokens per minute across all invocations of the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u64>,
}

/// An LLM API dialect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LlmProvider {
    /// The `OpenAI` chat-completions API (and compatible servers).
    Openai,
    /// The Anthropic messages API.
    Anthropic,
}

/// One remote MCP server (streamable HTTP) and the tools on it the agent may call.
/// The host is the MCP client: it adds the credentials, enforces the budgets and
/// connects only to addresses this entry grants, like an HTTP rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.allowAllAddresses) && self.allowAllAddresses) || !has(self.allowedCidrs) || self.allowedCidrs.all(c, !c.endsWith('/0'))",
    "message": "allowedCidrs must not contain a /0 range (every address); set allowAllAddresses: true to mean that, or list narrower ranges"
}]))]
pub struct McpServerSpec {
    /// How the agent names the server (a DNS-1123 label, unique among the servers).
    pub name: String,
    /// The server's MCP endpoint, e.g. `https://tickets.example.com/mcp`.
    pub url: UrlPrefix,
    /// Names of the tools the agent may list and call; none when omitted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    /// A credential the host adds to every request to the server; the agent never sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<McpCredentials>,
    /// Non-public address ranges the server's host may resolve to (as for an HTTP rule).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_cidrs: Vec<String>,
    /// Lets the server's host resolve to any address, private and loopback included.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_all_addresses: bool,
    /// Tool calls per invocation; 10 when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_calls_per_invocation: Option<u32>,
    /// Bytes the server may send in one invocation (handshake, tool list and
    /// results together); 1Mi when omitted, at most 16Mi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_response_bytes_per_invocation: Option<Quantity>,
    /// How long one exchange with the server may take (also bounded by the
    /// invocation's timeout); 30s when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<KubeDuration>,
}

/// A credential read from a Secret and sent as a request header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct McpCredentials {
    /// The Secret key holding the credential.
    pub secret_key_ref: SecretKeyRef,
    /// The header it is sent in; `Authorization` when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// Written before the value with a space (`Bearer <token>`); `Bearer` when
    /// omitted, `""` to send the value alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
}
