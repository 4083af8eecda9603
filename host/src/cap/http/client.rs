//! Sends an allowed request to the address that was checked: TCP connect to
//! that `SocketAddr`, TLS with the rule's host name (certificate verified
//! against the webpki roots), HTTP/1.1, every wait bounded, the response body
//! capped. Redirects are never followed: the guest sees the 3xx and any
//! follow-up is a new request, checked like the first.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant, Sleep};
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

/// The response and the future that drives the connection to its end.
pub type Sent = (
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), Error>> + Send>,
);

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Where and how to send.
pub struct Destination<'a> {
    /// The checked address.
    pub addr: std::net::SocketAddr,
    /// The request's host, for TLS server-name verification.
    pub host: &'a url::Host<String>,
    /// Whether to speak TLS.
    pub tls: bool,
    /// The request target that was checked; the guest's URI is not reused.
    pub path_and_query: &'a str,
}

/// Sends `request` to `dest` under `options` (already clamped), capping the
/// response body at `max_body` bytes.
pub async fn send(
    mut request: http::Request<WasiBody>,
    dest: Destination<'_>,
    options: RequestOptions,
    max_body: u64,
) -> Result<Sent, Error> {
    let connect_timeout = options.connect_timeout.unwrap_or(super::CONNECT_TIMEOUT);
    let tcp = timeout(connect_timeout, TcpStream::connect(dest.addr))
        .await
        .map_err(|_| Error::ConnectionTimeout)?
        .map_err(Error::Connect)?;
    let io: Box<dyn Io> = if dest.tls {
        let name = server_name(dest.host)?;
        let tls = timeout(
            connect_timeout,
            tokio_rustls::TlsConnector::from(tls_config()).connect(name, tcp),
        )
        .await
        .map_err(|_| Error::ConnectionTimeout)?
        .map_err(Error::Tls)?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let (mut sender, conn) = timeout(
        connect_timeout,
        hyper::client::conn::http1::handshake(TokioIo::new(io)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)??;
    let driver = tokio::spawn(conn);

    // The request line carries only the checked path; the Host header names the server.
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(dest.path_and_query)
        .build()
        .map_err(|_| Error::HttpRequestUriInvalid)?;

    let first_byte = options
        .first_byte_timeout
        .unwrap_or(super::FIRST_BYTE_TIMEOUT);
    let response = timeout(first_byte, sender.send_request(request))
        .await
        .map_err(|_| Error::ConnectionReadTimeout)??;
    let between = options
        .between_bytes_timeout
        .unwrap_or(super::BETWEEN_BYTES_TIMEOUT);
    let response = response.map(|body| CappedBody::new(body, max_body, between).boxed_unsync());
    let io = async move {
        match driver.await {
            Ok(result) => result.map_err(Error::from),
            Err(_cancelled) => Ok(()),
        }
    };
    Ok((response, Box::new(io)))
}

fn server_name(host: &url::Host<String>) -> Result<rustls::pki_types::ServerName<'static>, Error> {
    use rustls::pki_types::ServerName;
    Ok(match host {
        url::Host::Domain(name) => {
            ServerName::try_from(name.clone()).map_err(Error::InvalidDnsNameError)?
        }
        url::Host::Ipv4(ip) => ServerName::IpAddress(std::net::IpAddr::from(*ip).into()),
        url::Host::Ipv6(ip) => ServerName::IpAddress(std::net::IpAddr::from(*ip).into()),
    })
}

fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            ring_tls(rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.into(),
            })
        })
        .clone()
}

/// A TLS client configuration trusting `roots`, on ring, the one crypto
/// provider in the build (named explicitly: the process-wide default is
/// ambiguous when a dependency compiles in another).
pub(crate) fn ring_tls(roots: rustls::RootCertStore) -> Arc<rustls::ClientConfig> {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    Arc::new(config)
}

/// A response body that fails once more than `remaining` bytes arrive or the
/// peer stalls for longer than `between` between frames.
struct CappedBody {
    inner: hyper::body::Incoming,
    limit: u64,
    remaining: u64,
    between: Duration,
    stall: Pin<Box<Sleep>>,
}

impl CappedBody {
    fn new(inner: hyper::body::Incoming, limit: u64, between: Duration) -> Self {
        let stall = Box::pin(tokio::time::sleep(between));
        Self {
            inner,
            limit,
            remaining: limit,
            between,
            stall,
        }
    }
}

impl Body for CappedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, |d| d.len() as u64);
                if len > this.remaining {
                    this.remaining = 0;
                    return Poll::Ready(Some(Err(Error::HttpResponseBodySize(Some(this.limit)))));
                }
                this.remaining -= len;
                this.stall.as_mut().reset(Instant::now() + this.between);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.stall.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Error::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}
