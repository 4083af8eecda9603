//! Scenarios that need other processes: spawning per task, cold starts, and
//! `agent-host serve` under wrk.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::Context as _;

use crate::scenarios::{Ctx, Row};

/// wrk's request: one synchronous invocation of hello.
const WRK_SCRIPT: &str = include_str!("../wrk-invoke.lua");

/// An `agent-host` command on the run's cache, logging warnings only.
pub fn host_command(ctx: &Ctx) -> Command {
    let mut c = Command::new(&ctx.host_bin);
    c.env("AGENT_HOST_CACHE_DIR", &ctx.cache_dir)
        .env("AGENT_HOST_LOG", "warn");
    c
}

/// Runs `make()` to completion `n` times; wall time of each, µs. Any failure ends it.
pub fn time_runs(n: usize, make: impl Fn() -> Command) -> anyhow::Result<Vec<f64>> {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let mut cmd = make();
        cmd.stdin(Stdio::null()).stderr(Stdio::null());
        let t = Instant::now();
        let out = cmd.output().with_context(|| format!("spawning {cmd:?}"))?;
        samples.push(t.elapsed().as_nanos() as f64 / 1000.0);
        anyhow::ensure!(out.status.success(), "{cmd:?} failed: {}", out.status);
        anyhow::ensure!(!out.stdout.is_empty(), "{cmd:?} printed nothing");
    }
    Ok(samples)
}

/// Spawns `agent-host serve` with hello on `cache_dir` and returns the µs until
/// it prints its listening line (agents are loaded before it listens).
pub fn time_until_ready(ctx: &Ctx, cache_dir: &Path) -> anyhow::Result<f64> {
    time_until_ready_of(ctx, cache_dir, &ctx.hello_manifest, &[])
}

/// [`time_until_ready`] for the agent of `manifest`, with `extra` arguments
/// (e.g. the trust policy and registry of a manifest naming an image).
pub fn time_until_ready_of(
    ctx: &Ctx,
    cache_dir: &Path,
    manifest: &Path,
    extra: &[&OsStr],
) -> anyhow::Result<f64> {
    // Its log (warnings and errors) says why, should it not start.
    let log = ctx.work.path().join("serve-start.log");
    let stderr = std::fs::File::create(&log).context("creating serve's log")?;
    let t = Instant::now();
    let (mut child, line) = spawn_serve(ctx, cache_dir, manifest, extra, stderr.into())?;
    let elapsed = t.elapsed().as_nanos() as f64 / 1000.0;
    child.kill().ok();
    child.wait().ok();
    anyhow::ensure!(
        line.starts_with("listening on "),
        "serve -f {} did not start: {line:?}; its log:\n{}",
        manifest.display(),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    Ok(elapsed)
}

fn spawn_serve(
    ctx: &Ctx,
    cache_dir: &Path,
    manifest: &Path,
    extra: &[&OsStr],
    stderr: Stdio,
) -> anyhow::Result<(Child, String)> {
    let mut cmd = host_command(ctx);
    cmd.env("AGENT_HOST_CACHE_DIR", cache_dir)
        .args(["serve", "--listen", "127.0.0.1:0", "-f"])
        .arg(manifest)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr);
    let mut child = cmd.spawn().with_context(|| format!("spawning {cmd:?}"))?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut line)
        .context("reading serve's first line")?;
    Ok((child, line.trim().to_string()))
}

/// A running `agent-host serve` with hello, stopped on drop.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    base: String,
    url: String,
}

/// What one wrk run measured.
#[derive(Debug)]
pub struct Wrk {
    pub per_second: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub requests: u64,
}

impl Wrk {
    pub fn row(&self, label: String, role: &'static str) -> Row {
        Row {
            label,
            role,
            latency: Some(agent_host::latency::Summary {
                n: self.requests as usize,
                median_us: self.p50_us,
                p99_us: self.p99_us,
                ..Default::default()
            }),
            per_second: Some(self.per_second),
            value: None,
            unit: None,
            samples: vec![],
            charted: false,
        }
    }
}

impl Server {
    pub fn start(ctx: &Ctx, extra: &[&OsStr]) -> anyhow::Result<Self> {
        Self::start_agent(ctx, &ctx.hello_manifest, "hello", extra)
    }

    /// `serve` of the manifest of `agent` at `manifest`, with `extra` arguments.
    pub fn start_agent(
        ctx: &Ctx,
        manifest: &Path,
        agent: &str,
        extra: &[&OsStr],
    ) -> anyhow::Result<Self> {
        let (child, line) = spawn_serve(ctx, &ctx.cache_dir, manifest, extra, Stdio::null())?;
        let mut server = Server {
            child,
            base: String::new(),
            url: String::new(),
        };
        let base = line
            .strip_prefix("listening on ")
            .with_context(|| format!("serve did not start: {line:?}"))?;
        server.base = base.to_string();
        server.url = format!("{base}/v1/agents/{agent}/invocations");
        Ok(server)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The agent's invocations URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// wrk with `connections` connections on `threads` threads for the run's duration.
    pub fn wrk(&self, ctx: &Ctx, connections: usize, threads: usize) -> anyhow::Result<Wrk> {
        run_wrk(ctx, connections, threads, &self.url, WRK_SCRIPT, &[])
    }
}

/// wrk against `url` with the Lua `script` (given `args` after `--`) for the
/// run's duration; refuses runs with failed requests.
pub fn run_wrk(
    ctx: &Ctx,
    connections: usize,
    threads: usize,
    url: &str,
    script: &str,
    args: &[String],
) -> anyhow::Result<Wrk> {
    // Named by content and written once.
    let digest = script.bytes().fold(0u64, |h, b| {
        h.wrapping_mul(1_099_511_628_211) ^ u64::from(b)
    });
    let path = ctx.work.path().join(format!("wrk-{digest:016x}.lua"));
    if !path.exists() {
        std::fs::write(&path, script)?;
    }
    let out = Command::new("wrk")
        .arg(format!("-t{threads}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", ctx.http_seconds))
        .arg("--latency")
        .arg("-s")
        .arg(&path)
        .arg(url)
        .arg("--")
        .args(args)
        .output()
        .context("running wrk (Debian package wrk; `make setup` installs it)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(out.status.success(), "wrk failed: {text}");
    parse_wrk(&text)
}

impl Drop for Server {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// Reads wrk's summary; refuses runs with failed requests.
fn parse_wrk(text: &str) -> anyhow::Result<Wrk> {
    anyhow::ensure!(
        !text.contains("Non-2xx or 3xx responses") && !text.contains("Socket errors"),
        "wrk saw failed requests:\n{text}"
    );
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(str::trim))
            .with_context(|| format!("no {prefix:?} in wrk output:\n{text}"))
    };
    let percentile = |p: &str| -> anyhow::Result<f64> { duration_us(field(&format!("{p}%"))?) };
    let requests = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no request count in wrk output:\n{text}"))?;
    Ok(Wrk {
        per_second: field("Requests/sec:")?.parse()?,
        p50_us: percentile("50")?,
        p99_us: percentile("99")?,
        requests,
    })
}

/// wrk durations: `192.00us`, `2.65ms`, `1.02s`.
fn duration_us(text: &str) -> anyhow::Result<f64> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .with_context(|| format!("no unit in {text:?}"))?;
    let (value, unit) = text.split_at(split);
    let value: f64 = value.parse()?;
    Ok(match unit {
        "us" => value,
        "ms" => value * 1e3,
        "s" => value * 1e6,
        "m" => value * 60e6,
        _ => anyhow::bail!("unknown unit in {text:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Running 10s test @ http://127.0.0.1:4000/v1/agents/hello/invocations
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.78ms    1.08ms  21.44ms   78.62%
    Req/Sec     5.81k   412.33     6.63k    71.00%
  Latency Distribution
     50%    2.65ms
     75%    3.20ms
     90%    4.01ms
     99%    6.47ms
  115742 requests in 10.01s, 40.39MB read
Requests/sec:  11562.31
Transfer/sec:      4.03MB
";

    #[test]
    fn wrk_summary_is_read() {
        let w = parse_wrk(SAMPLE).unwrap();
        assert_eq!(w.per_second, 11562.31);
        assert_eq!(w.p50_us, 2650.0);
        assert_eq!(w.p99_us, 6470.0);
        assert_eq!(w.requests, 115742);
    }

    #[test]
    fn failed_requests_are_refused() {
        let bad = SAMPLE.replace(
            "Requests/sec",
            "  Non-2xx or 3xx responses: 12\nRequests/sec",
        );
        assert!(parse_wrk(&bad)
            .unwrap_err()
            .to_string()
            .contains("failed requests"));
        assert_eq!(duration_us("192.00us").unwrap(), 192.0);
        assert_eq!(duration_us("1.5s").unwrap(), 1.5e6);
        assert!(duration_us("12").is_err());
    }
}
