//! `wasi:http` outgoing requests: only to the URLs and methods declared in
//! `spec.capabilities.http`, at most `spec.limits.maxHttpRequests` per
//! invocation. A refused request fails in the guest with
//! `error-code.HTTP-request-denied` (or `destination-IP-prohibited` when the
//! name resolves only to addresses the rule does not grant) and never leaves
//! the host.
//!
//! The decision is made on the URL as a WHATWG parser reads it
//! ([`HttpGrant::check`]): scheme, host (lower-cased, IDNA and numeric IPv4
//! forms normalised, trailing dot removed), port (default filled in), then the
//! path against the rule's prefix on segment boundaries. A path a server could
//! read as another one (`\`, `%2F`/`%5C`/`%2E`, `..;`, or any raw form the
//! parser would rewrite) is refused, and the request line carries exactly the
//! checked path. The address is then checked after DNS resolution
//! ([`address`]) and that very address is connected to ([`client`]).
//! A rule with `idempotencyKey: true` gets the header of [`idempotency`].

pub mod address;
pub mod client;
pub mod idempotency;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use http::uri::Uri;
use http::HeaderName;
use wasmtime_wasi_http::{
    Error as HttpError, ForbiddenHeaderFilter, RequestOptions, WasiBody, WasiHttpHooks,
};

use self::address::{AddressPolicy, ResolveError};
use super::imports::Binding;
use super::tool_call::{Failure, Sent, ToolCall};
use super::{Capability, ConfigureCx, ConfigureError, HasCapability, Kind, PrepareCx};
use crate::audit::{CapabilityAudit, Decision};
use crate::config::HostConfig;
use crate::manifest::Limits;
use crate::manifest::{HttpMethod, HttpRuleSpec};

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
    addresses: AddressPolicy,
    /// The rule as written in the manifest, for logs and `check`.
    pub display: String,
    /// The rule's URL prefix: its `rule` label in the tool-call metrics.
    pub label: Arc<str>,
    /// [`Rule::display`] plus the addresses granted beyond public ones (status).
    pub description: String,
    /// Whether the host adds an `Idempotency-Key` ([`idempotency`]).
    pub idempotency_key: bool,
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
    /// The URL is ambiguous (userinfo, dot segments, unparsable): refused before matching.
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
    /// The rule adds an idempotency key and the invocation id cannot be one.
    #[error("the rule {rule} has idempotencyKey: true, but the invocation id {invocation:?} cannot be an Idempotency-Key header value (printable ASCII only); the request was not sent without its key")]
    IdempotencyKey {
        /// The rule, as written.
        rule: String,
        /// The invocation id, at most 200 characters of it.
        invocation: String,
    },
}

/// An allowed request: where it goes and which addresses it may reach.
#[derive(Clone, Debug)]
pub struct Target {
    /// Normalised host.
    pub host: url::Host<String>,
    /// Port, default filled in.
    pub port: u16,
    /// Whether the scheme is https.
    pub tls: bool,
    /// The matching rule's address policy.
    pub addresses: AddressPolicy,
    /// The matching rule, as written in the manifest.
    pub rule: String,
    /// The matching rule's metric label ([`Rule::label`]).
    pub label: Arc<str>,
    /// The request target to send: the path the rule matched, then the query.
    pub path_and_query: String,
    /// Whether the matching rule adds an `Idempotency-Key`.
    pub idempotency_key: bool,
}

impl HttpGrant {
    /// Compiles the manifest's rules (already validated by the manifest).
    pub fn configure(rules: &[HttpRuleSpec]) -> Self {
        let rules = rules
            .iter()
            .map(|r| Rule {
                scheme: r.url.scheme().to_string(),
                host: r.url.host().to_string(),
                port: r.url.port(),
                path_prefix: r.url.path_prefix().to_string(),
                methods: r.methods.iter().map(|m| to_method(*m)).collect(),
                addresses: AddressPolicy::granted(
                    r.url.ip(),
                    &r.allowed_cidrs,
                    r.allow_all_addresses,
                ),
                display: format!(
                    "{} {}",
                    r.methods
                        .iter()
                        .map(|m| m.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                    r.url
                ),
                label: r.url.to_string().into(),
                description: describe_rule(r),
                idempotency_key: r.idempotency_key,
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

    /// Decides one request on its URL alone.
    pub fn check(&self, method: &http::Method, uri: &Uri) -> Result<Target, Denial> {
        let raw = uri.to_string();
        let ambiguous = |reason| Denial::Ambiguous {
            url: raw.clone(),
            reason,
        };
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(ambiguous("userinfo is not allowed in request URLs"));
        }
        let path = match uri.path() {
            "" => "/",
            p => p,
        };
        if let Some(reason) = path_confusion(path) {
            return Err(ambiguous(reason));
        }
        let url = url::Url::parse(&raw).map_err(|_| ambiguous("not a valid absolute URL"))?;
        // The rule is matched on the parsed path and the raw one is sent: they
        // must be one path.
        if url.path() != path {
            return Err(ambiguous(
                "the path is not in normal form (a URL parser rewrites it); percent-encode characters outside RFC 3986 paths",
            ));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => url::Host::Domain(d.trim_end_matches('.').to_string()),
            Some(other) => other.to_owned(),
            None => return Err(ambiguous("no host")),
        };
        let host_str = match &host {
            url::Host::Ipv6(ip) => format!("[{ip}]"),
            other => other.to_string(),
        };
        let port = url
            .port_or_known_default()
            .ok_or_else(|| ambiguous("no port"))?;
        let rule = self
            .rules
            .iter()
            .find(|r| {
                r.scheme == url.scheme()
                    && r.host == host_str
                    && r.port == port
                    && path_within(path, &r.path_prefix)
                    && r.methods.contains(method)
            })
            .ok_or(Denial::NoRule {
                method: method.to_string(),
                url: raw.clone(),
            })?;
        Ok(Target {
            host,
            port,
            tls: url.scheme() == "https",
            addresses: rule.addresses.clone(),
            rule: rule.display.clone(),
            label: rule.label.clone(),
            path_and_query: match uri.query() {
                Some(q) => format!("{path}?{q}"),
                None => path.to_string(),
            },
            idempotency_key: rule.idempotency_key,
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

/// Why a server could read `path` as another path than the one checked, if it
/// could: common servers turn `\` and `%2F`/`%5C` into separators, decode
/// `%2E` into dot segments, and drop `;params` (`..;` is `..` to Tomcat) before
/// resolving `.`/`..`.
fn path_confusion(path: &str) -> Option<&'static str> {
    let lower = path.to_ascii_lowercase();
    if path.contains('\\') {
        Some("backslashes are not allowed in request paths (servers read them as /)")
    } else if lower.contains("%2f") || lower.contains("%5c") {
        Some("encoded slashes (%2F, %5C) are not allowed in request paths")
    } else if lower.contains("%2e") {
        Some("encoded dots (%2E) are not allowed in request paths")
    } else if path.split('/').any(|seg| {
        let name = seg.split(';').next().unwrap_or_default();
        name == "." || name == ".."
    }) {
        Some("dot segments (., .., ..;) are not allowed in request paths")
    } else {
        None
    }
}

/// Headers a guest may not set: wasmtime's defaults (`Host`, `Connection`,
/// `Transfer-Encoding`, `Upgrade`, proxy credentials...) plus every `Proxy-*`
/// header and the remaining hop-by-hop ones, which would let a guest steer an
/// intermediary instead of talking to the granted server.
static FORBIDDEN_HEADERS: LazyLock<ForbiddenHeaderFilter> = LazyLock::new(|| {
    Arc::new(|name: &HeaderName| {
        wasmtime_wasi_http::DEFAULT_FORBIDDEN_HEADERS.contains(name)
            || name.as_str().starts_with("proxy-")
            || matches!(name.as_str(), "te" | "trailer")
    })
});

/// Requests sent and refused during one invocation. Shared with the futures
/// that resolve and send, which outlive the hook call.
#[derive(Debug, Default)]
pub struct HttpCounters {
    sent: AtomicU32,
    denied: AtomicU32,
    /// Each request's decision and outcome, for the tool-call metrics.
    calls: Mutex<Vec<ToolCall>>,
}

impl HttpCounters {
    /// Requests that went out.
    pub fn sent(&self) -> u32 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Requests refused (by rule, budget or address).
    pub fn denied(&self) -> u32 {
        self.denied.load(Ordering::Relaxed)
    }

    /// The calls recorded so far, leaving none behind.
    pub fn take_calls(&self) -> Vec<ToolCall> {
        std::mem::take(&mut *self.calls.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn push(&self, call: ToolCall) {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(call);
    }

    fn refused(&self, rule: Option<Arc<str>>) {
        self.denied.fetch_add(1, Ordering::Relaxed);
        self.push(ToolCall::denied(Kind::Http, rule));
    }
}

/// Per-invocation HTTP policy: the agent's grant plus the request budget.
/// Installed as the [`WasiHttpHooks`] of the invocation's store.
pub struct HttpPolicy {
    grant: Arc<HttpGrant>,
    agent: Arc<str>,
    invocation: Arc<str>,
    remaining: u32,
    limit: u32,
    /// Numbers every request, for idempotency keys.
    sequence: idempotency::Sequence,
    max_response_bytes: u64,
    counters: Arc<HttpCounters>,
    audit: CapabilityAudit,
}

impl HttpPolicy {
    /// Phase *prepare*.
    pub fn new(
        grant: Arc<HttpGrant>,
        agent: Arc<str>,
        invocation: Arc<str>,
        max_requests: u32,
        max_response_bytes: u64,
        audit: CapabilityAudit,
    ) -> Self {
        Self {
            grant,
            agent,
            invocation,
            remaining: max_requests,
            limit: max_requests,
            sequence: idempotency::Sequence::default(),
            max_response_bytes,
            counters: Arc::default(),
            audit,
        }
    }

    /// This invocation's counters.
    pub fn counters(&self) -> &HttpCounters {
        &self.counters
    }

    /// The allowed target, or why not, the error the guest sees and the
    /// rule that matched (`None` when none did).
    fn decide(
        &mut self,
        method: &http::Method,
        uri: &Uri,
    ) -> Result<Target, (Denial, HttpError, Option<Arc<str>>)> {
        let target = self
            .grant
            .check(method, uri)
            .map_err(|d| (d, HttpError::HttpRequestDenied, None))?;
        if self.remaining == 0 {
            return Err((
                Denial::Budget { limit: self.limit },
                HttpError::ConnectionLimitReached,
                Some(target.label),
            ));
        }
        self.remaining -= 1;
        Ok(target)
    }
}

type SendFuture =
    Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<client::Sent>> + Send>;

impl WasiHttpHooks for HttpPolicy {
    fn forbidden_header_filter(&mut self) -> ForbiddenHeaderFilter {
        FORBIDDEN_HEADERS.clone()
    }

    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> SendFuture {
        // Numbered first, whatever is decided, so a re-run numbers alike.
        let n = self.sequence.advance();
        // Past the denial budget the invocation is being ended: nothing more goes out.
        if self.audit.denial_limit().is_some() {
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        let (method, uri) = (request.method().clone(), request.uri().clone());
        let decision = self.decide(&method, &uri).and_then(|target| {
            if !target.idempotency_key {
                return Ok(target);
            }
            match idempotency::key(&self.invocation, n) {
                Some(key) => {
                    idempotency::set(&mut request, key);
                    Ok(target)
                }
                None => Err((
                    Denial::IdempotencyKey {
                        rule: target.rule,
                        invocation: self.invocation.chars().take(200).collect(),
                    },
                    HttpError::HttpRequestDenied,
                    Some(target.label),
                )),
            }
        });
        let (agent, invocation) = (self.agent.clone(), self.invocation.clone());
        let counters = self.counters.clone();
        let audit = self.audit.clone();
        let target = match decision {
            Err((denial, code, rule)) => {
                counters.refused(rule);
                deny(&audit, &method, &uri, &denial.to_string());
                return Box::new(async move { Err(code) });
            }
            Ok(target) => target,
        };
        let options = clamp(options);
        let max_body = self.max_response_bytes;
        // The URL is guest text: redacted and bounded before any span or line carries it.
        let shown = audit.clean(&uri.to_string());
        let span = tracing::info_span!("http.request", %method, url = %shown, rule = %target.rule);
        Box::new(tracing::Instrument::instrument(
            async move {
                let started = Instant::now();
                let sent = |failure| Sent {
                    latency: started.elapsed(),
                    failure,
                    retries: 0,
                };
                let addr =
                    match address::resolve(&target.host, target.port, &target.addresses).await {
                        Ok(addr) => addr,
                        Err(ResolveError::Prohibited(why)) => {
                            counters.refused(Some(target.label.clone()));
                            deny(&audit, &method, &uri, &why);
                            return Err(HttpError::DestinationIpProhibited);
                        }
                        Err(ResolveError::Dns(why)) => {
                            let call = sent(Some(Failure::Dns));
                            counters.push(ToolCall::sent(Kind::Http, target.label.clone(), call));
                            return Err(HttpError::DnsError {
                                rcode: Some(why),
                                info_code: None,
                            });
                        }
                    };
                counters.sent.fetch_add(1, Ordering::Relaxed);
                let url = uri.to_string();
                audit.record(
                    Kind::Http,
                    method.as_str(),
                    &url,
                    Decision::Allow,
                    Some(&target.rule),
                    None,
                );
                tracing::debug!(agent = &*agent, invocation = &*invocation, %method, url = %shown, %addr, "http request allowed");
                let dest = client::Destination {
                    addr,
                    host: &target.host,
                    tls: target.tls,
                    path_and_query: &target.path_and_query,
                };
                let response = client::send(request, dest, options, max_body).await;
                let failure = match &response {
                    Ok((r, _)) if r.status().is_server_error() => Some(Failure::ServerError),
                    Ok(_) => None,
                    Err(e) => Some(Failure::of_http(e)),
                };
                let call = sent(failure);
                counters.push(ToolCall::sent(Kind::Http, target.label.clone(), call));
                response
            },
            span,
        ))
    }
}

/// Audits the refusal and logs it (both redacted and bounded, the WARN lines
/// rate-limited) against the invocation's denial budget; past the budget the
/// runtime ends the invocation ([`CapabilityAudit::denial_limit_reached`]).
fn deny(audit: &CapabilityAudit, method: &http::Method, uri: &Uri, reason: &str) {
    let _ = audit.deny(Kind::Http, method.as_str(), &uri.to_string(), reason);
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

/// The `http` capability: outgoing requests to the declared URLs only.
pub struct Http;

/// One invocation's HTTP state: wasmtime-wasi-http's context and the policy
/// installed as its hooks.
pub struct HttpState {
    ctx: wasmtime_wasi_http::WasiHttpCtx,
    policy: HttpPolicy,
}

/// What one invocation did over HTTP.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpUsage {
    /// Requests sent.
    pub http_requests: u32,
    /// Requests refused.
    pub http_denied: u32,
}

impl Capability for Http {
    const KIND: Kind = Kind::Http;
    const INTERFACES: &'static [&'static str] = &["wasi:http/types", "wasi:http/outgoing-handler"];
    type Host = ();
    type Grant = Arc<HttpGrant>;
    type State = HttpState;
    type Usage = HttpUsage;

    fn host(_: &HostConfig) {}

    fn link<T: HasCapability<Self>>(
        l: &mut wasmtime::component::Linker<T>,
    ) -> wasmtime::Result<()> {
        use wasmtime_wasi_http::p2::bindings::http;
        use wasmtime_wasi_http::{WasiHttp, WasiHttpCtxView};
        fn view<T: HasCapability<Http>>(s: &mut T) -> WasiHttpCtxView<'_> {
            let v = s.capability();
            WasiHttpCtxView {
                ctx: &mut v.state.ctx,
                table: &mut v.core.count(Kind::Http).table,
                hooks: &mut v.state.policy,
            }
        }
        let options = wasmtime_wasi_http::p2::bindings::LinkOptions::default();
        http::outgoing_handler::add_to_linker::<T, WasiHttp>(l, view)?;
        http::types::add_to_linker::<T, WasiHttp>(l, &options.into(), view)
    }

    fn configure(_: &(), cx: &ConfigureCx<'_>) -> Result<Arc<HttpGrant>, ConfigureError> {
        Ok(Arc::new(HttpGrant::configure(
            &cx.agent.spec.capabilities.http,
        )))
    }

    fn prepare(_: &(), grant: &Arc<HttpGrant>, cx: &mut PrepareCx<'_>) -> HttpState {
        HttpState {
            ctx: wasmtime_wasi_http::WasiHttpCtx::new(),
            policy: HttpPolicy::new(
                grant.clone(),
                cx.agent.clone(),
                cx.invocation.clone(),
                cx.limits.max_http_requests,
                cx.limits.max_http_response_bytes.bytes(),
                cx.audit.clone(),
            ),
        }
    }

    async fn finish(
        state: HttpState,
        usage: &mut HttpUsage,
        tool_calls: &mut Vec<ToolCall>,
    ) -> Option<super::CommitIntent> {
        let counters = state.policy.counters();
        usage.http_requests = counters.sent();
        usage.http_denied = counters.denied();
        tool_calls.extend(counters.take_calls());
        None
    }

    fn bind(_: &str, grant: &Arc<HttpGrant>, limits: &Limits) -> Binding {
        if grant.is_empty() {
            return Binding::denied(
                Kind::Http,
                "outgoing HTTP is not granted; declare the URLs the agent may call in spec.capabilities.http",
            );
        }
        let rules: Vec<&str> = grant.rules().iter().map(|r| r.display.as_str()).collect();
        Binding::granted(
            Kind::Http,
            format!(
                "{} (max {} requests per invocation)",
                rules.join("; "),
                limits.max_http_requests
            ),
        )
    }

    fn describe(grant: &Arc<HttpGrant>) -> Vec<String> {
        grant
            .rules()
            .iter()
            .map(|r| r.description.clone())
            .collect()
    }

    fn denials(usage: &HttpUsage) -> u64 {
        u64::from(usage.http_denied)
    }

    fn report(_: &Arc<HttpGrant>, usage: &HttpUsage, limits: &Limits) -> Option<String> {
        Some(format!(
            "{} sent, {} denied (max {})",
            usage.http_requests, usage.http_denied, limits.max_http_requests
        ))
    }
}

fn describe_rule(r: &HttpRuleSpec) -> String {
    let methods: Vec<&str> = r.methods.iter().map(|m| m.as_str()).collect();
    let mut line = format!("{} {}", methods.join(","), r.url);
    if !r.allowed_cidrs.is_empty() {
        line.push_str(&format!(" (addresses {})", r.allowed_cidrs.join(", ")));
    }
    if r.allow_all_addresses {
        line.push_str(" (any address)");
    }
    if r.idempotency_key {
        line.push_str(" (Idempotency-Key added)");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(yaml_rules: &str) -> HttpGrant {
        let rules: Vec<HttpRuleSpec> = serde_norway::from_str(yaml_rules).unwrap();
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
    fn paths_a_server_could_read_as_another_path_are_refused() {
        let g = grant(r#"[{url: "http://allowed.com/api/", methods: [GET]}]"#);
        for path in [
            r"/admin\..\api/x",
            r"/api\x",
            "/api/x/..;/admin",
            "/api/..;/admin",
            "/api/.;x/y",
            "/api/%2e%2E/admin",
            "/api/%2e/x",
            "/api/x%2fy",
            "/api/x%2F..%2Fadmin",
            "/api/x%5c..%5Cadmin",
            "/api/x%5C",
            // Not encoded: a URL parser would percent-encode the braces.
            "/api/{x}",
        ] {
            let uri: Uri = format!("http://allowed.com{path}").parse().unwrap();
            assert!(
                matches!(
                    g.check(&http::Method::GET, &uri),
                    Err(Denial::Ambiguous { .. })
                ),
                "{path} was allowed"
            );
        }
    }

    #[test]
    fn the_request_target_sent_is_the_path_that_was_checked() {
        let g = grant(r#"[{url: "http://allowed.com/api/", methods: [GET]}]"#);
        let uri: Uri = "http://allowed.com/api/x;v=1/y%20z?q=%2F..%5C"
            .parse()
            .unwrap();
        let target = g.check(&http::Method::GET, &uri).unwrap();
        assert_eq!(target.path_and_query, "/api/x;v=1/y%20z?q=%2F..%5C");
        let bare: Uri = "http://allowed.com".parse().unwrap();
        let root = grant(r#"[{url: "http://allowed.com/", methods: [GET]}]"#);
        assert_eq!(
            root.check(&http::Method::GET, &bare)
                .unwrap()
                .path_and_query,
            "/"
        );
    }

    #[test]
    fn numeric_and_mixed_case_forms_are_normalised_before_matching() {
        let g = grant(r#"[{url: "http://127.0.0.1:8080/", methods: [GET]}]"#);
        for url in [
            "http://2130706433:8080/x",
            "http://0x7f000001:8080/x",
            "http://0177.0.0.1:8080/x",
            "HTTP://127.0.0.1:8080/x",
        ] {
            assert_eq!(check(&g, "GET", url), Ok(()), "{url} is 127.0.0.1");
        }
        let named = grant(r#"[{url: "http://example.com/", methods: [GET]}]"#);
        assert!(check(&named, "GET", "http://0x7f000001/").is_err());
    }

    #[test]
    fn request_budget_denies_past_the_limit() {
        let g = std::sync::Arc::new(grant(r#"[{url: "http://a.test/", methods: [GET]}]"#));
        let mut p = HttpPolicy::new(
            g,
            "a".into(),
            "i".into(),
            1,
            1024,
            CapabilityAudit::disabled(),
        );
        let uri: Uri = "http://a.test/x".parse().unwrap();
        assert!(p.decide(&http::Method::GET, &uri).is_ok());
        assert!(matches!(
            p.decide(&http::Method::GET, &uri),
            Err((Denial::Budget { limit: 1 }, _, Some(_)))
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
