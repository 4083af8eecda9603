//! The operator's store settings against real `redis-server`s on loopback: a
//! password from a mounted file (`--store-password-file`), a wrong one that
//! stops the host at start, and `rediss://` (TLS) trusting a private CA.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{guests, Serve, BIN};

const COUNTER: &str = "  capabilities:\n    keyValue: { maxBytes: 1Mi }\n";

/// A `redis-server` with `args` (auth, TLS) on a free loopback port; killed on drop.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    /// Starts it with `--port <p>` (or `--port 0 --tls-port <p>` when `tls`) and
    /// waits until the port accepts connections (PING needs auth and TLS here).
    fn start(dir: &Path, tls: bool, args: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port()
            .to_string();
        let ports = if tls {
            ["--port", "0", "--tls-port", &port]
        } else {
            ["--port", &port, "--save", ""]
        };
        let child = Command::new("redis-server")
            .args(ports)
            .args(["--bind", "127.0.0.1", "--appendonly", "no", "--dir"])
            .arg(dir)
            .args(args)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server)");
        let redis = Redis {
            child,
            port: port.parse().unwrap(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", redis.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// Runs `agent-host serve` expecting it to refuse to start: its exit code and
/// stderr. Fails if it starts listening or is still running after 20 s.
fn serve_refused(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let log = dir.join("refused.log");
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .env("AGENT_HOST_CACHE_DIR", dir.join("cache"))
        .env("AGENT_HOST_STATE_DIR", dir.join("state"))
        .env("AGENT_HOST_LOG", "info")
        // The system roots only: the test CA is trusted where a test says so.
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "serve did not stop: {}",
                std::fs::read_to_string(&log).unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = std::io::read_to_string(child.stdout.take().unwrap()).unwrap();
    assert!(
        !stdout.contains("listening on"),
        "it started listening: {stdout}"
    );
    (status.code(), std::fs::read_to_string(&log).unwrap())
}

/// Key-value state goes through the authenticated store, and the password
/// appears nowhere in the host's log.
fn assert_counts_twice(serve: &Serve, password: &str) {
    for expected in [1, 2] {
        let r = serve.invoke("counter", "{}");
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["output"]["count"], expected, "{}", r.body);
    }
    let logs = serve.logs();
    assert!(logs.contains("store reachable"), "{logs}");
    assert!(!logs.contains(password), "the password is logged:\n{logs}");
}

/// The password comes from the mounted file (its trailing newline trimmed),
/// and a Redis that requires it serves the host's key-value state. Set through
/// the environment, as deploy/ does.
#[test]
fn a_password_file_authenticates_the_host_to_a_redis_that_requires_a_password() {
    let dir = tempfile::tempdir().unwrap();
    let password = "correct-horse-battery-staple";
    let redis = Redis::start(dir.path(), false, &["--requirepass", password]);
    let file = write(dir.path(), "password", &format!("{password}\n"));
    let counter = guests::write_manifest(dir.path(), "counter", guests::KV_COUNTER, COUNTER);
    let url = format!("redis://127.0.0.1:{}/0", redis.port);
    let serve = Serve(crate::support::HostProcess::start(
        dir.path(),
        "serve.log",
        |cmd| {
            cmd.arg("-f").arg(&counter);
            cmd.env("AGENT_HOST_STORE", &url);
            cmd.env("AGENT_HOST_STORE_PASSWORD_FILE", &file);
        },
    ));
    assert_counts_twice(&serve, password);
}

/// A wrong password, or none, stops the host before it listens, with an
/// error naming the flag and Redis's refusal, and without the password.
#[test]
fn a_wrong_or_missing_password_stops_the_host_at_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(dir.path(), false, &["--requirepass", "the-right-one"]);
    let wrong = write(dir.path(), "password", "not-the-right-one\n");
    let counter = guests::write_manifest(dir.path(), "counter", guests::KV_COUNTER, COUNTER);
    let url = format!("redis://127.0.0.1:{}/0", redis.port);
    let manifest = counter.to_str().unwrap();
    let (code, log) = serve_refused(
        dir.path(),
        &[
            "-f",
            manifest,
            "--store",
            &url,
            "--store-password-file",
            wrong.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains(&format!(
            "--store {url}: cannot use this Redis: it refused the password"
        )) && log.contains("--store-password-file"),
        "{log}"
    );
    assert!(!log.contains("not-the-right-one"), "{log}");

    let (code, log) = serve_refused(dir.path(), &["-f", manifest, "--store", &url]);
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains("it requires a password: set --store-password-file"),
        "{log}"
    );
}

/// Files of a private CA and a server certificate for 127.0.0.1 it signed
/// (openssl CLI): `ca.pem`, `server.pem`, `server.key`.
fn private_ca(dir: &Path) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec![
        "req",
        "-x509",
        "-days",
        "1",
        "-subj",
        "/CN=agent-host test CA",
    ];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    openssl(&ca);
    let mut csr = vec!["req", "-subj", "/CN=127.0.0.1"];
    csr.extend(ec);
    csr.extend(["-keyout", "server.key", "-out", "server.csr"]);
    openssl(&csr);
    write(
        dir,
        "server.ext",
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    );
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
}

/// `rediss://` really is TLS: the host connects, authenticated, to a TLS-only
/// Redis whose certificate a private CA signed, trusting that CA through
/// `SSL_CERT_FILE`; without it (system roots only) the certificate is refused
/// and the host does not start.
#[test]
fn rediss_connects_over_tls_trusting_a_private_ca_and_refuses_an_untrusted_certificate() {
    let dir = tempfile::tempdir().unwrap();
    private_ca(dir.path());
    let password = "tls-store-password";
    let at = |f: &str| dir.path().join(f).to_str().unwrap().to_owned();
    let (cert, key, ca) = (at("server.pem"), at("server.key"), at("ca.pem"));
    let redis = Redis::start(
        dir.path(),
        true,
        &[
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            "no",
            "--requirepass",
            password,
        ],
    );
    let file = write(dir.path(), "password", password);
    let counter = guests::write_manifest(dir.path(), "counter", guests::KV_COUNTER, COUNTER);
    let url = format!("rediss://127.0.0.1:{}/0", redis.port);
    let args = [
        "--store",
        &url,
        "--store-password-file",
        file.to_str().unwrap(),
    ];

    let (code, log) = serve_refused(
        dir.path(),
        &[&["-f", counter.to_str().unwrap()], &args[..]].concat(),
    );
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains("cannot use this Redis") && log.to_lowercase().contains("certificate"),
        "{log}"
    );

    let ca_file = dir.path().join("ca.pem");
    let serve = Serve(crate::support::HostProcess::start(
        dir.path(),
        "serve.log",
        |cmd| {
            cmd.args(args).arg("-f").arg(&counter);
            cmd.env("SSL_CERT_FILE", &ca_file);
        },
    ));
    let logs = serve.logs();
    assert!(logs.contains(r#""tls":true"#), "{logs}");
    assert_counts_twice(&serve, password);
}

/// A three-primary Redis Cluster on loopback, every node requiring `password`
/// (ports ≤ 55535: the cluster bus is port + 10000).
struct Cluster {
    nodes: Vec<Redis>,
}

impl Cluster {
    fn start(dir: &Path, password: &str) -> Self {
        let nodes: Vec<Redis> = (0..3)
            .map(|i| {
                let dir = dir.join(format!("node{i}"));
                std::fs::create_dir_all(&dir).unwrap();
                loop {
                    let node = Redis::start(
                        &dir,
                        false,
                        &[
                            "--cluster-enabled",
                            "yes",
                            "--requirepass",
                            password,
                            "--masterauth",
                            password,
                        ],
                    );
                    if node.port <= 55535 {
                        break node;
                    }
                }
            })
            .collect();
        let mut create = Command::new("redis-cli");
        create.args(["-a", password, "--no-auth-warning", "--cluster", "create"]);
        for node in &nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        let out = create.arg("--cluster-yes").output().expect("redis-cli");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        // Every node agrees the slots are covered before the host connects.
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &nodes {
            loop {
                let info = Command::new("redis-cli")
                    .args(["-a", password, "--no-auth-warning", "-p"])
                    .arg(node.port.to_string())
                    .args(["cluster", "info"])
                    .output()
                    .unwrap();
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    break;
                }
                assert!(Instant::now() < deadline, "the cluster did not form");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Cluster { nodes }
    }

    /// `redis+cluster://` with the first two nodes as seeds.
    fn url(&self) -> String {
        format!(
            "redis+cluster://127.0.0.1:{},127.0.0.1:{}",
            self.nodes[0].port, self.nodes[1].port
        )
    }
}

/// `redis+cluster://` seeds are checked at start like a single server: with
/// the password file the host starts, without it it stops naming the flag.
#[test]
fn a_cluster_store_is_checked_through_its_seed_nodes_before_the_host_starts() {
    let dir = tempfile::tempdir().unwrap();
    let password = "cluster-password";
    let cluster = Cluster::start(dir.path(), password);
    let url = cluster.url();
    let hello = guests::write_manifest(dir.path(), "hello", guests::HELLO, "");
    let file = write(dir.path(), "password", &format!("{password}\n"));

    let (code, log) = serve_refused(
        dir.path(),
        &["-f", hello.to_str().unwrap(), "--store", &url],
    );
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains(&format!(
            "--store {url}: cannot use this Redis: it requires a password"
        )),
        "{log}"
    );

    let serve = Serve::start(
        dir.path(),
        &[&hello],
        &[
            "--store",
            &url,
            "--store-password-file",
            file.to_str().unwrap(),
        ],
    );
    let logs = serve.logs();
    assert!(
        logs.contains("store reachable") && logs.contains(&url),
        "{logs}"
    );
    assert!(!logs.contains(password), "{logs}");
    let r = serve.invoke("hello", r#"{"name":"cluster"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
}
