//! End-to-end tests of agent-host: real guest components, built to
//! wasm32-wasip2 by `build.rs`, run through the real host. The tests are in
//! `e2e/*.rs`; this library holds what they share.

pub mod support;

/// Absolute paths of the guest components, built by `tests/build.rs`:
/// `HELLO`, `INCIDENT_RESPONDER` and one upper-case constant per test program,
/// plus `foreach_program!($mac)` calling `$mac!(<name>)` for each program
/// (exported at the crate root, and usable by name after this module).
#[macro_use]
pub mod guests {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));
}
