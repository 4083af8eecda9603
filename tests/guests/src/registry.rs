//! A real OCI registry on loopback (Debian package `docker-registry`, the
//! Distribution 2.8 server; `make setup` installs it), for the tests that push,
//! pull and sign components: one `docker-registry serve` with its storage in a
//! temporary directory, which a test may kill and restart on the same port and
//! data, optionally behind basic auth (an `htpasswd` file, bcrypt, made with
//! `htpasswd` from `apache2-utils`). [`skopeo`] runs the reference client
//! against it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a registry has to answer `GET /v2/` after it starts, and to exit
/// after SIGKILL.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The realm the registry names in its `WWW-Authenticate` challenge.
pub const REALM: &str = "agent-host-test";

/// One `docker-registry serve CONFIG` on a free 127.0.0.1 port, killed on drop.
pub struct Registry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    credentials: Option<(String, String)>,
}

impl Registry {
    /// Starts a registry without authentication (plain HTTP, deletes enabled)
    /// and waits until `GET /v2/` answers.
    pub fn start() -> Self {
        Self::start_inner(None)
    }

    /// [`Registry::start`] behind basic auth: only `user` with `password` may
    /// read or write; `GET /v2/` without them answers 401.
    pub fn start_with_auth(user: &str, password: &str) -> Self {
        Self::start_inner(Some((user.to_owned(), password.to_owned())))
    }

    fn start_inner(credentials: Option<(String, String)>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let auth = match &credentials {
            Some((user, password)) => {
                let file = dir.path().join("htpasswd");
                write_htpasswd(&file, user, password);
                format!(
                    "auth:\n  htpasswd:\n    realm: {REALM}\n    path: {}\n",
                    file.display()
                )
            }
            None => String::new(),
        };
        let config = format!(
            "version: 0.1\n\
             log:\n  level: warn\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n\
             {auth}",
            dir.path().join("data").display()
        );
        std::fs::write(dir.path().join("config.yml"), config).expect("write registry config");
        let child = Self::spawn(dir.path());
        let registry = Self {
            child,
            port,
            dir,
            credentials,
        };
        registry.wait_answering();
        registry
    }

    fn spawn(dir: &Path) -> Child {
        let log = std::fs::File::create(dir.join("registry.log")).expect("registry log");
        Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("registry log"))
            .stderr(log)
            .spawn()
            .expect("docker-registry (Debian package docker-registry; `make setup` installs it)")
    }

    fn wait_answering(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        while !self.answers() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer GET /v2/ on {} within {START_TIMEOUT:?}; its log:\n{}",
                self.addr(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `GET /v2/` answers now: 200, or 401 behind auth.
    pub fn answers(&self) -> bool {
        matches!(self.status("/v2/", None), Ok(200 | 401))
    }

    /// The status code of `GET path` (with basic credentials if given), or the
    /// connection error (refused while the registry is down).
    pub fn status(&self, path: &str, basic: Option<(&str, &str)>) -> std::io::Result<u16> {
        http_status(&self.addr(), path, basic)
    }

    /// `127.0.0.1:PORT`, the registry's host in image references.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The user and password [`Registry::start_with_auth`] was given.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// The registry's storage root (blobs and manifests, under
    /// `docker/registry/v2/`), to corrupt or inspect what a push wrote.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// What the registry has logged (warnings and errors).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the registry (SIGKILL: a crash) and waits for the exit; its port
    /// then refuses connections.
    pub fn stop(&mut self) {
        crate::signal(self.pid(), "KILL");
        let deadline = Instant::now() + START_TIMEOUT;
        while self
            .child
            .try_wait()
            .expect("docker-registry status")
            .is_none()
        {
            assert!(
                Instant::now() < deadline,
                "docker-registry outlived SIGKILL"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the registry again on the same port, storage and config (after
    /// [`Registry::stop`]) and waits until it answers.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Self::spawn(self.dir.path());
        self.wait_answering();
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `user`'s bcrypt entry (the only hash Distribution accepts) to `file`.
fn write_htpasswd(file: &Path, user: &str, password: &str) {
    let out = Command::new("htpasswd")
        .args(["-Bbn", user, password])
        .output()
        .expect("htpasswd (Debian package apache2-utils; `make setup` installs it)");
    assert!(
        out.status.success(),
        "htpasswd: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(file, out.stdout).expect("write htpasswd");
}

/// The status code of an HTTP/1.1 `GET path` to `addr`, with basic credentials
/// if given.
pub fn http_status(addr: &str, path: &str, basic: Option<(&str, &str)>) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let authorization = basic
        .map(|(user, password)| {
            format!(
                "Authorization: Basic {}\r\n",
                base64(format!("{user}:{password}").as_bytes())
            )
        })
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{authorization}Connection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    // "HTTP/1.1 200"
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "not an HTTP status line: {:?}",
                    String::from_utf8_lossy(&head)
                ),
            )
        })
}

/// Standard base64 with padding (for the basic-auth header; no dependency for it).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Runs `skopeo --insecure-policy ARGS` (no signature policy of its own: the
/// host's trust policy is what the tests check) and returns its output. Callers
/// pass `--src-tls-verify=false` / `--dest-tls-verify=false` (or
/// `--tls-verify=false`) for a loopback [`Registry`], and `--creds`
/// / `--dest-creds` for one with auth.
pub fn skopeo(args: &[&str]) -> Output {
    Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("skopeo (Debian package skopeo; `make setup` installs it)")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes an OCI image layout holding one tiny image tagged `v1` (an empty
    /// JSON config and one layer), for skopeo to push; digests by `sha256sum`.
    fn oci_layout(dir: &Path) -> PathBuf {
        let layout = dir.join("layout");
        let blobs = layout.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        let put = |bytes: &[u8]| -> (String, usize) {
            let tmp = dir.join("blob");
            std::fs::write(&tmp, bytes).unwrap();
            let out = Command::new("sha256sum").arg(&tmp).output().unwrap();
            let hex = String::from_utf8(out.stdout).unwrap()[..64].to_owned();
            std::fs::rename(&tmp, blobs.join(&hex)).unwrap();
            (format!("sha256:{hex}"), bytes.len())
        };
        let (config, config_size) = put(b"{}");
        let (layer, layer_size) = put(b"not really a tarball");
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":{config_size}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":{layer_size}}}]}}"#
        );
        let (manifest, manifest_size) = put(manifest.as_bytes());
        std::fs::write(
            layout.join("index.json"),
            format!(
                r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{manifest}","size":{manifest_size},"annotations":{{"org.opencontainers.image.ref.name":"v1"}}}}]}}"#
            ),
        )
        .unwrap();
        std::fs::write(
            layout.join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        layout
    }

    fn succeeded(what: &str, out: &Output) {
        assert!(
            out.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn registry_answers_refuses_connections_once_killed_and_restarts_with_its_data() {
        let mut registry = Registry::start();
        assert_eq!(registry.status("/v2/", None).unwrap(), 200);
        let work = tempfile::tempdir().unwrap();
        let layout = oci_layout(work.path());
        let image = format!("docker://{}/test/tiny:v1", registry.addr());
        let source = format!("oci:{}:v1", layout.display());
        succeeded(
            "skopeo copy",
            &skopeo(&["copy", "--dest-tls-verify=false", &source, &image]),
        );

        registry.stop();
        let refused = registry.status("/v2/", None).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);

        registry.restart();
        assert_eq!(registry.status("/v2/", None).unwrap(), 200);
        succeeded(
            "skopeo inspect after the restart",
            &skopeo(&["inspect", "--raw", "--tls-verify=false", &image]),
        );
    }

    #[test]
    fn registry_with_auth_refuses_anonymous_requests_and_admits_the_user() {
        let registry = Registry::start_with_auth("ci", "s3cret");
        assert_eq!(registry.status("/v2/", None).unwrap(), 401);
        assert_eq!(registry.status("/v2/", Some(("ci", "wrong"))).unwrap(), 401);
        assert_eq!(
            registry.status("/v2/", Some(("ci", "s3cret"))).unwrap(),
            200
        );
        assert_eq!(registry.credentials(), Some(("ci", "s3cret")));

        let work = tempfile::tempdir().unwrap();
        let layout = oci_layout(work.path());
        let image = format!("docker://{}/test/tiny:v1", registry.addr());
        let source = format!("oci:{}:v1", layout.display());
        let anonymous = skopeo(&["copy", "--dest-tls-verify=false", &source, &image]);
        assert!(
            !anonymous.status.success(),
            "an anonymous push went through"
        );
        succeeded(
            "skopeo copy with credentials",
            &skopeo(&[
                "copy",
                "--dest-tls-verify=false",
                "--dest-creds=ci:s3cret",
                &source,
                &image,
            ]),
        );
    }

    #[test]
    fn base64_pads_every_remainder() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(
            base64(b"Aladdin:open sesame"),
            "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }
}
