//! Operator configuration: how the host runs, as opposed to what an agent may do.

use std::path::{Path, PathBuf};
use std::time::Duration;

mod store;
pub use store::{RedisSettings, Store, StoreError, StoreFlag, MAX_PASSWORD_FILE_BYTES};

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

/// Largest component file the host will read and compile: compiling is the
/// most expensive thing a (possibly hostile) artifact can make the host do.
pub const MAX_COMPONENT_BYTES: u64 = 64 << 20;

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
    /// Directory of the embedded store (`kv.redb`), opened when the first
    /// agent with `keyValue` loads; unused when [`HostConfig::store`] is Redis.
    pub state_dir: PathBuf,
    /// Where the host keeps its state (today: agents' key-value data).
    pub store: Store,
    /// Put the last user message of each model request into its audit record
    /// (redacted, truncated). Off by default: prompts may carry personal data.
    pub audit_llm_prompts: bool,
}

impl Default for HostConfig {
    /// [`HostConfig::new`] with the cache under [`default_cache_dir`] and the
    /// state under [`default_state_dir`]; when those refuse, a fresh private
    /// temporary directory each, so a library default is never a directory
    /// another user controls (the CLI refuses instead).
    fn default() -> Self {
        Self::new(
            default_cache_dir().unwrap_or_else(|_| fresh_private_dir(CACHE.temp_name)),
            default_state_dir().unwrap_or_else(|_| fresh_private_dir(STATE.temp_name)),
        )
    }
}

impl HostConfig {
    /// Defaults with these directories: secrets under
    /// `/var/run/secrets/agent-host`, pooling allocator with 1000 slots, 10 ms
    /// epoch tick, components of at most [`MAX_COMPONENT_BYTES`] (64 MiB).
    pub fn new(cache_dir: PathBuf, state_dir: PathBuf) -> Self {
        Self {
            cache_dir,
            cache_key_file: None,
            secrets_dir: PathBuf::from("/var/run/secrets/agent-host"),
            allocator: Allocator::Pooling,
            max_instances: 1000,
            epoch_tick: Duration::from_millis(10),
            max_component_bytes: MAX_COMPONENT_BYTES,
            metering: Metering::FuelAndEpoch,
            state_dir,
            store: Store::Embedded,
            audit_llm_prompts: false,
        }
    }
}

/// A default directory that cannot be used safely.
#[derive(Debug, thiserror::Error)]
#[error(
    "{path}: {problem}; the {what} directory falls back to the temp dir when {xdg} and HOME \
     are unset, and must then be owned by this user and writable by no one else: set {flag} \
     (or {var}), {xdg} or HOME"
)]
pub struct DirError {
    /// The directory refused.
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: String,
    what: &'static str,
    flag: &'static str,
    var: &'static str,
    xdg: &'static str,
}

/// How a default directory is found and named in errors.
struct DirKind {
    what: &'static str,
    xdg: &'static str,
    home_subdir: &'static str,
    temp_name: &'static str,
    flag: &'static str,
    var: &'static str,
}

const STATE: DirKind = DirKind {
    what: "state",
    xdg: "XDG_STATE_HOME",
    home_subdir: ".local/state/agent-host",
    temp_name: "agent-host-state",
    flag: "--state-dir",
    var: "AGENT_HOST_STATE_DIR",
};

const CACHE: DirKind = DirKind {
    what: "cache",
    xdg: "XDG_CACHE_HOME",
    home_subdir: ".cache/agent-host",
    temp_name: "agent-host-cache",
    flag: "--cache-dir",
    var: "AGENT_HOST_CACHE_DIR",
};

/// `$XDG_STATE_HOME/agent-host`, else `$HOME/.local/state/agent-host`, else
/// the per-user `$TMPDIR/agent-host-state-<uid>` (see [`default_cache_dir`]).
pub fn default_state_dir() -> Result<PathBuf, DirError> {
    default_dir(&STATE)
}

/// `$XDG_CACHE_HOME/agent-host`, else `$HOME/.cache/agent-host`, else the
/// per-user `$TMPDIR/agent-host-cache-<uid>`: created 0700, and refused when it
/// exists as a symlink, is owned by another user, or is group- or
/// world-writable. In a shared temp dir anyone could otherwise create it
/// first and plant compiled code or key-value state for the host to trust.
pub fn default_cache_dir() -> Result<PathBuf, DirError> {
    default_dir(&CACHE)
}

fn default_dir(kind: &DirKind) -> Result<PathBuf, DirError> {
    if let Some(dir) = std::env::var_os(kind.xdg).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("agent-host"));
    }
    if let Some(home) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(home).join(kind.home_subdir));
    }
    let uid = rustix::process::getuid().as_raw();
    let path = std::env::temp_dir().join(format!("{}-{uid}", kind.temp_name));
    private_dir(&path, uid).map_err(|problem| DirError {
        path: path.clone(),
        problem,
        what: kind.what,
        flag: kind.flag,
        var: kind.var,
        xdg: kind.xdg,
    })?;
    Ok(path)
}

/// Creates `path` owner-only if missing, then checks, without following a
/// symlink, that it is a directory owned by `uid` that no one else can write.
fn private_dir(path: &Path, uid: u32) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
    match std::fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create it: {e}")),
    }
    let meta = std::fs::symlink_metadata(path).map_err(|e| format!("cannot inspect it: {e}"))?;
    if meta.file_type().is_symlink() {
        return Err("it is a symbolic link".into());
    }
    if !meta.is_dir() {
        return Err("it is not a directory".into());
    }
    if meta.uid() != uid {
        return Err(format!(
            "it is owned by uid {}, not by this user (uid {uid})",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "it is group- or world-writable (mode {:o})",
            meta.mode() & 0o777
        ));
    }
    Ok(())
}

/// A new owner-only directory in the temp dir (mkdtemp), kept; a path that does
/// not exist (so that using it fails) if even that cannot be made.
fn fresh_private_dir(name: &str) -> PathBuf {
    tempfile::Builder::new()
        .prefix(&format!("{name}-"))
        .tempdir()
        .map(tempfile::TempDir::keep)
        .unwrap_or_else(|_| PathBuf::from("/nonexistent").join(name))
}

/// Why a small operator file (a key, a policy, a password) was not read.
#[derive(Debug)]
pub enum FileReadError {
    /// It could not be opened or read.
    Io(std::io::Error),
    /// It holds more than the bound.
    TooLarge {
        /// The bound, bytes.
        max: u64,
    },
}

impl std::fmt::Display for FileReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileReadError::Io(e) => e.fmt(f),
            FileReadError::TooLarge { max } => write!(f, "larger than {max} bytes"),
        }
    }
}

/// Reads `path` whole if it holds at most `max` bytes. The read itself is
/// bounded (`max + 1` bytes), so a file that grows, or a device that never
/// ends, cannot make the host buffer more.
pub fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, FileReadError> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(FileReadError::Io)?;
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(FileReadError::Io)?;
    if bytes.len() as u64 > max {
        return Err(FileReadError::TooLarge { max });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn uid() -> u32 {
        rustix::process::getuid().as_raw()
    }

    #[test]
    fn a_missing_fallback_directory_is_created_owner_only() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("agent-host-cache-1");
        private_dir(&dir, uid()).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        private_dir(&dir, uid()).expect("our own private directory is reused");
    }

    #[test]
    fn a_fallback_directory_writable_by_others_or_owned_by_another_user_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("agent-host-state-1");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = private_dir(&dir, uid()).unwrap_err();
        assert!(err.contains("group- or world-writable (mode 777)"), "{err}");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let err = private_dir(&dir, uid() + 1).unwrap_err();
        assert!(err.contains(&format!("owned by uid {}", uid())), "{err}");
    }

    #[test]
    fn a_fallback_directory_planted_as_a_symlink_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("theirs")).unwrap();
        let dir = tmp.path().join("agent-host-cache-1");
        std::os::unix::fs::symlink("theirs", &dir).unwrap();
        let err = private_dir(&dir, uid()).unwrap_err();
        assert!(err.contains("symbolic link"), "{err}");
    }

    #[test]
    fn the_refusal_names_the_flag_and_the_variables_to_set() {
        let err = DirError {
            path: "/tmp/agent-host-cache-1000".into(),
            problem: "it is owned by uid 0, not by this user (uid 1000)".into(),
            what: CACHE.what,
            flag: CACHE.flag,
            var: CACHE.var,
            xdg: CACHE.xdg,
        };
        let message = err.to_string();
        for needle in [
            "--cache-dir",
            "AGENT_HOST_CACHE_DIR",
            "XDG_CACHE_HOME",
            "HOME",
            "owned by uid 0",
        ] {
            assert!(message.contains(needle), "{needle}: {message}");
        }
    }
}
