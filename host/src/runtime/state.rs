//! The data of one invocation's `Store`, and the linker that binds every
//! interface of the agent world to it (built once per engine).

use std::time::Instant;

use wasmtime::component::{HasData, Linker, ResourceTable};
use wasmtime::Engine;
use wasmtime_wasi::cli::{WasiCli, WasiCliView as _};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView as _};
use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView as _};
use wasmtime_wasi::random::WasiRandom;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttp, WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::limiter::Limiter;
use crate::audit::CapabilityAudit;
use crate::cap::fs::quota::WriteQuota;
use crate::cap::http::HttpPolicy;
use crate::cap::log::{GuestLog, HasLog, LogView};
use crate::cap::{Capability, HostCalls};

/// Everything one invocation's store holds. Dropped with the store.
pub struct InvocationState {
    pub(crate) wasi: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    pub(crate) http_policy: HttpPolicy,
    pub(crate) table: ResourceTable,
    pub(crate) log: GuestLog,
    pub(crate) limiter: Limiter,
    pub(crate) calls: HostCalls,
    pub(crate) deadline: Instant,
    pub(crate) write_quota: WriteQuota,
    pub(crate) audit: CapabilityAudit,
    /// File opens refused (outside a mount, or writes to a read-only one).
    pub(crate) file_denied: u32,
    pub(crate) dir_paths: crate::cap::fs::audit::DirPaths,
    /// The mount roots held open since configure (the only preopens).
    pub(crate) preopens: crate::cap::fs::Preopens,
    /// The invocation's key-value transaction, when the manifest grants state.
    pub(crate) kv: Option<crate::cap::kv::Transaction>,
    /// Bucket opens refused (buckets the manifest does not list).
    pub(crate) kv_denied: u32,
    /// The invocation's model access, when the manifest grants it.
    pub(crate) llm: Option<crate::cap::llm::host::LlmSession>,
}

impl WasiView for InvocationState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for InvocationState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_policy,
        }
    }
}

struct HasIo;

impl HasData for HasIo {
    type Data<'a> = &'a mut ResourceTable;
}

type S = InvocationState;

/// Links every interface of the agent world (and nothing else: no sockets).
/// Each getter counts the call against its capability before handing out the view.
pub fn build_linker(engine: &Engine) -> wasmtime::Result<Linker<S>> {
    use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random};
    use wasmtime_wasi_http::p2::bindings::http;
    use wasmtime_wasi_io::bindings::wasi::io;

    let mut linker = Linker::new(engine);
    let l = &mut linker;

    io::error::add_to_linker::<S, HasIo>(l, |s| count(s, Capability::Io).table())?;
    io::poll::add_to_linker::<S, HasIo>(l, |s| count(s, Capability::Io).table())?;
    io::streams::add_to_linker::<S, HasIo>(l, |s| count(s, Capability::Io).table())?;

    clocks::wall_clock::add_to_linker::<S, WasiClocks>(l, |s| {
        count(s, Capability::Clocks).clocks()
    })?;
    clocks::monotonic_clock::add_to_linker::<S, WasiClocks>(l, |s| {
        count(s, Capability::Clocks).clocks()
    })?;
    random::random::add_to_linker::<S, WasiRandom>(l, |s| {
        count(s, Capability::Random).wasi.random()
    })?;
    random::insecure::add_to_linker::<S, WasiRandom>(l, |s| {
        count(s, Capability::Random).wasi.random()
    })?;
    random::insecure_seed::add_to_linker::<S, WasiRandom>(l, |s| {
        count(s, Capability::Random).wasi.random()
    })?;

    cli::exit::add_to_linker::<S, WasiCli>(l, |s| count(s, Capability::Exit).cli())?;
    cli::environment::add_to_linker::<S, WasiCli>(l, |s| count(s, Capability::Env).cli())?;
    cli::stdin::add_to_linker::<S, WasiCli>(l, |s| count(s, Capability::Stdio).cli())?;
    cli::stdout::add_to_linker::<S, WasiCli>(l, |s| count(s, Capability::Stdio).cli())?;
    cli::stderr::add_to_linker::<S, WasiCli>(l, |s| count(s, Capability::Stdio).cli())?;
    cli::terminal_input::add_to_linker::<S, WasiCli>(l, |s| count(s, Capability::Stdio).cli())?;
    cli::terminal_output::add_to_linker::<S, WasiCli>(l, |s| count(s, Capability::Stdio).cli())?;
    cli::terminal_stdin::add_to_linker::<S, WasiCli>(l, |s| count(s, Capability::Stdio).cli())?;
    cli::terminal_stdout::add_to_linker::<S, WasiCli>(l, |s| count(s, Capability::Stdio).cli())?;
    cli::terminal_stderr::add_to_linker::<S, WasiCli>(l, |s| count(s, Capability::Stdio).cli())?;

    filesystem::types::add_to_linker::<S, WasiFilesystem>(l, |s| {
        count(s, Capability::Filesystem).filesystem()
    })?;
    filesystem::preopens::add_to_linker::<S, WasiFilesystem>(l, |s| {
        count(s, Capability::Filesystem).filesystem()
    })?;
    crate::cap::fs::quota::add_to_linker(l)?;
    crate::cap::fs::audit::add_to_linker(l)?;

    let http_options = wasmtime_wasi_http::p2::bindings::LinkOptions::default();
    http::outgoing_handler::add_to_linker::<S, WasiHttp>(l, |s| count(s, Capability::Http).http())?;
    http::types::add_to_linker::<S, WasiHttp>(l, &http_options.into(), |s| s.http())?;

    crate::cap::kv::host::add_to_linker(l, |s| {
        s.calls.record(Capability::KeyValue);
        crate::cap::kv::host::KvView {
            table: &mut s.table,
            txn: s.kv.as_mut(),
            audit: &s.audit,
            denied: &mut s.kv_denied,
        }
    })?;
    crate::bindings::agent_host::agent::llm::add_to_linker::<S, crate::cap::llm::host::HasLlm>(
        l,
        |s| {
            s.calls.record(Capability::Llm);
            crate::cap::llm::host::LlmView(s.llm.as_mut())
        },
    )?;
    crate::bindings::agent_host::agent::log::add_to_linker::<S, HasLog>(l, |s| {
        LogView(&count(s, Capability::Log).log)
    })?;
    Ok(linker)
}

fn count(s: &mut S, cap: Capability) -> &mut S {
    s.calls.record(cap);
    s
}

impl InvocationState {
    fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }
}
