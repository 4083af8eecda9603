//! Operator configuration: how the host runs, as opposed to what an agent may do.

use std::path::PathBuf;
use std::time::Duration;

use crate::runtime::MAX_COMPONENT_BYTES;

/// Which instance allocator the engine uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Allocator {
    /// Pre-reserved slots for memories, tables and stacks: instantiation is a
    /// few page-table operations instead of `mmap` calls. The production default.
    Pooling,
    /// Allocate every memory and table with the OS on demand (baseline for benchmarks).
    OnDemand,
}

/// How guest execution is metered. Production hosts always use
/// [`Metering::FuelAndEpoch`]; the others exist so benchmarks can price each
/// mechanism against a baseline in the same process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Metering {
    /// Fuel enforces `spec.limits.fuel`; epoch interruption enforces
    /// `spec.limits.timeout` on guest code and yields CPU-bound guests to the
    /// executor every `epoch_tick`. Fuel alone cannot bound wall-clock time: a
    /// bulk memory instruction costs one unit however many bytes it touches.
    /// The default and the only mode the CLI uses.
    #[default]
    FuelAndEpoch,
    /// Epoch interruption only: `spec.limits.fuel` is not enforced. Benchmarks only.
    EpochOnly,
    /// Neither: a guest that never calls the host cannot be stopped. Benchmarks only.
    Unmetered,
}

impl Metering {
    /// Whether fuel is consumed and enforced.
    pub fn fuel(self) -> bool {
        self == Metering::FuelAndEpoch
    }

    /// Whether epoch deadlines interrupt guest code.
    pub fn epoch(self) -> bool {
        self != Metering::Unmetered
    }
}

/// Where agents' key-value state lives. Chosen by the operator, never by an agent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum KvStore {
    /// An embedded redb file, `<state_dir>/kv.redb`: one host.
    #[default]
    Embedded,
    /// A Redis server (`redis://host:port/db`): replicas of an agent share state.
    Redis(String),
}

/// How the host runs. Every field has a safe default (see [`HostConfig::default`]).
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// Directory of precompiled component artifacts. Created if missing.
    pub cache_dir: PathBuf,
    /// Key authenticating cache entries [default: `<cache_dir>/cache.key`, created
    /// owner-only if missing]. Point it at a mounted secret when the cache
    /// directory is shared, so that write access to the cache alone cannot
    /// plant artifacts.
    pub cache_key_file: Option<PathBuf>,
    /// Directory where secrets referenced by manifests are mounted, laid out like a
    /// Kubernetes secret volume: `<secrets_dir>/<secret name>/<key>`.
    pub secrets_dir: PathBuf,
    /// Instance allocator.
    pub allocator: Allocator,
    /// Number of instance slots the pooling allocator reserves: the most
    /// invocations that can be in flight at once in this process.
    pub max_instances: u32,
    /// Epoch tick: the granularity of wall-clock deadlines and of cooperative yields
    /// of CPU-bound guests back to the async executor.
    pub epoch_tick: Duration,
    /// Largest component file the host reads and compiles, in bytes; a larger
    /// file is refused before compilation (see [`MAX_COMPONENT_BYTES`]).
    pub max_component_bytes: u64,
    /// Fuel and epoch metering of guest code.
    pub metering: Metering,
    /// Where the host keeps durable state: the embedded key-value store
    /// (`kv.redb`), opened when the first agent with `keyValue` loads.
    pub state_dir: PathBuf,
    /// The key-value backend.
    pub kv_store: KvStore,
    /// Put the last user message of each model request into its audit record
    /// (redacted, truncated). Off by default: prompts may carry personal data.
    pub audit_llm_prompts: bool,
}

impl Default for HostConfig {
    /// Defaults: cache under `$XDG_CACHE_HOME/agent-host` (or `~/.cache/agent-host`,
    /// or the system temp dir), secrets under `/var/run/secrets/agent-host`,
    /// pooling allocator with 1000 slots, 10 ms epoch tick, components of at most
    /// [`MAX_COMPONENT_BYTES`] (64 MiB).
    fn default() -> Self {
        Self {
            cache_dir: default_cache_dir(),
            cache_key_file: None,
            secrets_dir: PathBuf::from("/var/run/secrets/agent-host"),
            allocator: Allocator::Pooling,
            max_instances: 1000,
            epoch_tick: Duration::from_millis(10),
            max_component_bytes: MAX_COMPONENT_BYTES,
            metering: Metering::FuelAndEpoch,
            state_dir: default_state_dir(),
            kv_store: KvStore::Embedded,
            audit_llm_prompts: false,
        }
    }
}

/// `$XDG_STATE_HOME/agent-host`, else `$HOME/.local/state/agent-host`, else `$TMPDIR/agent-host-state`.
pub fn default_state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("agent-host");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(home).join(".local/state/agent-host");
    }
    std::env::temp_dir().join("agent-host-state")
}

/// `$XDG_CACHE_HOME/agent-host`, else `$HOME/.cache/agent-host`, else `$TMPDIR/agent-host-cache`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("agent-host");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(home).join(".cache").join("agent-host");
    }
    std::env::temp_dir().join("agent-host-cache")
}
