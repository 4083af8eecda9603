//! Command-line interface. Library errors are turned into messages and exit
//! codes here, at the edge: 0 success, 1 the agent or its check failed,
//! 2 the manifest, component or command line is wrong.

mod audit;
mod bench;
mod check;
mod mcp;
mod new;
mod oci;
mod run;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use agent_host::config::{
    default_cache_dir, default_state_dir, Allocator, DirError, HostConfig, Store, StoreError,
};
use agent_host::telemetry::{self, LogFormat};
use clap::{Parser, Subcommand};

/// Runs AI agents compiled to WebAssembly components (wasm32-wasip2) under the
/// capabilities and budgets declared in their Agent manifest.
#[derive(Parser, Debug)]
#[command(name = "agent-host", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    host: HostArgs,
    #[command(subcommand)]
    command: Command,
}

/// Host (operator) settings, shared by every command.
#[derive(clap::Args, Debug, Clone)]
pub struct HostArgs {
    /// Directory of precompiled components [default: $XDG_CACHE_HOME/agent-host or ~/.cache/agent-host]
    #[arg(long, env = "AGENT_HOST_CACHE_DIR", global = true)]
    cache_dir: Option<PathBuf>,
    /// Key authenticating precompiled cache entries [default: <cache-dir>/cache.key]
    #[arg(long, env = "AGENT_HOST_CACHE_KEY_FILE", global = true)]
    cache_key_file: Option<PathBuf>,
    /// Directory of the embedded store (kv.redb), used when --store is not set [default: $XDG_STATE_HOME/agent-host or ~/.local/state/agent-host]
    #[arg(long, env = "AGENT_HOST_STATE_DIR", global = true)]
    state_dir: Option<PathBuf>,
    /// Where the host keeps its state: a Redis server shared by replicas,
    /// redis://[user@]host[:port][/db] or rediss://… (TLS) [default: embedded, under --state-dir]
    #[arg(long, value_name = "URL", env = "AGENT_HOST_STORE", global = true)]
    store: Option<String>,
    /// File holding the password of the --store Redis (a mounted secret); read at start, one trailing newline trimmed
    #[arg(
        long,
        value_name = "PATH",
        env = "AGENT_HOST_STORE_PASSWORD_FILE",
        global = true
    )]
    store_password_file: Option<PathBuf>,
    /// Deprecated alias of --store
    #[arg(long, value_name = "URL", env = "AGENT_HOST_KV_REDIS", global = true)]
    kv_redis: Option<String>,
    /// Where secrets referenced by manifests are mounted (<dir>/<secret>/<key>)
    #[arg(
        long,
        env = "AGENT_HOST_SECRETS_DIR",
        global = true,
        default_value = "/var/run/secrets/agent-host"
    )]
    secrets_dir: PathBuf,
    /// Log format of the host's own log (stderr) [default: json for serve, text otherwise]
    #[arg(long, env = "AGENT_HOST_LOG_FORMAT", global = true, value_enum)]
    log_format: Option<LogFormat>,
    /// Export traces (a span per invocation, HTTP request and file open) over
    /// OTLP/HTTP to this collector, e.g. http://otel-collector:4318; off when unset
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", global = true)]
    otlp_endpoint: Option<String>,
    /// Put model prompts (the last user message, redacted, at most 2 KiB) in
    /// the audit log's model-call records; off by default
    #[arg(long, env = "AGENT_HOST_AUDIT_LLM_PROMPTS", global = true)]
    audit_llm_prompts: bool,
    /// Trust policy (YAML, operator-owned) for components from registries: which
    /// signatures each repository needs and what each signer's components may be
    /// granted. Without it, spec.component.image is refused
    #[arg(
        long,
        value_name = "FILE",
        env = "AGENT_HOST_TRUST_POLICY",
        global = true
    )]
    trust_policy: Option<PathBuf>,
    /// Registry credentials: a Docker config.json (the .dockerconfigjson of a
    /// kubernetes.io/dockerconfigjson Secret); anonymous pulls when not set
    #[arg(
        long,
        value_name = "FILE",
        env = "AGENT_HOST_REGISTRY_AUTH",
        global = true
    )]
    registry_auth: Option<PathBuf>,
    /// A registry (HOST[:PORT]) spoken to over plain HTTP, e.g. an in-cluster
    /// registry without TLS; repeatable
    #[arg(
        long,
        value_name = "HOST[:PORT]",
        env = "AGENT_HOST_INSECURE_REGISTRIES",
        value_delimiter = ',',
        global = true
    )]
    insecure_registry: Vec<String>,
    /// Directory of pulled components and signatures [default: <cache-dir>/oci]
    #[arg(long, value_name = "DIR", env = "AGENT_HOST_OCI_CACHE", global = true)]
    oci_cache: Option<PathBuf>,
    /// Bytes of pulled blobs kept; the least recently used are evicted past it
    #[arg(
        long,
        value_name = "QUANTITY",
        env = "AGENT_HOST_OCI_CACHE_MAX_BYTES",
        global = true,
        default_value = "1Gi"
    )]
    oci_cache_max_bytes: agent_host::manifest::Quantity,
    /// Deadline of one component pull (manifest, layer, signatures, retries included)
    #[arg(
        long,
        env = "AGENT_HOST_PULL_TIMEOUT",
        global = true,
        default_value = "60s"
    )]
    pull_timeout: agent_host::manifest::KubeDuration,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `agent=debug,agent_host=warn`
    #[arg(long, env = "AGENT_HOST_LOG", global = true, default_value = "info")]
    log: String,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run one task through an agent and print its output and usage report
    Run(run::RunArgs),
    /// Validate a manifest and show each import of its component against the grants
    Check(check::CheckArgs),
    /// Precompile the components of the given manifests into the cache
    Compile(check::CompileArgs),
    /// Measure per-invocation latency, pooling allocator against on-demand
    Bench(bench::BenchArgs),
    /// Print the Agent CustomResourceDefinition (YAML), generated from the manifest type
    Crd,
    /// Host agents over HTTP (the production mode) until SIGTERM/SIGINT
    Serve(Box<serve::ServeArgs>),
    /// Serve the agents of the given manifests as MCP tools over stdio (for local MCP clients)
    Mcp(mcp::McpArgs),
    /// Audit-log tools
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Publish a component to a registry as a Wasm OCI artifact and print the digest to pin
    Push(oci::PushArgs),
    /// Sign a component in a registry (cosign format, keyed ECDSA P-256)
    Sign(oci::SignArgs),
    /// Make an ECDSA P-256 key pair for `sign` and the trust policy
    Keygen(oci::KeygenArgs),
    /// Scaffold an agent: source, a manifest with no grants, and its build command
    New(new::NewArgs),
}

/// Host settings that cannot be used.
#[derive(Debug, thiserror::Error)]
enum ConfigError {
    #[error(transparent)]
    Dir(#[from] DirError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl HostArgs {
    /// The component puller: credentials read and the trust policy checked now.
    fn puller(&self, config: &HostConfig) -> Result<agent_host::oci::Puller, String> {
        agent_host::oci::Puller::new(self.oci_config(config))
    }

    fn oci_config(&self, config: &HostConfig) -> agent_host::oci::OciConfig {
        agent_host::oci::OciConfig {
            trust_policy: self.trust_policy.clone(),
            registry_auth: self.registry_auth.clone(),
            insecure: self.insecure_registry.clone(),
            cache_dir: self
                .oci_cache
                .clone()
                .unwrap_or_else(|| config.cache_dir.join("oci")),
            cache_max_bytes: self.oci_cache_max_bytes.bytes(),
            pull_timeout: self.pull_timeout.as_duration(),
            max_component_bytes: config.max_component_bytes,
        }
    }

    /// The host configuration; refuses a default directory that is not safe to
    /// use and a store setting that is not usable (reading its password file).
    fn config(&self, allocator: Allocator) -> Result<HostConfig, ConfigError> {
        let or_default = |dir: &Option<PathBuf>, default: fn() -> Result<PathBuf, DirError>| {
            dir.clone().map_or_else(default, Ok)
        };
        let cache_dir = or_default(&self.cache_dir, default_cache_dir)?;
        let state_dir = or_default(&self.state_dir, default_state_dir)?;
        Ok(HostConfig {
            cache_key_file: self.cache_key_file.clone(),
            secrets_dir: self.secrets_dir.clone(),
            store: Store::from_flags(
                self.store.as_deref(),
                self.kv_redis.as_deref(),
                self.store_password_file.as_deref(),
            )?,
            allocator,
            audit_llm_prompts: self.audit_llm_prompts,
            ..HostConfig::new(cache_dir, state_dir)
        })
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_format = match cli.command {
        Command::Serve(_) => LogFormat::Json,
        _ => LogFormat::Text,
    };
    let format = cli.host.log_format.unwrap_or(default_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };
    runtime.block_on(async {
        let telemetry =
            match telemetry::init(&cli.host.log, format, cli.host.otlp_endpoint.as_deref()) {
                Ok(t) => t,
                Err(e) => return fail(e),
            };
        if cli.host.kv_redis.is_some() && cli.host.store.is_none() {
            tracing::warn!("--kv-redis (AGENT_HOST_KV_REDIS) is deprecated: use --store (AGENT_HOST_STORE), which takes the same URL");
        }
        let code = match cli.command {
            Command::Run(args) => run::run(&cli.host, args).await,
            Command::Check(args) => check::check(&cli.host, args).await,
            Command::Compile(args) => check::compile(&cli.host, args).await,
            Command::Push(args) => oci::push(&cli.host, args).await,
            Command::Sign(args) => oci::sign(&cli.host, args).await,
            Command::Keygen(args) => oci::keygen(args),
            Command::New(args) => new::new(args),
            Command::Bench(args) => bench::bench(&cli.host, args).await,
            Command::Serve(args) => serve::serve(&cli.host, *args).await,
            Command::Mcp(args) => mcp::mcp(&cli.host, args).await,
            Command::Audit(command) => audit::audit(command),
            Command::Crd => {
                print!("{}", agent_host::manifest::crd_yaml());
                ExitCode::SUCCESS
            }
        };
        // Flushing spans blocks on their export: not on an async worker.
        let _ = tokio::task::spawn_blocking(move || drop(telemetry)).await;
        code
    })
}

/// Prints `message` as an error and returns the configuration-error exit code.
fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}
