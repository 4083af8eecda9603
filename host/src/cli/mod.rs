//! Command-line interface. Library errors are turned into messages and exit
//! codes here, at the edge: 0 success, 1 the agent or its check failed,
//! 2 the manifest, component or command line is wrong.

mod audit;
mod bench;
mod check;
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
    /// Audit-log tools
    #[command(subcommand)]
    Audit(audit::AuditCommand),
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
            Command::Check(args) => check::check(&cli.host, args),
            Command::Compile(args) => check::compile(&cli.host, args),
            Command::Bench(args) => bench::bench(&cli.host, args).await,
            Command::Serve(args) => serve::serve(&cli.host, *args).await,
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
