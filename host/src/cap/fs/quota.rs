//! Per-invocation write quota on read-write mounts (`spec.limits.maxWriteBytes`).
//!
//! wasmtime-wasi has no hook on file writes, so the three ways a guest writes
//! file data are re-linked over wasmtime-wasi's own: `descriptor.write` is
//! charged before it runs, and the streams of `write-via-stream` and
//! `append-via-stream` are wrapped in a counting stream. Past the quota the
//! guest sees `insufficient-space` (ENOSPC) and nothing more is written.

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

use crate::cap::Capability;
use crate::runtime::state::InvocationState;

/// The instance the re-linked functions belong to (semver-compatible imports
/// such as `@0.2.0` resolve to it).
pub(crate) const TYPES: &str = "wasi:filesystem/types@0.2.12";
/// ENOSPC on Linux: maps to `error-code.insufficient-space` in the guest.
const ENOSPC: i32 = 28;

/// Bytes of file data one invocation may still write. Cheap to clone; clones share.
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

    /// Bytes written so far.
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
}

/// Re-links the file-writing functions of `wasi:filesystem/types` over
/// wasmtime-wasi's, after those were added.
pub fn add_to_linker(linker: &mut Linker<InvocationState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut types = linker.instance(TYPES)?;
    types.func_wrap(
        "[method]descriptor.write-via-stream",
        |mut store, (fd, offset): (Resource<Descriptor>, u64)| {
            let (quota, mut view) = quota_and_view(store.data_mut());
            let opened = HostDescriptor::write_via_stream(&mut view, fd, offset);
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
                if !quota.take(buf.len() as u64) {
                    return Ok((Err(ErrorCode::InsufficientSpace),));
                }
                let written = match HostDescriptor::write(&mut view, fd, buf, offset).await {
                    Ok(n) => Ok(n),
                    Err(e) => Err(fs::Host::convert_error_code(&mut view, e)?),
                };
                Ok((written,))
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

fn quota_and_view(state: &mut InvocationState) -> (WriteQuota, WasiFilesystemCtxView<'_>) {
    state.calls.record(Capability::Filesystem);
    (state.write_quota.clone(), state.filesystem())
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
