//! Host-side bindings for the `agent-host:agent/agent` world (`wit/world.wit`).
//!
//! WASI interfaces are not regenerated here: they map onto wasmtime-wasi's and
//! wasmtime-wasi-http's implementations, so only the project's own interfaces
//! (`types`, `log`) and the `run` export are generated.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "agent",
    exports: { default: async },
    require_store_data_send: true,
    with: {
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:cli": wasmtime_wasi::p2::bindings::cli,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        "wasi:filesystem": wasmtime_wasi::p2::bindings::filesystem,
        "wasi:random": wasmtime_wasi::p2::bindings::random,
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "wasi:keyvalue/store.bucket": crate::bindings::Bucket,
    },
    imports: {
        "wasi:keyvalue": async | trappable,
        "agent-host:agent/llm.complete": async | trappable,
        "agent-host:agent/tools.list-tools": async | trappable,
        "agent-host:agent/tools.call-tool": async | trappable,
    },
});

pub use self::agent_host::agent::log::Level;

/// A bucket the guest opened (`wasi:keyvalue/store.bucket`): just its name;
/// the transaction behind it is the invocation's.
#[derive(Debug)]
pub struct Bucket {
    /// The bucket's name, as granted.
    pub name: String,
}
