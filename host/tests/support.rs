//! The process harness `serve.rs`, `pod.rs` and `replicas.rs` share: a real `agent-host
//! serve` child on an ephemeral loopback port, its stderr in a file, a real
//! HTTP client, signals, its exit and its memory.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The host binary under test, built by cargo next to this test binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_agent-host");

/// A running `agent-host serve`, killed when dropped.
pub struct HostProcess {
    pub child: Child,
    /// `http://127.0.0.1:<port>`, from its `listening on` line.
    pub base: String,
    /// Its audit log.
    pub audit: PathBuf,
    /// Its stderr.
    pub log: PathBuf,
    pub http: ureq::Agent,
}

/// An HTTP answer; the body as JSON, or as a JSON string when it is not JSON.
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Value,
}

impl HostProcess {
    /// Starts `agent-host serve --listen 127.0.0.1:0 --audit-log
    /// <dir>/audit.jsonl` plus what `configure` adds, with its cache and state
    /// in `dir`, logging at info in the default format to `<dir>/<log>`, and
    /// waits for its `listening on` line.
    pub fn start(dir: &Path, log: &str, configure: impl FnOnce(&mut Command)) -> Self {
        let audit = dir.join("audit.jsonl");
        let log = dir.join(log);
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--audit-log"])
            .arg(&audit)
            .env("AGENT_HOST_CACHE_DIR", dir.join("cache"))
            .env("AGENT_HOST_STATE_DIR", dir.join("state"))
            .env("AGENT_HOST_LOG", "info")
            .env_remove("AGENT_HOST_LOG_FORMAT")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        configure(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let Some(base) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "agent-host serve did not start: {line:?}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        let http: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        HostProcess {
            base: base.to_string(),
            child,
            audit,
            log,
            http,
        }
    }

    /// Its stderr so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn reply(resp: Result<http::Response<ureq::Body>, ureq::Error>) -> Reply {
        let mut resp = resp.expect("HTTP exchange");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.body_mut().read_to_string().unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply {
            status,
            headers,
            body,
        }
    }

    pub fn get(&self, path: &str) -> Reply {
        Self::reply(self.http.get(format!("{}{path}", self.base)).call())
    }

    pub fn delete(&self, path: &str) -> Reply {
        Self::reply(self.http.delete(format!("{}{path}", self.base)).call())
    }

    pub fn post(&self, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .content_type("application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Self::reply(req.send(body))
    }

    /// `/readyz` answers 200.
    pub fn ready(&self) -> bool {
        self.get("/readyz").status == 200
    }

    /// Polls `done` for up to 20 s; fails naming `what`, with the host's log.
    pub fn wait(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n{}",
                self.logs()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        agent_host_test_guests::signal(self.pid(), sig);
    }

    /// Waits for the process to exit; its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "server still running after {within:?}\n{}",
                self.logs()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// A `/proc/<pid>/status` figure in KiB (`VmRSS:`, `VmSize:`...).
    pub fn status_kib(&self, key: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads one HTTP/1.1 request from `reader`: its head (request line and
/// headers, up to and including the blank line) and its `content-length` body.
/// `None` once the peer has closed the connection or sent a short body.
pub fn read_http_request(reader: &mut impl BufRead) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut head = Vec::new();
    let mut length = 0usize;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return None;
        }
        head.extend_from_slice(line.as_bytes());
        if line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((head, body))
}
