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

/// Links every interface of the agent world (and nothing else: no sockets).
/// Each getter counts the call against its capability before handing out the view.
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

    crate::cap::link(l)?;
    Ok(linker)
}

fn core(s: &mut S, kind: Kind) -> &mut Core {
    s.core.count(kind)
}
