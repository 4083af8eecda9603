//! The end-to-end suite as one test binary, so wasmtime is linked once rather
//! than once per file: each `e2e/<area>.rs` is a module here, and what they
//! share is the `agent-host-e2e` library (`support`, `guests`). All modules
//! run in one process: environment variables and the log subscriber are
//! process-wide (see `support::pod_host_environment` and `hostile_secrets`).

mod budgets;
mod capabilities;
mod conformance;
mod examples;
mod hostile_artifacts;
mod hostile_env;
mod hostile_fs;
mod hostile_http;
mod hostile_resources;
mod hostile_secrets;
mod key_value;
mod llm;
mod llm_replicas;
mod loading;
mod mcp_client;
mod side_effects;

mod coverage {
    /// Every test program in `tests/programs/examples/` is run by some test:
    /// a program nobody runs is an attack nobody checks.
    #[test]
    fn every_test_program_is_used_by_a_test() {
        let sources = [
            include_str!("budgets.rs"),
            include_str!("capabilities.rs"),
            include_str!("conformance.rs"),
            include_str!("examples.rs"),
            include_str!("hostile_artifacts.rs"),
            include_str!("hostile_env.rs"),
            include_str!("hostile_fs.rs"),
            include_str!("hostile_http.rs"),
            include_str!("hostile_resources.rs"),
            include_str!("hostile_secrets.rs"),
            include_str!("key_value.rs"),
            include_str!("llm.rs"),
            include_str!("llm_replicas.rs"),
            include_str!("loading.rs"),
            include_str!("mcp_client.rs"),
            include_str!("side_effects.rs"),
            include_str!("../../host/tests/cli.rs"),
            include_str!("../../host/tests/serve.rs"),
            include_str!("../../host/tests/pod.rs"),
            include_str!("../../host/tests/replicas.rs"),
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

    /// The library's own test harness is off (`test = false` in
    /// tests/Cargo.toml), so a test written there would silently never run.
    #[test]
    fn no_test_hides_in_the_shared_library_whose_harness_is_off() {
        let files = [
            ("tests/e2e/lib.rs", include_str!("lib.rs")),
            ("tests/e2e/support.rs", include_str!("support.rs")),
        ];
        for (file, text) in files {
            for marker in ["#[test]", "#[tokio::test", "#[cfg(test)]"] {
                assert!(
                    !text.contains(marker),
                    "{file} has `{marker}`, but the library's test harness is off \
                     (tests/Cargo.toml `test = false`) so it would never run: \
                     put the test in a module of tests/e2e/main.rs"
                );
            }
        }
    }
}
