//! Every `open-at` (the one way a guest reaches a file) is re-linked over
//! wasmtime-wasi's to leave an audit record of the path and the decision, and
//! to count refusals: a path outside the mount, or a write to a read-only
//! mount, is a capability denial.

use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::filesystem::WasiFilesystemView as _;
use wasmtime_wasi::p2::bindings::filesystem::types::{
    self as fs, Descriptor, DescriptorFlags, ErrorCode, HostDescriptor, OpenFlags, PathFlags,
};

use super::quota::TYPES;
use crate::audit::Decision;
use crate::cap::Capability;
use crate::runtime::state::InvocationState;

/// Re-links `[method]descriptor.open-at`, after wasmtime-wasi's was added.
pub fn add_to_linker(linker: &mut Linker<InvocationState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.instance(TYPES)?.func_wrap_async(
        "[method]descriptor.open-at",
        |mut store,
         (fd, path_flags, path, oflags, flags): (
            Resource<Descriptor>,
            PathFlags,
            String,
            OpenFlags,
            DescriptorFlags,
        )| {
            let span = tracing::info_span!("file.open", path = %path);
            Box::new(tracing::Instrument::instrument(
                async move {
                    let state = store.data_mut();
                    state.calls.record(Capability::Filesystem);
                    let audit = state.audit.clone();
                    let mut view = state.filesystem();
                    let opened = HostDescriptor::open_at(
                        &mut view,
                        fd,
                        path_flags,
                        path.clone(),
                        oflags,
                        flags,
                    )
                    .await;
                    let result = match opened {
                        Ok(d) => Ok(d),
                        Err(e) => Err(fs::Host::convert_error_code(&mut view, e)?),
                    };
                    let action = if flags.contains(DescriptorFlags::WRITE)
                        || oflags.intersects(OpenFlags::CREATE | OpenFlags::TRUNCATE)
                    {
                        "open-write"
                    } else {
                        "open-read"
                    };
                    match &result {
                        Err(
                            code @ (ErrorCode::NotPermitted
                            | ErrorCode::Access
                            | ErrorCode::ReadOnly),
                        ) => {
                            state_denied(store.data_mut());
                            let reason = format!(
                                "{code:?}: outside the granted mount or not allowed by its mode"
                            );
                            audit.record(
                                Capability::Filesystem,
                                action,
                                &path,
                                Decision::Deny,
                                None,
                                Some(&reason),
                            );
                        }
                        Ok(_) => audit.record(
                            Capability::Filesystem,
                            action,
                            &path,
                            Decision::Allow,
                            Some("spec.capabilities.filesystem"),
                            None,
                        ),
                        Err(_) => {}
                    }
                    Ok((result,))
                },
                span,
            ))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

fn state_denied(state: &mut InvocationState) {
    state.file_denied += 1;
}
