//! Guest logging: `agent-host:agent/log` records and captured stdout/stderr
//! lines go to the host's `tracing` output (target `agent`), tagged with the
//! agent's name and the invocation id, under one per-invocation byte budget.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::bindings::agent_host::agent::log::{Host, Level};
use crate::redact::redact;

/// Lines of stderr kept to explain a trap (a Rust panic prints its message there).
const STDERR_TAIL_LINES: usize = 4;

/// The log stream of one invocation. Cheap to clone; clones share the budget.
#[derive(Clone, Debug)]
pub struct GuestLog {
    agent: Arc<str>,
    invocation: Arc<str>,
    secrets: Arc<[String]>,
    state: Arc<Mutex<LogState>>,
}

#[derive(Debug)]
struct LogState {
    remaining: u64,
    dropped_bytes: u64,
    records: u64,
    stderr_tail: VecDeque<String>,
}

/// What a guest logged during one invocation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Records and lines forwarded.
    pub records: u64,
    /// Bytes dropped because the budget (`spec.limits.maxLogBytes`) was exhausted.
    pub dropped_bytes: u64,
}

impl GuestLog {
    /// A log stream allowing `max_bytes` of messages for this invocation, in
    /// which every occurrence of one of `secrets` is redacted.
    pub fn new(
        agent: Arc<str>,
        invocation: Arc<str>,
        max_bytes: u64,
        secrets: Arc<[String]>,
    ) -> Self {
        let state = LogState {
            remaining: max_bytes,
            dropped_bytes: 0,
            records: 0,
            stderr_tail: VecDeque::new(),
        };
        Self {
            agent,
            invocation,
            secrets,
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// Forwards one record from `source` (`log`, `stdout` or `stderr`), truncating it
    /// to what is left of the budget; once the budget is gone, one marker line says so
    /// and everything after is counted, not printed.
    pub fn emit(
        &self,
        source: &'static str,
        level: Level,
        message: &str,
        fields: &[(String, String)],
    ) {
        // Only what can still be printed (or kept in the stderr tail) is
        // redacted, with room for a secret across the cut: a huge message past
        // the budget costs no scan of the host's time.
        let visible = {
            let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let left = usize::try_from(state.remaining).unwrap_or(usize::MAX);
            if source == "stderr" {
                left.max(512)
            } else {
                left
            }
        };
        let longest = self.secrets.iter().map(String::len).max().unwrap_or(0);
        let raw_len = message.len();
        let message = &*redact(
            truncate(message, visible.saturating_add(longest)),
            &self.secrets,
        );
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if source == "stderr" {
            if state.stderr_tail.len() == STDERR_TAIL_LINES {
                state.stderr_tail.pop_front();
            }
            state
                .stderr_tail
                .push_back(truncate(message, 512).to_string());
        }
        let size = (raw_len + fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()) as u64;
        if state.remaining == 0 {
            state.dropped_bytes += size;
            return;
        }
        let (message, exhausted) = if size > state.remaining {
            let keep = state.remaining as usize;
            state.dropped_bytes += size - state.remaining;
            state.remaining = 0;
            (truncate(message, keep), true)
        } else {
            state.remaining -= size;
            (message, false)
        };
        state.records += 1;
        drop(state);
        // Counted against the budget either way; rendered only if someone listens.
        let enabled = match level {
            Level::Trace => tracing::enabled!(target: "agent", tracing::Level::TRACE),
            Level::Debug => tracing::enabled!(target: "agent", tracing::Level::DEBUG),
            Level::Info => tracing::enabled!(target: "agent", tracing::Level::INFO),
            Level::Warn => tracing::enabled!(target: "agent", tracing::Level::WARN),
            Level::Error => tracing::enabled!(target: "agent", tracing::Level::ERROR),
        };
        if !enabled && !exhausted {
            return;
        }
        let message = neutralise(message);
        let fields = render_fields(fields, &self.secrets);
        let (agent, invocation) = (&*self.agent, &*self.invocation);
        match level {
            Level::Trace => {
                tracing::trace!(target: "agent", agent, invocation, source, fields = %fields, "{message}")
            }
            Level::Debug => {
                tracing::debug!(target: "agent", agent, invocation, source, fields = %fields, "{message}")
            }
            Level::Info => {
                tracing::info!(target: "agent", agent, invocation, source, fields = %fields, "{message}")
            }
            Level::Warn => {
                tracing::warn!(target: "agent", agent, invocation, source, fields = %fields, "{message}")
            }
            Level::Error => {
                tracing::error!(target: "agent", agent, invocation, source, fields = %fields, "{message}")
            }
        }
        if exhausted {
            tracing::warn!(target: "agent", agent, invocation, "log budget (spec.limits.maxLogBytes) exhausted: further guest output is dropped");
        }
    }

    /// Counters for the usage report.
    pub fn stats(&self) -> LogStats {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        LogStats {
            records: state.records,
            dropped_bytes: state.dropped_bytes,
        }
    }

    /// The agent's redaction set.
    pub fn secrets(&self) -> &[String] {
        &self.secrets
    }

    /// The last lines written to stderr (a panic message, typically).
    pub fn stderr_tail(&self) -> Vec<String> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.stderr_tail.iter().cloned().collect()
    }
}

/// The `log` capability, always granted: structured records to the host log,
/// under the invocation's `maxLogBytes`.
pub struct Log;

impl super::Capability for Log {
    const KIND: super::Kind = super::Kind::Log;
    const INTERFACES: &'static [&'static str] = &["agent-host:agent/log"];
    type Host = ();
    type Grant = ();
    type State = ();
    type Usage = super::NoUsage;

    fn host(_: &crate::config::HostConfig) {}

    fn link<T: super::HasCapability<Self>>(
        linker: &mut wasmtime::component::Linker<T>,
    ) -> wasmtime::Result<()> {
        crate::bindings::agent_host::agent::log::add_to_linker::<T, HasLog>(linker, |s| {
            LogView(&s.capability().core.count(super::Kind::Log).log)
        })
    }

    fn configure(_: &(), _: &super::ConfigureCx<'_>) -> Result<(), super::ConfigureError> {
        Ok(())
    }

    fn prepare(_: &(), _: &(), _: &mut super::PrepareCx<'_>) {}

    async fn finish(
        (): (),
        _: &mut super::NoUsage,
        _: &mut Vec<super::tool_call::ToolCall>,
    ) -> Option<super::CommitIntent> {
        None
    }

    fn bind(_: &str, _: &(), limits: &crate::manifest::Limits) -> super::imports::Binding {
        super::imports::Binding::granted(
            super::Kind::Log,
            format!(
                "structured records to the host log, {} per invocation (maxLogBytes)",
                limits.max_log_bytes
            ),
        )
    }

    fn describe(_: &()) -> Vec<String> {
        vec!["structured records to the host log".into()]
    }

    fn report(_: &(), _: &super::NoUsage, _: &crate::manifest::Limits) -> Option<String> {
        None
    }
}

/// Borrowed view on which the `log` interface is implemented.
pub struct LogView<'a>(pub &'a GuestLog);

impl Host for LogView<'_> {
    fn log(&mut self, level: Level, message: String, fields: Vec<(String, String)>) {
        self.0.emit("log", level, &message, &fields);
    }
}

/// Marker tying the `log` interface to [`LogView`] in the linker.
pub struct HasLog;

impl wasmtime::component::HasData for HasLog {
    type Data<'a> = LogView<'a>;
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Escapes control characters (ANSI escapes included) so a guest cannot forge
/// log lines or drive the operator's terminal.
pub fn neutralise(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c.is_control()) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// `k=v` pairs, each redacted before it is escaped: an escaped newline or
/// control character inside a secret would no longer match it.
fn render_fields(fields: &[(String, String)], secrets: &[String]) -> String {
    let mut out = String::new();
    for (k, v) in fields {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&neutralise(&redact(k, secrets)));
        out.push('=');
        out.push_str(&neutralise(&redact(v, secrets)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(max: u64) -> GuestLog {
        GuestLog::new("a".into(), "i".into(), max, Arc::new([]))
    }

    #[test]
    fn budget_truncates_then_drops_and_counts() {
        let log = log(10);
        log.emit("log", Level::Info, "0123456", &[]);
        log.emit("log", Level::Info, "789abcdef", &[]);
        log.emit("log", Level::Info, "gone", &[]);
        assert_eq!(
            log.stats(),
            LogStats {
                records: 2,
                dropped_bytes: 6 + 4
            }
        );
    }

    #[test]
    fn secret_values_are_redacted_from_messages_and_the_stderr_tail() {
        let log = GuestLog::new(
            "a".into(),
            "i".into(),
            1 << 20,
            Arc::new(["tok-123".to_string()]),
        );
        log.emit(
            "stderr",
            Level::Warn,
            "panicked: token tok-123 rejected",
            &[],
        );
        assert_eq!(log.stderr_tail(), ["panicked: token [REDACTED] rejected"]);
    }

    #[test]
    fn fields_are_redacted_before_they_are_escaped() {
        let secrets = crate::redact::secret_set(["tok\tsecret-value"]);
        let rendered = render_fields(
            &[
                ("k".into(), "tok\tsecret-value".into()),
                ("tab\t".into(), "ok".into()),
            ],
            &secrets,
        );
        assert_eq!(rendered, "k=[REDACTED] tab\\t=ok");
    }

    #[test]
    fn control_sequences_are_escaped() {
        assert_eq!(
            neutralise("ok\x1b[31mred\nforged"),
            "ok\\u{1b}[31mred\\nforged"
        );
        assert!(matches!(neutralise("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn stderr_tail_keeps_the_last_lines() {
        let log = log(1 << 20);
        for i in 0..10 {
            log.emit("stderr", Level::Warn, &format!("line {i}"), &[]);
        }
        assert_eq!(log.stderr_tail(), ["line 6", "line 7", "line 8", "line 9"]);
    }
}
