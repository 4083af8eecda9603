//! Calls that leave the host (outgoing HTTP, model calls) as the metrics see
//! them: the grant rule that decided each, how long it took, how it failed
//! and how often it was retried. Every label value comes from the manifest or
//! from the fixed sets here, never from the guest, so label sets stay bounded.
//! Clocks, random and the other local calls are not recorded: the
//! per-invocation path of an agent that makes no such call stays as it was.

use std::sync::Arc;
use std::time::Duration;

use super::Kind;

/// `rule` label of a refused call that matched no rule of the manifest.
pub const NO_RULE: &str = "none";

/// One call a guest asked the host to make on its behalf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolCall {
    /// `http` or `llm`.
    pub capability: Kind,
    /// The manifest rule that decided the call (HTTP: the rule's URL prefix;
    /// model: `provider model`); `None` when it was refused matching no rule.
    pub rule: Option<Arc<str>>,
    /// What happened once allowed; `None` when policy refused it (nothing left the host).
    pub sent: Option<Sent>,
}

/// An allowed call: its latency and outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sent {
    /// From the decision to the answer (HTTP: response headers; model: the
    /// parsed completion, retries and their backoff included).
    pub latency: Duration,
    /// Why it failed, if it did.
    pub failure: Option<Failure>,
    /// Attempts beyond the first (model calls; HTTP requests are never retried by the host).
    pub retries: u32,
}

/// How an allowed call failed: a closed set, the `kind` metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The name did not resolve.
    Dns,
    /// No connection (refused, reset, unreachable).
    Connect,
    /// A connect, read or response timeout.
    Timeout,
    /// The TLS handshake or certificate failed.
    Tls,
    /// The peer answered with a 5xx status.
    ServerError,
    /// The peer broke the protocol or exceeded a size limit.
    Protocol,
    /// The host refused to send the model request (too large, bad endpoint).
    InvalidRequest,
    /// The model provider failed, refused or never answered successfully.
    Upstream,
}

impl Failure {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Dns => "dns",
            Failure::Connect => "connect",
            Failure::Timeout => "timeout",
            Failure::Tls => "tls",
            Failure::ServerError => "server_error",
            Failure::Protocol => "protocol",
            Failure::InvalidRequest => "invalid_request",
            Failure::Upstream => "upstream",
        }
    }

    /// The kind of an outgoing-HTTP error.
    pub fn of_http(e: &wasmtime_wasi_http::Error) -> Self {
        use wasmtime_wasi_http::Error as E;
        match e {
            E::DnsTimeout | E::DnsError { .. } | E::DestinationNotFound => Failure::Dns,
            E::ConnectionTimeout
            | E::ConnectionReadTimeout
            | E::ConnectionWriteTimeout
            | E::HttpResponseTimeout => Failure::Timeout,
            E::Connect(_)
            | E::ConnectionRefused
            | E::ConnectionTerminated
            | E::DestinationUnavailable
            | E::DestinationIpUnroutable => Failure::Connect,
            E::Tls(_)
            | E::TlsProtocolError
            | E::TlsCertificateError
            | E::TlsAlertReceived { .. } => Failure::Tls,
            _ => Failure::Protocol,
        }
    }
}

impl ToolCall {
    /// A call policy refused before anything left the host.
    pub fn denied(capability: Kind, rule: Option<Arc<str>>) -> Self {
        Self {
            capability,
            rule,
            sent: None,
        }
    }

    /// A call the rule `rule` allowed, and what came of it.
    pub fn sent(capability: Kind, rule: Arc<str>, sent: Sent) -> Self {
        Self {
            capability,
            rule: Some(rule),
            sent: Some(sent),
        }
    }

    /// The `rule` label.
    pub fn rule_label(&self) -> &str {
        self.rule.as_deref().unwrap_or(NO_RULE)
    }
}
