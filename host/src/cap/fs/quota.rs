//! Per-invocation write quota on read-write mounts (`spec.limits.maxWriteBytes`).
//!
//! wasmtime-wasi has no hook on file writes, so every call that takes space on
//! the host's disk is re-linked over wasmtime-wasi's own and charged before it
//! runs:
//! * file data: `descriptor.write`, and the streams of `write-via-stream` and
//!   `append-via-stream` (wrapped in a counting stream);
//! * growth without data: `set-size` past the end of the file, and a write (or
//!   a write stream) starting past it, are charged the bytes the file grows by,
//!   so a sparse file of 1 TiB costs 1 TiB;
//! * entries: `create-directory-at`, `symlink-at`, `link-at`, and `open-at`
//!   creating a file (in `cap/fs/audit.rs`) cost [`ENTRY_COST`] each, so the
//!   number of entries is bounded too.
//!
//! Past the quota the guest sees `insufficient-space` (ENOSPC) and nothing
//! more is written. Calls the mount's mode refuses are not charged: they fail
//! as before, with `not-permitted`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::filesystem::{WasiFilesystemCtxView, WasiFilesystemView as _};
use wasmtime_wasi::p2::bindings::filesystem::types::{
    self as fs, Descriptor, ErrorCode, HostDescriptor,
};
use wasmtime_wasi::p2::{
    DynOutputStream, FsResult, OutputStream, Pollable, StreamError, StreamResult,
};

use super::Filesystem;
use crate::cap::HasCapability;
use crate::cap::Kind;

/// The instance the re-linked functions belong to (semver-compatible imports
/// such as `@0.2.0` resolve to it).
pub(crate) const TYPES: &str = "wasi:filesystem/types@0.2.12";
/// ENOSPC on Linux: maps to `error-code.insufficient-space` in the guest.
const ENOSPC: i32 = 28;

/// Charged to `maxWriteBytes` for every directory entry a guest creates
/// (file, directory, symlink, hard link), whatever its size. Empty files and
/// directories cost no data bytes, yet one 5 s invocation created 55,000 of
/// them: without this cost a guest exhausts the volume's inodes and grows
/// directories without bound. 4 KiB is the block a new directory or entry
/// typically occupies; the default 16 MiB quota allows 4,096 entries per invocation.
pub const ENTRY_COST: u64 = 4096;

/// Bytes one invocation may still take on disk (data, growth, entries).
/// Cheap to clone; clones share.
#[derive(Clone, Debug)]
pub struct WriteQuota {
    remaining: Arc<AtomicU64>,
    limit: u64,
}

impl WriteQuota {
    /// A quota of `limit` bytes.
    pub fn new(limit: u64) -> Self {
        Self {
            remaining: Arc::new(AtomicU64::new(limit)),
            limit,
        }
    }

    /// Bytes charged so far.
    pub fn used(&self) -> u64 {
        self.limit - self.remaining.load(Ordering::Relaxed)
    }

    /// Charges `n` bytes; false (and nothing charged) if they do not fit.
    fn take(&self, n: u64) -> bool {
        self.remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(n)
            })
            .is_ok()
    }

    fn left(&self) -> u64 {
        self.remaining.load(Ordering::Relaxed)
    }

    /// Returns `n` bytes charged for something that then did not happen.
    pub(crate) fn refund(&self, n: u64) {
        self.remaining.fetch_add(n, Ordering::Relaxed);
    }

    /// Charges `n` bytes, or answers `insufficient-space`.
    fn charge(&self, n: u64) -> Result<u64, ErrorCode> {
        match self.take(n) {
            true => Ok(n),
            false => Err(ErrorCode::InsufficientSpace),
        }
    }
}

/// The size of the file behind `fd` if the guest may write it; `None` for a
/// directory, a read-only file or a bad handle (the call itself then says why).
fn writable_file_len(view: &WasiFilesystemCtxView<'_>, fd: &Resource<Descriptor>) -> Option<u64> {
    match view.table.get(fd) {
        Ok(Descriptor::File(f)) if !f.perms.write_not_permitted() => {
            f.file.metadata().ok().map(|m| m.len())
        }
        _ => None,
    }
}

/// Whether `fd` is a directory the guest may create entries in.
fn writable_dir(view: &WasiFilesystemCtxView<'_>, fd: &Resource<Descriptor>) -> bool {
    matches!(view.table.get(fd), Ok(Descriptor::Dir(d)) if !d.perms.write_not_permitted())
}

/// Charges [`ENTRY_COST`] for a new entry in the directory `fd` (nothing if the
/// guest may not write there: the call is refused anyway).
fn charge_entry(
    quota: &WriteQuota,
    view: &WasiFilesystemCtxView<'_>,
    fd: &Resource<Descriptor>,
) -> Result<u64, ErrorCode> {
    match writable_dir(view, fd) {
        true => quota.charge(ENTRY_COST),
        false => Ok(0),
    }
}

/// For `open-at` with `create`: charges [`ENTRY_COST`] when nothing exists at
/// `path` yet (checked with `stat-at`, which the guest could call itself, so
/// the charge reveals nothing). Returns what was charged, to refund if the
/// open then fails.
pub(crate) async fn charge_created_file(
    quota: &WriteQuota,
    view: &mut WasiFilesystemCtxView<'_>,
    fd: &Resource<Descriptor>,
    path_flags: fs::PathFlags,
    path: &str,
) -> Result<u64, ErrorCode> {
    if !writable_dir(view, fd) {
        return Ok(0);
    }
    let base = Resource::new_borrow(fd.rep());
    match HostDescriptor::stat_at(view, base, path_flags, path.to_string()).await {
        Ok(_) => Ok(0),
        Err(_) => quota.charge(ENTRY_COST),
    }
}

/// Gives back `charged` if `result` failed, converting its error for the guest.
fn settle<T>(
    view: &mut WasiFilesystemCtxView<'_>,
    quota: &WriteQuota,
    charged: u64,
    result: FsResult<T>,
) -> wasmtime::Result<Result<T, ErrorCode>> {
    match result {
        Ok(v) => Ok(Ok(v)),
        Err(e) => {
            quota.refund(charged);
            Ok(Err(fs::Host::convert_error_code(view, e)?))
        }
    }
}

type LinkAtArgs = (
    Resource<Descriptor>,
    fs::PathFlags,
    String,
    Resource<Descriptor>,
    String,
);

/// Re-links the space-taking functions of `wasi:filesystem/types` over
/// wasmtime-wasi's, after those were added.
pub fn add_to_linker<T: HasCapability<Filesystem>>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut types = linker.instance(TYPES)?;
    types.func_wrap(
        "[method]descriptor.write-via-stream",
        |mut store, (fd, offset): (Resource<Descriptor>, u64)| {
            let (quota, mut view) = quota_and_view(store.data_mut());
            // A stream starting past the end leaves a hole the file grows by.
            let hole = writable_file_len(&view, &fd).map_or(0, |len| offset.saturating_sub(len));
            if let Err(e) = quota.charge(hole) {
                return Ok((Err(e),));
            }
            let opened = HostDescriptor::write_via_stream(&mut view, fd, offset);
            if opened.is_err() {
                quota.refund(hole);
            }
            Ok((counted(&mut view, opened, quota)?,))
        },
    )?;
    types.func_wrap(
        "[method]descriptor.append-via-stream",
        |mut store, (fd,): (Resource<Descriptor>,)| {
            let (quota, mut view) = quota_and_view(store.data_mut());
            let opened = HostDescriptor::append_via_stream(&mut view, fd);
            Ok((counted(&mut view, opened, quota)?,))
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.write",
        |mut store, (fd, buf, offset): (Resource<Descriptor>, Vec<u8>, u64)| {
            Box::new(async move {
                let (quota, mut view) = quota_and_view(store.data_mut());
                // The data, plus the hole when the write starts past the end.
                let hole =
                    writable_file_len(&view, &fd).map_or(0, |len| offset.saturating_sub(len));
                let charged = match quota.charge((buf.len() as u64).saturating_add(hole)) {
                    Ok(n) => n,
                    Err(e) => return Ok((Err(e),)),
                };
                let written = HostDescriptor::write(&mut view, fd, buf, offset).await;
                Ok((settle(&mut view, &quota, charged, written)?,))
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.set-size",
        |mut store, (fd, size): (Resource<Descriptor>, u64)| {
            Box::new(async move {
                let (quota, mut view) = quota_and_view(store.data_mut());
                let growth =
                    writable_file_len(&view, &fd).map_or(0, |len| size.saturating_sub(len));
                let charged = match quota.charge(growth) {
                    Ok(n) => n,
                    Err(e) => return Ok((Err(e),)),
                };
                let resized = HostDescriptor::set_size(&mut view, fd, size).await;
                Ok((settle(&mut view, &quota, charged, resized)?,))
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.create-directory-at",
        |mut store, (fd, path): (Resource<Descriptor>, String)| {
            Box::new(async move {
                let (quota, mut view) = quota_and_view(store.data_mut());
                let charged = match charge_entry(&quota, &view, &fd) {
                    Ok(n) => n,
                    Err(e) => return Ok((Err(e),)),
                };
                let created = HostDescriptor::create_directory_at(&mut view, fd, path).await;
                Ok((settle(&mut view, &quota, charged, created)?,))
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.symlink-at",
        |mut store, (fd, target, path): (Resource<Descriptor>, String, String)| {
            Box::new(async move {
                let (quota, mut view) = quota_and_view(store.data_mut());
                let charged = match charge_entry(&quota, &view, &fd) {
                    Ok(n) => n,
                    Err(e) => return Ok((Err(e),)),
                };
                let created = HostDescriptor::symlink_at(&mut view, fd, target, path).await;
                Ok((settle(&mut view, &quota, charged, created)?,))
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.link-at",
        |mut store, (fd, flags, old, new_dir, new): LinkAtArgs| {
            Box::new(async move {
                let (quota, mut view) = quota_and_view(store.data_mut());
                let charged = match charge_entry(&quota, &view, &new_dir) {
                    Ok(n) => n,
                    Err(e) => return Ok((Err(e),)),
                };
                let linked = HostDescriptor::link_at(&mut view, fd, flags, old, new_dir, new).await;
                Ok((settle(&mut view, &quota, charged, linked)?,))
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

fn quota_and_view<T: HasCapability<Filesystem>>(
    store: &mut T,
) -> (WriteQuota, WasiFilesystemCtxView<'_>) {
    let view = store.capability();
    let core = view.core.count(Kind::Filesystem);
    (view.state.quota.clone(), core.filesystem())
}

/// Swaps an opened stream for a counting one in the resource table.
fn counted(
    view: &mut WasiFilesystemCtxView<'_>,
    opened: FsResult<Resource<DynOutputStream>>,
    quota: WriteQuota,
) -> wasmtime::Result<Result<Resource<DynOutputStream>, ErrorCode>> {
    match opened {
        Ok(stream) => {
            let inner = view.table.delete(stream)?;
            let wrapped: DynOutputStream = Box::new(QuotaStream { inner, quota });
            Ok(Ok(view.table.push(wrapped)?))
        }
        Err(e) => Ok(Err(fs::Host::convert_error_code(view, e)?)),
    }
}

/// A file output stream that charges every byte to the invocation's quota.
struct QuotaStream {
    inner: DynOutputStream,
    quota: WriteQuota,
}

impl QuotaStream {
    fn exhausted(&self) -> StreamError {
        StreamError::LastOperationFailed(std::io::Error::from_raw_os_error(ENOSPC).into())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for QuotaStream {
    async fn ready(&mut self) {
        self.inner.ready().await
    }
}

impl OutputStream for QuotaStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if !self.quota.take(bytes.len() as u64) {
            return Err(self.exhausted());
        }
        self.inner.write(bytes)
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.inner.flush()
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        let left = self.quota.left();
        if left == 0 {
            return Err(self.exhausted());
        }
        Ok(self
            .inner
            .check_write()?
            .min(usize::try_from(left).unwrap_or(usize::MAX)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_charges_until_exhausted_and_never_goes_negative() {
        let q = WriteQuota::new(10);
        assert!(q.take(6));
        assert!(!q.take(5), "5 more do not fit in the 4 left");
        assert!(q.take(4));
        assert_eq!(q.used(), 10);
        assert!(!q.take(1));
    }
}
