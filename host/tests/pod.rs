//! Pod mode (`agent-host serve --agent NAME`) against a stand-in Kubernetes
//! API server started in the test. No cluster can run on these machines, so
//! the stand-in speaks the real wire protocol for what the host uses: typed
//! JSON objects with `resourceVersion` and `generation`, list + watch (newline
//! JSON event stream with BOOKMARK and ERROR events, 410 Gone forcing a
//! re-list), merge patches on `/status`, and `events.k8s.io/v1` events.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use agent_host_test_guests as guests;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::support::HostProcess;

const NS: &str = "sre-agents";
const AGENTS: &str = "/apis/agent-host.dev/v1alpha1/namespaces/{ns}/agents";

/// What the stand-in holds.
#[derive(Default)]
struct Cluster {
    rv: u64,
    agent: Option<Value>,
    /// Watch events with the resourceVersion they happened at.
    log: Vec<(u64, Value)>,
    /// History before this resourceVersion is compacted: watching from
    /// before it gets 410 Gone.
    compacted_at: u64,
    /// Bumped by each compaction: open watches end with 410 Gone.
    expiries: u64,
    down: bool,
    lists: u32,
    watches: u32,
    status_patches: Vec<Value>,
    events: Vec<Value>,
    /// TokenReview requests received.
    reviews: Vec<Value>,
    /// How long each review takes, and the most that were answered at once.
    review_delay: Duration,
    reviews_in_flight: u32,
    max_reviews_in_flight: u32,
}

#[derive(Clone)]
struct StandIn {
    cluster: Arc<Mutex<Cluster>>,
    /// Wakes watch streams; `None` ends them (outage, expiry).
    wake: broadcast::Sender<Option<()>>,
}

impl StandIn {
    fn change(&self, f: impl FnOnce(&mut Cluster) -> Option<(&'static str, Value)>) {
        let mut c = self.cluster.lock().unwrap();
        if let Some((kind, object)) = f(&mut c) {
            c.rv += 1;
            let rv = c.rv;
            let mut object = object;
            object["metadata"]["resourceVersion"] = json!(rv.to_string());
            if kind != "DELETED" {
                c.agent = Some(object.clone());
            } else {
                c.agent = None;
            }
            c.log.push((rv, json!({ "type": kind, "object": object })));
        }
        drop(c);
        let _ = self.wake.send(Some(()));
    }

    fn create(&self, spec: Value) {
        self.change(|_| {
            Some((
                "ADDED",
                json!({
                    "apiVersion": "agent-host.dev/v1alpha1", "kind": "Agent",
                    "metadata": { "name": "tally", "namespace": NS, "uid": "5b1c0f8e-0000-4000-8000-000000000001",
                                  "generation": 1, "creationTimestamp": "2026-11-28T00:00:00Z" },
                    "spec": spec,
                }),
            ))
        });
    }

    fn set_spec(&self, spec: Value) {
        self.change(|c| {
            let mut agent = c.agent.clone().expect("agent exists");
            let generation = agent["metadata"]["generation"].as_i64().unwrap() + 1;
            agent["metadata"]["generation"] = json!(generation);
            agent["spec"] = spec;
            Some(("MODIFIED", agent))
        });
    }

    fn delete(&self) {
        self.change(|c| c.agent.clone().map(|a| ("DELETED", a)));
    }

    fn set_down(&self, down: bool) {
        self.cluster.lock().unwrap().down = down;
        if down {
            let _ = self.wake.send(None);
        }
    }

    /// Compacts history and ends open watches with `410 Gone`.
    fn expire(&self) {
        let mut c = self.cluster.lock().unwrap();
        c.compacted_at = c.rv;
        c.expiries += 1;
        drop(c);
        let _ = self.wake.send(None);
    }

    fn generation_observed(&self) -> Option<i64> {
        let c = self.cluster.lock().unwrap();
        c.agent.as_ref()?["status"]["observedGeneration"].as_i64()
    }

    fn ready_condition(&self) -> Option<(String, String)> {
        let c = self.cluster.lock().unwrap();
        let conditions = c.agent.as_ref()?["status"]["conditions"]
            .as_array()?
            .clone();
        let ready = conditions.iter().find(|c| c["type"] == "Ready")?;
        Some((
            ready["status"].as_str()?.to_string(),
            ready["reason"].as_str()?.to_string(),
        ))
    }
}

fn gone() -> Value {
    json!({ "type": "ERROR", "object": { "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": "too old resource version", "reason": "Expired", "code": 410 } })
}

fn unavailable() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({ "kind": "Status", "apiVersion": "v1",
        "status": "Failure", "message": "the stand-in API server is down", "reason": "ServiceUnavailable", "code": 503 })))
        .into_response()
}

async fn list_or_watch(
    State(s): State<StandIn>,
    UrlPath(_ns): UrlPath<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if s.cluster.lock().unwrap().down {
        return unavailable();
    }
    if q.get("fieldSelector").map(String::as_str) != Some("metadata.name=tally") {
        return (
            StatusCode::BAD_REQUEST,
            "expected a field selector on the agent's name",
        )
            .into_response();
    }
    if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
        s.cluster.lock().unwrap().watches += 1;
        let from: u64 = q
            .get("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        return watch(s, from);
    }
    let mut c = s.cluster.lock().unwrap();
    c.lists += 1;
    let items: Vec<Value> = c.agent.clone().into_iter().collect();
    axum::Json(
        json!({ "apiVersion": "agent-host.dev/v1alpha1", "kind": "AgentList",
        "metadata": { "resourceVersion": c.rv.to_string() }, "items": items }),
    )
    .into_response()
}

fn watch(s: StandIn, from: u64) -> Response {
    let rx = s.wake.subscribe();
    let (expiries, too_old) = {
        let c = s.cluster.lock().unwrap();
        (c.expiries, from < c.compacted_at)
    };
    // (stand-in, wake-ups, last resourceVersion sent, finished)
    let state = (s, rx, from, too_old);
    let stream = futures::stream::unfold(state, move |(s, mut rx, mut sent, expired)| async move {
        if expired {
            // Sent once, then the stream ends, as the API server does.
            let gone = Bytes::from(format!("{}\n", gone()));
            let s2 = s.clone();
            return (sent != u64::MAX)
                .then(|| (Ok::<_, Infallible>(gone), (s2, rx, u64::MAX, true)));
        }
        loop {
            let (pending, down, expired_now, rv) = {
                let c = s.cluster.lock().unwrap();
                let pending: Vec<(u64, Value)> =
                    c.log.iter().filter(|(rv, _)| *rv > sent).cloned().collect();
                (pending, c.down, c.expiries != expiries, c.rv)
            };
            if down {
                return None;
            }
            if expired_now {
                return Some((
                    Ok(Bytes::from(format!("{}\n", gone()))),
                    (s, rx, u64::MAX, true),
                ));
            }
            if !pending.is_empty() {
                let mut out = String::new();
                for (rv, event) in pending {
                    out.push_str(&format!("{event}\n"));
                    sent = rv;
                }
                return Some((Ok(Bytes::from(out)), (s, rx, sent, false)));
            }
            tokio::select! {
                _ = rx.recv() => {}
                () = tokio::time::sleep(Duration::from_millis(500)) => {
                    let bookmark = json!({ "type": "BOOKMARK", "object": { "apiVersion": "agent-host.dev/v1alpha1",
                        "kind": "Agent", "metadata": { "resourceVersion": rv.to_string() } } });
                    return Some((Ok(Bytes::from(format!("{bookmark}\n"))), (s, rx, rv, false)));
                }
            }
        }
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap()
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().unwrap();
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

async fn patch_status(
    State(s): State<StandIn>,
    UrlPath((_ns, name)): UrlPath<(String, String)>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    if s.cluster.lock().unwrap().down {
        return unavailable();
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type != "application/merge-patch+json" {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("expected a merge patch, got {content_type}"),
        )
            .into_response();
    }
    let patch: Value = serde_json::from_slice(&body).unwrap();
    let mut result = None;
    s.change(|c| {
        let mut agent = c.agent.clone()?;
        if agent["metadata"]["name"] != name.as_str() {
            return None;
        }
        c.status_patches.push(patch.clone());
        // Only the status subresource changes; the spec and generation stay.
        merge(&mut agent["status"], &patch["status"]);
        result = Some(agent.clone());
        Some(("MODIFIED", agent))
    });
    match result {
        Some(agent) => axum::Json(agent).into_response(),
        None => (StatusCode::NOT_FOUND, "no such agent").into_response(),
    }
}

async fn create_event(
    State(s): State<StandIn>,
    UrlPath(_ns): UrlPath<String>,
    body: Bytes,
) -> Response {
    if s.cluster.lock().unwrap().down {
        return unavailable();
    }
    let mut event: Value = serde_json::from_slice(&body).unwrap();
    if event["metadata"]["name"].is_null() {
        event["metadata"]["name"] =
            json!(format!("tally.{}", s.cluster.lock().unwrap().events.len()));
    }
    s.cluster.lock().unwrap().events.push(event.clone());
    (StatusCode::CREATED, axum::Json(event)).into_response()
}

async fn patch_event(
    State(s): State<StandIn>,
    UrlPath((_ns, name)): UrlPath<(String, String)>,
    body: Bytes,
) -> Response {
    let patch: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut c = s.cluster.lock().unwrap();
    match c
        .events
        .iter_mut()
        .find(|e| e["metadata"]["name"] == name.as_str())
    {
        Some(e) => {
            merge(e, &patch);
            axum::Json(e.clone()).into_response()
        }
        None => (StatusCode::NOT_FOUND, "no such event").into_response(),
    }
}

/// The API server's default audience, assumed when a review names none.
const API_AUDIENCE: &str = "https://kubernetes.default.svc";

/// `POST /apis/authentication.k8s.io/v1/tokenreviews`. The stand-in's
/// service-account tokens are `sa/<namespace>/<name>/<audience>`; as the real
/// API server, a token is authenticated only for a requested audience it was
/// issued for, and `status.audiences` is that intersection.
async fn token_review(State(s): State<StandIn>, body: Bytes) -> Response {
    if s.cluster.lock().unwrap().down {
        return unavailable();
    }
    let review: Value = serde_json::from_slice(&body).unwrap();
    let delay = {
        let mut c = s.cluster.lock().unwrap();
        c.reviews.push(review.clone());
        c.reviews_in_flight += 1;
        c.max_reviews_in_flight = c.max_reviews_in_flight.max(c.reviews_in_flight);
        c.review_delay
    };
    tokio::time::sleep(delay).await;
    s.cluster.lock().unwrap().reviews_in_flight -= 1;
    let token = review["spec"]["token"].as_str().unwrap_or_default();
    let requested: Vec<String> = match review["spec"]["audiences"].as_array() {
        Some(a) if !a.is_empty() => a
            .iter()
            .filter_map(|a| a.as_str())
            .map(String::from)
            .collect(),
        _ => vec![API_AUDIENCE.to_string()],
    };
    let parts: Vec<&str> = token.splitn(4, '/').collect();
    let status = match parts.as_slice() {
        ["sa", ns, name, audience] if requested.iter().any(|r| r == audience) => json!({
            "authenticated": true,
            "user": { "username": format!("system:serviceaccount:{ns}:{name}"), "groups": ["system:serviceaccounts"] },
            "audiences": [audience],
        }),
        _ => json!({ "authenticated": false, "error": "invalid bearer token" }),
    };
    (
        StatusCode::CREATED,
        axum::Json(
            json!({ "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "metadata": {}, "spec": review["spec"], "status": status }),
        ),
    )
        .into_response()
}

/// Starts the stand-in on a thread with its own runtime; returns its URL.
fn stand_in() -> (String, StandIn) {
    let (wake, _) = broadcast::channel(64);
    let s = StandIn {
        cluster: Arc::default(),
        wake,
    };
    let app = Router::new()
        .route(AGENTS, get(list_or_watch))
        .route(&format!("{AGENTS}/{{name}}/status"), patch(patch_status))
        .route(
            "/apis/events.k8s.io/v1/namespaces/{ns}/events",
            post(create_event),
        )
        .route(
            "/apis/events.k8s.io/v1/namespaces/{ns}/events/{name}",
            patch(patch_event),
        )
        .route(
            "/apis/authentication.k8s.io/v1/tokenreviews",
            post(token_review),
        )
        .with_state(s.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap();
            })
    });
    (format!("http://{addr}"), s)
}

fn kubeconfig(dir: &Path, server: &str) -> PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: stand-in\n  cluster:\n    server: {server}\ncontexts:\n- name: stand-in\n  context:\n    cluster: stand-in\n    user: host\n    namespace: {NS}\nusers:\n- name: host\n  user: {{}}\ncurrent-context: stand-in\n"
        ),
    )
    .unwrap();
    path
}

/// `agent-host serve --agent tally` following the stand-in
/// (`crate::support::HostProcess`).
struct Host(HostProcess);

impl Deref for Host {
    type Target = HostProcess;

    fn deref(&self) -> &HostProcess {
        &self.0
    }
}

impl Host {
    fn start(dir: &Path, api: &str) -> Self {
        Self::start_with(dir, api, |_| {})
    }

    fn start_with(
        dir: &Path,
        api: &str,
        configure: impl FnOnce(&mut std::process::Command),
    ) -> Self {
        Host(HostProcess::start(dir, "host.log", |cmd| {
            cmd.args(["--agent", "tally", "--namespace", NS])
                .args(["--event-interval", "300ms"])
                .env("KUBECONFIG", kubeconfig(dir, api));
            configure(cmd);
        }))
    }

    fn invoke(&self, body: &str) -> (u16, Value) {
        let reply = self.post("/v1/agents/tally/invocations", &[], body);
        (reply.status, reply.body)
    }
}

fn spec(data: &Path, read_only: bool) -> Value {
    json!({
        "component": { "path": guests::SLOW_TALLY },
        "capabilities": { "filesystem": [ { "hostPath": data, "guestPath": "/data", "readOnly": read_only } ] },
        "limits": { "timeout": "10s" },
    })
}

fn tally_lines(data: &Path) -> usize {
    std::fs::read_to_string(data.join("tally"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// A stand-in API server holding a read-write `tally` Agent, and a host
/// following it (not yet waited for).
fn running_tally() -> (tempfile::TempDir, StandIn, Host) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let (api, cluster) = stand_in();
    cluster.create(spec(&data, false));
    let host = Host::start(dir.path(), &api);
    (dir, cluster, host)
}

#[test]
fn follows_its_agent_narrows_grants_at_once_and_withdraws_when_invalid_or_deleted() {
    let (dir, cluster, host) = running_tally();
    let data = dir.path().join("data");

    host.wait("readiness", || host.ready());
    host.wait("status of generation 1", || {
        cluster.generation_observed() == Some(1)
    });
    assert_eq!(
        cluster.ready_condition(),
        Some(("True".into(), "Serving".into()))
    );
    let status = cluster.cluster.lock().unwrap().agent.clone().unwrap()["status"].clone();
    assert!(
        status["componentDigest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:"),
        "{status}"
    );
    assert!(
        status["effectiveGrants"]
            .to_string()
            .contains("filesystem: /data"),
        "{status}"
    );
    assert!(
        !status["imports"].as_array().unwrap().is_empty(),
        "{status}"
    );

    let (code, body) = host.invoke(r#"{"sleepMs":0}"#);
    assert_eq!(
        (code, body["state"].as_str()),
        (200, Some("succeeded")),
        "{body}"
    );
    assert_eq!(tally_lines(&data), 1);

    // Narrow the grant: the next invocation runs under the read-only mount.
    cluster.set_spec(spec(&data, true));
    host.wait("status of generation 2", || {
        cluster.generation_observed() == Some(2)
    });
    let (code, body) = host.invoke(r#"{"sleepMs":0}"#);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["state"], "failed", "the write is refused now: {body}");
    assert_eq!(body["usage"]["fileDenied"], 1, "{body}");
    assert_eq!(tally_lines(&data), 1);
    host.wait("an aggregated CapabilityDenied event", || {
        cluster
            .cluster
            .lock()
            .unwrap()
            .events
            .iter()
            .any(|e| e["reason"] == "CapabilityDenied")
    });
    let events = cluster.cluster.lock().unwrap().events.clone();
    let denied = events
        .iter()
        .find(|e| e["reason"] == "CapabilityDenied")
        .unwrap();
    assert_eq!(denied["type"], "Warning");
    assert_eq!(denied["regarding"]["name"], "tally");

    // An invalid spec withdraws the agent; it never keeps serving the old one.
    let mut invalid = spec(&data, false);
    invalid["component"]["path"] = json!("relative.wasm");
    cluster.set_spec(invalid);
    host.wait("unreadiness on an invalid spec", || !host.ready());
    let (code, body) = host.invoke("{}");
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (503, Some("AgentUnavailable")),
        "{body}"
    );
    host.wait("status of generation 3", || {
        cluster.generation_observed() == Some(3)
    });
    assert_eq!(
        cluster.ready_condition(),
        Some(("False".into(), "InvalidSpec".into()))
    );

    cluster.set_spec(spec(&data, false));
    host.wait("readiness after a fix", || host.ready());

    cluster.delete();
    host.wait("unreadiness after deletion", || !host.ready());
    let (code, _) = host.invoke("{}");
    assert_eq!(code, 503);
    assert_eq!(
        tally_lines(&data),
        1,
        "nothing ran after the grant was narrowed"
    );
    let patches = cluster.cluster.lock().unwrap().status_patches.len();
    assert!(
        patches <= 5,
        "status is patched only when it changes: {patches} patches"
    );
}

#[test]
fn an_api_outage_keeps_the_last_good_spec_and_410_gone_forces_a_relist() {
    let (dir, cluster, host) = running_tally();
    let data = dir.path().join("data");
    host.wait("readiness", || host.ready());

    cluster.set_down(true);
    thread::sleep(Duration::from_millis(1500));
    assert!(
        host.ready(),
        "an unreachable API server is not a reason to stop serving"
    );
    let (code, body) = host.invoke(r#"{"sleepMs":0}"#);
    assert_eq!(
        (code, body["state"].as_str()),
        (200, Some("succeeded")),
        "{body}"
    );
    let watches = cluster.cluster.lock().unwrap().watches;
    cluster.set_down(false);
    host.wait("the watch to reconnect", || {
        cluster.cluster.lock().unwrap().watches > watches
    });
    thread::sleep(Duration::from_millis(200));

    let lists_before = cluster.cluster.lock().unwrap().lists;
    cluster.expire();
    cluster.set_spec(spec(&data, true));
    host.wait("the change made after 410 Gone", || {
        cluster.generation_observed() == Some(2)
    });
    assert!(
        cluster.cluster.lock().unwrap().lists > lists_before,
        "410 Gone made the host list again"
    );
    let (_, body) = host.invoke(r#"{"sleepMs":0}"#);
    assert_eq!(
        body["state"], "failed",
        "the read-only spec applies: {body}"
    );
}

#[test]
fn a_spec_nesting_a_mount_in_the_outgoing_specs_writable_mount_waits_until_that_spec_is_gone() {
    // Generation 1 mounts `data` read-write; generation 2 mounts `data/config`
    // read-only. While generation 1 is still registered its invocations could
    // swap `data/config`, so generation 2 is refused and the agent withdrawn;
    // it loads on the next apply (here the echo of the status patch), once
    // generation 1 has left.
    let (dir, cluster, host) = running_tally();
    let config = dir.path().join("data/config");
    std::fs::create_dir(&config).unwrap();
    host.wait("readiness", || host.ready());

    cluster.set_spec(spec(&config, true));
    host.wait("the refusal of generation 2", || {
        host.logs().contains("is inside the writable mount")
    });
    host.wait("generation 2 served", || {
        host.logs().contains(r#""generation":2"#) && host.ready()
    });
    let logs = host.logs();
    let refused = logs
        .lines()
        .find(|l| l.contains("is inside the writable mount"))
        .unwrap();
    assert!(
        refused.contains("spec.capabilities.filesystem[0].hostPath")
            && refused.contains(&format!(
                "(agent {NS}/tally, spec.capabilities.filesystem[0], read-write)"
            )),
        "{refused}"
    );
    let refused_at = logs.find("is inside the writable mount").unwrap();
    let served_at = logs.find(r#""generation":2"#).unwrap();
    assert!(
        refused_at < served_at,
        "generation 2 was served while generation 1 still held its writable mount\n{logs}"
    );
}

/// A bucket the Agent does not list is refused like any other capability:
/// the aggregated CapabilityDenied Warning event counts it, and the status's
/// effective grants show the key-value grant it was refused under.
#[test]
fn a_refused_bucket_reaches_the_capability_denied_event_and_the_status_lists_key_value() {
    let dir = tempfile::tempdir().unwrap();
    let (api, cluster) = stand_in();
    cluster.create(json!({
        "component": { "path": guests::KV_COUNTER },
        "capabilities": { "keyValue": { "maxBytes": "1Mi", "buckets": ["state"] } },
    }));
    let host = Host::start(dir.path(), &api);
    host.wait("readiness", || host.ready());
    host.wait("status of generation 1", || {
        cluster.generation_observed() == Some(1)
    });
    let status = cluster.cluster.lock().unwrap().agent.clone().unwrap()["status"].clone();
    assert!(
        status["effectiveGrants"]
            .to_string()
            .contains("keyValue: buckets state, at most 1Mi"),
        "{status}"
    );
    let (code, body) = host.invoke(r#"{"bucket":"other"}"#);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["usage"]["keyValueDenied"], 1, "{body}");
    host.wait("a CapabilityDenied event counting the bucket", || {
        cluster.cluster.lock().unwrap().events.iter().any(|e| {
            e["reason"] == "CapabilityDenied"
                && e["note"]
                    .as_str()
                    .is_some_and(|n| n.contains("keyValue: 1"))
        })
    });
}

/// A component from a registry: a new digest is a rollout; while the registry
/// is down the last good component keeps serving, the status and an event
/// say why, the refusal is audited, and the pull is retried until it lands.
#[test]
fn a_failed_pull_keeps_the_last_good_component_serving_and_is_retried() {
    use guests::registry::Registry;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let mut registry = Registry::start();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "apiVersion: agent-host.dev/v1alpha1\nkind: TrustPolicy\nrules:\n  - {{repositories: '{}/agents/**', signatures: allow-unsigned}}\n",
            registry.addr()
        ),
    )
    .unwrap();
    let push = |wasm: &str, tag: &str| {
        let out = std::process::Command::new(crate::support::BIN)
            .args([
                "push",
                wasm,
                &format!("{}/agents/tally:{tag}", registry.addr()),
            ])
            .env("AGENT_HOST_INSECURE_REGISTRIES", registry.addr())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let first = push(guests::SLOW_TALLY, "v1");
    let second = push(guests::KV_COUNTER, "v2");
    let image_spec = |image: &str| {
        json!({
            "component": { "image": image },
            "capabilities": {
                "filesystem": [ { "hostPath": data, "guestPath": "/data", "readOnly": false } ],
                "keyValue": { "maxBytes": "1Mi", "buckets": ["state"] },
            },
        })
    };
    let (api, cluster) = stand_in();
    cluster.create(image_spec(&first));
    let addr = registry.addr();
    let host = Host::start_with(dir.path(), &api, |cmd| {
        cmd.env("AGENT_HOST_TRUST_POLICY", &policy)
            .env("AGENT_HOST_INSECURE_REGISTRIES", &addr)
            .env("AGENT_HOST_PULL_TIMEOUT", "3s");
    });
    host.wait("readiness", || host.ready());
    host.wait("status of generation 1", || {
        cluster.generation_observed() == Some(1)
    });
    let status = || cluster.cluster.lock().unwrap().agent.clone().unwrap()["status"].clone();
    assert_eq!(status()["componentImage"], first.as_str(), "{}", status());

    registry.stop();
    cluster.set_spec(image_spec(&second));
    host.wait("status of generation 2", || {
        cluster.generation_observed() == Some(2)
    });
    assert_eq!(
        cluster.ready_condition(),
        Some(("True".into(), "ServingPrevious".into())),
        "{}",
        status()
    );
    let conditions = status()["conditions"].to_string();
    assert!(
        conditions.contains("ImagePullFailed") && conditions.contains("unreachable"),
        "{conditions}"
    );
    assert_eq!(
        status()["componentImage"],
        first.as_str(),
        "the last good component still serves"
    );
    let (code, body) = host.invoke(r#"{"sleepMs":0}"#);
    assert_eq!(
        (code, body["state"].as_str()),
        (200, Some("succeeded")),
        "{body}"
    );
    host.wait("an ImagePullFailed event", || {
        cluster
            .cluster
            .lock()
            .unwrap()
            .events
            .iter()
            .any(|e| e["reason"] == "ImagePullFailed")
    });
    let audit = std::fs::read_to_string(&host.audit).unwrap();
    assert!(
        audit.contains("component.refused") && audit.contains("ImagePullFailed"),
        "{audit}"
    );

    registry.restart();
    host.wait("the retried pull to roll out the new digest", || {
        status()["componentImage"] == second.as_str()
    });
    assert_eq!(
        cluster.ready_condition(),
        Some(("True".into(), "Serving".into()))
    );
}

const PAGER: &str = "system:serviceaccount:sre-agents:pager";

fn invoke_as(host: &Host, token: Option<&str>) -> (u16, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    let reply = host.post("/v1/agents/tally/invocations", &headers, r#"{"n":1}"#);
    (reply.status, reply.body)
}

#[test]
fn service_account_tokens_are_checked_with_token_review_for_the_configured_audience() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let (api, cluster) = stand_in();
    let mut restricted = spec(&data, false);
    restricted["callers"] = json!([PAGER]);
    cluster.create(restricted);
    let host = Host::start_with(dir.path(), &api, |cmd| {
        cmd.args(["--token-review", "--token-audience", "agent-host"]);
    });
    host.wait("the agent to serve", || host.ready());

    let reviews = || cluster.cluster.lock().unwrap().reviews.len();
    let (status, body) = invoke_as(&host, None);
    assert_eq!(status, 401, "{body}");
    assert_eq!(reviews(), 0, "no token, nothing to review");
    let (status, body) = invoke_as(&host, Some("sa/sre-agents/pager/agent-host"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "succeeded", "{body}");
    let sent = cluster.cluster.lock().unwrap().reviews[0].clone();
    assert_eq!(sent["spec"]["audiences"], json!(["agent-host"]), "{sent}");
    // A positive answer is reused for a while: no second review.
    assert_eq!(
        invoke_as(&host, Some("sa/sre-agents/pager/agent-host")).0,
        200
    );
    assert_eq!(reviews(), 1);
    // Another service account: authenticated, not in spec.callers.
    let (status, body) = invoke_as(&host, Some("sa/sre-agents/other/agent-host"));
    assert_eq!(status, 403, "{body}");
    // The pager's token for the API server's audience is not valid here.
    let (status, body) = invoke_as(&host, Some(&format!("sa/sre-agents/pager/{API_AUDIENCE}")));
    assert_eq!(status, 401, "{body}");
    assert_eq!(invoke_as(&host, Some("not-a-token")).0, 401);
    // Probes stay open.
    assert_eq!(host.get("/healthz").status, 200);
    // An API server that cannot answer: 503, never a pass.
    cluster.set_down(true);
    let (status, body) = invoke_as(&host, Some("sa/sre-agents/fresh/agent-host"));
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "AuthenticationUnavailable");
    cluster.set_down(false);

    host.wait("the audit records", || {
        crate::serve::audit_records(&host.audit)
            .iter()
            .filter(|r| r["kind"] == "request.denied")
            .count()
            >= 5
    });
    let records = crate::serve::audit_records(&host.audit);
    let callers: Vec<&str> = records
        .iter()
        .filter(|r| r["kind"] == "invocation.start")
        .map(|r| r["caller"].as_str().unwrap())
        .collect();
    assert_eq!(callers, [PAGER, PAGER]);
    let forbidden = records
        .iter()
        .find(|r| r["kind"] == "request.denied" && r["status"] == 403)
        .unwrap();
    assert_eq!(
        forbidden["caller"],
        "system:serviceaccount:sre-agents:other"
    );

    // A flood of made-up tokens reaches the API server at most 16 at a time.
    cluster.cluster.lock().unwrap().review_delay = Duration::from_millis(200);
    let before = reviews();
    thread::scope(|scope| {
        for i in 0..48 {
            let host = &host;
            scope.spawn(move || {
                let (status, body) = invoke_as(host, Some(&format!("made-up-{i}")));
                assert_eq!(status, 401, "{body}");
            });
        }
    });
    let c = cluster.cluster.lock().unwrap();
    assert_eq!(c.reviews.len() - before, 48);
    assert!(
        (2..=16).contains(&c.max_reviews_in_flight),
        "{} reviews at once",
        c.max_reviews_in_flight
    );
}

#[test]
fn an_agent_with_callers_on_a_host_that_authenticates_nobody_is_refused_as_an_invalid_spec() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let (api, cluster) = stand_in();
    let mut restricted = spec(&data, false);
    restricted["callers"] = json!([PAGER]);
    cluster.create(restricted);
    let host = Host::start(dir.path(), &api);
    host.wait("the Ready condition", || {
        cluster.ready_condition().is_some()
    });
    assert_eq!(
        cluster.ready_condition(),
        Some(("False".into(), "InvalidSpec".into()))
    );
    assert_eq!(invoke_as(&host, None).0, 503);
    assert!(!host.ready());
}
