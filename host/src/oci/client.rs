//! The registry API (OCI distribution v2) spoken with the host's own HTTP/1.1
//! client: TLS by rustls with ring (the one provider in the build), every
//! response body read with a cap, every wait bounded. Only what the host
//! needs: manifests and blobs by digest or tag, blob and manifest upload, and
//! the two auth schemes registries use (Basic, and Bearer tokens from the
//! registry's token service).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::auth::Credentials;
use super::PullError;

/// Connect (TCP and TLS) and wait for the first response byte, each.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest silence while a body streams.
const BETWEEN_BYTES_TIMEOUT: Duration = Duration::from_secs(30);
/// Token-service and error bodies are small; larger ones are refused.
const MAX_SMALL_BODY: u64 = 64 << 10;
/// Redirects followed for one blob (registries hand blobs to storage services).
const MAX_REDIRECTS: usize = 5;
/// Bearer tokens remembered (one per registry and repository scope).
const MAX_TOKENS: usize = 256;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A response whose body was read whole, under a cap.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

/// One registry API request.
struct Call<'a> {
    method: Method,
    registry: &'a str,
    repository: &'a str,
    /// A path under the registry, or an absolute URL it handed out (uploads).
    target: &'a str,
    headers: &'a [(&'a str, String)],
    body: Bytes,
    access: Access,
    max_body: u64,
}

/// Talks to registries on the host's behalf.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    credentials: Credentials,
    /// `host[:port]` spoken to over plain HTTP.
    insecure: Vec<String>,
    /// Bearer tokens by registry and scope.
    tokens: Mutex<HashMap<(String, String), String>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("insecure", &self.inner.insecure)
            .finish_non_exhaustive()
    }
}

/// What a request needs access to, for token scopes: `repository:NAME:pull`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read.
    Pull,
    /// Read and write.
    Push,
}

impl Client {
    /// A client with these credentials, speaking plain HTTP to `insecure` registries.
    pub fn new(credentials: Credentials, insecure: Vec<String>) -> Self {
        Self {
            inner: Arc::new(Inner {
                credentials,
                insecure,
                tokens: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn base(&self, registry: &str) -> String {
        let scheme = if self.inner.insecure.iter().any(|r| r == registry) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{registry}")
    }

    /// Sends one registry API request to `registry` for `repository`,
    /// authenticating when challenged, reading at most `max_body` bytes.
    /// Redirects are returned as they are (see [`Client::get_blob`]).
    async fn send(&self, call: Call<'_>) -> Result<Response, PullError> {
        let Call {
            method,
            registry,
            repository,
            target: path_and_query,
            headers,
            body,
            access,
            max_body,
        } = call;
        let url = if path_and_query.starts_with("http://") || path_and_query.starts_with("https://")
        {
            path_and_query.to_owned()
        } else {
            format!("{}{path_and_query}", self.base(registry))
        };
        let scope = match access {
            Access::Pull => format!("repository:{repository}:pull"),
            Access::Push => format!("repository:{repository}:pull,push"),
        };
        let key = (registry.to_owned(), scope.clone());
        let cached = self.inner.tokens.lock().unwrap().get(&key).cloned();
        let mut authorization = cached
            .map(|t| format!("Bearer {t}"))
            .or_else(|| self.inner.credentials.basic(registry));
        let mut challenged = false;
        loop {
            let mut all: Vec<(&str, String)> = headers.to_vec();
            if let Some(a) = &authorization {
                all.push(("authorization", a.clone()));
            }
            let response = request(&method, &url, &all, body.clone(), max_body).await?;
            if response.status != StatusCode::UNAUTHORIZED || challenged {
                if response.status == StatusCode::UNAUTHORIZED
                    || response.status == StatusCode::FORBIDDEN
                {
                    return Err(PullError::Denied {
                        registry: registry.to_owned(),
                        message: format!(
                            "{} {}: {}{}",
                            method,
                            path_and_query,
                            response.status,
                            if self.inner.credentials.basic(registry).is_some() {
                                " (with the credentials of --registry-auth)"
                            } else {
                                " (anonymously: --registry-auth names no credentials for this registry)"
                            }
                        ),
                    });
                }
                return Ok(response);
            }
            challenged = true;
            authorization = Some(
                self.answer(registry, &response.headers, &scope, &key)
                    .await?,
            );
        }
    }

    /// The `Authorization` value answering a 401's challenge.
    async fn answer(
        &self,
        registry: &str,
        headers: &HeaderMap,
        scope: &str,
        key: &(String, String),
    ) -> Result<String, PullError> {
        let denied = |message: String| PullError::Denied {
            registry: registry.to_owned(),
            message,
        };
        let challenge = headers
            .get(http::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| denied("401 without a WWW-Authenticate challenge".into()))?;
        let challenges = http_auth::parse_challenges(challenge)
            .map_err(|e| denied(format!("unreadable WWW-Authenticate challenge: {e}")))?;
        let basic = self.inner.credentials.basic(registry);
        if let Some(bearer) = challenges
            .iter()
            .find(|c| c.scheme.eq_ignore_ascii_case("bearer"))
        {
            let param = |name: &str| {
                bearer
                    .params
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.to_unescaped())
            };
            let realm =
                param("realm").ok_or_else(|| denied("Bearer challenge without a realm".into()))?;
            let mut token_url =
                url::Url::parse(&realm).map_err(|e| denied(format!("token realm {realm}: {e}")))?;
            if token_url.scheme() != "https"
                && !self
                    .inner
                    .insecure
                    .iter()
                    .any(|r| token_url.authority() == r)
            {
                return Err(denied(format!(
                    "token realm {realm} is not https (credentials are not sent in the clear)"
                )));
            }
            {
                let mut query = token_url.query_pairs_mut();
                if let Some(service) = param("service") {
                    query.append_pair("service", &service);
                }
                query.append_pair("scope", scope);
            }
            let mut headers = Vec::new();
            if let Some(b) = &basic {
                headers.push(("authorization", b.clone()));
            }
            let response = request(
                &Method::GET,
                token_url.as_str(),
                &headers,
                Bytes::new(),
                MAX_SMALL_BODY,
            )
            .await?;
            if !response.status.is_success() {
                return Err(denied(format!(
                    "the token service answered {}",
                    response.status
                )));
            }
            #[derive(serde::Deserialize)]
            struct Token {
                token: Option<String>,
                access_token: Option<String>,
            }
            let token: Token = serde_json::from_slice(&response.body)
                .map_err(|e| denied(format!("unreadable token response: {e}")))?;
            let token = token
                .token
                .or(token.access_token)
                .ok_or_else(|| denied("the token response holds no token".into()))?;
            let mut tokens = self.inner.tokens.lock().unwrap();
            if tokens.len() >= MAX_TOKENS {
                tokens.clear();
            }
            tokens.insert(key.clone(), token.clone());
            drop(tokens);
            return Ok(format!("Bearer {token}"));
        }
        if challenges
            .iter()
            .any(|c| c.scheme.eq_ignore_ascii_case("basic"))
        {
            return basic.ok_or_else(|| {
                denied(
                    "the registry asks for a password and --registry-auth names none for it".into(),
                )
            });
        }
        Err(denied(format!("unsupported challenge: {challenge}")))
    }

    /// Fetches a manifest by tag or digest, at most `max` bytes. Returns the
    /// bytes, their media type and their digest (checked against a pinned one).
    pub async fn get_manifest(
        &self,
        registry: &str,
        repository: &str,
        target: &str,
        max: u64,
    ) -> Result<(Bytes, String, String), PullError> {
        let response = self
            .send(Call {
                method: Method::GET,
                registry,
                repository,
                target: &format!("/v2/{repository}/manifests/{target}"),
                headers: &[("accept", super::layout::MANIFEST_ACCEPT.to_owned())],
                body: Bytes::new(),
                access: Access::Pull,
                max_body: max,
            })
            .await?;
        let what = format!("{registry}/{repository} manifest {target}");
        check_status(&response, &what)?;
        let media_type = response
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_owned();
        let digest = sha256(&response.body);
        if target.starts_with("sha256:") && digest != target {
            return Err(PullError::DigestMismatch {
                what,
                expected: target.to_owned(),
                actual: digest,
            });
        }
        Ok((response.body, media_type, digest))
    }

    /// Fetches a blob by digest, following redirects (without credentials
    /// off the registry), and checks its size and digest.
    pub async fn get_blob(
        &self,
        registry: &str,
        repository: &str,
        digest: &str,
        size: u64,
    ) -> Result<Bytes, PullError> {
        let what = format!("{registry}/{repository} blob {digest}");
        let mut response = self
            .send(Call {
                method: Method::GET,
                registry,
                repository,
                target: &format!("/v2/{repository}/blobs/{digest}"),
                headers: &[],
                body: Bytes::new(),
                access: Access::Pull,
                max_body: size,
            })
            .await?;
        let mut hops = 0;
        let mut from =
            url::Url::parse(&format!("{}/", self.base(registry))).expect("a registry URL parses");
        while response.status.is_redirection() {
            hops += 1;
            let location = response
                .headers
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| {
                    PullError::Protocol(format!("{what}: redirect without a Location"))
                })?;
            let next = from
                .join(location)
                .map_err(|e| PullError::Protocol(format!("{what}: redirect to {location}: {e}")))?;
            if hops > MAX_REDIRECTS || (from.scheme() == "https" && next.scheme() != "https") {
                return Err(PullError::Protocol(format!(
                    "{what}: refused redirect to {next} (more than {MAX_REDIRECTS}, or from https to http)"
                )));
            }
            response = request(&Method::GET, next.as_str(), &[], Bytes::new(), size).await?;
            from = next;
        }
        check_status(&response, &what)?;
        let actual = sha256(&response.body);
        if response.body.len() as u64 != size || actual != digest {
            return Err(PullError::DigestMismatch {
                what: format!(
                    "{what} ({} bytes; the manifest says {size})",
                    response.body.len()
                ),
                expected: digest.to_owned(),
                actual,
            });
        }
        Ok(response.body)
    }

    /// Uploads a blob unless the registry has it (monolithic upload).
    pub async fn put_blob(
        &self,
        registry: &str,
        repository: &str,
        blob: Bytes,
    ) -> Result<String, PullError> {
        let digest = sha256(&blob);
        let head = self
            .send(Call {
                method: Method::HEAD,
                registry,
                repository,
                target: &format!("/v2/{repository}/blobs/{digest}"),
                headers: &[],
                body: Bytes::new(),
                access: Access::Push,
                max_body: 0,
            })
            .await?;
        if head.status.is_success() {
            return Ok(digest);
        }
        let start = self
            .send(Call {
                method: Method::POST,
                registry,
                repository,
                target: &format!("/v2/{repository}/blobs/uploads/"),
                headers: &[],
                body: Bytes::new(),
                access: Access::Push,
                max_body: MAX_SMALL_BODY,
            })
            .await?;
        check_status(
            &start,
            &format!("{registry}/{repository}: starting an upload"),
        )?;
        let location = start
            .headers
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| PullError::Protocol("upload started without a Location".into()))?;
        let base =
            url::Url::parse(&format!("{}/", self.base(registry))).expect("a registry URL parses");
        let mut upload = base
            .join(location)
            .map_err(|e| PullError::Protocol(format!("upload Location {location}: {e}")))?;
        upload.query_pairs_mut().append_pair("digest", &digest);
        let put = self
            .send(Call {
                method: Method::PUT,
                registry,
                repository,
                target: upload.as_str(),
                headers: &[("content-type", "application/octet-stream".to_owned())],
                body: blob,
                access: Access::Push,
                max_body: MAX_SMALL_BODY,
            })
            .await?;
        check_status(
            &put,
            &format!("{registry}/{repository}: uploading blob {digest}"),
        )?;
        Ok(digest)
    }

    /// Puts a manifest under `target` (a tag or its digest); returns its digest.
    pub async fn put_manifest(
        &self,
        registry: &str,
        repository: &str,
        target: &str,
        manifest: Bytes,
        media_type: &str,
    ) -> Result<String, PullError> {
        let digest = sha256(&manifest);
        let put = self
            .send(Call {
                method: Method::PUT,
                registry,
                repository,
                target: &format!("/v2/{repository}/manifests/{target}"),
                headers: &[("content-type", media_type.to_owned())],
                body: manifest,
                access: Access::Push,
                max_body: MAX_SMALL_BODY,
            })
            .await?;
        check_status(
            &put,
            &format!("{registry}/{repository}: putting manifest {target}"),
        )?;
        Ok(digest)
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn check_status(response: &Response, what: &str) -> Result<(), PullError> {
    if response.status.is_success() {
        return Ok(());
    }
    // The registry's words, shortened and without control characters: they
    // reach terminals, logs and the Agent's status.
    let detail: String = String::from_utf8_lossy(&response.body[..response.body.len().min(512)])
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    Err(match response.status {
        StatusCode::NOT_FOUND => PullError::NotFound(format!("{what}: not found in the registry")),
        s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
            PullError::Unavailable(format!("{what}: the registry answered {s}: {detail}"))
        }
        s => PullError::Protocol(format!("{what}: the registry answered {s}: {detail}")),
    })
}

/// One HTTP/1.1 exchange on a fresh connection.
async fn request(
    method: &Method,
    url: &str,
    headers: &[(&str, String)],
    body: Bytes,
    max_body: u64,
) -> Result<Response, PullError> {
    let parsed = url::Url::parse(url).map_err(|e| PullError::Protocol(format!("{url}: {e}")))?;
    let tls = match parsed.scheme() {
        "https" => true,
        "http" => false,
        other => {
            return Err(PullError::Protocol(format!(
                "{url}: scheme {other} is not http(s)"
            )))
        }
    };
    let host = parsed
        .host_str()
        .ok_or_else(|| PullError::Protocol(format!("{url}: no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = parsed.port_or_known_default().unwrap_or(443);
    let unreachable = |message: String| PullError::Unreachable {
        registry: parsed.authority().to_owned(),
        message,
    };
    let tcp = timeout(CONNECT_TIMEOUT, TcpStream::connect((host.as_str(), port)))
        .await
        .map_err(|_| unreachable(format!("no connection within {CONNECT_TIMEOUT:?}")))?
        .map_err(|e| unreachable(e.to_string()))?;
    let io: Box<dyn Io> = if tls {
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| PullError::Protocol(format!("{url}: {e}")))?;
        let stream = timeout(
            CONNECT_TIMEOUT,
            tokio_rustls::TlsConnector::from(tls_config()).connect(name, tcp),
        )
        .await
        .map_err(|_| unreachable(format!("no TLS handshake within {CONNECT_TIMEOUT:?}")))?
        .map_err(|e| unreachable(format!("TLS: {e}")))?;
        Box::new(stream)
    } else {
        Box::new(tcp)
    };
    let (mut sender, conn) = timeout(
        CONNECT_TIMEOUT,
        hyper::client::conn::http1::handshake(TokioIo::new(io)),
    )
    .await
    .map_err(|_| unreachable("no HTTP handshake".into()))?
    .map_err(|e| unreachable(e.to_string()))?;
    let driver = tokio::spawn(conn);
    let mut builder = http::Request::builder()
        .method(method.clone())
        .uri(&parsed[url::Position::BeforePath..])
        .header(http::header::HOST, parsed.authority())
        .header(
            http::header::USER_AGENT,
            concat!("agent-host/", env!("CARGO_PKG_VERSION")),
        );
    for (name, value) in headers {
        let value = HeaderValue::from_str(value)
            .map_err(|e| PullError::Protocol(format!("header {name}: {e}")))?;
        builder = builder.header(*name, value);
    }
    let request = builder
        .body(Full::new(body))
        .map_err(|e| PullError::Protocol(format!("{url}: {e}")))?;
    let response = timeout(FIRST_BYTE_TIMEOUT, sender.send_request(request))
        .await
        .map_err(|_| {
            PullError::Timeout(format!("{url}: no response within {FIRST_BYTE_TIMEOUT:?}"))
        })?
        .map_err(|e| unreachable(e.to_string()))?;
    let (parts, mut incoming) = response.into_parts();
    // A declared length over the cap is refused before a byte is read.
    if let Some(len) = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > max_body && method != Method::HEAD {
            driver.abort();
            return Err(PullError::TooLarge(format!(
                "{url}: {len} bytes; the host reads at most {max_body}"
            )));
        }
    }
    let mut body = Vec::new();
    if method != Method::HEAD {
        loop {
            let frame = timeout(BETWEEN_BYTES_TIMEOUT, incoming.frame())
                .await
                .map_err(|_| {
                    PullError::Timeout(format!(
                        "{url}: the body stalled for {BETWEEN_BYTES_TIMEOUT:?}"
                    ))
                })?;
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|e| unreachable(format!("reading the body: {e}")))?;
            if let Some(data) = frame.data_ref() {
                if (body.len() + data.len()) as u64 > max_body {
                    driver.abort();
                    return Err(PullError::TooLarge(format!(
                        "{url}: more than {max_body} bytes; the host reads at most {max_body}"
                    )));
                }
                body.extend_from_slice(data);
            }
        }
    }
    driver.abort();
    Ok(Response {
        status: parts.status,
        headers: parts.headers,
        body: Bytes::from(body),
    })
}

/// rustls with ring, trusting the system roots (`SSL_CERT_FILE` adds a
/// private registry's CA) and the webpki roots.
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.into(),
            };
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
            crate::cap::http::client::ring_tls(roots)
        })
        .clone()
}

/// `Basic base64(user:password)`.
pub fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}
