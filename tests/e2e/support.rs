//! Test support: manifests written to temp dirs, a runtime per test, and a
//! real HTTP server on loopback that records what reaches it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once};

use agent_host::config::{Allocator, HostConfig};
use agent_host::manifest::LoadedAgent;
use agent_host::runtime::LoadError;
use agent_host::{PreparedAgent, Runtime, TaskInput};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// A temp directory holding manifests and a compile cache, plus a runtime on it.
pub struct Harness {
    /// Temp dir (kept alive as long as the harness).
    pub dir: tempfile::TempDir,
    /// The runtime under test.
    pub runtime: Runtime,
}

impl Harness {
    /// A runtime with the pooling allocator and a cache shared by all tests
    /// (so each component is compiled once per test run), secrets under the temp dir.
    pub fn new() -> Self {
        Self::with_config(|_| {})
    }

    /// Like [`Harness::new`], with `configure` applied to the host config last
    /// (e.g. a small instance pool or component size limit).
    pub fn with_config(configure: impl FnOnce(&mut HostConfig)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = HostConfig {
            cache_dir: shared_cache_dir(),
            secrets_dir: dir.path().join("secrets"),
            state_dir: dir.path().join("state"),
            allocator: Allocator::Pooling,
            max_instances: 64,
            ..HostConfig::default()
        };
        configure(&mut config);
        let runtime = Runtime::new(config).expect("runtime");
        Self { dir, runtime }
    }

    /// Writes an Agent manifest named `name` for `component` with the given `spec`
    /// body (YAML lines under `spec:` other than `component`), returns its path.
    pub fn manifest(&self, name: &str, component: &str, spec: &str) -> PathBuf {
        agent_host_test_guests::write_manifest(self.dir.path(), name, component, spec)
    }

    /// Loads and prepares the agent of a manifest file.
    pub fn load(&self, manifest: &Path) -> Result<PreparedAgent, LoadError> {
        let loaded = LoadedAgent::from_file(manifest)?;
        self.runtime.prepare(&loaded)
    }

    /// Manifest + prepare in one step; panics on load errors.
    pub fn agent(&self, name: &str, component: &str, spec: &str) -> PreparedAgent {
        let manifest = self.manifest(name, component, spec);
        self.load(&manifest)
            .unwrap_or_else(|e| panic!("loading {name}: {e}"))
    }
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

fn shared_cache_dir() -> PathBuf {
    std::env::temp_dir().join(format!(
        "agent-host-e2e-cache-{}",
        env!("CARGO_PKG_VERSION")
    ))
}

/// Variables a pod's host process typically has (Kubernetes service
/// variables, the host's own settings, HOME, PATH), plus one only this suite
/// sets: none is declared to any agent, so none may reach a guest.
pub const POD_HOST_VARS: [(&str, &str); 6] = [
    ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
    ("KUBERNETES_PORT", "tcp://10.96.0.1:443"),
    ("AGENT_HOST_CACHE_DIR", "/var/cache/agent-host"),
    ("HOME", "/root"),
    ("PATH", "/usr/local/bin:/usr/bin:/bin"),
    ("AGENT_HOST_E2E_HOST_ONLY", "leaked"),
];

/// Gives this test process the environment of a pod's host: each variable of
/// [`POD_HOST_VARS`] that is not set yet is added. Every e2e test shares the
/// process and its environment, so it is written in one place, once, and
/// only added to: no test sees a variable change or vanish under it.
pub fn pod_host_environment() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for (name, value) in POD_HOST_VARS {
            if std::env::var_os(name).is_none() {
                std::env::set_var(name, value);
            }
        }
    });
}

/// A task with this JSON input.
pub fn task(input: serde_json::Value) -> TaskInput {
    TaskInput {
        id: None,
        input: input.to_string(),
        metadata: vec![],
    }
}

/// Parses an invocation's output, panicking with the error if it failed.
pub fn output_json(inv: &agent_host::Invocation) -> serde_json::Value {
    match &inv.result {
        Ok(text) => serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("output is not JSON ({e}): {text}")),
        Err(e) => panic!("invocation failed: {e}"),
    }
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// Method.
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// Body as text.
    pub body: String,
    /// Headers, names lower-case.
    pub headers: Vec<(String, String)>,
}

/// A real HTTP/1.1 server on 127.0.0.1 that records every request and answers
/// with `respond(method, path) -> (status, body)`.
pub struct TestServer {
    /// Its address.
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

/// An answer: status, extra headers, body.
pub type Answer = (u16, Vec<(&'static str, String)>, String);

type Responder = dyn Fn(&Recorded, usize) -> Answer + Send + Sync;

impl TestServer {
    /// Starts a server answering every request with `respond(method, path, body)`.
    pub async fn start(
        respond: impl Fn(&str, &str, &str) -> (u16, String) + Send + Sync + 'static,
    ) -> Self {
        Self::start_full(move |r, _| {
            let (status, body) = respond(&r.method, &r.uri, &r.body);
            (status, vec![], body)
        })
        .await
    }

    /// Starts a server answering with `respond(request, requests before it)`,
    /// which may also set headers (`Retry-After`...).
    pub async fn start_full(
        respond: impl Fn(&Recorded, usize) -> Answer + Send + Sync + 'static,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let respond: Arc<Responder> = Arc::new(respond);
        let seen = requests.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (seen, respond) = (seen.clone(), respond.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (seen, respond) = (seen.clone(), respond.clone());
                        async move {
                            let method = req.method().to_string();
                            let uri = req.uri().to_string();
                            let headers = req
                                .headers()
                                .iter()
                                .map(|(k, v)| {
                                    (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())
                                })
                                .collect();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let body = String::from_utf8_lossy(&body).into_owned();
                            let recorded = Recorded {
                                method,
                                uri,
                                body,
                                headers,
                            };
                            let before = seen.lock().unwrap().len();
                            let (status, extra, answer) = respond(&recorded, before);
                            seen.lock().unwrap().push(recorded);
                            let mut response = Response::new(Full::new(Bytes::from(answer)));
                            *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            response.headers_mut().insert(
                                "content-type",
                                hyper::header::HeaderValue::from_static("application/json"),
                            );
                            for (name, value) in extra {
                                response.headers_mut().insert(
                                    name,
                                    hyper::header::HeaderValue::from_str(&value).unwrap(),
                                );
                            }
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, requests }
    }

    /// Requests received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }
}
