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

/// A `redis-server` (Debian package `redis-server`; `make setup` installs it)
/// on a free loopback port, with persistence off, stopped on drop. Shared by
/// every test that runs key-value state against Redis.
pub struct RedisServer {
    child: std::process::Child,
    /// `redis://127.0.0.1:<port>/0`
    pub url: String,
    _dir: std::path::PathBuf,
}

impl RedisServer {
    /// Starts the server and waits until it answers PING.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// [`RedisServer::start`] with `extra` arguments, which override the
    /// defaults (e.g. `--appendonly yes --appendfsync everysec`).
    pub fn start_with(extra: &[&str]) -> Self {
        use std::io::{Read, Write};
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let dir = std::env::temp_dir().join(format!("agent-host-redis-{port}"));
        std::fs::create_dir_all(&dir).expect("redis dir");
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(&dir)
            .args(extra)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server; `make setup` installs it)");
        let server = RedisServer {
            child,
            url: format!("redis://127.0.0.1:{port}/0"),
            _dir: dir,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let pong = std::net::TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| {
                s.write_all(b"PING\r\n")?;
                let mut buf = [0u8; 7];
                s.read_exact(&mut buf)?;
                Ok(buf == *b"+PONG\r\n")
            });
            if matches!(pong, Ok(true)) {
                return server;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not answer on {port}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl RedisServer {
    /// The server's process id (to SIGSTOP it: a Redis that stops answering).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}
