//! Serve mode: the host as a long-running HTTP service (`agent-host serve`).
//!
//! * `POST /v1/agents/{agent}/invocations[?async=true]` runs a task;
//!   `GET /v1/invocations/{id}` returns an invocation's state and result.
//! * Admission is per agent: `spec.limits.maxConcurrency` run, `spec.limits.maxQueue`
//!   wait, the rest get 429 with `Retry-After`. Bodies are read up to
//!   `spec.limits.maxInputBytes`. Remembered results and idempotency keys are
//!   bounded in count and time ([`store`]). So the host never holds more work
//!   than its manifests allow.
//! * With a state store ([`ServeConfig::durable`]), async and keyed
//!   invocations are durable (module `durable`): recorded before they are
//!   acknowledged, pulled by any replica with a free slot, answered by any
//!   replica, cancelled with `DELETE /v1/invocations/{id}`.
//! * Every invocation runs in its own task, so a client that disconnects does
//!   not cancel it half-way; on SIGTERM/SIGINT the server drains ([`Server::run`]).

mod api;
pub mod auth;
mod durable;
mod mcp;
pub mod store;
pub mod tls;

pub use mcp::{
    McpConfig, McpTools, DEFAULT_ALLOWED_HOSTS, MAX_MCP_REQUEST_BYTES, PROTOCOL_VERSIONS,
};

pub use durable::{DurableConfig, MAX_QUEUE_BYTES};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::serve::ListenerExt;
use tokio::sync::Semaphore;

use prometheus_client::metrics::gauge::Gauge;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::audit::{AuditLog, Event};
use crate::metrics::Metrics;
use crate::runtime::PreparedAgent;
use store::{Store, StoreLimits};

/// How the server runs (operator settings, apart from any manifest).
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// How long in-flight invocations may run after SIGTERM before they are cancelled.
    pub shutdown_grace: Duration,
    /// Remembered results and idempotency keys.
    pub store: StoreLimits,
    /// Request bodies the server may hold at once, in bytes, across all
    /// requests: past it, requests get 503 before their body is read.
    pub max_buffered_input: u64,
    /// Longest a client may take to send a request body.
    pub body_timeout: Duration,
    /// The durable state store: async and keyed invocations live there
    /// (`None`: in this process's memory only, as embedders and tests use it).
    pub durable: Option<DurableConfig>,
    /// Caller authentication (`None`: every caller is anonymous, for local runs).
    pub auth: Option<Arc<auth::Authenticator>>,
    /// Terminate TLS with this certificate and key (reloaded when they change).
    pub tls: Option<tls::TlsFiles>,
    /// The MCP endpoint (`/mcp`).
    pub mcp: McpConfig,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            shutdown_grace: Duration::from_secs(25),
            store: StoreLimits {
                result_ttl: Duration::from_secs(3600),
                max_results: 10_000,
                max_result_bytes: 128 << 20,
                idempotency_ttl: Duration::from_secs(24 * 3600),
                max_keys: 100_000,
            },
            max_buffered_input: 256 << 20,
            body_timeout: Duration::from_secs(30),
            durable: None,
            auth: None,
            tls: None,
            mcp: McpConfig::default(),
        }
    }
}

/// One hosted agent name: the agent currently serving it (replaced when its
/// spec changes, absent while it is unavailable) and its admission state,
/// which outlives replacements.
pub(crate) struct Hosted {
    pub(crate) name: String,
    current: RwLock<Option<Arc<PreparedAgent>>>,
    /// `maxConcurrency` permits of the current spec.
    pub(crate) permits: Arc<Semaphore>,
    max_concurrency: AtomicU32,
    /// Invocations waiting for a slot.
    pub(crate) queued: AtomicU32,
    pub(crate) queued_gauge: Gauge,
    pub(crate) in_flight_gauge: Gauge,
    /// Outcomes and denials since the last [`AgentHandle::take_activity`].
    activity: Mutex<Activity>,
}

/// What invocations of one agent did, for aggregated reporting (Kubernetes events).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Activity {
    /// Invocations that breached a budget or trapped, by outcome code.
    pub breaches: BTreeMap<String, u64>,
    /// Capability denials, by capability.
    pub denials: BTreeMap<&'static str, u64>,
}

impl Hosted {
    fn new(name: String, metrics: &Metrics) -> Self {
        metrics.register_agent(&name);
        Self {
            queued_gauge: metrics.queued(&name),
            in_flight_gauge: metrics.in_flight(&name),
            name,
            current: RwLock::new(None),
            permits: Arc::new(Semaphore::new(0)),
            max_concurrency: AtomicU32::new(0),
            queued: AtomicU32::new(0),
            activity: Mutex::default(),
        }
    }

    /// The agent serving this name now, if any.
    pub(crate) fn current(&self) -> Option<Arc<PreparedAgent>> {
        self.current.read().expect("agent lock").clone()
    }

    /// Serves the name with `agent` from the next invocation on (or stops serving
    /// it); invocations already running keep the agent they started with.
    fn replace(&self, agent: Option<PreparedAgent>) {
        let new_max = agent.as_ref().map_or(0, |a| a.limits().max_concurrency);
        let old_max = self.max_concurrency.swap(new_max, Ordering::SeqCst);
        if new_max > old_max {
            self.permits.add_permits((new_max - old_max) as usize);
        } else if new_max < old_max {
            // Shrink as running invocations give their permits back.
            let permits = self.permits.clone();
            tokio::spawn(async move {
                if let Ok(p) = permits.acquire_many_owned(old_max - new_max).await {
                    p.forget();
                }
            });
        }
        *self.current.write().expect("agent lock") = agent.map(Arc::new);
    }

    pub(crate) fn note(&self, inv: &crate::runtime::Invocation) {
        let breach = matches!(
            &inv.result,
            Err(e) if !matches!(
                e,
                crate::runtime::InvocationError::Agent { .. }
                    | crate::runtime::InvocationError::InvalidInput { .. }
            )
        );
        let mut denied = inv.usage.denials().peekable();
        if !breach && denied.peek().is_none() {
            return;
        }
        let mut activity = self.activity.lock().expect("activity lock");
        if breach {
            *activity
                .breaches
                .entry(inv.outcome().to_string())
                .or_default() += 1;
        }
        for (cap, n) in denied {
            *activity.denials.entry(cap.as_str()).or_default() += n;
        }
    }
}

/// Control of one hosted agent name from outside the HTTP API (the cluster watcher).
#[derive(Clone)]
pub struct AgentHandle {
    hosted: Arc<Hosted>,
    shared: Arc<Shared>,
}

impl AgentHandle {
    /// Serves the name with `agent` (recorded in metrics and the audit log).
    pub fn serve(&self, agent: PreparedAgent) {
        self.shared.metrics.cache_lookup(&agent.cache_status);
        self.shared.audit.record(Event::AgentLoaded {
            agent: agent.name().to_string(),
            digest: format!("sha256:{}", agent.digest),
        });
        self.hosted.replace(Some(agent));
    }

    /// Stops serving the name: every new invocation is refused (503) until
    /// [`AgentHandle::serve`] is called again. Fails closed.
    pub fn withdraw(&self, reason: &str) {
        if self.hosted.current().is_some() {
            self.shared.audit.record(Event::AgentWithdrawn {
                agent: self.hosted.name.clone(),
                reason: reason.to_string(),
            });
        }
        self.hosted.replace(None);
    }

    /// The hosted name.
    pub fn name(&self) -> &str {
        &self.hosted.name
    }

    /// The agent serving now.
    pub fn current(&self) -> Option<Arc<PreparedAgent>> {
        self.hosted.current()
    }

    /// Outcomes and denials since the last call.
    pub fn take_activity(&self) -> Activity {
        std::mem::take(&mut *self.hosted.activity.lock().expect("activity lock"))
    }
}

/// State shared by every request.
pub(crate) struct Shared {
    pub(crate) agents: BTreeMap<String, Arc<Hosted>>,
    pub(crate) metrics: Metrics,
    pub(crate) audit: AuditLog,
    pub(crate) store: Store,
    pub(crate) draining: AtomicBool,
    pub(crate) tasks: TaskTracker,
    /// Cancels invocations still running when the grace period ends.
    pub(crate) cancel: CancellationToken,
    pub(crate) cancelled: AtomicU64,
    /// Bytes of request bodies that may still be buffered.
    pub(crate) input_budget: AtomicU64,
    pub(crate) body_timeout: Duration,
    /// The state store's plane, when durable invocations are on.
    pub(crate) durable: Option<Arc<durable::Durable>>,
    /// Caller authentication, when configured.
    pub(crate) auth: Option<Arc<auth::Authenticator>>,
}

/// A configured server, ready to [`Server::run`].
pub struct Server {
    shared: Arc<Shared>,
    config: ServeConfig,
}

impl Server {
    /// Hosts `agents` (already prepared: compiled, granted, validated). Records
    /// the start of service in the audit log.
    pub fn new(
        agents: Vec<PreparedAgent>,
        metrics: Metrics,
        audit: AuditLog,
        config: ServeConfig,
    ) -> Self {
        let names = agents.iter().map(|a| a.name().to_string()).collect();
        let server = Self::with_names(names, metrics, audit, config);
        for agent in agents {
            let handle = server.handle(agent.name()).expect("a slot per agent");
            handle.serve(agent);
        }
        server
    }

    /// Hosts the agent names `names`, each unavailable (503) until its
    /// [`AgentHandle::serve`] is called.
    pub fn with_names(
        names: Vec<String>,
        metrics: Metrics,
        audit: AuditLog,
        config: ServeConfig,
    ) -> Self {
        let hosted: BTreeMap<String, Arc<Hosted>> = names
            .into_iter()
            .map(|name| (name.clone(), Arc::new(Hosted::new(name, &metrics))))
            .collect();
        if config.durable.is_some() {
            for name in hosted.keys() {
                metrics.register_durable(name);
            }
        }
        audit.record(Event::HostStart {
            version: env!("CARGO_PKG_VERSION"),
            agents: hosted.keys().cloned().collect(),
        });
        let shared = Arc::new(Shared {
            agents: hosted,
            metrics,
            audit,
            store: Store::new(config.store),
            draining: AtomicBool::new(false),
            tasks: TaskTracker::new(),
            cancel: CancellationToken::new(),
            cancelled: AtomicU64::new(0),
            input_budget: AtomicU64::new(config.max_buffered_input),
            body_timeout: config.body_timeout,
            durable: config
                .durable
                .clone()
                .map(|c| Arc::new(durable::Durable::new(c))),
            auth: config.auth.clone(),
        });
        Self { shared, config }
    }

    /// Control of the hosted name `agent`.
    pub fn handle(&self, agent: &str) -> Option<AgentHandle> {
        self.shared.agents.get(agent).map(|hosted| AgentHandle {
            hosted: hosted.clone(),
            shared: self.shared.clone(),
        })
    }

    /// The HTTP API, for serving on a listener of the caller's choosing.
    /// Authentication wraps the whole router: a route merged in before
    /// [`auth::protect`] is covered without a line of its own.
    pub fn router(&self) -> axum::Router {
        let api = api::router(self.shared.clone())
            .route("/mcp", mcp::route(self.shared.clone(), &self.config.mcp));
        auth::protect(api, self.shared.clone())
    }

    /// The hosted agents as MCP tools, for a transport of the caller's
    /// choosing (`agent-host mcp` serves them over stdio); `caller` is who
    /// the audit records as calling.
    pub fn mcp_tools(&self, caller: &str) -> McpTools {
        McpTools::new(self.shared.clone(), caller)
    }

    /// Serves until `shutdown` resolves, then drains: readiness turns false and
    /// new invocations get 503 at once; no more durable work is claimed (queued
    /// work stays in the store); in-flight ones may finish for the grace
    /// period, then in-memory ones are cancelled (and recorded as cancelled)
    /// and durable ones are released to the store, to be re-run; the audit
    /// log is flushed; then the listener closes.
    pub async fn run(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> std::io::Result<()> {
        let shared = self.shared.clone();
        let close_http = CancellationToken::new();
        if let Some(auth) = &shared.auth {
            auth.watch();
        }
        let app = self
            .router()
            .into_make_service_with_connect_info::<SocketAddr>();
        let closed = close_http.clone().cancelled_owned();
        let server = match &self.config.tls {
            None => {
                let serve = axum::serve(listener, app).with_graceful_shutdown(closed);
                tokio::spawn(async move { serve.await })
            }
            Some(files) => {
                files.watch();
                let listener = tls::TlsListener::new(listener, files.acceptor()).tap_io(|_| {});
                let serve = axum::serve(listener, app).with_graceful_shutdown(closed);
                tokio::spawn(async move { serve.await })
            }
        };
        // Each replica pulls its agents' durable work while it has free slots.
        let mut loops = Vec::new();
        if let Some(d) = &shared.durable {
            for hosted in shared.agents.values() {
                let claiming = Arc::new(std::sync::atomic::AtomicUsize::new(0));
                for _ in 0..durable::CLAIMERS {
                    let (s, h, c) = (shared.clone(), hosted.clone(), claiming.clone());
                    loops.push(tokio::spawn(durable::claim_loop(s, d.clone(), h, c)));
                }
                let (s, h) = (shared.clone(), hosted.clone());
                loops.push(tokio::spawn(durable::depth_loop(s, d.clone(), h)));
            }
        }
        let purger = tokio::spawn({
            let shared = shared.clone();
            async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    shared.store.purge();
                }
            }
        });

        shutdown.await;
        shared.draining.store(true, Ordering::SeqCst);
        // Queued durable work stays in the store for the other replicas.
        if let Some(d) = &shared.durable {
            d.stop_claiming.cancel();
        }
        for l in loops {
            let _ = l.await;
        }
        tracing::info!(
            grace_s = self.config.shutdown_grace.as_secs_f64(),
            "draining: refusing new invocations"
        );
        shared.tasks.close();
        if tokio::time::timeout(self.config.shutdown_grace, shared.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("grace period over: cancelling the invocations still running; durable ones are released to the store for a re-run");
            shared.cancel.cancel();
            shared.tasks.wait().await;
        }
        purger.abort();
        let cancelled = shared.cancelled.load(Ordering::SeqCst);
        shared.audit.record(Event::HostStop { cancelled });
        shared.audit.close();
        close_http.cancel();
        // Responses of drained invocations are on their way; idle keep-alive
        // connections must not hold the exit.
        match tokio::time::timeout(Duration::from_secs(5), server).await {
            Ok(Ok(result)) => result?,
            Ok(Err(join)) => tracing::error!(error = %join, "HTTP server task failed"),
            Err(_) => tracing::warn!("connections still open after 5s: closing them"),
        }
        tracing::info!(cancelled, "stopped");
        Ok(())
    }
}

/// Installs the SIGTERM and SIGINT handlers now and resolves at the first of
/// them. Call it before announcing the server: a signal that arrives between
/// the announcement and the first poll would otherwise kill the process
/// without a drain.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
        async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = int.recv() => tracing::info!("SIGINT received"),
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
