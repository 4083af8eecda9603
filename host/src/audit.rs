//! The audit trail: an append-only JSON-lines file with one record per
//! invocation start and end and per capability use or denial.
//!
//! Records are hash-chained: each line is a JSON object whose `prev` is the
//! `hash` of the line before, and whose own `hash` (the last field) is the
//! SHA-256 of the line's text up to that field. Changing, removing or
//! reordering a record breaks the chain at that record ([`verify`]). Targets
//! are redacted of the agent's secret values before they are written; task
//! inputs are recorded by size and digest only.
//!
//! Writes happen on one dedicated thread, so callers never block on the disk:
//! records are queued in memory and the writer drains the queue every
//! [`FLUSH_INTERVAL`] (or sooner when it grows), so the hot path never wakes a
//! thread. [`AuditLog::close`] drains, flushes and syncs the file.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::cap::env::redact;
use crate::cap::Capability;

/// `prev` of the first record of a chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Capability records one invocation may write; past it they are counted, not
/// written, so a guest probing in a loop cannot fill the disk.
pub const MAX_CAPABILITY_RECORDS: u32 = 256;
const HASH_FIELD: &str = ",\"hash\":\"";
/// Longest a record waits in memory before it is written to the file.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(5);
/// Queued records that wake the writer before the interval is over.
const WAKE_AT: usize = 4096;

/// What happened. Serialised flat into the record with a `kind` tag.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind")]
pub enum Event {
    /// The host started serving these agents.
    #[serde(rename = "host.start")]
    HostStart {
        /// Host version.
        version: &'static str,
        /// Agents loaded, `name@sha256`.
        agents: Vec<String>,
    },
    /// An agent started serving (at start, or after its spec changed).
    #[serde(rename = "agent.loaded")]
    AgentLoaded {
        /// Agent name.
        agent: String,
        /// `sha256:<hex>` of its component.
        digest: String,
    },
    /// An agent stopped taking work (its resource was deleted or became invalid).
    #[serde(rename = "agent.withdrawn")]
    AgentWithdrawn {
        /// Agent name.
        agent: String,
        /// Why.
        reason: String,
    },
    /// The host stopped.
    #[serde(rename = "host.stop", rename_all = "camelCase")]
    HostStop {
        /// Invocations cancelled at the end of the grace period.
        cancelled: u64,
    },
    /// An invocation was accepted.
    #[serde(rename = "invocation.start", rename_all = "camelCase")]
    InvocationStart {
        /// Agent name.
        agent: String,
        /// Invocation id.
        invocation: String,
        /// Who asked (the peer address for the HTTP API).
        caller: String,
        /// Size of the task input.
        input_bytes: u64,
        /// SHA-256 of the task input, hex; the input itself is never recorded.
        input_sha256: String,
        /// The request's idempotency key, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        idempotency_key: Option<String>,
    },
    /// An invocation ended (or was cancelled).
    #[serde(rename = "invocation.end", rename_all = "camelCase")]
    InvocationEnd {
        /// Agent name.
        agent: String,
        /// Invocation id.
        invocation: String,
        /// `ok`, an outcome code, or `Cancelled`.
        outcome: String,
        /// The error message (secrets redacted), when not `ok`.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// Fuel consumed.
        fuel: u64,
        /// Peak linear memory, bytes.
        peak_memory_bytes: u64,
        /// Wall time, microseconds.
        wall_time_us: u64,
        /// Capability records not written past [`MAX_CAPABILITY_RECORDS`].
        #[serde(skip_serializing_if = "is_zero")]
        capability_records_suppressed: u64,
    },
    /// A guest used, or was denied, a capability.
    #[serde(rename = "capability")]
    Capability {
        /// Agent name.
        agent: String,
        /// Invocation id.
        invocation: String,
        /// Capability name (as in metrics and usage reports).
        capability: &'static str,
        /// What was attempted, e.g. `GET` or `open`.
        action: String,
        /// What it was attempted on (URL, path), secrets redacted.
        target: String,
        /// `allow` or `deny`.
        decision: Decision,
        /// The manifest rule that allowed it.
        #[serde(skip_serializing_if = "Option::is_none")]
        rule: Option<String>,
        /// Why it was denied.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A capability decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Allowed by a rule.
    Allow,
    /// Refused.
    Deny,
}

#[derive(Serialize)]
struct Record<'a> {
    seq: u64,
    time: String,
    prev: &'a str,
    #[serde(flatten)]
    event: &'a Event,
}

#[derive(Default)]
struct Queue {
    records: Vec<(String, Event)>,
    /// Set by `close`: the writer drains, syncs, acknowledges and stops.
    close: Option<mpsc::SyncSender<()>>,
    closed: bool,
}

/// Why the audit log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file cannot be opened or read.
    #[error("audit log {}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file's last record cannot be continued.
    #[error("audit log {}: cannot continue the hash chain: line {line}: {problem}; run `agent-host audit verify {}`", .path.display(), .path.display())]
    Broken {
        /// The file.
        path: PathBuf,
        /// 1-based line of the last record.
        line: u64,
        /// What is wrong with it.
        problem: String,
    },
}

/// Handle on the audit trail; cheap to clone. A handle made with
/// [`AuditLog::disabled`] records nothing.
#[derive(Clone, Default)]
pub struct AuditLog {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    queue: Mutex<Queue>,
    wake: Condvar,
    failed: AtomicBool,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("enabled", &self.inner.is_some())
            .finish()
    }
}

impl AuditLog {
    /// A handle that records nothing.
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// Opens (creating it, mode 0600) or continues the chain of `path`.
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        let io = |source| OpenError::Io {
            path: path.to_path_buf(),
            source,
        };
        // The whole existing chain is checked: a host must not extend (and so
        // launder) a trail that was tampered with while it was down.
        let (seq, prev) = if path.exists() {
            let reader = BufReader::new(File::open(path).map_err(io)?);
            let verified = verify(reader).map_err(|brk| OpenError::Broken {
                path: path.to_path_buf(),
                line: brk.line,
                problem: format!("record {}: {}", brk.record, brk.problem),
            })?;
            (verified.next_seq, verified.last_hash)
        } else {
            (0, GENESIS.to_string())
        };
        let mut options = OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(path).map_err(io)?;
        let inner = Arc::new(Inner {
            queue: Mutex::default(),
            wake: Condvar::new(),
            failed: AtomicBool::new(false),
        });
        let writer = Writer {
            out: BufWriter::new(file),
            path: path.to_path_buf(),
            seq,
            prev,
            inner: inner.clone(),
        };
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run())
            .map_err(io)?;
        Ok(Self { inner: Some(inner) })
    }

    /// True unless the log is disabled.
    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// False once a write failed: the trail is incomplete from then on.
    pub fn healthy(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(|i| !i.failed.load(Ordering::Relaxed))
    }

    /// Appends `event`, stamped with the current time.
    pub fn record(&self, event: Event) {
        let Some(inner) = &self.inner else { return };
        let time = jiff::Timestamp::now().to_string();
        let mut queue = inner.queue.lock().expect("audit queue lock");
        if queue.closed {
            drop(queue);
            inner.failed.store(true, Ordering::Relaxed);
            tracing::error!("audit record dropped: the audit log is closed");
            return;
        }
        queue.records.push((time, event));
        if queue.records.len() >= WAKE_AT {
            inner.wake.notify_one();
        }
    }

    /// Writes everything recorded so far, syncs the file and stops the writer.
    /// Later records are refused (and mark the log unhealthy).
    pub fn close(&self) {
        let Some(inner) = &self.inner else { return };
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        {
            let mut queue = inner.queue.lock().expect("audit queue lock");
            if queue.closed {
                return;
            }
            queue.closed = true;
            queue.close = Some(ack_tx);
        }
        inner.wake.notify_one();
        let _ = ack_rx.recv();
    }

    /// A per-invocation handle for capability records.
    pub fn for_invocation(
        &self,
        agent: Arc<str>,
        invocation: Arc<str>,
        secrets: Arc<[String]>,
    ) -> CapabilityAudit {
        CapabilityAudit {
            log: self.clone(),
            agent,
            invocation,
            secrets,
            remaining: Arc::new(AtomicU32::new(MAX_CAPABILITY_RECORDS)),
            suppressed: Arc::new(AtomicU64::new(0)),
        }
    }
}

struct Writer {
    out: BufWriter<File>,
    path: PathBuf,
    seq: u64,
    prev: String,
    inner: Arc<Inner>,
}

impl Writer {
    fn run(mut self) {
        let inner = self.inner.clone();
        let mut batch = Vec::new();
        loop {
            let close = {
                let queue = inner.queue.lock().expect("audit queue lock");
                let (mut queue, _) = inner
                    .wake
                    .wait_timeout_while(queue, FLUSH_INTERVAL, |q| {
                        q.records.len() < WAKE_AT && q.close.is_none()
                    })
                    .expect("audit queue lock");
                std::mem::swap(&mut batch, &mut queue.records);
                queue.close.take()
            };
            for (time, event) in batch.drain(..) {
                self.append(&time, &event);
            }
            if let Some(ack) = close {
                self.finish();
                let _ = ack.send(());
                return;
            }
            if let Err(e) = self.out.flush() {
                self.fail(&e);
            }
        }
    }

    fn append(&mut self, time: &str, event: &Event) {
        let record = Record {
            seq: self.seq,
            time: time.to_string(),
            prev: &self.prev,
            event,
        };
        let body = serde_json::to_string(&record).expect("audit records serialise");
        let hash = hex::encode(Sha256::digest(body.as_bytes()));
        let line = format!("{}{HASH_FIELD}{hash}\"}}\n", &body[..body.len() - 1]);
        if let Err(e) = self.out.write_all(line.as_bytes()) {
            self.fail(&e);
            return;
        }
        self.seq += 1;
        self.prev = hash;
    }

    fn finish(&mut self) {
        if let Err(e) = self
            .out
            .flush()
            .and_then(|()| self.out.get_ref().sync_data())
        {
            self.fail(&e);
        }
    }

    fn fail(&self, e: &std::io::Error) {
        self.inner.failed.store(true, Ordering::Relaxed);
        tracing::error!(path = %self.path.display(), error = %e, "audit log write failed");
    }
}

/// Capability records of one invocation, redacted of the agent's secrets and
/// capped at [`MAX_CAPABILITY_RECORDS`]. Cheap to clone; clones share the cap.
#[derive(Clone, Debug)]
pub struct CapabilityAudit {
    log: AuditLog,
    agent: Arc<str>,
    invocation: Arc<str>,
    secrets: Arc<[String]>,
    remaining: Arc<AtomicU32>,
    suppressed: Arc<AtomicU64>,
}

impl CapabilityAudit {
    /// A handle that records nothing.
    pub fn disabled() -> Self {
        AuditLog::disabled().for_invocation("".into(), "".into(), Arc::from([]))
    }

    /// Records one use (`Decision::Allow`, with the rule) or denial (with the reason).
    pub fn record(
        &self,
        capability: Capability,
        action: &str,
        target: &str,
        decision: Decision,
        rule: Option<&str>,
        reason: Option<&str>,
    ) {
        if !self.log.enabled() {
            return;
        }
        let admitted = self
            .remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        if !admitted {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let clean = |s: &str| redact(s, &self.secrets).into_owned();
        self.log.record(Event::Capability {
            agent: self.agent.to_string(),
            invocation: self.invocation.to_string(),
            capability: capability.as_str(),
            action: action.to_string(),
            target: clean(target),
            decision,
            rule: rule.map(str::to_string),
            reason: reason.map(clean),
        });
    }

    /// Records not written because the cap was reached.
    pub fn suppressed(&self) -> u64 {
        self.suppressed.load(Ordering::Relaxed)
    }
}

struct ParsedLine {
    seq: u64,
    prev: String,
    hash: String,
    computed: String,
}

fn parse_line(line: &str) -> Result<ParsedLine, String> {
    let at = line
        .rfind(HASH_FIELD)
        .ok_or("no \"hash\" field at the end of the record")?;
    let hash = line[at + HASH_FIELD.len()..]
        .strip_suffix("\"}")
        .ok_or("the record does not end with its \"hash\" field")?;
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("\"hash\" is not 64 hex digits".into());
    }
    let body = format!("{}}}", &line[..at]);
    let value: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| format!("not a JSON object: {e}"))?;
    let seq = value["seq"].as_u64().ok_or("no numeric \"seq\"")?;
    let prev = value["prev"].as_str().ok_or("no \"prev\"")?.to_string();
    Ok(ParsedLine {
        seq,
        prev,
        hash: hash.to_string(),
        computed: hex::encode(Sha256::digest(body.as_bytes())),
    })
}

/// Where the chain of an audit file breaks.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("record {record} (line {line}): {problem}")]
pub struct ChainBreak {
    /// 0-based position of the first bad record.
    pub record: u64,
    /// 1-based line number.
    pub line: u64,
    /// What is wrong.
    pub problem: String,
}

/// Summary of an intact chain.
#[derive(Debug, PartialEq, Eq)]
pub struct Verified {
    /// Records checked.
    pub records: u64,
    /// Hash of the last record (anchor it elsewhere to detect truncation).
    pub last_hash: String,
    /// Sequence number the next record takes.
    pub next_seq: u64,
}

/// Checks every record of an audit file: its hash, its link to the record
/// before, and that sequence numbers run on without gaps.
pub fn verify(reader: impl BufRead) -> Result<Verified, ChainBreak> {
    let mut prev = GENESIS.to_string();
    let mut expected_seq = None;
    let mut records = 0;
    for (n, line) in reader.lines().enumerate() {
        let brk = |problem: String| ChainBreak {
            record: records,
            line: n as u64 + 1,
            problem,
        };
        let line = line.map_err(|e| brk(format!("cannot read: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed = parse_line(&line).map_err(brk)?;
        if parsed.computed != parsed.hash {
            return Err(brk(
                "hash does not match the record: the record was altered".into(),
            ));
        }
        // A chain continued by a restarted host starts from that chain's last hash.
        if parsed.prev != prev {
            return Err(brk(format!(
                "prev {} does not match the hash of the record before ({}): a record was removed, reordered or altered",
                parsed.prev, prev
            )));
        }
        if let Some(seq) = expected_seq {
            if parsed.seq != seq {
                return Err(brk(format!("seq {} where {seq} was expected", parsed.seq)));
            }
        }
        expected_seq = Some(parsed.seq + 1);
        prev = parsed.hash;
        records += 1;
    }
    Ok(Verified {
        records,
        last_hash: prev,
        next_seq: expected_seq.unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_three(path: &Path) {
        let log = AuditLog::open(path).unwrap();
        for i in 0..3 {
            log.record(Event::HostStop { cancelled: i });
        }
        log.close();
    }

    #[test]
    fn chain_verifies_and_continues_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write_three(&path);
        write_three(&path);
        let text = std::fs::read_to_string(&path).unwrap();
        let v = verify(text.as_bytes()).unwrap();
        assert_eq!(v.records, 6);
        assert!(text.lines().all(|l| l.starts_with("{\"seq\":")));
    }

    #[test]
    fn an_altered_record_breaks_the_chain_at_that_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write_three(&path);
        let text = std::fs::read_to_string(&path).unwrap();
        let altered = text.replacen("\"cancelled\":1", "\"cancelled\":7", 1);
        assert_ne!(altered, text);
        let err = verify(altered.as_bytes()).unwrap_err();
        assert_eq!((err.record, err.line), (1, 2), "{err}");
        assert!(err.problem.contains("altered"), "{err}");

        let mut lines: Vec<&str> = text.lines().collect();
        lines.remove(1);
        let err = verify(lines.join("\n").as_bytes()).unwrap_err();
        assert_eq!(err.record, 1, "{err}");
        assert!(err.problem.contains("prev"), "{err}");
    }

    #[test]
    fn a_broken_last_record_refuses_to_continue_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write_three(&path);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            text.replacen("\"cancelled\":2", "\"cancelled\":9", 1),
        )
        .unwrap();
        let err = AuditLog::open(&path).unwrap_err();
        assert!(matches!(err, OpenError::Broken { line: 3, .. }), "{err}");
    }

    #[test]
    fn capability_records_are_redacted_and_capped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        let audit = log.for_invocation("a".into(), "i".into(), Arc::from(["s3cr3t".to_string()]));
        for _ in 0..MAX_CAPABILITY_RECORDS + 5 {
            let url = "https://x.test/?token=s3cr3t";
            audit.record(
                Capability::Http,
                "GET",
                url,
                Decision::Deny,
                None,
                Some("no rule"),
            );
        }
        log.close();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count() as u32, MAX_CAPABILITY_RECORDS);
        assert!(!text.contains("s3cr3t"));
        assert_eq!(audit.suppressed(), 5);
    }
}
