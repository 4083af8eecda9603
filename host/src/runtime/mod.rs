//! The runtime: one engine and linker per host (phase *link*), one
//! [`PreparedAgent`] per manifest (phase *configure*), one fresh store per
//! invocation (phase *prepare*, in [`invoke`]).

pub mod cache;
pub mod engine;
pub mod invoke;
pub mod limiter;
pub mod state;
pub mod state_plane;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::Engine;

pub use cache::CacheStatus;
pub use invoke::{Invocation, InvocationError, Slot, TaskInput, Usage};

use crate::audit::AuditLog;
use crate::bindings::AgentPre;
use crate::cap::imports::{bind_imports, Binding, ImportBinding};
use crate::cap::{ConfigureError, Grants, HostStates};
use crate::config::{HostConfig, Metering};
use crate::manifest::{Agent, Limits, LoadedAgent, ManifestError};
use crate::state_store::budget::StoreBudgets;
use crate::state_store::StateStore;
use state::InvocationState;

pub use crate::config::MAX_COMPONENT_BYTES;

/// Why an agent could not be loaded. Nothing is granted when loading fails.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The manifest is invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A grant names something that does not exist (a secret, a directory).
    #[error("{manifest}: {source}")]
    Configure {
        /// The manifest file.
        manifest: String,
        /// What is wrong.
        source: ConfigureError,
    },
    /// The component file cannot be read or is too large.
    #[error("{path}: {message}")]
    Component {
        /// The component file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The file is not a valid component for this host.
    #[error("{path}: not a loadable WebAssembly component: {message}")]
    Compile {
        /// The component file.
        path: PathBuf,
        /// Compiler message.
        message: String,
    },
    /// The component imports interfaces (or versions) the host does not provide.
    #[error("{}", refused_message(.agent, .refused))]
    UngrantedImports {
        /// Agent name.
        agent: String,
        /// The refused imports.
        refused: Vec<ImportBinding>,
    },
    /// The component does not export the agent world's `run`, or its types differ.
    #[error("{path}: does not implement the agent-host:agent/agent world: {message}")]
    WrongWorld {
        /// The component file.
        path: PathBuf,
        /// Linker message.
        message: String,
    },
    /// `spec.callers` restricts who may invoke the agent, but this host
    /// authenticates nobody (no `--caller-tokens`, no `--token-review`).
    #[error("agent {agent}: spec.callers names who may invoke it, but this host authenticates no caller; start serve with --caller-tokens DIR and/or --token-review, or remove spec.callers")]
    CallersUnenforceable {
        /// Agent name.
        agent: String,
    },
}

fn refused_message(agent: &str, refused: &[ImportBinding]) -> String {
    let lines: Vec<String> = refused
        .iter()
        .map(|b| match &b.binding {
            Binding::Refused { reason } => format!("  {}: {reason}", b.import),
            _ => unreachable!("only refused bindings are listed"),
        })
        .collect();
    format!(
        "agent {agent}: component refused at load, it imports what this host does not provide:\n{}",
        lines.join("\n")
    )
}

/// The host's engine, linker and compile cache.
pub struct Runtime {
    engine: Engine,
    linker: Linker<InvocationState>,
    cache: cache::CompileCache,
    config: HostConfig,
    audit: AuditLog,
    /// Each capability's host-wide state (backends, registries, switches).
    caps: Arc<HostStates>,
    /// The server will not know who calls: agents with `spec.callers` are refused.
    no_authenticated_callers: bool,
    _ticker: Option<engine::EpochTicker>,
}

/// A compiled, linked and configured agent: invocations only look things up.
pub struct PreparedAgent {
    pub(crate) name: Arc<str>,
    /// `metadata.namespace` (empty when absent): with the name, the agent's
    /// scope in the state store.
    pub(crate) namespace: String,
    pub(crate) pre: AgentPre<InvocationState>,
    pub(crate) grants: Grants,
    pub(crate) limits: Limits,
    /// Whether fuel and epoch deadlines are armed (the engine's metering).
    pub(crate) metering: Metering,
    /// The capabilities' host-wide state, for their per-invocation state.
    pub(crate) host: Arc<HostStates>,
    /// Permits for `spec.limits.maxConcurrency` invocations at once.
    pub(crate) concurrency: Arc<tokio::sync::Semaphore>,
    /// Where capability uses and denials are recorded.
    pub(crate) audit: AuditLog,
    /// SHA-256 of the component, hex.
    pub digest: String,
    /// How the component was obtained.
    pub cache_status: CacheStatus,
    /// Every import and what it is bound to.
    pub imports: Vec<ImportBinding>,
    /// `spec.callers`: who may invoke it (`None`: any authenticated caller).
    pub(crate) callers: Option<Arc<[String]>>,
    /// `spec.tool`, compiled: how the agent is served as an MCP tool.
    pub(crate) tool: Option<Arc<crate::manifest::CompiledTool>>,
}

impl PreparedAgent {
    /// The agent's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The agent's scope in the state store (namespace and name), as its
    /// key-value grant names it.
    pub fn scope(&self) -> crate::cap::key_value::Scope {
        crate::cap::key_value::Scope {
            namespace: self.namespace.clone(),
            agent: self.name.to_string(),
        }
    }

    /// The manifest's limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The compiled grants.
    pub fn grants(&self) -> &Grants {
        &self.grants
    }

    /// `spec.callers`: the caller names allowed to invoke it (`None`: any
    /// authenticated caller), for the serve API's caller check.
    pub fn callers(&self) -> Option<&[String]> {
        self.callers.as_deref()
    }

    /// `spec.tool` with its schemas compiled, when the manifest declares one.
    pub fn tool(&self) -> Option<&crate::manifest::CompiledTool> {
        self.tool.as_deref()
    }
}

impl Runtime {
    /// Builds the engine, the linker and the cache for `config`.
    pub fn new(config: HostConfig) -> wasmtime::Result<Self> {
        let engine = engine::build_engine(&config)?;
        let linker = state::build_linker(&engine)?;
        let cache = cache::CompileCache::new(
            config.cache_dir.clone(),
            engine::engine_key(&engine),
            config.cache_key_file.clone(),
        );
        let ticker = config
            .metering
            .epoch()
            .then(|| engine::EpochTicker::start(engine.clone(), config.epoch_tick));
        Ok(Self {
            caps: Arc::new(HostStates::new(&config)),
            engine,
            linker,
            cache,
            config,
            audit: AuditLog::disabled(),
            no_authenticated_callers: false,
            _ticker: ticker,
        })
    }

    /// Records the capability uses and denials of agents prepared from now on in `log`.
    pub fn set_audit_log(&mut self, log: AuditLog) {
        self.audit = log;
    }

    /// Tells the runtime whether the server authenticates callers: when it
    /// does not, [`Runtime::prepare`] refuses agents with `spec.callers`
    /// (fail closed: a restriction that cannot be enforced is an error at
    /// load, not an agent open to everyone).
    pub fn set_callers_authenticated(&mut self, authenticated: bool) {
        self.no_authenticated_callers = !authenticated;
    }

    /// Keeps what replicas must share in `store`, for agents prepared from
    /// now on: their `tokensPerMinute` windows (otherwise per process).
    pub fn use_state_store(&mut self, store: Arc<dyn StateStore>) {
        self.caps
            .llm
            .keep_budgets_in(Arc::new(StoreBudgets::new(store)));
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The host configuration it runs with.
    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// The compile cache.
    pub fn cache(&self) -> &cache::CompileCache {
        &self.cache
    }

    /// Reads, hashes and compiles (or loads from cache) a component file.
    pub fn compile(&self, path: &Path) -> Result<(Component, String, CacheStatus), LoadError> {
        let wasm = read_component(path, self.config.max_component_bytes)?;
        let digest = hex::encode(Sha256::digest(&wasm));
        self.compile_bytes(path, &wasm, digest)
    }

    /// The component of `loaded`: its file, or the verified bytes of its
    /// image. An image that was not resolved (pulled and verified) is refused.
    pub fn compile_agent(
        &self,
        loaded: &LoadedAgent,
    ) -> Result<(Component, String, CacheStatus), LoadError> {
        if loaded.agent.spec.component.image.is_none() {
            return self.compile(&loaded.component_path);
        }
        let path = &loaded.component_path;
        let Some(image) = &loaded.image else {
            return Err(LoadError::Component {
                path: path.clone(),
                message: "not pulled and verified; images load only through the trust policy"
                    .into(),
            });
        };
        let wasm: &[u8] = &image.wasm;
        if wasm.len() as u64 > self.config.max_component_bytes || !wasm.starts_with(WASM_MAGIC) {
            return Err(LoadError::Component {
                path: path.clone(),
                message: format!(
                    "not a WebAssembly component of at most {} bytes",
                    self.config.max_component_bytes
                ),
            });
        }
        // Checked against the layer digest when pulled; the compile cache is keyed by it.
        let digest = image.layer_digest.trim_start_matches("sha256:").to_owned();
        self.compile_bytes(path, wasm, digest)
    }

    fn compile_bytes(
        &self,
        path: &Path,
        wasm: &[u8],
        digest: String,
    ) -> Result<(Component, String, CacheStatus), LoadError> {
        let (component, status) = self
            .cache
            .load_or_compile(&self.engine, wasm, &digest)
            .map_err(|e| LoadError::Compile {
                path: path.to_path_buf(),
                message: format!("{e:#}"),
            })?;
        Ok((component, digest, status))
    }

    /// Phase *configure*: compiles the component, compiles the grants, binds every
    /// import (refusing the component if one is not provided by the host; an
    /// ungranted one is denied at every call) and pre-links an instance. Fails closed: any error means the agent gets nothing.
    pub fn prepare(&self, loaded: &LoadedAgent) -> Result<PreparedAgent, LoadError> {
        let callers = loaded.agent.spec.callers.as_deref();
        if self.no_authenticated_callers && callers.is_some() {
            return Err(LoadError::CallersUnenforceable {
                agent: loaded.agent.metadata.name.clone().unwrap_or_default(),
            });
        }
        let (grants, component, inspection) = self.load_parts(loaded, false)?;
        let refused: Vec<ImportBinding> = inspection.refused().cloned().collect();
        if !refused.is_empty() {
            return Err(LoadError::UngrantedImports {
                agent: inspection.agent,
                refused,
            });
        }
        let wrong_world = |e: wasmtime::Error| LoadError::WrongWorld {
            path: loaded.component_path.clone(),
            message: format!("{e:#}"),
        };
        let pre = AgentPre::new(
            self.linker
                .instantiate_pre(&component)
                .map_err(wrong_world)?,
        )
        .map_err(wrong_world)?;
        let tool = match &loaded.agent.spec.tool {
            Some(spec) => Some(Arc::new(spec.compile().map_err(|(field, message)| {
                LoadError::Manifest(ManifestError::field(field, message))
            })?)),
            None => None,
        };
        Ok(PreparedAgent {
            tool,
            name: inspection.agent.into(),
            namespace: loaded.agent.metadata.namespace.clone().unwrap_or_default(),
            pre,
            grants,
            limits: loaded.agent.spec.limits.clone(),
            metering: self.config.metering,
            host: self.caps.clone(),
            concurrency: Arc::new(tokio::sync::Semaphore::new(
                loaded.agent.spec.limits.max_concurrency as usize,
            )),
            audit: self.audit.clone(),
            digest: inspection.digest,
            cache_status: inspection.cache_status,
            imports: inspection.imports,
            callers: callers.map(Arc::from),
        })
    }

    /// Validates everything [`Runtime::prepare`] does, without refusing: the
    /// import table shows refused imports next to granted ones (`agent-host check`).
    pub fn inspect(&self, loaded: &LoadedAgent) -> Result<Inspection, LoadError> {
        self.load_parts(loaded, true)
            .map(|(_, _, inspection)| inspection)
    }

    fn load_parts(
        &self,
        loaded: &LoadedAgent,
        inspect: bool,
    ) -> Result<(Grants, Component, Inspection), LoadError> {
        let agent: &Agent = &loaded.agent;
        let base_dir = loaded.manifest_path.parent().unwrap_or(Path::new("."));
        let grants = Grants::configure(
            &self.caps,
            agent,
            &self.config.secrets_dir,
            base_dir,
            inspect,
        )
        .map_err(|source| LoadError::Configure {
            manifest: loaded.manifest_path.display().to_string(),
            source,
        })?;
        let (component, digest, cache_status) = self.compile_agent(loaded)?;
        let import_names: Vec<String> = component
            .component_type()
            .imports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let imports = bind_imports(
            import_names.iter().map(String::as_str),
            &grants,
            &agent.spec.limits,
        );
        let inspection = Inspection {
            agent: agent.name().to_string(),
            digest,
            cache_status,
            imports,
        };
        Ok((grants, component, inspection))
    }
}

/// What loading an agent found, refused imports included.
#[derive(Clone, Debug)]
pub struct Inspection {
    /// Agent name.
    pub agent: String,
    /// SHA-256 of the component, hex.
    pub digest: String,
    /// How the component was obtained.
    pub cache_status: CacheStatus,
    /// Every import and what it is bound to.
    pub imports: Vec<ImportBinding>,
}

impl Inspection {
    /// The imports that would make [`Runtime::prepare`] refuse the component.
    pub fn refused(&self) -> impl Iterator<Item = &ImportBinding> {
        self.imports
            .iter()
            .filter(|b| matches!(b.binding, Binding::Refused { .. }))
    }
}

/// The first bytes of every binary WebAssembly module and component.
const WASM_MAGIC: &[u8; 4] = b"\0asm";

/// Reads a component file of at most `limit` bytes. A file whose metadata
/// says it is larger is refused before it is read; the read itself is bounded
/// too, so a file that grows after the check (or a device such as `/dev/zero`,
/// whose size reads as 0) cannot make the host buffer more than `limit + 1` bytes.
/// Only the binary format is loaded: anything else is refused here, before a
/// compiler could take it for another format (text) and report on that.
fn read_component(path: &Path, limit: u64) -> Result<Vec<u8>, LoadError> {
    use std::io::Read as _;
    let err = |message: String| LoadError::Component {
        path: path.to_path_buf(),
        message,
    };
    let too_large = |size: String| {
        err(format!(
            "component is {size} bytes; the host accepts at most {limit} bytes"
        ))
    };
    let cannot_read = |e: std::io::Error| err(format!("cannot read component: {e}"));
    // Checked before opening: opening a FIFO blocks, and a device never ends.
    let kind = std::fs::metadata(path).map_err(cannot_read)?.file_type();
    if !kind.is_file() {
        return Err(err(
            "not a regular file; a component must be a .wasm file".into()
        ));
    }
    let file = std::fs::File::open(path).map_err(cannot_read)?;
    let size = file.metadata().map_err(cannot_read)?.len();
    if size > limit {
        return Err(too_large(size.to_string()));
    }
    let mut wasm = Vec::with_capacity(size as usize);
    file.take(limit.saturating_add(1))
        .read_to_end(&mut wasm)
        .map_err(cannot_read)?;
    if wasm.len() as u64 > limit {
        return Err(too_large(format!("more than {limit}")));
    }
    if !wasm.starts_with(WASM_MAGIC) {
        return Err(err(
            "not a WebAssembly component (no `\\0asm` header); the host loads binary \
             components such as `cargo build --target wasm32-wasip2` produces"
                .into(),
        ));
    }
    Ok(wasm)
}
