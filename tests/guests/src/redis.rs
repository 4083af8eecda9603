//! Real `redis-server` processes on loopback (Debian package `redis-server`;
//! `make setup` installs it), shared by the store's unit tests and the
//! process tests: one server, which a test may stop, pause and restart on
//! the same port and data, or a three-primary Cluster made by `redis-cli
//! --cluster create`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server has to answer after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A free loopback port whose cluster-bus port (+10000) is free too.
fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        if port <= 55535 && TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
            return port;
        }
    }
}

/// One `redis-server` with its data in a temporary directory, killed on drop.
pub struct RedisProc {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    args: Vec<String>,
    dir: tempfile::TempDir,
}

impl RedisProc {
    /// Starts a server (persistence off unless `extra` turns it on, e.g.
    /// `["--appendonly", "yes"]`) and waits until it answers.
    pub fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let args: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
        let port = free_port();
        let child = Self::spawn(port, dir.path(), &args);
        let server = Self {
            child,
            port,
            args,
            dir,
        };
        server.wait_answering();
        server
    }

    fn spawn(port: u16, dir: &std::path::Path, args: &[String]) -> Child {
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(dir)
            .args(args)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server; `make setup` installs it)")
    }

    fn wait_answering(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        while !self.answers() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// It answers PING now.
    pub fn answers(&self) -> bool {
        let pong = TcpStream::connect(("127.0.0.1", self.port)).and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(1)))?;
            s.write_all(b"PING\r\n")?;
            let mut buf = [0u8; 7];
            s.read_exact(&mut buf)?;
            Ok(buf == *b"+PONG\r\n")
        });
        matches!(pong, Ok(true))
    }

    /// `redis://127.0.0.1:<port>/0`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `sig` (`"STOP"`, `"CONT"`, `"TERM"`, `"KILL"`) to the server.
    pub fn signal(&self, sig: &str) {
        crate::signal(self.pid(), sig);
    }

    /// Sends `sig` and waits for the exit: `"TERM"` is a clean shutdown (Redis
    /// writes its append-only file out), `"KILL"` a crash.
    pub fn stop(&mut self, sig: &str) {
        self.signal(sig);
        let deadline = Instant::now() + START_TIMEOUT;
        while self
            .child
            .try_wait()
            .expect("redis-server status")
            .is_none()
        {
            assert!(Instant::now() < deadline, "redis-server outlived SIG{sig}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the server again on the same port, data directory and
    /// arguments (after [`RedisProc::stop`]) and waits until it answers.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Self::spawn(self.port, self.dir.path(), &self.args);
        self.wait_answering();
    }
}

impl Drop for RedisProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Redis Cluster of three primaries (no replicas), slots spread over them.
pub struct Cluster {
    nodes: Vec<RedisProc>,
}

impl Cluster {
    /// Starts three cluster-enabled servers and joins them.
    pub fn start() -> Self {
        let nodes: Vec<RedisProc> = (0..3)
            .map(|_| {
                RedisProc::start(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = Self { nodes };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cluster.ok() {
            assert!(
                Instant::now() < deadline,
                "the cluster did not reach state ok"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        cluster
    }

    fn ok(&self) -> bool {
        self.nodes.iter().all(|n| {
            Command::new("redis-cli")
                .args(["-p", &n.port.to_string(), "cluster", "info"])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
        })
    }

    /// `redis+cluster://` with every node as a seed.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    /// Keys each node holds (to show agents spread over the slots).
    pub fn keys_per_node(&self) -> Vec<usize> {
        self.nodes
            .iter()
            .map(|n| {
                let out = Command::new("redis-cli")
                    .args(["-p", &n.port.to_string(), "dbsize"])
                    .output()
                    .expect("redis-cli");
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse()
                    .unwrap_or(0)
            })
            .collect()
    }
}
