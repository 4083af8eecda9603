//! `wasi:filesystem`: only the directories declared in
//! `spec.capabilities.filesystem` are visible, each as a preopen; a read-only
//! mount allows no create, write, truncate, rename, link or unlink.
//!
//! Each mount root is opened once, at configure, without following any
//! symlink in its host path (`open.rs`); every invocation's preopen is that
//! held directory (handed out by the re-linked `get-directories`, see
//! [`audit`]), never the path opened again, so renaming or replacing the
//! directory after load cannot redirect a mount. Mounts a writable mount
//! contains are refused host-wide ([`registry`]).
//!
//! Path resolution inside a preopen is wasmtime-wasi's (cap-std): `..` and
//! symlinks cannot leave the preopened directory.

pub mod audit;
mod open;
pub mod quota;
pub mod registry;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::filesystem::{Descriptor, Dir};
use wasmtime_wasi::{FsPerms, OpenMode};

use serde::Serialize;
use wasmtime::component::Linker;
use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView as _};

use super::imports::Binding;
use super::{Capability, ConfigureCx, ConfigureError, HasCapability, Kind, PrepareCx};
use crate::config::HostConfig;
use crate::manifest::{Limits, MountSpec};
use registry::{MountLease, MountRegistry};

/// The `filesystem` capability: the declared mounts as preopens, writes
/// charged to `maxWriteBytes`, every open audited.
pub struct Filesystem;

/// One invocation's filesystem state.
#[derive(Debug)]
pub struct FsState {
    /// The mount roots held open since configure (the only preopens).
    pub(crate) preopens: Preopens,
    /// Bytes the invocation may still write.
    pub(crate) quota: quota::WriteQuota,
    /// Guest paths of the directories it opened, for audit records.
    pub(crate) dir_paths: audit::DirPaths,
    /// Opens refused (outside a mount, or writes to a read-only one).
    pub(crate) denied: u32,
}

/// What one invocation did with files.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FsUsage {
    /// Bytes charged to `maxWriteBytes`: file data, growth past the end of a
    /// file, and [`quota::ENTRY_COST`] per created entry.
    pub file_write_bytes: u64,
    /// File opens refused (outside every mount, or a write to a read-only one).
    pub file_denied: u32,
}

impl Capability for Filesystem {
    const KIND: Kind = Kind::Filesystem;
    const INTERFACES: &'static [&'static str] =
        &["wasi:filesystem/types", "wasi:filesystem/preopens"];
    /// Every mount of every agent prepared and not yet dropped.
    type Host = Arc<MountRegistry>;
    type Grant = FsGrant;
    type State = FsState;
    type Usage = FsUsage;

    fn host(_: &HostConfig) -> Arc<MountRegistry> {
        Arc::default()
    }

    fn link<T: HasCapability<Self>>(l: &mut Linker<T>) -> wasmtime::Result<()> {
        use wasmtime_wasi::p2::bindings::filesystem;
        fn view<T: HasCapability<Filesystem>>(
            s: &mut T,
        ) -> wasmtime_wasi::filesystem::WasiFilesystemCtxView<'_> {
            s.capability().core.count(Kind::Filesystem).filesystem()
        }
        filesystem::types::add_to_linker::<T, WasiFilesystem>(l, view)?;
        filesystem::preopens::add_to_linker::<T, WasiFilesystem>(l, view)?;
        quota::add_to_linker(l)?;
        audit::add_to_linker(l)
    }

    /// Compiles the mounts and registers them host-wide: a mount inside a
    /// writable mount of any served agent is refused.
    fn configure(
        registry: &Arc<MountRegistry>,
        cx: &ConfigureCx<'_>,
    ) -> Result<FsGrant, ConfigureError> {
        let mut grant = FsGrant::configure(&cx.agent.spec.capabilities.filesystem, cx.base_dir)?;
        grant.register(registry, &cx.owner())?;
        Ok(grant)
    }

    fn prepare(_: &Arc<MountRegistry>, grant: &FsGrant, cx: &mut PrepareCx<'_>) -> FsState {
        FsState {
            preopens: grant.prepare(),
            quota: quota::WriteQuota::new(cx.limits.max_write_bytes.bytes()),
            dir_paths: Default::default(),
            denied: 0,
        }
    }

    async fn finish(
        state: FsState,
        usage: &mut FsUsage,
        _: &mut Vec<super::tool_call::ToolCall>,
    ) -> Option<super::CommitIntent> {
        usage.file_write_bytes = state.quota.used();
        usage.file_denied = state.denied;
        None
    }

    fn bind(_: &str, grant: &FsGrant, _: &Limits) -> Binding {
        if grant.mounts().is_empty() {
            return Binding::inert("no preopened directories");
        }
        Binding::granted(Kind::Filesystem, grant.describe_mounts().join(", "))
    }

    fn describe(grant: &FsGrant) -> Vec<String> {
        grant
            .mounts()
            .iter()
            .map(|m| {
                format!(
                    "{} <- {} ({})",
                    m.guest_path,
                    m.host_path.display(),
                    m.mode()
                )
            })
            .collect()
    }

    fn denials(usage: &FsUsage) -> u64 {
        u64::from(usage.file_denied)
    }

    fn report(_: &FsGrant, usage: &FsUsage, limits: &Limits) -> Option<String> {
        Some(format!(
            "{} written of {}, {} denied",
            crate::manifest::human_bytes(usage.file_write_bytes),
            limits.max_write_bytes,
            usage.file_denied
        ))
    }
}

/// One compiled mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// Absolute host directory, with no symlink in it.
    pub host_path: PathBuf,
    /// Absolute path the guest sees.
    pub guest_path: String,
    /// Whether the guest may only read.
    pub read_only: bool,
}

impl Mount {
    /// `read-only` or `read-write`.
    pub fn mode(&self) -> &'static str {
        if self.read_only {
            "read-only"
        } else {
            "read-write"
        }
    }
}

/// The directories opened at configure, with their guest paths: what every
/// invocation's `get-directories` returns. Cheap to clone; clones share the handles.
#[derive(Clone, Default)]
pub struct Preopens(Arc<[(Dir, String)]>);

impl fmt::Debug for Preopens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(_, g)| g))
            .finish()
    }
}

impl Preopens {
    /// Pushes a descriptor for each held directory into `table`, with its guest path.
    pub(crate) fn push_into(
        &self,
        table: &mut ResourceTable,
    ) -> wasmtime::Result<Vec<(Resource<Descriptor>, String)>> {
        self.0
            .iter()
            .map(|(dir, guest)| Ok((table.push(Descriptor::Dir(dir.clone()))?, guest.clone())))
            .collect()
    }
}

/// The preopens of one agent.
#[derive(Clone, Debug, Default)]
pub struct FsGrant {
    mounts: Vec<Mount>,
    preopens: Preopens,
    /// The agent's place in the host's mount registry, once registered.
    lease: Option<Arc<MountLease>>,
}

impl FsGrant {
    /// Resolves each host path (a relative one against `base_dir`, itself
    /// canonicalised: the operator chose it) and opens it without following
    /// symlinks; a host path that is, or passes through, a symlink, or that is
    /// not an existing directory, fails the load.
    pub fn configure(decls: &[MountSpec], base_dir: &Path) -> Result<Self, ConfigureError> {
        let mut mounts = Vec::with_capacity(decls.len());
        let mut preopens = Vec::with_capacity(decls.len());
        for (i, decl) in decls.iter().enumerate() {
            let field = format!("spec.capabilities.filesystem[{i}].hostPath");
            let host_path = if decl.host_path.is_absolute() {
                decl.host_path.clone()
            } else {
                // `agent.yaml`'s parent is the empty path: the current directory.
                let base_dir = match base_dir.as_os_str().is_empty() {
                    true => Path::new("."),
                    false => base_dir,
                };
                let base = base_dir.canonicalize().map_err(|e| {
                    let base = base_dir.display();
                    ConfigureError::new(
                        &field,
                        format!(
                            "{base}: {e}; relative paths resolve against the manifest's directory"
                        ),
                    )
                })?;
                base.join(&decl.host_path)
            };
            let opened = open::open_dir_nofollow(&host_path)
                .map_err(|e| ConfigureError::new(&field, e.to_string()))?;
            let (perms, mode) = if decl.read_only {
                (FsPerms::ReadOnly, OpenMode::READ)
            } else {
                (FsPerms::ReadWrite, OpenMode::READ | OpenMode::WRITE)
            };
            // As `WasiCtxBuilder::preopened_dir` builds it (blocking I/O off the executor).
            preopens.push((
                Dir::new(opened.file, perms, mode, false),
                decl.guest_path.clone(),
            ));
            mounts.push(Mount {
                host_path: opened.path,
                guest_path: decl.guest_path.clone(),
                read_only: decl.read_only,
            });
        }
        Ok(Self {
            mounts,
            preopens: Preopens(preopens.into()),
            lease: None,
        })
    }

    /// Registers the mounts host-wide as `agent`'s, refusing them if a writable
    /// mount would contain another (see [`registry`]). They stay registered as
    /// long as this grant (or a clone) lives.
    pub fn register(
        &mut self,
        registry: &Arc<MountRegistry>,
        agent: &str,
    ) -> Result<(), ConfigureError> {
        self.lease = Some(Arc::new(registry.register(agent, &self.mounts)?));
        Ok(())
    }

    /// The compiled mounts.
    pub fn mounts(&self) -> &[Mount] {
        &self.mounts
    }

    /// `guest path (mode)` of each mount.
    pub fn describe_mounts(&self) -> Vec<String> {
        self.mounts
            .iter()
            .map(|m| format!("{} ({})", m.guest_path, m.mode()))
            .collect()
    }

    /// Phase *prepare*: the held directories, for the invocation's `get-directories`.
    pub fn prepare(&self) -> Preopens {
        self.preopens.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_host_path_resolves_against_base_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("runbooks")).unwrap();
        let decl = MountSpec {
            host_path: "runbooks".into(),
            guest_path: "/runbooks".into(),
            read_only: true,
        };
        let grant = FsGrant::configure(&[decl], dir.path()).unwrap();
        assert_eq!(
            grant.mounts()[0].host_path,
            dir.path().canonicalize().unwrap().join("runbooks")
        );
    }

    #[test]
    fn missing_host_directory_fails_the_load_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let decl = MountSpec {
            host_path: "nope".into(),
            guest_path: "/x".into(),
            read_only: true,
        };
        let err = FsGrant::configure(&[decl], dir.path()).unwrap_err();
        assert_eq!(err.field, "spec.capabilities.filesystem[0].hostPath");
        assert!(err.message.contains("must exist"), "{}", err.message);
    }

    #[test]
    fn a_file_cannot_be_mounted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), "").unwrap();
        let decl = MountSpec {
            host_path: "f".into(),
            guest_path: "/x".into(),
            read_only: true,
        };
        let err = FsGrant::configure(&[decl], dir.path()).unwrap_err();
        assert!(err.message.contains("not a directory"), "{}", err.message);
    }

    #[test]
    fn a_host_path_that_is_a_symlink_is_refused_naming_the_field_and_the_real_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        std::os::unix::fs::symlink("real", dir.path().join("link")).unwrap();
        let decl = MountSpec {
            host_path: "link".into(),
            guest_path: "/x".into(),
            read_only: true,
        };
        let err = FsGrant::configure(&[decl], dir.path()).unwrap_err();
        assert_eq!(err.field, "spec.capabilities.filesystem[0].hostPath");
        assert!(
            err.message.contains("is a symbolic link"),
            "{}",
            err.message
        );
        let real = dir.path().canonicalize().unwrap().join("real");
        assert!(
            err.message.contains(&real.display().to_string()),
            "{}",
            err.message
        );
    }
}
