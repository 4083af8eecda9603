//! Guest programs for agent-host's end-to-end tests: adversarial agents that
//! attack a limit or a sandbox boundary, and probes that report what they can
//! see. Each program is one file in `examples/`, built as its own component
//! (`cargo build -p test-programs --examples --target wasm32-wasip2`); the
//! build script of `agent-host-e2e` compiles them and generates one path
//! constant per program plus a `foreach_program!` macro.
//!
//! To add a program: add `examples/<name>.rs` (an agent using
//! `agent_host_guest::export_agent!`) and a matching `[[example]]` entry with
//! `crate-type = ["cdylib"]` in this crate's `Cargo.toml`.
