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
//!
//! Every record is bounded: guest-influenced fields are cut to
//! [`MAX_FIELD_BYTES`] (after redaction), the queue to [`MAX_QUEUE_BYTES`] —
//! records past it are counted and written as one `audit.dropped` record, so
//! the chain never has a silent hole. The file is locked while a host has it
//! open (a second host refuses to start), and a torn last line left by a crash
//! or a full disk is sealed on the next start ([`AuditLog::open`]).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};

pub use crate::redact::MAX_FIELD_BYTES;
use crate::redact::{clean, clip};

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
/// Queued bytes that wake the writer before the interval is over.
const WAKE_AT_BYTES: usize = 1 << 20;
/// Bytes of records the queue holds before further records are dropped (and
/// counted in an `audit.dropped` record): a flood outrunning the disk cannot
/// grow the host's memory without bound.
pub const MAX_QUEUE_BYTES: usize = 8 << 20;
/// Denials of one invocation logged as a host WARN line; later ones are
/// counted (usage, audit) and one line says so, so a probing guest cannot
/// flood the host's stderr.
pub const DENIAL_WARN_LINES: u32 = 8;

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
    /// A component from a registry passed its digest checks and the trust policy.
    #[serde(rename = "component.verified")]
    ComponentVerified {
        /// Agent name.
        agent: String,
        /// `registry/repository@sha256:<manifest digest>`.
        image: String,
        /// `sha256:<hex>` of the component.
        digest: String,
        /// The trust-policy key whose signature verified; absent when unsigned components are allowed.
        #[serde(skip_serializing_if = "Option::is_none")]
        signer: Option<String>,
    },
    /// A component from a registry was refused: never compiled or run.
    #[serde(rename = "component.refused")]
    ComponentRefused {
        /// Agent name.
        agent: String,
        /// The reference as the Agent wrote it.
        image: String,
        /// `ImagePullFailed`, `SignatureRejected`, `GrantAboveSignerCeiling` or `ImageRefused`.
        reason: &'static str,
        /// What was wrong.
        message: String,
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
    /// A request to the serve API was refused before it reached an agent:
    /// 401 (no or an invalid token), 403 (the agent's `spec.callers` excludes
    /// the caller) or 503 (the token could not be checked).
    #[serde(rename = "request.denied", rename_all = "camelCase")]
    RequestDenied {
        /// The authenticated caller, or the peer address when unknown.
        caller: String,
        /// HTTP status answered.
        status: u16,
        /// The error code answered (`Unauthenticated`, `Forbidden`, ...).
        code: &'static str,
        /// Request method and path.
        request: String,
        /// The agent asked for, when the route names one.
        #[serde(skip_serializing_if = "Option::is_none")]
        agent: Option<String>,
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
    /// Records not written because the queue was full ([`MAX_QUEUE_BYTES`]);
    /// written where they would have been.
    #[serde(rename = "audit.dropped")]
    AuditDropped {
        /// How many.
        records: u64,
    },
    /// A torn last line (a crash or a full disk mid-write) was moved aside
    /// when the host started; the chain continues from the last whole record.
    #[serde(rename = "audit.sealed", rename_all = "camelCase")]
    AuditSealed {
        /// Size of the torn bytes.
        torn_bytes: u64,
        /// SHA-256 of the torn bytes, hex.
        torn_sha256: String,
        /// Where they were saved.
        saved_to: String,
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

impl Event {
    /// Cuts every field a guest or caller can make long to [`MAX_FIELD_BYTES`].
    fn clip(&mut self) {
        let cut = |s: &mut String| {
            if s.len() > MAX_FIELD_BYTES {
                *s = clip(s, MAX_FIELD_BYTES).into_owned();
            }
        };
        match self {
            Event::Capability {
                action,
                target,
                reason,
                ..
            } => {
                cut(action);
                cut(target);
                reason.iter_mut().for_each(cut);
            }
            Event::InvocationEnd { error, .. } => error.iter_mut().for_each(cut),
            Event::InvocationStart {
                caller,
                idempotency_key,
                ..
            } => {
                cut(caller);
                idempotency_key.iter_mut().for_each(cut);
            }
            Event::AgentWithdrawn { reason, .. } => cut(reason),
            Event::RequestDenied {
                caller,
                request,
                agent,
                ..
            } => {
                cut(caller);
                cut(request);
                agent.iter_mut().for_each(cut);
            }
            _ => {}
        }
    }

    /// Roughly what the record takes in memory and on disk.
    fn weight(&self) -> usize {
        const OVERHEAD: usize = 256;
        OVERHEAD
            + match self {
                Event::Capability {
                    agent,
                    invocation,
                    action,
                    target,
                    rule,
                    reason,
                    ..
                } => {
                    agent.len()
                        + invocation.len()
                        + action.len()
                        + target.len()
                        + rule.as_ref().map_or(0, String::len)
                        + reason.as_ref().map_or(0, String::len)
                }
                Event::InvocationEnd { error, .. } => error.as_ref().map_or(0, String::len),
                Event::InvocationStart {
                    caller,
                    idempotency_key,
                    ..
                } => caller.len() + idempotency_key.as_ref().map_or(0, String::len),
                Event::AgentWithdrawn { agent, reason } => agent.len() + reason.len(),
                Event::RequestDenied {
                    caller,
                    request,
                    agent,
                    ..
                } => caller.len() + request.len() + agent.as_ref().map_or(0, String::len),
                Event::HostStart { agents, .. } => agents.iter().map(String::len).sum(),
                _ => 0,
            }
    }
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
    /// What `records` weigh ([`Event::weight`]).
    bytes: usize,
    /// Records refused since the last drain because the queue was full.
    dropped: u64,
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
    /// Another process (another host) holds the file's lock.
    #[error("audit log {}: another agent-host process has it open (it is locked); two hosts must not extend one hash chain: give each host its own --audit-log file", .path.display())]
    Locked {
        /// The file.
        path: PathBuf,
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

    /// Opens (creating it, mode 0600) or continues the chain of `path`, and
    /// locks it for as long as the log is open: a second host on the same
    /// file gets [`OpenError::Locked`]. The whole existing chain is checked (a
    /// host must not extend, and so launder, a trail altered while it was
    /// down); a broken chain is [`OpenError::Broken`]. A torn last line — bytes
    /// after the last newline, which only a crash or a full disk mid-write
    /// leaves — is moved to `<path>.torn-<seq>` and an `audit.sealed` record
    /// naming it (size, SHA-256) continues the chain from the last whole record.
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        let (log, writer) = Self::open_unstarted(path)?;
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run())
            .map_err(|source| OpenError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(log)
    }

    /// [`AuditLog::open`] without starting the writer thread.
    fn open_unstarted(path: &Path) -> Result<(Self, Writer), OpenError> {
        let io = |source| OpenError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut options = OpenOptions::new();
        options.read(true).create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(OpenError::Locked {
                    path: path.to_path_buf(),
                })
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let whole = whole_lines_len(&mut file).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        let verified =
            verify(BufReader::new((&file).take(whole))).map_err(|brk| OpenError::Broken {
                path: path.to_path_buf(),
                line: brk.line,
                problem: format!("record {}: {}", brk.record, brk.problem),
            })?;
        let seal = if whole < file.metadata().map_err(io)?.len() {
            Some(seal_torn_tail(path, &mut file, whole, verified.next_seq).map_err(io)?)
        } else {
            None
        };
        let inner = Arc::new(Inner {
            queue: Mutex::default(),
            wake: Condvar::new(),
            failed: AtomicBool::new(false),
        });
        let mut writer = Writer {
            out: BufWriter::new(file),
            path: path.to_path_buf(),
            seq: verified.next_seq,
            prev: verified.last_hash,
            inner: inner.clone(),
            broken: false,
        };
        if let Some(seal) = seal {
            tracing::warn!(path = %path.display(), "audit log: sealed a torn last line (see the audit.sealed record)");
            writer.append(&jiff::Timestamp::now().to_string(), &seal);
            writer.finish();
            if writer.broken {
                return Err(io(std::io::Error::other(
                    "writing the audit.sealed record failed",
                )));
            }
        }
        Ok((Self { inner: Some(inner) }, writer))
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

    /// Appends `event`, stamped with the current time, its long fields cut to
    /// [`MAX_FIELD_BYTES`]. Past [`MAX_QUEUE_BYTES`] waiting to be written, the
    /// record is counted instead, and the count written as `audit.dropped`.
    pub fn record(&self, mut event: Event) {
        let Some(inner) = &self.inner else { return };
        event.clip();
        let weight = event.weight();
        let time = jiff::Timestamp::now().to_string();
        let mut queue = inner.queue.lock().expect("audit queue lock");
        if queue.closed {
            drop(queue);
            inner.failed.store(true, Ordering::Relaxed);
            tracing::error!("audit record dropped: the audit log is closed");
            return;
        }
        if queue.bytes + weight > MAX_QUEUE_BYTES {
            queue.dropped += 1;
            inner.wake.notify_one();
            return;
        }
        queue.bytes += weight;
        queue.records.push((time, event));
        if queue.records.len() >= WAKE_AT || queue.bytes >= WAKE_AT_BYTES {
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

    /// A per-invocation handle for capability records, redacting `secrets`
    /// and allowing `max_denials` refusals (`spec.limits.maxDenials`).
    pub fn for_invocation(
        &self,
        agent: Arc<str>,
        invocation: Arc<str>,
        secrets: Arc<[String]>,
        max_denials: u32,
    ) -> CapabilityAudit {
        CapabilityAudit {
            log: self.clone(),
            agent,
            invocation,
            secrets,
            remaining: Arc::new(AtomicU32::new(MAX_CAPABILITY_RECORDS)),
            suppressed: Arc::new(AtomicU64::new(0)),
            denials: Arc::new(Denials {
                limit: max_denials,
                count: AtomicU32::new(0),
                exceeded: tokio::sync::Notify::new(),
            }),
        }
    }
}

struct Writer {
    out: BufWriter<File>,
    path: PathBuf,
    seq: u64,
    prev: String,
    inner: Arc<Inner>,
    /// Set by the first failed write: nothing more is appended, so a partial
    /// line can only ever be the file's last (sealed on the next start).
    broken: bool,
}

impl Writer {
    fn run(mut self) {
        let inner = self.inner.clone();
        let mut batch = Vec::new();
        loop {
            let (close, dropped) = {
                let queue = inner.queue.lock().expect("audit queue lock");
                let (mut queue, _) = inner
                    .wake
                    .wait_timeout_while(queue, FLUSH_INTERVAL, |q| {
                        q.records.len() < WAKE_AT
                            && q.bytes < WAKE_AT_BYTES
                            && q.dropped == 0
                            && q.close.is_none()
                    })
                    .expect("audit queue lock");
                std::mem::swap(&mut batch, &mut queue.records);
                queue.bytes = 0;
                (queue.close.take(), std::mem::take(&mut queue.dropped))
            };
            for (time, event) in batch.drain(..) {
                self.append(&time, &event);
            }
            if dropped > 0 {
                tracing::error!(path = %self.path.display(), records = dropped, "audit queue full: records dropped (counted in an audit.dropped record)");
                let time = jiff::Timestamp::now().to_string();
                self.append(&time, &Event::AuditDropped { records: dropped });
            }
            if let Some(ack) = close {
                self.finish();
                // Unlocked before the acknowledgement: a log reopened right
                // after `close` must not find its own lock.
                let _ = self.out.get_ref().unlock();
                let _ = ack.send(());
                return;
            }
            if !self.broken {
                if let Err(e) = self.out.flush() {
                    self.fail(&e);
                }
            }
        }
    }

    fn append(&mut self, time: &str, event: &Event) {
        if self.broken {
            return;
        }
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

    fn fail(&mut self, e: &std::io::Error) {
        self.broken = true;
        self.inner.failed.store(true, Ordering::Relaxed);
        tracing::error!(path = %self.path.display(), error = %e, "audit log write failed");
    }
}

/// Capability records of one invocation, redacted of the agent's secrets and
/// capped at [`MAX_CAPABILITY_RECORDS`], and its denial budget
/// (`spec.limits.maxDenials`). Cheap to clone; clones share the cap and budget.
#[derive(Clone, Debug)]
pub struct CapabilityAudit {
    log: AuditLog,
    agent: Arc<str>,
    invocation: Arc<str>,
    secrets: Arc<[String]>,
    remaining: Arc<AtomicU32>,
    suppressed: Arc<AtomicU64>,
    denials: Arc<Denials>,
}

#[derive(Debug)]
struct Denials {
    limit: u32,
    count: AtomicU32,
    /// Signalled once, when `count` first passes `limit`.
    exceeded: tokio::sync::Notify,
}

/// An invocation was refused capabilities more than `spec.limits.maxDenials`
/// times: it is ended (a guest probing in a loop gets nothing more).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("denial limit: the invocation was refused capabilities more than spec.limits.maxDenials ({limit}) times")]
pub struct DenialLimitExceeded {
    /// The limit.
    pub limit: u32,
}

impl CapabilityAudit {
    /// A handle that records nothing and never runs out of denials.
    pub fn disabled() -> Self {
        AuditLog::disabled().for_invocation("".into(), "".into(), Arc::from([]), u32::MAX)
    }

    /// `text` with the agent's secrets redacted, cut to [`MAX_FIELD_BYTES`]:
    /// the form in which a guest-supplied URL or path may be printed (spans,
    /// log lines, audit records).
    pub fn clean(&self, text: &str) -> String {
        clean(text, &self.secrets)
    }

    /// Records one use (`Decision::Allow`, with the rule) or denial (with the
    /// reason; see [`CapabilityAudit::deny`], which this calls for denials).
    pub fn record(
        &self,
        capability: impl Into<&'static str>,
        action: &str,
        target: &str,
        decision: Decision,
        rule: Option<&str>,
        reason: Option<&str>,
    ) {
        let capability = capability.into();
        match decision {
            Decision::Deny => {
                let _ = self.deny(capability, action, target, reason.unwrap_or("denied"));
            }
            Decision::Allow => self.write(capability, action, target, decision, rule, reason),
        }
    }

    /// Records one denial: charged to the invocation's denial budget, logged
    /// as a host WARN line (the first [`DENIAL_WARN_LINES`] of the
    /// invocation), audited. `Err` once the budget is spent: the caller ends
    /// the invocation (a trap carrying the error), and
    /// [`CapabilityAudit::denial_limit_reached`] fires for the runtime.
    pub fn deny(
        &self,
        capability: impl Into<&'static str>,
        action: &str,
        target: &str,
        reason: &str,
    ) -> Result<(), DenialLimitExceeded> {
        let capability: &'static str = capability.into();
        let n = self
            .denials
            .count
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let (agent, invocation) = (&*self.agent, &*self.invocation);
        if n <= DENIAL_WARN_LINES {
            tracing::warn!(
                target: "agent_host::deny", agent, invocation, capability,
                action = %self.clean(action), resource = %self.clean(target), reason = %self.clean(reason),
                "capability denied"
            );
        } else if n == DENIAL_WARN_LINES + 1 {
            tracing::warn!(
                target: "agent_host::deny", agent, invocation,
                "more than {DENIAL_WARN_LINES} denials: further ones of this invocation are counted and audited, not logged"
            );
        }
        self.write(
            capability,
            action,
            target,
            Decision::Deny,
            None,
            Some(reason),
        );
        let limit = self.denials.limit;
        if n > limit {
            if n == limit.saturating_add(1) {
                self.denials.exceeded.notify_one();
            }
            return Err(DenialLimitExceeded { limit });
        }
        Ok(())
    }

    fn write(
        &self,
        capability: impl Into<&'static str>,
        action: &str,
        target: &str,
        decision: Decision,
        rule: Option<&str>,
        reason: Option<&str>,
    ) {
        if !self.log.enabled() {
            return;
        }
        let capability = capability.into();
        let admitted = self
            .remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        if !admitted {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.log.record(Event::Capability {
            agent: self.agent.to_string(),
            invocation: self.invocation.to_string(),
            capability,
            action: self.clean(action),
            target: self.clean(target),
            decision,
            rule: rule.map(str::to_string),
            reason: reason.map(|r| self.clean(r)),
        });
    }

    /// Records not written because the cap was reached.
    pub fn suppressed(&self) -> u64 {
        self.suppressed.load(Ordering::Relaxed)
    }

    /// Denials so far.
    pub fn denials(&self) -> u32 {
        self.denials.count.load(Ordering::Relaxed)
    }

    /// `Some` once the invocation was refused more than its budget allows.
    pub fn denial_limit(&self) -> Option<DenialLimitExceeded> {
        let limit = self.denials.limit;
        (self.denials() > limit).then_some(DenialLimitExceeded { limit })
    }

    /// Completes when the denial budget is spent, wherever the guest is (even
    /// blocked in a host call): the runtime races the invocation against it.
    pub async fn denial_limit_reached(&self) -> DenialLimitExceeded {
        loop {
            if let Some(e) = self.denial_limit() {
                return e;
            }
            self.denials.exceeded.notified().await;
        }
    }
}

/// Length of `file` up to and including its last newline: what follows is a
/// torn line.
fn whole_lines_len(file: &mut File) -> std::io::Result<u64> {
    const CHUNK: u64 = 64 << 10;
    let mut end = file.seek(SeekFrom::End(0))?;
    let mut buf = vec![0; CHUNK as usize];
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(at) = chunk.iter().rposition(|b| *b == b'\n') {
            return Ok(start + at as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// Moves the bytes of `file` after `whole` into a new `<path>.torn-<seq>`
/// (synced before the log is cut), truncates the log to its whole lines and
/// returns the record that says so.
fn seal_torn_tail(path: &Path, file: &mut File, whole: u64, seq: u64) -> std::io::Result<Event> {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".torn-{seq}"));
    let mut saved_to = PathBuf::from(name);
    let mut n = 1;
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut aside = loop {
        match options.open(&saved_to) {
            Ok(f) => break f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let mut name = path.as_os_str().to_owned();
                name.push(format!(".torn-{seq}.{n}"));
                saved_to = PathBuf::from(name);
                n += 1;
            }
            Err(e) => return Err(e),
        }
    };
    file.seek(SeekFrom::Start(whole))?;
    let mut hasher = Sha256::new();
    let mut torn = 0u64;
    let mut buf = vec![0; 64 << 10];
    loop {
        let read = file.read(&mut buf)?;
        if read == 0 {
            break;
        }
        hasher.update(&buf[..read]);
        aside.write_all(&buf[..read])?;
        torn += read as u64;
    }
    aside.sync_all()?;
    file.set_len(whole)?;
    file.sync_data()?;
    Ok(Event::AuditSealed {
        torn_bytes: torn,
        torn_sha256: hex::encode(hasher.finalize()),
        saved_to: saved_to.display().to_string(),
    })
}

struct ParsedLine {
    seq: u64,
    sealed: bool,
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
        sealed: value["kind"] == "audit.sealed",
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
    /// `audit.sealed` records: torn lines a restarted host moved aside.
    pub seals: u64,
}

/// Checks every record of an audit file: its hash, its link to the record
/// before, and that sequence numbers run on without gaps.
pub fn verify(reader: impl BufRead) -> Result<Verified, ChainBreak> {
    let mut prev = GENESIS.to_string();
    let mut expected_seq = None;
    let mut records = 0;
    let mut seals = 0;
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
        seals += u64::from(parsed.sealed);
    }
    Ok(Verified {
        records,
        last_hash: prev,
        next_seq: expected_seq.unwrap_or(0),
        seals,
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
        let audit = log.for_invocation(
            "a".into(),
            "i".into(),
            Arc::from(["s3cr3t".to_string()]),
            u32::MAX,
        );
        for _ in 0..MAX_CAPABILITY_RECORDS + 5 {
            let url = "https://x.test/?token=s3cr3t";
            audit.record("http", "GET", url, Decision::Deny, None, Some("no rule"));
        }
        log.close();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count() as u32, MAX_CAPABILITY_RECORDS);
        assert!(!text.contains("s3cr3t"));
        assert_eq!(audit.suppressed(), 5);
    }

    #[test]
    fn long_targets_and_reasons_are_cut_after_redaction() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        let audit = log.for_invocation(
            "a".into(),
            "i".into(),
            crate::redact::secret_set(["s3cr3t"]),
            10,
        );
        let huge = format!("/data/../{}s3cr3t", "x".repeat(MAX_FIELD_BYTES - 12));
        audit
            .deny("filesystem", "open-read", &huge, &format!("no: {huge}"))
            .unwrap();
        log.close();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.len() < 3 * MAX_FIELD_BYTES, "{} bytes", text.len());
        assert!(
            !text.contains("s3cr"),
            "no part of the secret survives the cut"
        );
        let record: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert!(
            record["target"].as_str().unwrap().ends_with("bytes]"),
            "the cut is marked"
        );
        assert!(verify(text.as_bytes()).is_ok());
    }

    #[test]
    fn a_full_queue_writes_one_counted_record_instead_of_a_hole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let (log, writer) = AuditLog::open_unstarted(&path).unwrap();
        let big = Event::AgentWithdrawn {
            agent: "a".into(),
            reason: "r".repeat(MAX_FIELD_BYTES),
        };
        let fits = MAX_QUEUE_BYTES / big.weight();
        for _ in 0..fits + 10 {
            log.record(big.clone());
        }
        std::thread::spawn(move || writer.run());
        log.close();
        let text = std::fs::read_to_string(&path).unwrap();
        let v = verify(text.as_bytes()).unwrap();
        assert_eq!(v.records as usize, fits + 1);
        let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(last["kind"], "audit.dropped");
        assert_eq!(last["records"], 10);
    }

    #[test]
    fn a_torn_last_line_is_sealed_and_the_chain_continues() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write_three(&path);
        let whole = std::fs::read(&path).unwrap();
        let torn = br#"{"seq":3,"time":"2026-01-01T00:00:00Z","prev":"ab"#;
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(torn).unwrap();
        drop(file);

        write_three(&path);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with(std::str::from_utf8(&whole).unwrap()),
            "whole records kept"
        );
        let v = verify(text.as_bytes()).unwrap();
        assert_eq!((v.records, v.seals), (7, 1));
        let seal: serde_json::Value = serde_json::from_str(text.lines().nth(3).unwrap()).unwrap();
        assert_eq!(seal["kind"], "audit.sealed");
        assert_eq!(
            seal["seq"], 3,
            "the chain continues from the last whole record"
        );
        assert_eq!(seal["tornBytes"], torn.len());
        assert_eq!(seal["tornSha256"], hex::encode(Sha256::digest(torn)));
        let saved = seal["savedTo"].as_str().unwrap();
        assert_eq!(
            std::fs::read(saved).unwrap(),
            torn,
            "the torn bytes are kept aside"
        );
    }

    #[test]
    fn a_second_log_on_a_locked_file_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let first = AuditLog::open(&path).unwrap();
        let err = AuditLog::open(&path).unwrap_err();
        assert!(matches!(err, OpenError::Locked { .. }), "{err}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        first.close();
        AuditLog::open(&path)
            .expect("the lock goes with the first log")
            .close();
    }

    #[tokio::test]
    async fn denials_past_the_budget_end_the_invocation_and_warn_lines_stop() {
        let audit = AuditLog::disabled().for_invocation("a".into(), "i".into(), Arc::from([]), 3);
        for _ in 0..3 {
            audit.deny("http", "GET", "http://x/", "no rule").unwrap();
        }
        assert_eq!(audit.denial_limit(), None);
        let waiter = tokio::spawn({
            let audit = audit.clone();
            async move { audit.denial_limit_reached().await }
        });
        assert_eq!(
            audit.deny("http", "GET", "http://x/", "no rule"),
            Err(DenialLimitExceeded { limit: 3 })
        );
        let reached = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reached, DenialLimitExceeded { limit: 3 });
        assert_eq!(audit.denials(), 4);
    }
}
