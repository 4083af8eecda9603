//! `wasi:cli/stdin|stdout|stderr`: stdin is empty; stdout and stderr are split
//! into lines and forwarded to the invocation's [`GuestLog`], under its budget.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use wasmtime::component::Linker;
use wasmtime_wasi::cli::{WasiCli, WasiCliView as _};

use super::imports::Binding;
use super::log::GuestLog;
use super::{Capability, ConfigureCx, ConfigureError, HasCapability, Kind, NoUsage, PrepareCx};
use crate::bindings::Level;
use crate::config::HostConfig;
use crate::manifest::Limits;
use crate::redact::safe_cut;

/// The `stdio` capability, always granted: stdin empty, stdout and stderr
/// captured to the invocation's log, no terminal.
pub struct Stdio;

impl Capability for Stdio {
    const KIND: Kind = Kind::Stdio;
    const INTERFACES: &'static [&'static str] = &[
        "wasi:cli/stdin",
        "wasi:cli/stdout",
        "wasi:cli/stderr",
        "wasi:cli/terminal-input",
        "wasi:cli/terminal-output",
        "wasi:cli/terminal-stdin",
        "wasi:cli/terminal-stdout",
        "wasi:cli/terminal-stderr",
    ];
    type Host = ();
    type Grant = ();
    type State = ();
    type Usage = NoUsage;

    fn host(_: &HostConfig) {}

    fn link<T: HasCapability<Self>>(l: &mut Linker<T>) -> wasmtime::Result<()> {
        use wasmtime_wasi::p2::bindings::cli;
        fn view<T: HasCapability<Stdio>>(s: &mut T) -> wasmtime_wasi::cli::WasiCliCtxView<'_> {
            s.capability().core.count(Kind::Stdio).cli()
        }
        cli::stdin::add_to_linker::<T, WasiCli>(l, view)?;
        cli::stdout::add_to_linker::<T, WasiCli>(l, view)?;
        cli::stderr::add_to_linker::<T, WasiCli>(l, view)?;
        cli::terminal_input::add_to_linker::<T, WasiCli>(l, view)?;
        cli::terminal_output::add_to_linker::<T, WasiCli>(l, view)?;
        cli::terminal_stdin::add_to_linker::<T, WasiCli>(l, view)?;
        cli::terminal_stdout::add_to_linker::<T, WasiCli>(l, view)?;
        cli::terminal_stderr::add_to_linker::<T, WasiCli>(l, view)
    }

    fn configure(_: &(), _: &ConfigureCx<'_>) -> Result<(), ConfigureError> {
        Ok(())
    }

    fn prepare(_: &(), _: &(), cx: &mut PrepareCx<'_>) {
        cx.wasi
            .stdout(CapturedOutput::stdout(cx.log.clone()))
            .stderr(CapturedOutput::stderr(cx.log.clone()));
    }

    async fn finish(
        (): (),
        _: &mut NoUsage,
        _: &mut Vec<super::tool_call::ToolCall>,
    ) -> Option<super::CommitIntent> {
        None
    }

    fn bind(interface: &str, _: &(), limits: &Limits) -> Binding {
        match interface {
            "wasi:cli/stdin" => Binding::inert("always empty"),
            "wasi:cli/stdout" | "wasi:cli/stderr" => Binding::granted(
                Kind::Stdio,
                format!(
                    "captured to the host log, {} per invocation (maxLogBytes)",
                    limits.max_log_bytes
                ),
            ),
            _ => Binding::inert("no terminal is attached"),
        }
    }

    fn describe(_: &()) -> Vec<String> {
        vec!["stdout and stderr captured to the host log, stdin empty".into()]
    }

    fn report(_: &(), _: &NoUsage, _: &Limits) -> Option<String> {
        None
    }
}

/// Longest partial line held before it is forwarded anyway, so a guest writing
/// without newlines cannot make the host buffer without bound.
const MAX_PENDING_LINE: usize = 4096;

/// A guest stdout or stderr that feeds the invocation's log.
#[derive(Clone)]
pub struct CapturedOutput {
    log: GuestLog,
    source: &'static str,
}

impl CapturedOutput {
    /// Guest stdout, logged at info.
    pub fn stdout(log: GuestLog) -> Self {
        Self {
            log,
            source: "stdout",
        }
    }

    /// Guest stderr, logged at warn.
    pub fn stderr(log: GuestLog) -> Self {
        Self {
            log,
            source: "stderr",
        }
    }

    fn writer(&self) -> LineWriter {
        LineWriter {
            out: self.clone(),
            pending: Vec::new(),
        }
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.writer())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.writer())
    }
}

struct LineWriter {
    out: CapturedOutput,
    pending: Vec<u8>,
}

impl LineWriter {
    fn push(&mut self, bytes: &[u8]) {
        for chunk in bytes.split_inclusive(|b| *b == b'\n') {
            let (line, complete) = match chunk.strip_suffix(b"\n") {
                Some(line) => (line, true),
                None => (chunk, false),
            };
            self.pending.extend_from_slice(line);
            while self.pending.len() >= MAX_PENDING_LINE {
                // Never cut inside a secret: the bytes that could start one go
                // with the next piece, so each piece is redacted whole.
                let cut = safe_cut(&self.pending, MAX_PENDING_LINE, self.out.log.secrets());
                let rest = self.pending.split_off(cut);
                self.forward();
                self.pending = rest;
            }
            if complete {
                self.forward();
            }
        }
    }

    /// Sends the pending bytes as one record; empty lines carry nothing and are skipped.
    fn forward(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let line = String::from_utf8_lossy(&self.pending);
        let level = if self.out.source == "stderr" {
            Level::Warn
        } else {
            Level::Info
        };
        self.out
            .log
            .emit(self.out.source, level, line.trim_end_matches('\r'), &[]);
        self.pending.clear();
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.forward();
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LineWriter {
    async fn ready(&mut self) {}
}

impl OutputStream for LineWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(MAX_PENDING_LINE)
    }
}

impl tokio::io::AsyncWrite for LineWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.get_mut().push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_and_flushes_the_partial_one_on_drop() {
        let log = GuestLog::new("a".into(), "i".into(), 1 << 20, std::sync::Arc::new([]));
        let out = CapturedOutput::stderr(log.clone());
        {
            let mut w = out.writer();
            w.push(b"first\nsecond\r\nthi");
            w.push(b"rd");
        }
        assert_eq!(log.stderr_tail(), ["first", "second", "third"]);
    }

    #[test]
    fn a_secret_straddling_the_line_cut_is_redacted() {
        let secret = "tok-straddle-42";
        let log = GuestLog::new(
            "a".into(),
            "i".into(),
            1 << 20,
            crate::redact::secret_set([secret]),
        );
        {
            let mut w = CapturedOutput::stderr(log.clone()).writer();
            w.push(&vec![b'x'; MAX_PENDING_LINE - 5]);
            w.push(secret.as_bytes());
            w.push(b" tail\n");
        }
        let tail = log.stderr_tail().concat();
        assert!(
            !tail.contains("tok-s") && !tail.contains("dle-42"),
            "{tail}"
        );
        assert!(tail.contains("[REDACTED] tail"), "{tail}");
    }

    #[test]
    fn a_line_without_newline_is_cut_at_the_pending_bound() {
        let log = GuestLog::new("a".into(), "i".into(), 1 << 20, std::sync::Arc::new([]));
        let mut w = CapturedOutput::stdout(log.clone()).writer();
        w.push(&vec![b'x'; MAX_PENDING_LINE * 2 + 1]);
        assert_eq!(log.stats().records, 2);
        assert_eq!(w.pending.len(), 1);
    }
}
