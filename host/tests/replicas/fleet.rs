//! The replica harness: N `agent-host serve` processes sharing one store,
//! each a real child process with its own directory, audit log and stderr,
//! and the signals a platform sends.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{HostProcess, Reply};

/// A lease short enough that a reclaim takes about a second.
pub const LEASE: &str = "1s";

/// The states an invocation ends in.
const ENDED: [&str; 3] = ["succeeded", "failed", "cancelled"];

/// One `agent-host serve` of the fleet, named `r<n>` (`--replica-name`).
pub struct Replica {
    /// Its `--replica-name`, as `attempts[].replica` shows it.
    pub name: String,
    host: HostProcess,
}

impl Deref for Replica {
    type Target = HostProcess;

    fn deref(&self) -> &HostProcess {
        &self.host
    }
}

impl DerefMut for Replica {
    fn deref_mut(&mut self) -> &mut HostProcess {
        &mut self.host
    }
}

impl Replica {
    /// A synchronous invocation of `agent`.
    pub fn invoke(&self, agent: &str, body: &str) -> Reply {
        self.post(&format!("/v1/agents/{agent}/invocations"), &[], body)
    }

    /// A synchronous invocation with an `Idempotency-Key`.
    pub fn invoke_keyed(&self, agent: &str, key: &str, body: &str) -> Reply {
        self.post(
            &format!("/v1/agents/{agent}/invocations"),
            &[("idempotency-key", key)],
            body,
        )
    }

    /// An async invocation: the raw reply (202, or a refusal).
    pub fn submit_reply(&self, agent: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        self.post(
            &format!("/v1/agents/{agent}/invocations?async=true"),
            headers,
            body,
        )
    }

    /// An async invocation that must be accepted: its id, checked against
    /// its `Location`.
    pub fn submit(&self, agent: &str, body: &str) -> String {
        let r = self.submit_reply(agent, &[], body);
        accepted_id(&self.name, &r)
    }

    /// `GET /v1/invocations/{id}`.
    pub fn invocation(&self, id: &str) -> Reply {
        self.get(&format!("/v1/invocations/{id}"))
    }

    /// `DELETE /v1/invocations/{id}`.
    pub fn cancel(&self, id: &str) -> Reply {
        HostProcess::reply(
            self.http
                .delete(format!("{}/v1/invocations/{id}", self.base))
                .call(),
        )
    }

    /// The sum of a metric's samples over every label set (0 when absent).
    pub fn metric(&self, name: &str) -> f64 {
        let text = self.get("/metrics").body;
        let text = text.as_str().unwrap_or_default();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                let metric = series.split('{').next()?;
                (metric == name).then(|| value.parse::<f64>().ok())?
            })
            .sum()
    }

    /// The key-value counter of a `count_and_notify` agent, read by a sync
    /// invocation on this replica.
    pub fn counter(&self, agent: &str) -> u64 {
        let r = self.invoke(agent, r#"{"op":"read"}"#);
        assert_eq!(r.status, 200, "{}: counter read: {}", self.name, r.body);
        r.body["output"]["count"]
            .as_u64()
            .unwrap_or_else(|| panic!("{}: no count in {}", self.name, r.body))
    }
}

/// The id of an accepted async invocation; fails unless `r` is a 202 whose
/// `Location` names that id.
pub fn accepted_id(replica: &str, r: &Reply) -> String {
    assert_eq!(r.status, 202, "{replica}: async POST: {}", r.body);
    let id = r.body["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{replica}: no id in {}", r.body))
        .to_string();
    let location = r.headers.get("location").map(|v| v.to_str().unwrap());
    assert_eq!(
        location,
        Some(format!("/v1/invocations/{id}").as_str()),
        "{replica}: Location of {id}"
    );
    id
}

/// Replicas of one `serve` configuration on one store, each in its own
/// directory under the fleet's; every fleet shares one compile cache.
pub struct Fleet {
    dir: tempfile::TempDir,
    /// The `--store` URL; `None` is the embedded store under each replica's
    /// state directory.
    store: Option<String>,
    args: Vec<String>,
    started: usize,
    /// The replicas, `r1` first; a test may take one out to kill it.
    pub replicas: Vec<Replica>,
}

impl Fleet {
    /// A fleet on `store` (`None`: embedded) hosting every manifest in
    /// `agents`, each replica started with `--replica-name r<n> --lease`
    /// [`LEASE`] and `args`. No replica runs until [`Fleet::grow`].
    pub fn new(store: Option<String>, agents: &Path, args: &[&str]) -> Self {
        let mut all = vec![
            "-f".to_string(),
            agents.display().to_string(),
            "--lease".into(),
            LEASE.into(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        Self::with_args(store, all)
    }

    /// A fleet whose replicas get exactly `args` (plus `--store` and, when
    /// `args` has `--lease`, `--replica-name`): the harness's own test runs
    /// it with the flags of a `serve` that predates durable work.
    pub fn with_args(store: Option<String>, args: Vec<String>) -> Self {
        Fleet {
            dir: tempfile::tempdir().unwrap(),
            store,
            args,
            started: 0,
            replicas: Vec::new(),
        }
    }

    /// Starts `n` more replicas, the fleet's first alone (it fills the compile
    /// cache when it is cold), the others together; each is ready when this
    /// returns.
    pub fn grow(&mut self, n: usize) -> &mut Self {
        let mut names: Vec<String> = (0..n)
            .map(|i| format!("r{}", self.started + i + 1))
            .collect();
        self.started += n;
        if self.replicas.is_empty() && !names.is_empty() {
            let first = names.remove(0);
            let replica = self.start(&first, "serve.log");
            self.replicas.push(replica);
        }
        let this = &*self;
        let started: Vec<Replica> = std::thread::scope(|s| {
            let handles: Vec<_> = names
                .iter()
                .map(|name| s.spawn(move || this.start(name, "serve.log")))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        self.replicas.extend(started);
        self
    }

    /// Starts replica `name` again in its directory (its embedded store and
    /// audit log kept), logging to `log`.
    pub fn restart(&self, name: &str, log: &str) -> Replica {
        self.start(name, log)
    }

    fn start(&self, name: &str, log: &str) -> Replica {
        let dir = self.replica_dir(name);
        std::fs::create_dir_all(&dir).unwrap();
        // One cache for every fleet of the run: entries are written
        // atomically, and a replica that compiles nothing starts faster.
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("replicas-compile-cache");
        let host = HostProcess::start(&dir, log, |cmd| {
            cmd.env("AGENT_HOST_CACHE_DIR", &cache).args(&self.args);
            if let Some(store) = &self.store {
                cmd.args(["--store", store]);
            }
            if self.args.iter().any(|a| a == "--lease") {
                cmd.args(["--replica-name", name]);
            }
        });
        let replica = Replica {
            name: name.to_string(),
            host,
        };
        replica.wait(&format!("{name} ready"), || replica.ready());
        replica
    }

    /// Replica `name`'s directory (state, audit log, stderr).
    pub fn replica_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The replica named `name`.
    pub fn get(&self, name: &str) -> &Replica {
        self.replicas
            .iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no replica {name}"))
    }

    /// Takes replica `name` out of the fleet (to kill it).
    pub fn take(&mut self, name: &str) -> Replica {
        let at = self
            .replicas
            .iter()
            .position(|r| r.name == name)
            .unwrap_or_else(|| panic!("no replica {name}"));
        self.replicas.remove(at)
    }

    /// Every replica's stderr, for a failure message.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        for entry in std::fs::read_dir(self.dir.path()).unwrap().flatten() {
            for log in std::fs::read_dir(entry.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if log.path().extension().is_some_and(|e| e == "log") {
                    let text = std::fs::read_to_string(log.path()).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(40).collect();
                    all += &format!("--- {}\n", log.path().display());
                    all += &tail.into_iter().rev().collect::<Vec<_>>().join("\n");
                    all += "\n";
                }
            }
        }
        all
    }

    /// Polls `done` every 50 ms for up to `within`; fails naming `what`, with
    /// every replica's log.
    pub fn wait_until(&self, what: &str, within: Duration, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + within;
        while !done() {
            assert!(
                Instant::now() < deadline,
                "timed out after {within:?} waiting for {what}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls `via` until every invocation in `ids` has ended; their last
    /// bodies by id.
    pub fn wait_ended(
        &self,
        via: &Replica,
        ids: &[String],
        within: Duration,
    ) -> HashMap<String, Value> {
        let mut ended: HashMap<String, Value> = HashMap::new();
        self.wait_until(
            &format!("{} invocations to end (asking {})", ids.len(), via.name),
            within,
            || {
                for id in ids {
                    if ended.contains_key(id) {
                        continue;
                    }
                    let r = via.invocation(id);
                    assert_eq!(r.status, 200, "{}: GET {id}: {}", via.name, r.body);
                    if ENDED.contains(&r.body["state"].as_str().unwrap_or_default()) {
                        ended.insert(id.clone(), r.body);
                    }
                }
                ended.len() == ids.len()
            },
        );
        ended
    }
}

/// The replicas that made the attempts of an invocation, in order.
pub fn attempt_replicas(body: &Value) -> Vec<String> {
    body["attempts"]
        .as_array()
        .unwrap_or_else(|| panic!("no attempts in {body}"))
        .iter()
        .map(|a| a["replica"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Fails unless every body ended `succeeded`, naming those that did not.
pub fn assert_all_succeeded(ended: &HashMap<String, Value>) {
    let bad: Vec<&Value> = ended
        .values()
        .filter(|b| b["state"] != "succeeded")
        .collect();
    assert!(
        bad.is_empty(),
        "{} of {} did not succeed, e.g. {}",
        bad.len(),
        ended.len(),
        bad[0]
    );
}
