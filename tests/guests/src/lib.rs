//! Absolute paths of the guest components, built by this crate's `build.rs`:
//! `HELLO`, `INCIDENT_RESPONDER` and one upper-case constant per test program
//! in `tests/programs/examples/`, plus `foreach_program!($mac)` calling
//! `$mac!(<name>)` for each program.
//!
//! A crate of its own so that both the end-to-end tests and the host's tests
//! can depend on the built guests, and on the loopback Redis servers and OCI
//! registry they share ([`redis`], [`registry`]).

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

pub mod redis;
pub mod registry;

/// Sends `sig` (`"STOP"`, `"CONT"`, `"TERM"`, `"KILL"`) to process `pid`,
/// failing the test if `kill` does.
pub fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{sig} {pid}");
}

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

/// A `redis-server` on a free loopback port, with persistence off, stopped
/// on drop: [`redis::RedisProc`] with its URL at hand. Shared by every test
/// that runs key-value state against Redis.
pub struct RedisServer {
    server: redis::RedisProc,
    /// `redis://127.0.0.1:<port>/0`
    pub url: String,
}

impl RedisServer {
    /// Starts the server and waits until it answers PING.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// [`RedisServer::start`] with `extra` arguments, which override the
    /// defaults (e.g. `--appendonly yes --appendfsync everysec`).
    pub fn start_with(extra: &[&str]) -> Self {
        let server = redis::RedisProc::start(extra);
        let url = server.url();
        RedisServer { server, url }
    }

    /// The server's process id (to SIGSTOP it: a Redis that stops answering).
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    /// Sends `sig` to the server (`"STOP"`: a Redis that stops answering).
    pub fn signal(&self, sig: &str) {
        self.server.signal(sig);
    }
}

/// The workspace root (where `scripts/`, `wit/` and `target/` are).
pub fn workspace() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds the Python agent in `app_dir` (relative to the workspace) with
/// `scripts/build-python-agent.py` into `target/guests/python/<name>.wasm`
/// (componentize-py, from scripts/install-tools.sh) and returns its path.
pub fn python_guest(app_dir: &str, name: &str) -> String {
    let mut command = std::process::Command::new("python3");
    command.arg(workspace().join("scripts/build-python-agent.py"));
    interpreter_guest(command, app_dir, &format!("python/{name}"))
}

/// Builds the TypeScript agent in `app_dir` (relative to the workspace) with
/// `scripts/build-ts-agent.sh` into `target/guests/ts/<name>.wasm` (jco and
/// ComponentizeJS, installed by the script with npm) and returns its path.
pub fn ts_guest(app_dir: &str, name: &str) -> String {
    let mut command = std::process::Command::new("bash");
    command.arg(workspace().join("scripts/build-ts-agent.sh"));
    interpreter_guest(command, app_dir, &format!("ts/{name}"))
}

/// Runs `build APP_DIR OUT` once per test process for `key` (the scripts
/// themselves skip unchanged inputs) and returns OUT.
fn interpreter_guest(mut build: std::process::Command, app_dir: &str, key: &str) -> String {
    static BUILT: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, path)) = built.iter().find(|(k, _)| k == key) {
        return path.clone();
    }
    let out = workspace().join(format!("target/guests/{key}.wasm"));
    build.arg(workspace().join(app_dir)).arg(&out);
    let result = build.output().expect("the guest build runs");
    assert!(
        result.status.success(),
        "{build:?} failed (scripts/install-tools.sh installs the toolchains):\n{}{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    let path = out.to_str().expect("a UTF-8 path").to_string();
    built.push((key.to_string(), path.clone()));
    path
}
