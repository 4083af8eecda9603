//! `wasi:filesystem`: only the directories declared in
//! `spec.capabilities.filesystem` are visible, each as a preopen; a read-only
//! mount allows no create, write, truncate, rename, link or unlink.
//!
//! Path resolution inside a preopen is wasmtime-wasi's (cap-std): `..` and
//! symlinks cannot leave the preopened directory.

pub mod audit;
pub mod quota;

use std::path::{Path, PathBuf};

use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use super::ConfigureError;
use crate::manifest::FsMount;

/// One compiled mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// Canonical host directory.
    pub host_path: PathBuf,
    /// Absolute path the guest sees.
    pub guest_path: String,
    /// Whether the guest may only read.
    pub read_only: bool,
}

/// The preopens of one agent.
#[derive(Clone, Debug, Default)]
pub struct FsGrant {
    mounts: Vec<Mount>,
}

impl FsGrant {
    /// Resolves (relative to `base_dir`) and canonicalises every host path; a
    /// host path that is not an existing directory fails the load.
    pub fn configure(decls: &[FsMount], base_dir: &Path) -> Result<Self, ConfigureError> {
        let mut mounts = Vec::with_capacity(decls.len());
        for (i, decl) in decls.iter().enumerate() {
            let field = format!("spec.capabilities.filesystem[{i}].hostPath");
            let host_path = base_dir.join(&decl.host_path);
            let canonical = host_path.canonicalize().map_err(|e| {
                ConfigureError::new(
                    &field,
                    format!(
                        "{}: {e}; the directory must exist on the host",
                        host_path.display()
                    ),
                )
            })?;
            if !canonical.is_dir() {
                return Err(ConfigureError::new(
                    field,
                    format!(
                        "{} is not a directory; only directories can be mounted",
                        canonical.display()
                    ),
                ));
            }
            mounts.push(Mount {
                host_path: canonical,
                guest_path: decl.guest_path.clone(),
                read_only: decl.read_only,
            });
        }
        Ok(Self { mounts })
    }

    /// The compiled mounts.
    pub fn mounts(&self) -> &[Mount] {
        &self.mounts
    }

    /// Phase *prepare*: preopens each mount with its permissions.
    pub fn prepare(&self, wasi: &mut WasiCtxBuilder) -> wasmtime::Result<()> {
        for m in &self.mounts {
            let perms = if m.read_only {
                FsPerms::ReadOnly
            } else {
                FsPerms::ReadWrite
            };
            wasi.preopened_dir(&m.host_path, &m.guest_path, perms)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_host_path_resolves_against_base_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("runbooks")).unwrap();
        let decl = FsMount {
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
        let decl = FsMount {
            host_path: "nope".into(),
            guest_path: "/x".into(),
            read_only: true,
        };
        let err = FsGrant::configure(&[decl], dir.path()).unwrap_err();
        assert_eq!(err.field, "spec.capabilities.filesystem[0].hostPath");
    }

    #[test]
    fn a_file_cannot_be_mounted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), "").unwrap();
        let decl = FsMount {
            host_path: "f".into(),
            guest_path: "/x".into(),
            read_only: true,
        };
        let err = FsGrant::configure(&[decl], dir.path()).unwrap_err();
        assert!(err.message.contains("not a directory"), "{}", err.message);
    }
}
