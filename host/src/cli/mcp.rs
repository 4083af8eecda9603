//! `agent-host mcp`: the agents of the given manifests as MCP tools over
//! stdio (newline-delimited JSON-RPC on stdin/stdout), for local MCP clients.
//! stdout carries the protocol only: logs go to stderr.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use agent_host::audit::AuditLog;
use agent_host::config::Allocator;
use agent_host::manifest::LoadedAgent;
use agent_host::metrics::Metrics;
use agent_host::server::{AgentHandle, ServeConfig, Server};
use agent_host::Runtime;
use rmcp::{Peer, RoleServer, ServiceExt as _};

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
    // Over stdio nobody is authenticated: an Agent restricted to named
    // callers is refused at load rather than denied on every call.
    runtime.set_callers_authenticated(false);
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
    let tools = server.mcp_tools(STDIO_CALLER).notifying_list_changes();
    tracing::info!("serving MCP over stdio");
    let running = match tools.serve(rmcp::transport::stdio()).await {
        Ok(running) => running,
        Err(e) => {
            audit.close();
            eprintln!("error: MCP initialisation failed: {e}");
            return ExitCode::from(1);
        }
    };
    let watched: Vec<Watched> = loaded
        .into_iter()
        .map(|(file, agent)| {
            let handle = server.handle(agent.agent.name()).expect("a slot per agent");
            Watched::new(file.clone(), handle)
        })
        .collect();
    let watcher = tokio::spawn(watch(
        host.clone(),
        runtime,
        watched,
        running.peer().clone(),
    ));
    let ended = running.waiting().await;
    watcher.abort();
    let code = match ended {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: MCP session ended: {e}");
            ExitCode::from(1)
        }
    };
    audit.close();
    code
}

/// How often the manifests are read again for changes.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// One manifest file and the tool it serves.
struct Watched {
    file: PathBuf,
    handle: AgentHandle,
    /// The file's bytes when last loaded (`None`: unreadable).
    seen: Option<Vec<u8>>,
    /// Different bytes read at the last poll: acted on once a second poll
    /// reads them again, so a file caught half-written is not loaded.
    pending: Option<Option<Vec<u8>>>,
}

impl Watched {
    fn new(file: PathBuf, handle: AgentHandle) -> Self {
        let seen = std::fs::read(&file).ok();
        Self {
            file,
            handle,
            seen,
            pending: None,
        }
    }
}

/// Follows the manifests as pod mode follows its Agent: a manifest changed
/// and then unchanged for one interval serves its new spec from the next call; one that no longer loads (or
/// names another agent) withdraws its tool, failing closed. Either way the
/// client gets `notifications/tools/list_changed`.
async fn watch(
    host: HostArgs,
    runtime: Runtime,
    mut watched: Vec<Watched>,
    peer: Peer<RoleServer>,
) {
    loop {
        tokio::time::sleep(WATCH_INTERVAL).await;
        let mut changed = false;
        for w in &mut watched {
            let now = std::fs::read(&w.file).ok();
            if now == w.seen {
                w.pending = None;
                continue;
            }
            if w.pending.as_ref() != Some(&now) {
                w.pending = Some(now);
                continue;
            }
            w.pending = None;
            w.seen = now;
            changed = true;
            let name = w.handle.name().to_string();
            match reload(&host, &runtime, &w.file).await {
                Ok(agent) if agent.name() == name => {
                    tracing::info!(agent = %name, manifest = %w.file.display(), "manifest changed: serving the new spec");
                    w.handle.serve(agent);
                }
                Ok(agent) => {
                    let reason = format!(
                        "{}: now names agent {:?}; a running host keeps its tool names",
                        w.file.display(),
                        agent.name()
                    );
                    tracing::warn!(agent = %name, "{reason}: tool withdrawn");
                    w.handle.withdraw(&reason);
                }
                Err(reason) => {
                    tracing::warn!(agent = %name, "{reason}: tool withdrawn");
                    w.handle.withdraw(&reason);
                }
            }
        }
        if changed {
            if let Err(e) = peer.notify_tool_list_changed().await {
                tracing::warn!(error = %e, "could not send notifications/tools/list_changed");
            }
        }
    }
}

async fn reload(
    host: &HostArgs,
    runtime: &Runtime,
    file: &Path,
) -> Result<agent_host::PreparedAgent, String> {
    let mut loaded = LoadedAgent::from_file(file).map_err(|e| e.to_string())?;
    super::check::resolve(host, runtime.config(), &mut loaded).await?;
    runtime.prepare(&loaded).map_err(|e| e.to_string())
}
