//! Opening a mount root once, at configure, without ever following a symlink.
//!
//! A mount is opened one path component at a time with
//! `O_PATH | O_DIRECTORY | O_NOFOLLOW` (the same `O_PATH` directory handle
//! wasmtime-wasi's own `preopened_dir` makes), so no symlink anywhere in the
//! host path is followed: a symlink planted where a mount's directory (or one
//! of its parents) used to be is refused at load instead of being resolved to
//! wherever it points. The handle is then kept for the agent's lifetime, so a
//! rename or swap after load cannot change which directory invocations see.

use std::fs::File;
use std::io;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{fstat, openat, statat, AtFlags, FileType, Mode, OFlags, CWD};

/// A directory opened without following symlinks, and the path it was opened by.
#[derive(Debug)]
pub(crate) struct OpenedDir {
    /// The `O_PATH` directory handle.
    pub(crate) file: File,
    /// The absolute path, with no symlink in it (so it is canonical).
    pub(crate) path: PathBuf,
}

/// Why a mount root could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    /// A component of the path is a symbolic link.
    #[error(
        "{link} is a symbolic link; mount roots are opened without following symlinks, \
         so name the real directory{}",
        .target.as_ref().map(|t| format!(" ({})", t.display())).unwrap_or_default()
    )]
    Symlink {
        /// The path up to and including the link.
        link: PathBuf,
        /// Where the link resolves now, as a hint to the operator.
        target: Option<PathBuf>,
    },
    /// A component is neither a directory nor a symlink.
    #[error("{0} is not a directory; only directories can be mounted")]
    NotADirectory(PathBuf),
    /// The path uses `..`, which the manifest refuses anyway.
    #[error("{0} contains `..`; name the directory directly")]
    ParentDir(PathBuf),
    /// The path is not absolute (the caller joins relative paths to a base).
    #[error("{0} is not an absolute path")]
    Relative(PathBuf),
    /// Any other I/O error (missing directory, permission).
    #[error("{path}: {source}; the directory must exist on the host")]
    Io {
        /// The path up to the failing component.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// Opens the absolute directory `path` one component at a time, refusing a
/// symlink in any component (final one included).
pub(crate) fn open_dir_nofollow(path: &Path) -> Result<OpenedDir, OpenError> {
    if !path.is_absolute() {
        return Err(OpenError::Relative(path.to_path_buf()));
    }
    if path
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::Prefix(_)))
    {
        return Err(OpenError::ParentDir(path.to_path_buf()));
    }
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut walked = PathBuf::from("/");
    let mut dir = openat(CWD, "/", flags, Mode::empty()).map_err(|e| io_error(&walked, e))?;
    for component in path.components() {
        let Component::Normal(name) = component else {
            continue; // the root and `.`
        };
        walked.push(name);
        // O_PATH | O_NOFOLLOW on a symlink may open the link itself instead of
        // failing, so the type of every opened component is checked as well.
        let opened = openat(&dir, name, flags, Mode::empty())
            .and_then(|fd| Ok((file_type(&fstat(&fd)?), fd)));
        match opened {
            Ok((FileType::Directory, fd)) => dir = fd,
            Ok(_) | Err(_) => {
                let why = match statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) if file_type(&st) == FileType::Symlink => OpenError::Symlink {
                        target: walked.canonicalize().ok(),
                        link: walked,
                    },
                    Ok(_) => OpenError::NotADirectory(walked),
                    Err(e) => io_error(&walked, opened.err().unwrap_or(e)),
                };
                return Err(why);
            }
        }
    }
    Ok(OpenedDir {
        file: File::from(dir),
        path: walked,
    })
}

fn file_type(st: &rustix::fs::Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

fn io_error(path: &Path, errno: rustix::io::Errno) -> OpenError {
    OpenError::Io {
        path: path.to_path_buf(),
        source: errno.into(),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{symlink, MetadataExt as _};

    use super::*;

    fn root() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        (dir, root)
    }

    #[test]
    fn the_held_handle_is_the_directory_opened_even_after_it_is_renamed() {
        let (_dir, root) = root();
        std::fs::create_dir(root.join("data")).unwrap();
        let opened = open_dir_nofollow(&root.join("data")).unwrap();
        assert_eq!(opened.path, root.join("data"));
        std::fs::rename(root.join("data"), root.join("moved")).unwrap();
        let held = opened.file.metadata().unwrap();
        let moved = std::fs::metadata(root.join("moved")).unwrap();
        assert_eq!((held.dev(), held.ino()), (moved.dev(), moved.ino()));
    }

    #[test]
    fn a_symlink_as_the_mount_root_is_refused_naming_its_target() {
        let (_dir, root) = root();
        std::fs::create_dir(root.join("real")).unwrap();
        symlink(root.join("real"), root.join("link")).unwrap();
        let err = open_dir_nofollow(&root.join("link")).unwrap_err();
        assert!(matches!(err, OpenError::Symlink { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("link is a symbolic link"), "{message}");
        assert!(
            message.contains(&root.join("real").display().to_string()),
            "{message}"
        );
    }

    #[test]
    fn a_symlink_in_a_parent_component_is_refused() {
        let (_dir, root) = root();
        std::fs::create_dir_all(root.join("real/sub")).unwrap();
        symlink("real", root.join("link")).unwrap();
        let err = open_dir_nofollow(&root.join("link/sub")).unwrap_err();
        assert!(
            matches!(&err, OpenError::Symlink { link, .. } if link == &root.join("link")),
            "{err:?}"
        );
    }

    #[test]
    fn files_missing_paths_and_dot_dot_are_refused_specifically() {
        let (_dir, root) = root();
        std::fs::write(root.join("f"), "").unwrap();
        assert!(matches!(
            open_dir_nofollow(&root.join("f")),
            Err(OpenError::NotADirectory(_))
        ));
        assert!(matches!(
            open_dir_nofollow(&root.join("nope")),
            Err(OpenError::Io { .. })
        ));
        assert!(matches!(
            open_dir_nofollow(&root.join("f/..")),
            Err(OpenError::ParentDir(_))
        ));
        assert!(matches!(
            open_dir_nofollow(Path::new("rel")),
            Err(OpenError::Relative(_))
        ));
    }
}
