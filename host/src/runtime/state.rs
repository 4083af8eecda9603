//! The data of one invocation's `Store`, and the linker that binds every
//! interface of the agent world to it (built once per engine): the WASI
//! basics here, every grantable capability through [`crate::cap::link`].

use wasmtime::component::{HasData, Linker, ResourceTable};
use wasmtime::Engine;
use wasmtime_wasi::cli::{WasiCli, WasiCliView as _};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView as _};
use wasmtime_wasi::random::WasiRandom;

use super::limiter::Limiter;
use crate::cap::{Core, Kind, States, StoreData};

/// Everything one invocation's store holds. Dropped with the store.
pub struct InvocationState {
    /// Handles, WASI basics, call counts, audit, log, deadline.
    pub(crate) core: Core,
    /// Each capability's state.
    pub(crate) caps: States,
    /// Memory, tables and instances.
    pub(crate) limiter: Limiter,
}

impl StoreData for InvocationState {
    fn parts(&mut self) -> (&mut Core, &mut States) {
        (&mut self.core, &mut self.caps)
    }
}

struct HasIo;

impl HasData for HasIo {
    type Data<'a> = &'a mut ResourceTable;
}

type S = InvocationState;

/// Links every interface of the agent world, and `wasi:sockets` with every
/// call denied. Each getter counts the call against its capability before
/// handing out the view.
pub fn build_linker(engine: &Engine) -> wasmtime::Result<Linker<S>> {
    use wasmtime_wasi::p2::bindings::{cli, clocks, random};
    use wasmtime_wasi_io::bindings::wasi::io;

    let mut linker = Linker::new(engine);
    let l = &mut linker;

    io::error::add_to_linker::<S, HasIo>(l, |s| &mut core(s, Kind::Io).table)?;
    io::poll::add_to_linker::<S, HasIo>(l, |s| &mut core(s, Kind::Io).table)?;
    io::streams::add_to_linker::<S, HasIo>(l, |s| &mut core(s, Kind::Io).table)?;

    clocks::wall_clock::add_to_linker::<S, WasiClocks>(l, |s| core(s, Kind::Clocks).clocks())?;
    clocks::monotonic_clock::add_to_linker::<S, WasiClocks>(l, |s| core(s, Kind::Clocks).clocks())?;
    random::random::add_to_linker::<S, WasiRandom>(l, |s| core(s, Kind::Random).wasi.random())?;
    random::insecure::add_to_linker::<S, WasiRandom>(l, |s| core(s, Kind::Random).wasi.random())?;
    random::insecure_seed::add_to_linker::<S, WasiRandom>(l, |s| {
        core(s, Kind::Random).wasi.random()
    })?;
    cli::exit::add_to_linker::<S, WasiCli>(l, |s| core(s, Kind::Exit).cli())?;

    link_sockets(l)?;
    crate::cap::link(l)?;
    Ok(linker)
}

/// `wasi:sockets`, never granted: linked to wasmtime-wasi's implementation on
/// a context that allows no TCP, UDP or name lookup (set per invocation), so
/// each way to obtain a socket or an address fails with `access-denied` (a
/// name lookup with `permanent-resolver-failure`) before any host socket
/// exists; those calls are audited and counted as denials. Without a socket
/// the other functions cannot be reached.
fn link_sockets(l: &mut Linker<S>) -> wasmtime::Result<()> {
    use wasmtime_wasi::p2::bindings::sockets;
    use wasmtime_wasi::sockets::{WasiSockets, WasiSocketsCtxView};

    fn view(s: &mut S) -> WasiSocketsCtxView<'_> {
        let core = core(s, Kind::Sockets);
        WasiSocketsCtxView {
            ctx: core.wasi.sockets(),
            table: &mut core.table,
        }
    }
    fn denied<'a>(s: &'a mut S, action: &str) -> WasiSocketsCtxView<'a> {
        // Past spec.limits.maxDenials the runtime ends the invocation.
        let _ = s
            .core
            .deny_ungranted(Kind::Sockets, action, "wasi:sockets (never granted)");
        view(s)
    }
    sockets::tcp_create_socket::add_to_linker::<S, WasiSockets>(l, |s| {
        denied(s, "create-tcp-socket")
    })?;
    sockets::udp_create_socket::add_to_linker::<S, WasiSockets>(l, |s| {
        denied(s, "create-udp-socket")
    })?;
    sockets::ip_name_lookup::add_to_linker::<S, WasiSockets>(l, |s| {
        denied(s, "resolve-addresses")
    })?;
    sockets::instance_network::add_to_linker::<S, WasiSockets>(l, view)?;
    sockets::network::add_to_linker::<S, WasiSockets>(l, &Default::default(), view)?;
    sockets::tcp::add_to_linker::<S, WasiSockets>(l, view)?;
    sockets::udp::add_to_linker::<S, WasiSockets>(l, view)?;
    Ok(())
}

fn core(s: &mut S, kind: Kind) -> &mut Core {
    s.core.count(kind)
}
