//! `agent-host serve`: hosts agents over HTTP until SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use agent_host::audit::AuditLog;
use agent_host::cluster::{self, FollowConfig};
use agent_host::config::{Allocator, Store};
use agent_host::manifest::{KubeDuration, LoadedAgent, Quantity};
use agent_host::metrics::Metrics;
use agent_host::server::auth::{Authenticator, TokenFiles, TokenReviewer};
use agent_host::server::store::StoreLimits;
use agent_host::server::tls::TlsFiles;
use agent_host::server::{shutdown_signal, DurableConfig, McpConfig, ServeConfig, Server};
use agent_host::Runtime;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use super::{fail, HostArgs};

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Agent manifests (YAML) to host, or directories of them (*.yaml, *.yml); repeatable
    #[arg(
        short = 'f',
        long = "file",
        env = "AGENT_HOST_MANIFESTS",
        value_delimiter = ',',
        required_unless_present = "agent",
        conflicts_with = "agent"
    )]
    manifests: Vec<PathBuf>,
    /// Pod mode: serve the Agent resource of this name, read and watched through the Kubernetes API
    #[arg(long, env = "AGENT_HOST_AGENT")]
    agent: Option<String>,
    /// Namespace of the Agent [default: the pod's service-account namespace]
    #[arg(long, env = "AGENT_HOST_NAMESPACE")]
    namespace: Option<String>,
    /// Pod mode: capability denials and budget breaches are reported as at most one
    /// Kubernetes event of each kind per interval
    #[arg(long, env = "AGENT_HOST_EVENT_INTERVAL", default_value = "30s")]
    event_interval: KubeDuration,
    /// Pod name, reported as the source of events
    #[arg(long, env = "POD_NAME")]
    pod_name: Option<String>,
    /// Address to listen on
    #[arg(long, env = "AGENT_HOST_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Append-only, hash-chained audit log (JSON lines); off when not set
    #[arg(long, env = "AGENT_HOST_AUDIT_LOG")]
    audit_log: Option<PathBuf>,
    /// After SIGTERM, how long in-flight invocations may run before they are cancelled
    #[arg(long, env = "AGENT_HOST_SHUTDOWN_GRACE", default_value = "25s")]
    shutdown_grace: KubeDuration,
    /// How long an async or idempotent invocation's result stays retrievable after it ends
    #[arg(long, env = "AGENT_HOST_RESULT_TTL", default_value = "1h")]
    result_ttl: KubeDuration,
    /// Most invocation results remembered at once (oldest ended ones are dropped first)
    #[arg(long, env = "AGENT_HOST_MAX_RESULTS", default_value_t = 10_000)]
    max_results: usize,
    /// Bytes of ended results' bodies remembered at once; past it the oldest
    /// are dropped and answer 410 ResultEvicted (their keys never run again)
    #[arg(long, env = "AGENT_HOST_MAX_RESULT_BYTES", default_value = "128Mi")]
    max_result_bytes: Quantity,
    /// How long an Idempotency-Key is remembered after its first request
    #[arg(long, env = "AGENT_HOST_IDEMPOTENCY_TTL", default_value = "24h")]
    idempotency_ttl: KubeDuration,
    /// Most idempotency keys remembered at once; past it, keyed requests get 503
    #[arg(
        long,
        env = "AGENT_HOST_MAX_IDEMPOTENCY_KEYS",
        default_value_t = 100_000
    )]
    max_idempotency_keys: usize,
    /// Request bytes buffered at once across all requests; past it, requests get 503
    #[arg(long, env = "AGENT_HOST_MAX_BUFFERED_INPUT", default_value = "256Mi")]
    max_buffered_input: Quantity,
    /// Longest a client may take to send a request body
    #[arg(long, env = "AGENT_HOST_BODY_TIMEOUT", default_value = "30s")]
    body_timeout: KubeDuration,
    /// How long a replica's claim on a durable invocation lasts without renewal
    /// (renewed every third of it); past it another replica re-runs the work
    #[arg(long, env = "AGENT_HOST_LEASE", default_value = "15s")]
    lease: KubeDuration,
    /// This replica's name, recorded with every attempt it runs
    /// [default: --pod-name, else <hostname>:<pid>]
    #[arg(long, env = "AGENT_HOST_REPLICA")]
    replica_name: Option<String>,
    /// Instance slots of the pooling allocator: the most invocations in flight
    /// [default: the sum of the agents' maxConcurrency with -f; 1000 with --agent]
    #[arg(long, env = "AGENT_HOST_MAX_INSTANCES")]
    max_instances: Option<u32>,
    /// Authenticate callers by bearer token: a directory laid out like a mounted
    /// Secret, one file per caller name holding that caller's token; re-read when it changes
    #[arg(long, env = "AGENT_HOST_CALLER_TOKENS")]
    caller_tokens: Option<PathBuf>,
    /// Authenticate callers by Kubernetes service-account token, checked with the
    /// TokenReview API (the caller is the user name it returns); needs --token-audience
    #[arg(long, env = "AGENT_HOST_TOKEN_REVIEW", requires = "token_audience")]
    token_review: bool,
    /// The audience callers' service-account tokens must be issued for (--token-review)
    #[arg(long, env = "AGENT_HOST_TOKEN_AUDIENCE")]
    token_audience: Option<String>,
    /// Require a caller token on /metrics too (it is open by default, like the probes)
    #[arg(long, env = "AGENT_HOST_METRICS_AUTH")]
    metrics_auth: bool,
    /// Serve HTTPS with this PEM certificate chain (leaf first); re-read when it changes
    #[arg(long, env = "AGENT_HOST_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert
    #[arg(long, env = "AGENT_HOST_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Host header values /mcp accepts (names or name:port), against DNS
    /// rebinding; add the Service's names behind a Service or ingress;
    /// `*` accepts any host [default: localhost,127.0.0.1,::1]
    #[arg(
        long,
        value_name = "HOST[:PORT]",
        env = "AGENT_HOST_MCP_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    mcp_allowed_hosts: Vec<String>,
}

/// Expands directories into the manifests they hold, sorted by name.
pub(super) fn manifest_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries =
                std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_yaml(p))
                .collect();
            if found.is_empty() {
                return Err(format!(
                    "{}: no *.yaml or *.yml manifests in this directory",
                    path.display()
                ));
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

fn is_yaml(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
}

/// Instance slots in pod mode, where the followed spec may raise maxConcurrency later.
const DEFAULT_CLUSTER_INSTANCES: u32 = 1000;

const SERVICE_ACCOUNT_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

pub async fn serve(host: &HostArgs, args: ServeArgs) -> ExitCode {
    let files = match manifest_files(&args.manifests) {
        Ok(files) => files,
        Err(e) => return fail(e),
    };
    let cluster = match &args.agent {
        None => None,
        Some(name) => {
            let namespace = match args.namespace.clone().or_else(|| {
                std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE)
                    .ok()
                    .map(|n| n.trim().to_string())
            }) {
                Some(ns) => ns,
                None => return fail(format!("--agent {name}: no namespace; set --namespace / AGENT_HOST_NAMESPACE (downward API) or run in a pod with a service account")),
            };
            let client = match kube::Client::try_default().await {
                Ok(c) => c,
                Err(e) => return fail(format!("--agent {name}: no Kubernetes API configuration (in-cluster or KUBECONFIG): {e}")),
            };
            Some((
                client,
                FollowConfig {
                    namespace,
                    name: name.clone(),
                    event_interval: args.event_interval.as_duration(),
                    instance: args.pod_name.clone(),
                },
            ))
        }
    };
    // Every manifest must parse before anything starts; their admission limits
    // size the instance pool (reserving slots no agent may use only slows the start).
    let mut loaded = Vec::new();
    for file in &files {
        match LoadedAgent::from_file(file) {
            Ok(agent) => loaded.push((file, agent)),
            Err(e) => return fail(e),
        }
    }
    let total_concurrency: u64 = loaded
        .iter()
        .map(|(_, a)| u64::from(a.agent.spec.limits.max_concurrency))
        .sum();
    let max_instances = args.max_instances.unwrap_or(match cluster {
        Some(_) => DEFAULT_CLUSTER_INSTANCES,
        None => u32::try_from(total_concurrency).unwrap_or(u32::MAX),
    });
    let (auth, tls) = match security(&args, cluster.as_ref().map(|(c, _)| c.clone())).await {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let mut config = match host.config(Allocator::Pooling) {
        Ok(config) => config,
        Err(e) => return fail(e),
    };
    config.max_instances = max_instances;
    if let Err(e) = check_store(&config.store).await {
        return fail(e);
    }
    let mut puller = match host.puller(&config) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let mut runtime = match Runtime::new(config) {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the runtime: {e:#}")),
    };
    let lease = args.lease.as_duration();
    if lease < MIN_LEASE {
        return fail(format!(
            "--lease {lease:?}: too short to be renewed in time; at least {MIN_LEASE:?}"
        ));
    }
    // Before agents are prepared: their key-value grants use the store's backend.
    let retention = args
        .result_ttl
        .as_duration()
        .max(args.idempotency_ttl.as_duration());
    let state_store = match runtime.open_state_store(retention).await {
        Ok(store) => store,
        Err(e) => return fail(format!("cannot open the state store: {e}")),
    };
    // tokensPerMinute windows in the store too: every replica spends from one.
    runtime.use_state_store(state_store.clone());
    // Fail closed: spec.callers on a host that authenticates nobody is refused.
    runtime.set_callers_authenticated(auth.is_some());
    let replica = args
        .replica_name
        .clone()
        .or_else(|| args.pod_name.clone())
        .unwrap_or_else(default_replica_name);
    tracing::info!(%replica, lease_s = lease.as_secs_f64(), "durable invocations in the state store");
    // Fail closed: an audit log that cannot be continued stops the host.
    let audit = match &args.audit_log {
        Some(path) => match AuditLog::open(path) {
            Ok(log) => log,
            Err(e) => return fail(e),
        },
        None => {
            tracing::warn!("no --audit-log: capability uses and invocations are not audited");
            AuditLog::disabled()
        }
    };
    runtime.set_audit_log(audit.clone());
    puller.set_audit_log(audit.clone());
    for (_, loaded) in &mut loaded {
        if let Err(e) = puller.resolve(loaded).await {
            return fail(e);
        }
    }

    // Every manifest must load: a host that silently skipped one would grant
    // less (or serve less) than the operator deployed.
    let mut agents = Vec::new();
    for (file, loaded) in &loaded {
        match runtime.prepare(loaded) {
            Ok(agent) => {
                if agents
                    .iter()
                    .any(|a: &agent_host::PreparedAgent| a.name() == agent.name())
                {
                    return fail(format!(
                        "{}: a second agent named {:?}; agent names must be unique",
                        file.display(),
                        agent.name()
                    ));
                }
                tracing::info!(agent = agent.name(), manifest = %file.display(), digest = %agent.digest, cache = ?agent.cache_status, "agent loaded");
                agents.push(agent);
            }
            Err(e) => return fail(e),
        }
    }
    if total_concurrency > u64::from(max_instances) {
        tracing::warn!(
            total_concurrency,
            max_instances,
            "the agents' maxConcurrency add up to more than the instance pool: invocations past the pool fail with Capacity (503)"
        );
    }

    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => return fail(format!("--listen {}: {e}", args.listen)),
    };
    let addr = listener.local_addr().map_or(args.listen, |a| a);
    let serve_config = ServeConfig {
        listen: addr,
        shutdown_grace: args.shutdown_grace.as_duration(),
        store: StoreLimits {
            result_ttl: args.result_ttl.as_duration(),
            max_results: args.max_results.max(1),
            max_result_bytes: args.max_result_bytes.bytes(),
            idempotency_ttl: args.idempotency_ttl.as_duration(),
            max_keys: args.max_idempotency_keys.max(1),
        },
        max_buffered_input: args.max_buffered_input.bytes(),
        body_timeout: args.body_timeout.as_duration(),
        durable: Some(DurableConfig {
            store: state_store,
            replica,
            lease,
        }),
        auth,
        tls,
        mcp: mcp_config(&args.mcp_allowed_hosts),
    };
    let stop_following = CancellationToken::new();
    let server = match cluster {
        None => Server::new(agents, Metrics::new(), audit, serve_config),
        Some((client, follow_config)) => {
            let name = follow_config.name.clone();
            let server =
                Server::with_names(vec![name.clone()], Metrics::new(), audit, serve_config);
            let handle = server.handle(&name).expect("the server hosts this name");
            tokio::spawn(cluster::follow(
                client,
                follow_config,
                Arc::new(runtime),
                puller,
                handle,
                stop_following.clone(),
            ));
            server
        }
    };
    // Handlers installed before the announcement, so a SIGTERM right after
    // it drains instead of killing the process.
    let shutdown = shutdown_signal();
    tracing::info!(%addr, "serving");
    // Printed for scripts and tests that listen on port 0.
    let scheme = if args.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    println!("listening on {scheme}://{addr}");
    let served = server.run(listener, shutdown).await;
    stop_following.cancel();
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: serving on {addr}: {e}");
            ExitCode::from(1)
        }
    }
}

/// Caller authentication and TLS from the flags; every file is read and
/// checked now, so a bad token directory or certificate stops the start.
async fn security(
    args: &ServeArgs,
    cluster: Option<kube::Client>,
) -> Result<(Option<Arc<Authenticator>>, Option<TlsFiles>), String> {
    let tokens = match &args.caller_tokens {
        Some(dir) => Some(TokenFiles::open(dir)?),
        None => None,
    };
    let review = match (args.token_review, &args.token_audience) {
        (false, Some(_)) => {
            return Err("--token-audience applies to --token-review, which is not set".into())
        }
        (false, None) => None,
        (true, audience) => {
            let audience = audience.clone().filter(|a| !a.trim().is_empty()).ok_or(
                "--token-review needs --token-audience: tokens issued for another audience (the API server's) must not be valid here",
            )?;
            let client = match cluster {
                Some(client) => client,
                None => kube::Client::try_default().await.map_err(|e| {
                    format!("--token-review: no Kubernetes API configuration (in-cluster or KUBECONFIG): {e}")
                })?,
            };
            Some(TokenReviewer::new(client, audience))
        }
    };
    let auth = Authenticator::new(tokens, review, args.metrics_auth).map(Arc::new);
    match &auth {
        Some(a) => tracing::info!(auth = ?a, "callers are authenticated"),
        None if args.metrics_auth => return Err(
            "--metrics-auth needs caller authentication: set --caller-tokens and/or --token-review"
                .into(),
        ),
        None => tracing::warn!(
            "no --caller-tokens or --token-review: every caller is accepted (local runs only)"
        ),
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles::open(cert, key)?),
        _ => None,
    };
    Ok((auth, tls))
}

/// `--mcp-allowed-hosts`: loopback when unset, any host with `*`.
fn mcp_config(hosts: &[String]) -> McpConfig {
    let hosts: Vec<String> = hosts
        .iter()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .collect();
    match hosts.as_slice() {
        [] => McpConfig::default(),
        [any] if any == "*" => McpConfig {
            allowed_hosts: Vec::new(),
        },
        _ => McpConfig {
            allowed_hosts: hosts,
        },
    }
}

/// Shortest `--lease`: renewals every third of it must reach the store in time.
const MIN_LEASE: std::time::Duration = std::time::Duration::from_millis(300);

/// `<hostname>:<pid>`: unique per process life, so a restarted host's
/// attempts are told apart from its previous life's.
fn default_replica_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "agent-host".into());
    format!("{host}:{}", std::process::id())
}

/// A Redis store must answer (address, TLS, password) before the host starts:
/// a replica that cannot reach it must not report ready and accept work.
async fn check_store(store: &Store) -> Result<(), String> {
    let Store::Redis(redis) = store else {
        return Ok(());
    };
    let checked = redis.clone();
    let result = tokio::task::spawn_blocking(move || checked.check())
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
    match result {
        Ok(()) => {
            tracing::info!(store = redis.url(), tls = redis.tls(), "store reachable");
            Ok(())
        }
        Err(e) => Err(format!(
            "--store {}: cannot use this Redis: {e}",
            redis.url()
        )),
    }
}
