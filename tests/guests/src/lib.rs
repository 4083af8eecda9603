//! Absolute paths of the guest components, built by this crate's `build.rs`:
//! `HELLO`, `INCIDENT_RESPONDER` and one upper-case constant per test program
//! in `tests/programs/examples/`, plus `foreach_program!($mac)` calling
//! `$mac!(<name>)` for each program.
//!
//! A crate of its own so that both the end-to-end tests and the host's CLI
//! tests can depend on the built guests.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));
