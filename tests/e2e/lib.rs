//! End-to-end tests of agent-host: real guest components, built to
//! wasm32-wasip2 by `tests/guests` (`agent-host-test-guests`), run through the real host. The tests are
//! the modules of `e2e/main.rs` (one test binary); this library holds what they share.

pub mod support;

pub use agent_host_test_guests as guests;
