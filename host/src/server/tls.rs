//! TLS termination for `serve` (`--tls-cert`, `--tls-key`): rustls on ring,
//! the certificate and key read from files (a mounted Secret) and re-read
//! when they change, so a renewed certificate serves new connections without
//! a restart. Handshakes run off the accept loop, bounded in number and time,
//! so a client that stalls one cannot hold up the others.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::auth::RELOAD_INTERVAL;

/// Largest certificate chain or key file read (a chain is a few KiB).
pub const MAX_PEM_BYTES: u64 = 1 << 20;
/// Longest a client may take to complete its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; past it, new connections wait in the
/// kernel's backlog.
pub const MAX_HANDSHAKES: usize = 256;

/// The certificate and key files, and the pair serving now.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    resolver: Arc<Reloading>,
}

#[derive(Debug)]
struct Reloading {
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' bytes as last loaded: a change is a difference in them
    /// (a Secret update swaps a symlink; modification times are unreliable).
    seen: Mutex<(Vec<u8>, Vec<u8>)>,
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().expect("certificate lock").clone())
    }
}

impl TlsFiles {
    /// Reads and checks the pair: PEM certificates (leaf first) and a PEM
    /// private key that matches the leaf.
    pub fn open(cert: &Path, key: &Path) -> Result<Self, String> {
        let (cert_pem, key_pem) = read_pair(cert, key)?;
        let certified = parse(cert, key, &cert_pem, &key_pem)?;
        Ok(Self {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            resolver: Arc::new(Reloading {
                current: RwLock::new(Arc::new(certified)),
                seen: Mutex::new((cert_pem, key_pem)),
            }),
        })
    }

    /// A server configuration on ring serving the current pair (HTTP/1.1).
    pub fn acceptor(&self) -> TlsAcceptor {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
        .with_cert_resolver(self.resolver.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        TlsAcceptor::from(Arc::new(config))
    }

    /// Polls the files every [`RELOAD_INTERVAL`]; a changed pair that parses
    /// serves new connections, a bad one is logged and the old pair kept
    /// (a certificate half-written by an update is retried next time).
    pub fn watch(&self) {
        let files = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RELOAD_INTERVAL).await;
                let f = files.clone();
                let _ = tokio::task::spawn_blocking(move || f.reload()).await;
            }
        });
    }

    fn reload(&self) {
        let Ok((cert_pem, key_pem)) = read_pair(&self.cert, &self.key) else {
            return;
        };
        let mut seen = self.resolver.seen.lock().expect("seen lock");
        if seen.0 == cert_pem && seen.1 == key_pem {
            return;
        }
        match parse(&self.cert, &self.key, &cert_pem, &key_pem) {
            Ok(certified) => {
                *self.resolver.current.write().expect("certificate lock") = Arc::new(certified);
                *seen = (cert_pem, key_pem);
                tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
            }
            Err(e) => {
                tracing::warn!(error = %e, "TLS certificate not reloaded; the previous one keeps serving")
            }
        }
    }
}

fn read_bounded(path: &Path, flag: &str) -> Result<Vec<u8>, String> {
    crate::config::read_bounded(path, MAX_PEM_BYTES)
        .map_err(|e| format!("{flag} {}: {e}", path.display()))
}

fn read_pair(cert: &Path, key: &Path) -> Result<(Vec<u8>, Vec<u8>), String> {
    Ok((
        read_bounded(cert, "--tls-cert")?,
        read_bounded(key, "--tls-key")?,
    ))
}

fn parse(cert: &Path, key: &Path, cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("--tls-cert {}: not PEM certificates: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "--tls-cert {}: no CERTIFICATE block",
            cert.display()
        ));
    }
    let private = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| format!("--tls-key {}: no PEM private key: {e}", key.display()))?;
    CertifiedKey::from_der(chain, private, &rustls::crypto::ring::default_provider()).map_err(|e| {
        format!(
            "--tls-key {}: unusable with --tls-cert {}: {e}",
            key.display(),
            cert.display()
        )
    })
}

/// A listener whose connections are TLS streams whose handshake completed.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, std::net::SocketAddr)>,
    local: std::net::SocketAddr,
}

impl TlsListener {
    /// Accepts on `tcp` and runs each handshake in its own task.
    pub fn new(tcp: TcpListener, acceptor: TlsAcceptor) -> Self {
        let local = tcp.local_addr().expect("a bound listener has an address");
        let (tx, ready) = mpsc::channel(MAX_HANDSHAKES);
        let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let Ok(permit) = handshakes.clone().acquire_owned().await else {
                    return;
                };
                let accepted = tokio::select! {
                    accepted = tcp.accept() => accepted,
                    // The server stopped: release the port.
                    () = tx.closed() => return,
                };
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::debug!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let handshake =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
                    drop(permit);
                    match handshake {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Self { ready, local }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept task ended (it never does while the listener lives).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
