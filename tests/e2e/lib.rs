//! End-to-end tests of agent-host: real guest components, built to
//! wasm32-wasip2 by `tests/guests` (`agent-host-test-guests`), run through the real host. The tests are in
//! `e2e/*.rs`; this library holds what they share.

pub mod support;

pub use agent_host_test_guests as guests;

#[cfg(test)]
mod coverage {
    /// Every test program in `tests/programs/examples/` is run by some test:
    /// a program nobody runs is an attack nobody checks.
    #[test]
    fn every_test_program_is_used_by_a_test() {
        let sources = [
            include_str!("budgets.rs"),
            include_str!("capabilities.rs"),
            include_str!("examples.rs"),
            include_str!("hostile_artifacts.rs"),
            include_str!("hostile_env.rs"),
            include_str!("hostile_fs.rs"),
            include_str!("hostile_http.rs"),
            include_str!("hostile_resources.rs"),
            include_str!("hostile_secrets.rs"),
            include_str!("keyvalue.rs"),
            include_str!("llm.rs"),
            include_str!("loading.rs"),
            include_str!("../../host/tests/cli.rs"),
            include_str!("../../host/tests/serve.rs"),
            include_str!("../../host/tests/pod.rs"),
            include_str!("../../bench/src/scenarios.rs"),
        ]
        .concat();
        let mut unused = Vec::new();
        macro_rules! check {
            ($name:ident) => {
                let constant = format!("guests::{}", stringify!($name).to_uppercase());
                if !sources.contains(&constant) {
                    unused.push(constant);
                }
            };
        }
        agent_host_test_guests::foreach_program!(check);
        assert!(unused.is_empty(), "test programs no test runs: {unused:?}");
    }
}
