//! Absolute paths of the guest components, built by this crate's `build.rs`:
//! `HELLO`, `INCIDENT_RESPONDER` and one upper-case constant per test program
//! in `tests/programs/examples/`, plus `foreach_program!($mac)` calling
//! `$mac!(<name>)` for each program.
//!
//! A crate of its own so that both the end-to-end tests and the host's CLI
//! tests can depend on the built guests.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

/// Writes `<dir>/<name>.yaml`: an Agent named `name` running `component`, with
/// `spec` (YAML lines indented under `spec:`, e.g. `  limits: {...}`) after the
/// component; returns its path. Shared by every test that writes manifests.
pub fn write_manifest(
    dir: &std::path::Path,
    name: &str,
    component: &str,
    spec: &str,
) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    let text = format!(
        "apiVersion: agent-host.dev/v1alpha1\nkind: Agent\nmetadata:\n  name: {name}\nspec:\n  component:\n    path: {component}\n{spec}"
    );
    std::fs::write(&path, text).expect("write manifest");
    path
}
