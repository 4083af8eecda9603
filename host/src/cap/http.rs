//! `wasi:http` outgoing requests: only to the URLs and methods declared in
//! `spec.capabilities.http`, at most `spec.limits.maxHttpRequests` per
//! invocation. A refused request fails in the guest with
//! `error-code.HTTP-request-denied` and never leaves the host.
//!
//! The decision is made on the parsed request URI, in [`HttpGrant::check`]:
//! scheme, host (lower-cased, trailing dot removed), port (default filled in),
//! then the path against the rule's prefix on segment boundaries.

use std::time::Duration;

use http::uri::{Scheme, Uri};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use super::Capability;
use crate::manifest::{HttpMethod, HttpRule};

/// Connect timeout applied when the guest sets none, and the most it may set:
/// a guest cannot hold a host socket open for minutes.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time to the response's first byte, default and ceiling.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);
/// Time between response body chunks, default and ceiling.
pub const BETWEEN_BYTES_TIMEOUT: Duration = Duration::from_secs(30);

/// One compiled rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    scheme: String,
    host: String,
    port: u16,
    path_prefix: String,
    methods: Vec<http::Method>,
    /// The rule as written in the manifest, for logs and `check`.
    pub display: String,
}

/// The outgoing-HTTP grant of one agent.
#[derive(Clone, Debug, Default)]
pub struct HttpGrant {
    rules: Vec<Rule>,
}

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// No rule allows this scheme, host, port, path and method.
    #[error("no rule in spec.capabilities.http allows {method} {url}")]
    NoRule {
        /// Request method.
        method: String,
        /// Request URL.
        url: String,
    },
    /// The URL is ambiguous (userinfo, dot segments): refused before matching.
    #[error("{url}: {reason}")]
    Ambiguous {
        /// Request URL.
        url: String,
        /// What is ambiguous about it.
        reason: &'static str,
    },
    /// The invocation used up `spec.limits.maxHttpRequests`.
    #[error("request budget of {limit} per invocation (spec.limits.maxHttpRequests) exhausted")]
    Budget {
        /// The limit.
        limit: u32,
    },
}

impl HttpGrant {
    /// Compiles the manifest's rules (already validated by the manifest).
    pub fn configure(rules: &[HttpRule]) -> Self {
        let rules = rules
            .iter()
            .map(|r| Rule {
                scheme: r.url.scheme().to_string(),
                host: r.url.host().to_string(),
                port: r.url.port(),
                path_prefix: r.url.path_prefix().to_string(),
                methods: r.methods.iter().map(|m| to_method(*m)).collect(),
                display: format!(
                    "{} {}",
                    r.methods
                        .iter()
                        .map(|m| m.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                    r.url
                ),
            })
            .collect();
        Self { rules }
    }

    /// The compiled rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// True when no outgoing request can ever be allowed.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Decides one request; returns the rule that allows it.
    pub fn check(&self, method: &http::Method, uri: &Uri) -> Result<&Rule, Denial> {
        let url = uri.to_string();
        let authority = uri.authority().ok_or(Denial::Ambiguous {
            url: url.clone(),
            reason: "no host",
        })?;
        if authority.as_str().contains('@') {
            return Err(Denial::Ambiguous {
                url,
                reason: "userinfo is not allowed in request URLs",
            });
        }
        let scheme = uri
            .scheme()
            .map(Scheme::as_str)
            .unwrap_or("https")
            .to_ascii_lowercase();
        let host = authority.host().trim_end_matches('.').to_ascii_lowercase();
        let port = match authority.port_u16() {
            Some(p) => p,
            None if scheme == "http" => 80,
            None => 443,
        };
        let path = uri.path();
        if has_dot_segment(path) {
            return Err(Denial::Ambiguous {
                url,
                reason: "dot segments (. or ..) are not allowed in request paths",
            });
        }
        self.rules
            .iter()
            .find(|r| {
                r.scheme == scheme
                    && r.host == host
                    && r.port == port
                    && path_within(path, &r.path_prefix)
                    && r.methods.contains(method)
            })
            .ok_or(Denial::NoRule {
                method: method.to_string(),
                url,
            })
    }
}

fn to_method(m: HttpMethod) -> http::Method {
    http::Method::from_bytes(m.as_str().as_bytes())
        .expect("manifest methods are valid HTTP methods")
}

/// `path` is `prefix` or below it on a segment boundary: `/api/issues` allows
/// `/api/issues` and `/api/issues/7`, not `/api/issues-admin`.
fn path_within(path: &str, prefix: &str) -> bool {
    let path = if path.is_empty() { "/" } else { path };
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || prefix.ends_with('/') || rest.starts_with('/'),
        None => false,
    }
}

/// `.`/`..` segments, literal or percent-encoded, which servers normalise away
/// after our prefix check.
fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|seg| {
        let seg = seg.to_ascii_lowercase().replace("%2e", ".");
        seg == "." || seg == ".."
    })
}

/// Per-invocation HTTP policy: the agent's grant plus the request budget.
/// Installed as the [`WasiHttpHooks`] of the invocation's store.
pub struct HttpPolicy {
    grant: std::sync::Arc<HttpGrant>,
    agent: std::sync::Arc<str>,
    invocation: std::sync::Arc<str>,
    remaining: u32,
    limit: u32,
    /// Requests allowed and sent.
    pub sent: u32,
    /// Requests refused.
    pub denied: u32,
}

impl HttpPolicy {
    /// Phase *prepare*.
    pub fn new(
        grant: std::sync::Arc<HttpGrant>,
        agent: std::sync::Arc<str>,
        invocation: std::sync::Arc<str>,
        max_requests: u32,
    ) -> Self {
        Self {
            grant,
            agent,
            invocation,
            remaining: max_requests,
            limit: max_requests,
            sent: 0,
            denied: 0,
        }
    }

    fn decide(&mut self, method: &http::Method, uri: &Uri) -> Result<(), (Denial, HttpError)> {
        if let Err(denial) = self.grant.check(method, uri) {
            return Err((denial, HttpError::HttpRequestDenied));
        }
        if self.remaining == 0 {
            return Err((
                Denial::Budget { limit: self.limit },
                HttpError::ConnectionLimitReached,
            ));
        }
        self.remaining -= 1;
        Ok(())
    }
}

type SendFuture = Box<
    dyn std::future::Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<WasiBody>,
                Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for HttpPolicy {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> SendFuture {
        let (method, uri) = (request.method().clone(), request.uri().clone());
        let decision = self.decide(&method, &uri);
        let (agent, invocation) = (&*self.agent, &*self.invocation);
        match decision {
            Err((denial, code)) => {
                self.denied += 1;
                tracing::warn!(
                    target: "agent_host::deny", agent, invocation, capability = Capability::Http.as_str(),
                    method = %method, url = %uri, reason = %denial, "http request denied"
                );
                Box::new(async move { Err(code) })
            }
            Ok(()) => {
                self.sent += 1;
                tracing::debug!(agent, invocation, method = %method, url = %uri, "http request allowed");
                let options = clamp(options);
                // Delegate the wire work; the policy decision is already made.
                let default = wasmtime_wasi_http::default_hooks();
                WasiHttpHooks::send_request(default, request, Some(options), fut)
            }
        }
    }
}

fn clamp(options: Option<RequestOptions>) -> RequestOptions {
    let o = options.unwrap_or_default();
    let pick = |asked: Option<Duration>, ceiling: Duration| {
        Some(asked.map_or(ceiling, |d| d.min(ceiling)))
    };
    RequestOptions {
        connect_timeout: pick(o.connect_timeout, CONNECT_TIMEOUT),
        first_byte_timeout: pick(o.first_byte_timeout, FIRST_BYTE_TIMEOUT),
        between_bytes_timeout: pick(o.between_bytes_timeout, BETWEEN_BYTES_TIMEOUT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(yaml_rules: &str) -> HttpGrant {
        let rules: Vec<HttpRule> = serde_norway::from_str(yaml_rules).unwrap();
        HttpGrant::configure(&rules)
    }

    fn check(g: &HttpGrant, method: &str, url: &str) -> Result<(), Denial> {
        g.check(
            &http::Method::from_bytes(method.as_bytes()).unwrap(),
            &url.parse().unwrap(),
        )
        .map(|_| ())
    }

    #[test]
    fn allows_declared_url_method_and_subpaths_only() {
        let g = grant(r#"[{url: "http://127.0.0.1:8080/api/issues", methods: [POST]}]"#);
        assert_eq!(
            check(&g, "POST", "http://127.0.0.1:8080/api/issues"),
            Ok(())
        );
        assert_eq!(
            check(&g, "POST", "http://127.0.0.1:8080/api/issues/7?x=1"),
            Ok(())
        );
        for (m, url) in [
            ("GET", "http://127.0.0.1:8080/api/issues"),
            ("POST", "http://127.0.0.1:8080/api/issues-admin"),
            ("POST", "http://127.0.0.1:8081/api/issues"),
            ("POST", "https://127.0.0.1:8080/api/issues"),
            ("POST", "http://localhost:8080/api/issues"),
            ("POST", "http://127.0.0.1:8080/api"),
        ] {
            assert!(
                matches!(check(&g, m, url), Err(Denial::NoRule { .. })),
                "{m} {url}"
            );
        }
    }

    #[test]
    fn default_ports_case_and_trailing_dot_do_not_change_the_host() {
        let g = grant(r#"[{url: "https://Tickets.Example.com/api/", methods: [GET]}]"#);
        assert_eq!(
            check(&g, "GET", "https://tickets.example.com:443/api/x"),
            Ok(())
        );
        assert_eq!(
            check(&g, "GET", "https://TICKETS.example.com./api/x"),
            Ok(())
        );
        assert!(check(&g, "GET", "https://tickets.example.com:8443/api/x").is_err());
    }

    #[test]
    fn userinfo_and_dot_segments_are_refused() {
        let g = grant(r#"[{url: "http://allowed.com/api/", methods: [GET]}]"#);
        assert!(matches!(
            check(&g, "GET", "http://allowed.com@evil.com/api/"),
            Err(Denial::Ambiguous { .. })
        ));
        assert!(matches!(
            check(&g, "GET", "http://allowed.com/api/../admin"),
            Err(Denial::Ambiguous { .. })
        ));
        assert!(matches!(
            check(&g, "GET", "http://allowed.com/api/%2E%2e/admin"),
            Err(Denial::Ambiguous { .. })
        ));
    }

    #[test]
    fn request_budget_denies_past_the_limit() {
        let g = std::sync::Arc::new(grant(r#"[{url: "http://a.test/", methods: [GET]}]"#));
        let mut p = HttpPolicy::new(g, "a".into(), "i".into(), 1);
        let uri: Uri = "http://a.test/x".parse().unwrap();
        assert!(p.decide(&http::Method::GET, &uri).is_ok());
        assert!(matches!(
            p.decide(&http::Method::GET, &uri),
            Err((Denial::Budget { limit: 1 }, _))
        ));
    }

    #[test]
    fn guest_timeouts_are_clamped_to_the_ceilings() {
        let o = clamp(Some(RequestOptions {
            connect_timeout: Some(Duration::from_secs(600)),
            ..Default::default()
        }));
        assert_eq!(o.connect_timeout, Some(CONNECT_TIMEOUT));
        assert_eq!(o.first_byte_timeout, Some(FIRST_BYTE_TIMEOUT));
    }
}
