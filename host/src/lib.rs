//! agent-host: runs AI-agent logic as WebAssembly components (wasm32-wasip2)
//! under the capabilities and budgets of an `Agent` manifest.
//!
//! The data path is short on purpose:
//!
//! ```text
//! manifest ──validate──▶ Grants + Limits ─┐
//! component ──compile/cache──▶ InstancePre ┴─▶ fresh Store + instance per task ──▶ run(task)
//! ```
//!
//! * [`manifest`] — the `Agent` resource (the same type is the CRD) and its validation.
//! * [`cap`] — one module per capability: its grant, its per-invocation state, its host impl.
//! * [`runtime`] — engine, compile cache, limits, instantiation and invocation.
//! * [`config`] — how the host itself runs (cache, secrets, allocator), apart from any manifest.
//! * [`server`] — serve mode: the HTTP API, admission, idempotency, graceful drain.
//! * [`oci`] — components from registries: pull by digest, cosign signatures, the trust policy, push and sign.
//! * [`state_store`] — durable invocations, queue, leases, shared budgets, on redb or Redis.
//! * [`audit`] — the hash-chained audit trail; [`metrics`] — Prometheus metrics;
//!   [`redact`] — how guest-influenced text is made safe to print.
#![deny(missing_docs)]

pub mod audit;
pub mod bindings;
pub mod cap;
pub mod cluster;
pub mod config;
pub mod latency;
pub mod manifest;
pub mod metrics;
pub mod oci;
pub mod redact;
pub mod runtime;
pub mod server;
pub mod state_store;
pub mod telemetry;

#[cfg(test)]
mod layering;

pub use config::HostConfig;
pub use runtime::{Invocation, InvocationError, PreparedAgent, Runtime, TaskInput, Usage};
