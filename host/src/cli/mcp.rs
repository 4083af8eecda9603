//! `agent-host mcp`: the agents of the given manifests as MCP tools over
//! stdio (newline-delimited JSON-RPC on stdin/stdout), for local MCP clients.
//! stdout carries the protocol only: logs go to stderr.

use std::path::PathBuf;
use std::process::ExitCode;

use agent_host::audit::AuditLog;
use agent_host::config::Allocator;
use agent_host::manifest::LoadedAgent;
use agent_host::metrics::Metrics;
use agent_host::server::{ServeConfig, Server};
use agent_host::Runtime;
use rmcp::ServiceExt as _;

use super::{fail, HostArgs};

/// Who the audit log records as calling over stdio: the local user who
/// started the process.
const STDIO_CALLER: &str = "stdio";

#[derive(clap::Args, Debug)]
pub struct McpArgs {
    /// Agent manifests (YAML) to serve as tools, or directories of them; repeatable
    #[arg(short = 'f', long = "file", required = true)]
    manifests: Vec<PathBuf>,
    /// Append-only, hash-chained audit log (JSON lines); off when not set
    #[arg(long, env = "AGENT_HOST_AUDIT_LOG")]
    audit_log: Option<PathBuf>,
}

pub async fn mcp(host: &HostArgs, args: McpArgs) -> ExitCode {
    let files = match super::serve::manifest_files(&args.manifests) {
        Ok(files) => files,
        Err(e) => return fail(e),
    };
    let mut loaded = Vec::new();
    for file in &files {
        match LoadedAgent::from_file(file) {
            Ok(agent) => loaded.push((file, agent)),
            Err(e) => return fail(e),
        }
    }
    let mut config = match host.config(Allocator::Pooling) {
        Ok(config) => config,
        Err(e) => return fail(e),
    };
    config.max_instances = loaded
        .iter()
        .map(|(_, a)| a.agent.spec.limits.max_concurrency)
        .fold(0u32, u32::saturating_add);
    for (_, agent) in &mut loaded {
        if let Err(e) = super::check::resolve(host, &config, agent).await {
            return fail(e);
        }
    }
    let mut runtime = match Runtime::new(config) {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the runtime: {e:#}")),
    };
    let audit = match &args.audit_log {
        Some(path) => match AuditLog::open(path) {
            Ok(log) => log,
            Err(e) => return fail(e),
        },
        None => AuditLog::disabled(),
    };
    runtime.set_audit_log(audit.clone());
    let mut agents: Vec<agent_host::PreparedAgent> = Vec::new();
    for (file, loaded) in &loaded {
        match runtime.prepare(loaded) {
            Ok(agent) if agents.iter().any(|a| a.name() == agent.name()) => {
                return fail(format!(
                    "{}: a second agent named {:?}; agent names must be unique",
                    file.display(),
                    agent.name()
                ))
            }
            Ok(agent) => agents.push(agent),
            Err(e) => return fail(e),
        }
    }
    let server = Server::new(
        agents,
        Metrics::new(),
        audit.clone(),
        ServeConfig::default(),
    );
    let tools = server.mcp_tools(STDIO_CALLER);
    tracing::info!("serving MCP over stdio");
    let code = match tools.serve(rmcp::transport::stdio()).await {
        Ok(running) => match running.waiting().await {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: MCP session ended: {e}");
                ExitCode::from(1)
            }
        },
        Err(e) => {
            eprintln!("error: MCP initialisation failed: {e}");
            ExitCode::from(1)
        }
    };
    audit.close();
    code
}
