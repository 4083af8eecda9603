//! The `mcp` capability (`spec.capabilities.mcp`): tools on remote MCP
//! servers, listed and called by the host on the agent's behalf through the
//! WIT interface `agent-host:agent/tools`. Per server the manifest grants the
//! tool names (others are invisible and refused unsent), a credential the
//! host adds (read from a mounted Secret; the guest never holds it), the
//! addresses the server may resolve to (as for an HTTP rule) and
//! per-invocation budgets of calls and response bytes. The exchange with the
//! server is in [`client`], the guest-facing calls in [`host`].

mod capability;
pub mod client;
pub mod host;

pub use capability::{Mcp, McpUsage};

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

use super::env::read_secret;
use super::http::address::AddressPolicy;
use super::ConfigureError;
use crate::manifest::McpServerSpec;

/// Tool calls per server and invocation when the manifest sets no budget.
pub const DEFAULT_MAX_CALLS: u32 = 10;
/// Response bytes per server and invocation when the manifest sets no budget.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 1 << 20;
/// How long one exchange may take when the manifest does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest arguments document an agent may send, bytes.
pub const MAX_ARGUMENT_BYTES: usize = 1 << 20;

/// The manifest's MCP grant, compiled once per agent.
#[derive(Debug)]
pub struct McpGrant {
    /// The granted servers, in manifest order.
    pub servers: Vec<Arc<Server>>,
    /// The credential values, redacted from what the guest is handed.
    secrets: Vec<String>,
}

/// One granted server.
pub struct Server {
    /// Its place in `spec.capabilities.mcp`.
    pub index: usize,
    /// The name the agent uses.
    pub name: String,
    /// The MCP endpoint.
    pub url: url::Url,
    host: url::Host<String>,
    port: u16,
    tls: bool,
    /// `Host` header: the host, and the port when not the scheme's default.
    authority: HeaderValue,
    path_and_query: String,
    addresses: AddressPolicy,
    /// Tools the agent may list and call.
    pub tools: Vec<String>,
    credential: Option<Credential>,
    /// Tool calls per invocation.
    pub max_calls: u32,
    /// Bytes the server may send per invocation.
    pub max_response_bytes: u64,
    /// Bound on one exchange.
    pub timeout: Duration,
    description: String,
}

/// The header the host adds; its value is a secret.
struct Credential {
    header: HeaderName,
    value: HeaderValue,
    secret: String,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .field("tools", &self.tools)
            .field(
                "credential",
                &self
                    .credential
                    .as_ref()
                    .map(|c| (c.header.as_str(), crate::redact::REDACTED)),
            )
            .finish_non_exhaustive()
    }
}

impl McpGrant {
    /// Compiles the manifest's servers (already validated); credentials are
    /// read from the mounted secrets now, so a missing one fails the load.
    pub fn configure(
        specs: &[McpServerSpec],
        secrets_dir: &Path,
    ) -> Result<Option<Self>, ConfigureError> {
        if specs.is_empty() {
            return Ok(None);
        }
        let servers: Vec<Arc<Server>> = specs
            .iter()
            .enumerate()
            .map(|(index, spec)| Server::configure(index, spec, secrets_dir).map(Arc::new))
            .collect::<Result<_, _>>()?;
        let secrets = servers
            .iter()
            .filter_map(|s| s.credential.as_ref().map(|c| c.secret.clone()))
            .collect();
        Ok(Some(Self { servers, secrets }))
    }

    /// The server the agent calls `name`.
    pub fn server(&self, name: &str) -> Option<(usize, &Arc<Server>)> {
        self.servers
            .iter()
            .enumerate()
            .find(|(_, s)| s.name == name)
    }

    /// The credential values, for redaction.
    pub fn secrets(&self) -> &[String] {
        &self.secrets
    }

    /// One line per server.
    pub fn describe(&self) -> Vec<String> {
        self.servers.iter().map(|s| s.description.clone()).collect()
    }
}

impl Server {
    fn configure(
        index: usize,
        spec: &McpServerSpec,
        secrets_dir: &Path,
    ) -> Result<Self, ConfigureError> {
        let field = format!("spec.capabilities.mcp[{index}]");
        let url = url::Url::parse(&spec.url.to_string())
            .map_err(|e| ConfigureError::new(format!("{field}.url"), e.to_string()))?;
        let host = url
            .host()
            .ok_or_else(|| ConfigureError::new(format!("{field}.url"), "names no host"))?
            .to_owned();
        let authority = match url.port() {
            Some(port) => format!("{}:{port}", spec.url.host()),
            None => spec.url.host().to_string(),
        };
        let authority = HeaderValue::from_str(&authority)
            .map_err(|e| ConfigureError::new(format!("{field}.url"), e.to_string()))?;
        let credential = spec
            .credentials
            .as_ref()
            .map(|c| {
                let at = format!("{field}.credentials");
                let secret = read_secret(secrets_dir, &c.secret_key_ref, format!("{at}.secretKeyRef"))?;
                let header = HeaderName::from_bytes(
                    c.header.as_deref().unwrap_or("authorization").as_bytes(),
                )
                .map_err(|e| ConfigureError::new(format!("{at}.header"), e.to_string()))?;
                let scheme = c.scheme.as_deref().unwrap_or("Bearer");
                let text = if scheme.is_empty() {
                    secret.clone()
                } else {
                    format!("{scheme} {secret}")
                };
                let mut value = HeaderValue::from_str(&text).map_err(|_| {
                    ConfigureError::new(
                        format!("{at}.secretKeyRef"),
                        format!(
                            "secret {}/{} is not a valid header value (printable ASCII on one line)",
                            c.secret_key_ref.name, c.secret_key_ref.key
                        ),
                    )
                })?;
                value.set_sensitive(true);
                Ok::<_, ConfigureError>(Credential {
                    header,
                    value,
                    secret,
                })
            })
            .transpose()?;
        let max_calls = spec.max_calls_per_invocation.unwrap_or(DEFAULT_MAX_CALLS);
        let max_response_bytes = spec
            .max_response_bytes_per_invocation
            .map_or(DEFAULT_MAX_RESPONSE_BYTES, |q| q.bytes());
        let timeout = spec.timeout.map_or(DEFAULT_TIMEOUT, |t| t.as_duration());
        let mut description = format!(
            "server `{}` at {}: tools [{}] ({max_calls} calls and {} of responses per invocation, {}s per exchange",
            spec.name,
            spec.url,
            spec.tools.join(", "),
            crate::manifest::Quantity::from_bytes(max_response_bytes),
            timeout.as_secs_f64()
        );
        if let Some(c) = &spec.credentials {
            description.push_str(&format!(
                ", credential from secret {}/{}",
                c.secret_key_ref.name, c.secret_key_ref.key
            ));
        }
        if !spec.allowed_cidrs.is_empty() {
            description.push_str(&format!(", addresses {}", spec.allowed_cidrs.join(", ")));
        }
        if spec.allow_all_addresses {
            description.push_str(", any address");
        }
        description.push(')');
        Ok(Self {
            index,
            name: spec.name.clone(),
            tls: url.scheme() == "https",
            port: spec.url.port(),
            path_and_query: url[url::Position::BeforePath..url::Position::AfterQuery].to_string(),
            url,
            host,
            authority,
            addresses: AddressPolicy::granted(
                spec.url.ip(),
                &spec.allowed_cidrs,
                spec.allow_all_addresses,
            ),
            tools: spec.tools.clone(),
            credential,
            max_calls,
            max_response_bytes,
            timeout,
            description,
        })
    }

    /// `spec.capabilities.mcp[i]`: the audit rule of this server's calls.
    pub fn field(&self) -> String {
        format!("spec.capabilities.mcp[{}]", self.index)
    }
}
