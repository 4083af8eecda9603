//! Every `open-at` (the one way a guest reaches a file) is re-linked over
//! wasmtime-wasi's to leave an audit record of the path and the decision, and
//! to count refusals: a path outside the mount, or a write to a read-only
//! mount, is a capability denial. `get-directories` is re-linked too: it hands
//! out the directories held since configure (`cap::fs::Preopens`), and learns
//! the guest path of each, so records name `/runbooks/a.md`, not `a.md`.

use std::borrow::Cow;
use std::collections::HashMap;

use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::filesystem::WasiFilesystemView as _;
use wasmtime_wasi::p2::bindings::filesystem::types::{
    self as fs, Descriptor, DescriptorFlags, ErrorCode, HostDescriptor, OpenFlags, PathFlags,
};

use super::quota::{charge_created_file, TYPES};
use super::Filesystem;
use crate::audit::Decision;
use crate::cap::HasCapability;
use crate::cap::Kind;
use crate::redact::{clip, MAX_FIELD_BYTES};

/// The preopens instance (semver-compatible imports resolve to it).
const PREOPENS: &str = "wasi:filesystem/preopens@0.2.12";
/// Most directory paths remembered per invocation.
const MAX_DIR_PATHS: usize = 1024;

/// Guest paths of the directory descriptors an invocation opened, by handle;
/// bounded so a guest opening directories in a loop cannot grow it without end.
#[derive(Debug, Default)]
pub struct DirPaths(HashMap<u32, String>);

impl DirPaths {
    /// Keeps at most [`MAX_FIELD_BYTES`] of `path`: it is only ever displayed,
    /// and a guest must not make the host hold 1024 multi-megabyte paths.
    fn remember(&mut self, rep: u32, path: String) {
        if self.0.len() < MAX_DIR_PATHS || self.0.contains_key(&rep) {
            let path = match clip(&path, MAX_FIELD_BYTES) {
                Cow::Borrowed(_) => path,
                Cow::Owned(cut) => cut,
            };
            self.0.insert(rep, path);
        }
    }

    /// `path` as the guest sees it from the root, when its base is known.
    fn resolve(&self, base: u32, path: &str) -> String {
        match self.0.get(&base) {
            Some(dir) if path.is_empty() || path == "." => dir.clone(),
            Some(dir) => format!("{}/{path}", dir.trim_end_matches('/')),
            None => path.to_string(),
        }
    }
}

type OpenAtArgs = (
    Resource<Descriptor>,
    PathFlags,
    String,
    OpenFlags,
    DescriptorFlags,
);

/// Re-links `preopens.get-directories` and `[method]descriptor.open-at`,
/// after wasmtime-wasi's were added.
pub fn add_to_linker<T: HasCapability<Filesystem>>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker
        .instance(PREOPENS)?
        .func_wrap("get-directories", |mut store, (): ()| {
            let view = store.data_mut().capability();
            let core = view.core.count(Kind::Filesystem);
            // The directories opened at configure, never reopened by path.
            let dirs = view.state.preopens.push_into(&mut core.table)?;
            for (fd, path) in &dirs {
                view.state.dir_paths.remember(fd.rep(), path.clone());
            }
            Ok((dirs,))
        })?;
    linker.instance(TYPES)?.func_wrap_async(
        "[method]descriptor.open-at",
        |mut store, (fd, path_flags, path, oflags, flags): OpenAtArgs| {
            let view = store.data_mut().capability();
            // The path is guest text: redacted and bounded before the span carries it.
            let span = tracing::info_span!("file.open", path = %view.core.audit.clean(&path));
            let open = async move {
                let fs = store.data_mut().capability();
                let core = fs.core.count(Kind::Filesystem);
                let audit = core.audit.clone();
                let target = fs.state.dir_paths.resolve(fd.rep(), &path);
                let quota = fs.state.quota.clone();
                let mut view = core.filesystem();
                let charged = match oflags.contains(OpenFlags::CREATE) {
                    true => match charge_created_file(&quota, &mut view, &fd, path_flags, &path)
                        .await
                    {
                        Ok(n) => n,
                        Err(e) => return Ok((Err(e),)),
                    },
                    false => 0,
                };
                let opened =
                    HostDescriptor::open_at(&mut view, fd, path_flags, path, oflags, flags).await;
                let result = match opened {
                    Ok(d) => Ok(d),
                    Err(e) => {
                        quota.refund(charged);
                        Err(fs::Host::convert_error_code(&mut view, e)?)
                    }
                };
                let writes = flags.contains(DescriptorFlags::WRITE)
                    || oflags.intersects(OpenFlags::CREATE | OpenFlags::TRUNCATE);
                let action = if writes { "open-write" } else { "open-read" };
                let state = store.data_mut().capability().state;
                match &result {
                    Err(
                        code @ (ErrorCode::NotPermitted | ErrorCode::Access | ErrorCode::ReadOnly),
                    ) => {
                        state.denied += 1;
                        let reason = format!(
                            "{code:?}: outside the granted mounts or not allowed by the mount's mode"
                        );
                        // Past spec.limits.maxDenials the invocation ends here.
                        audit.deny(Kind::Filesystem, action, &target, &reason)?;
                    }
                    Ok(d) => {
                        state.dir_paths.remember(d.rep(), target.clone());
                        audit.record(
                            Kind::Filesystem,
                            action,
                            &target,
                            Decision::Allow,
                            Some("spec.capabilities.filesystem"),
                            None,
                        );
                    }
                    Err(_) => {}
                }
                Ok((result,))
            };
            Box::new(tracing::Instrument::instrument(open, span))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_against_known_directories_and_the_map_is_bounded() {
        let mut dirs = DirPaths::default();
        dirs.remember(1, "/runbooks".into());
        dirs.remember(2, "/".into());
        assert_eq!(dirs.resolve(1, "a.md"), "/runbooks/a.md");
        assert_eq!(dirs.resolve(1, "."), "/runbooks");
        assert_eq!(dirs.resolve(2, "etc/passwd"), "/etc/passwd");
        assert_eq!(dirs.resolve(9, "x"), "x", "unknown base: the path as given");
        for rep in 10..(10 + 2 * MAX_DIR_PATHS as u32) {
            dirs.remember(rep, format!("/d{rep}"));
        }
        assert_eq!(dirs.0.len(), MAX_DIR_PATHS);
        dirs.remember(1, "d".repeat(10 * MAX_FIELD_BYTES));
        assert!(
            dirs.0[&1].len() < MAX_FIELD_BYTES + 32,
            "paths are kept cut"
        );
    }
}
