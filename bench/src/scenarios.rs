//! The scenarios: what each measures, its baseline in the same run, and its goal.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use agent_host::config::{Allocator, Metering};
use agent_host::latency::{measure, Summary};
use agent_host::manifest::LoadedAgent;
use agent_host::{HostConfig, PreparedAgent, Runtime, TaskInput};
use agent_host_guest::Task;
use agent_host_test_guests as guests;
use serde::Serialize;

use crate::{density, process};

/// Task input of every hello invocation.
pub const HELLO_INPUT: &str = r#"{"name":"bench"}"#;

/// The scenarios, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Id {
    PerInvocation,
    ProcessPerTask,
    Allocator,
    Metering,
    ColdStart,
    RegistryStart,
    Http,
    Mcp,
    Density,
    Abi,
    DurableAsync,
    DurableKeyed,
    Languages,
}

/// Shared set-up: iteration counts, binaries, a scratch directory with the
/// manifests and a compile cache warmed once for every host of the run.
pub struct Ctx {
    pub quick: bool,
    pub host_bin: PathBuf,
    pub native_bin: PathBuf,
    pub http_seconds: u64,
    pub work: tempfile::TempDir,
    pub cache_dir: PathBuf,
    pub hello_manifest: PathBuf,
}

impl Ctx {
    pub fn new(
        quick: bool,
        host_bin: PathBuf,
        native_bin: PathBuf,
        http_seconds: u64,
    ) -> anyhow::Result<Self> {
        let work = tempfile::Builder::new()
            .prefix("agent-host-bench")
            .tempdir()?;
        let cache_dir = work.path().join("cache");
        Ok(Self {
            quick,
            host_bin,
            native_bin,
            http_seconds: if quick { 1 } else { http_seconds },
            hello_manifest: Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../examples/hello/agent.yaml"),
            work,
            cache_dir,
        })
    }

    /// `full` iterations, or `quick` in a smoke run.
    pub fn n(&self, full: usize, quick: usize) -> usize {
        if self.quick {
            quick
        } else {
            full
        }
    }

    pub fn host_config(&self, allocator: Allocator, metering: Metering) -> HostConfig {
        HostConfig {
            cache_dir: self.cache_dir.clone(),
            allocator,
            metering,
            ..HostConfig::default()
        }
    }

    /// Writes a manifest for a test-program component with `limits` (a YAML flow map).
    pub fn manifest(&self, name: &str, component: &str, limits: &str) -> PathBuf {
        guests::write_manifest(
            self.work.path(),
            name,
            component,
            &format!("  limits: {limits}\n"),
        )
    }
}

/// One measured line of a scenario.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub label: String,
    /// `measured` or `baseline`.
    pub role: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<Summary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_second: Option<f64>,
    /// A figure that is not a latency (bytes, ...), with its unit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<&'static str>,
    /// Latency samples (µs); not written to the JSON.
    #[serde(skip)]
    pub samples: Vec<f64>,
    /// Whether the chart draws this row's distribution.
    #[serde(skip)]
    pub charted: bool,
}

impl Row {
    pub(crate) fn latency(
        label: impl Into<String>,
        role: &'static str,
        mut samples: Vec<f64>,
    ) -> Self {
        Self {
            label: label.into(),
            role,
            latency: Some(Summary::of(&mut samples)),
            per_second: None,
            value: None,
            unit: None,
            samples,
            charted: false,
        }
    }

    pub fn value(
        label: impl Into<String>,
        role: &'static str,
        value: f64,
        unit: &'static str,
    ) -> Self {
        Self {
            label: label.into(),
            role,
            latency: None,
            per_second: None,
            value: Some(value),
            unit: Some(unit),
            samples: vec![],
            charted: false,
        }
    }

    fn charted(mut self) -> Self {
        self.charted = true;
        self
    }

    pub(crate) fn throughput(mut self, per_second: f64) -> Self {
        self.per_second = Some(per_second);
        self
    }

    pub(crate) fn median(&self) -> f64 {
        self.latency.as_ref().map_or(f64::NAN, |l| l.median_us)
    }
}

/// A goal of the issue and whether this run met it.
#[derive(Clone, Debug, Serialize)]
pub struct Goal {
    pub goal: String,
    pub figure: String,
    pub met: bool,
}

pub(crate) fn at_most(goal: &str, value: f64, limit: f64, figure: String) -> Goal {
    Goal {
        goal: goal.into(),
        figure,
        met: value <= limit,
    }
}

pub(crate) fn at_least(goal: &str, value: f64, limit: f64, figure: String) -> Goal {
    Goal {
        goal: goal.into(),
        figure,
        met: value >= limit,
    }
}

/// A ratio between two rows, named for the report.
#[derive(Clone, Debug, Serialize)]
pub struct Ratio {
    pub name: String,
    pub value: f64,
}

/// What one scenario measured.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    pub id: Id,
    pub title: &'static str,
    pub rows: Vec<Row>,
    pub ratios: Vec<Ratio>,
    pub goals: Vec<Goal>,
}

pub(crate) fn ratio(name: &str, value: f64) -> Ratio {
    Ratio {
        name: name.into(),
        value,
    }
}

/// Runs the chosen scenarios (all when `only` is empty), in report order.
pub async fn run_all(ctx: &Ctx, only: &[Id]) -> anyhow::Result<Vec<Outcome>> {
    let chosen = |id: Id| only.is_empty() || only.contains(&id);
    let mut out = Vec::new();
    // Per-invocation figures are also the in-process side of process-per-task.
    let mut in_process = None;
    if chosen(Id::PerInvocation) || chosen(Id::ProcessPerTask) {
        let o = per_invocation(ctx).await?;
        in_process = Some(o.rows[0].clone());
        if chosen(Id::PerInvocation) {
            out.push(o);
        }
    }
    if let Some(in_process) = in_process.filter(|_| chosen(Id::ProcessPerTask)) {
        out.push(process_per_task(ctx, in_process).await?);
    }
    if chosen(Id::Allocator) {
        out.push(allocator(ctx).await?);
    }
    if chosen(Id::Metering) {
        out.push(metering(ctx).await?);
    }
    if chosen(Id::ColdStart) {
        out.push(cold_start(ctx).await?);
    }
    if chosen(Id::RegistryStart) {
        out.push(crate::registry::scenario(ctx).await?);
    }
    if chosen(Id::Http) {
        out.push(http(ctx).await?);
    }
    if chosen(Id::Mcp) {
        out.push(crate::mcp::scenario(ctx).await?);
    }
    if chosen(Id::Density) {
        out.push(density::scenario(ctx).await?);
    }
    if chosen(Id::Abi) {
        out.push(abi(ctx).await?);
    }
    if chosen(Id::DurableAsync) {
        out.push(crate::durable::async_two_replicas(ctx).await?);
    }
    if chosen(Id::DurableKeyed) {
        out.push(crate::durable::keyed_sync(ctx).await?);
    }
    if chosen(Id::Languages) {
        out.push(crate::languages::scenario(ctx).await?);
    }
    Ok(out)
}

/// A runtime (engine, linker, cache) for `config`.
pub fn new_runtime(config: HostConfig) -> anyhow::Result<Runtime> {
    Runtime::new(config).map_err(|e| anyhow::anyhow!("cannot start the runtime: {e:#}"))
}

pub(crate) fn prepare(runtime: &Runtime, manifest: &Path) -> anyhow::Result<Arc<PreparedAgent>> {
    let loaded = LoadedAgent::from_file(manifest)?;
    Ok(Arc::new(runtime.prepare(&loaded)?))
}

fn task(input: &str) -> TaskInput {
    TaskInput {
        id: Some("bench".into()),
        input: input.into(),
        metadata: vec![],
    }
}

/// Warm-up, then `n` invocations `concurrency` at a time: samples and invocations/s.
pub(crate) async fn timed(
    agent: &Arc<PreparedAgent>,
    input: &str,
    warmup: usize,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<(Vec<f64>, f64)> {
    let task = task(input);
    measure(agent, &task, warmup, concurrency)
        .await
        .map_err(anyhow::Error::msg)?;
    let started = Instant::now();
    let samples = measure(agent, &task, n, concurrency)
        .await
        .map_err(anyhow::Error::msg)?;
    Ok((samples, n as f64 / started.elapsed().as_secs_f64()))
}

/// hello in a fresh pooled instance per call, against the same logic as a
/// native call. Rounds alternate the two so the machine's drift hits both alike.
async fn per_invocation(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let runtime = new_runtime(ctx.host_config(Allocator::Pooling, Metering::FuelAndEpoch))?;
    let agent = prepare(&runtime, &ctx.hello_manifest)?;
    let task = Task {
        id: "bench".into(),
        input: HELLO_INPUT.into(),
        metadata: vec![],
    };
    let native_call = |n: usize| -> anyhow::Result<Vec<f64>> {
        let mut samples = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            let out = hello::greet(std::hint::black_box(&task));
            let elapsed = t.elapsed();
            std::hint::black_box(out).map_err(|e| anyhow::anyhow!("native hello: {e:?}"))?;
            samples.push(elapsed.as_nanos() as f64 / 1000.0);
        }
        Ok(samples)
    };
    let (rounds, per_round, warmup) = if ctx.quick {
        (1, 20, 5)
    } else {
        (20, 1_000, 2_000)
    };
    native_call(warmup)?;
    let (mut wasm, mut native, mut busy) = (Vec::new(), Vec::new(), 0.0);
    for round in 0..rounds {
        let warm = if round == 0 { warmup } else { 10 };
        let (samples, per_sec) = timed(&agent, HELLO_INPUT, warm, per_round, 1).await?;
        busy += samples.len() as f64 / per_sec;
        wasm.extend(samples);
        native.extend(native_call(per_round)?);
    }
    let per_sec = wasm.len() as f64 / busy;
    let wasm = Row::latency(
        "hello, fresh instance per invocation (pooling, all limits)",
        "measured",
        wasm,
    )
    .throughput(per_sec)
    .charted();
    let native = Row::latency(
        "hello's logic as a native Rust function call",
        "baseline",
        native,
    )
    .charted();
    let median = wasm.median();
    Ok(Outcome {
        id: Id::PerInvocation,
        title: "Per-invocation latency",
        ratios: vec![ratio(
            "in-process invocation / native call (median)",
            median / native.median(),
        )],
        goals: vec![at_most(
            "median ≤ 25 µs",
            median,
            25.0,
            crate::chart::format_us(median),
        )],
        rows: vec![wasm, native],
    })
}

/// One process per task: a native binary of the same logic, and `agent-host run`.
async fn process_per_task(ctx: &Ctx, in_process: Row) -> anyhow::Result<Outcome> {
    let n = ctx.n(300, 3);
    let native = process::time_runs(n, || {
        let mut c = std::process::Command::new(&ctx.native_bin);
        c.arg(HELLO_INPUT);
        c
    })?;
    // The first run fills the cache if nothing did yet; it is not measured.
    let run = || {
        let mut c = process::host_command(ctx);
        c.args(["run", "--json", "-f"])
            .arg(&ctx.hello_manifest)
            .args(["--input", HELLO_INPUT]);
        c
    };
    process::time_runs(1, run)?;
    let host_run = process::time_runs(ctx.n(100, 2), run)?;
    let native =
        Row::latency("spawn a native binary of hello's logic", "baseline", native).charted();
    let host_run = Row::latency(
        "spawn `agent-host run` (warm compile cache)",
        "baseline",
        host_run,
    )
    .charted();
    let speedup = native.median() / in_process.median();
    let run_speedup = host_run.median() / in_process.median();
    let mut in_process = in_process;
    in_process.label = "agent-host in-process invocation (per-invocation scenario)".into();
    in_process.charted = false;
    Ok(Outcome {
        id: Id::ProcessPerTask,
        title: "Process per task",
        ratios: vec![
            ratio("native spawn / in-process (median)", speedup),
            ratio("agent-host run / in-process (median)", run_speedup),
        ],
        goals: vec![at_least(
            "≥ 40x faster than a native process spawn",
            speedup,
            40.0,
            format!("{speedup:.1}x"),
        )],
        rows: vec![in_process, native, host_run],
    })
}

/// Invocations/s with the pooling allocator against on-demand, both cores busy.
async fn allocator(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let concurrency = cores();
    let allocators = [
        (Allocator::Pooling, "pooling allocator", "measured"),
        (Allocator::OnDemand, "on-demand allocator", "baseline"),
    ];
    let mut agents = Vec::new();
    for (allocator, _, _) in allocators {
        let runtime = new_runtime(ctx.host_config(allocator, Metering::FuelAndEpoch))?;
        let agent = prepare(&runtime, &ctx.hello_manifest)?;
        agents.push((runtime, agent));
    }
    let (rounds, per_round, warmup) = if ctx.quick {
        (1, 20, 5)
    } else {
        (10, 2_000, 2_000)
    };
    let mut samples = vec![Vec::new(); allocators.len()];
    let mut busy = vec![0.0; allocators.len()];
    for round in 0..rounds {
        for (i, (_, agent)) in agents.iter().enumerate() {
            let warm = if round == 0 { warmup } else { 10 };
            let (s, per_sec) = timed(agent, HELLO_INPUT, warm, per_round, concurrency).await?;
            busy[i] += s.len() as f64 / per_sec;
            samples[i].extend(s);
        }
    }
    let rows: Vec<Row> = allocators
        .iter()
        .zip(samples)
        .zip(busy)
        .map(|(((allocator, label, role), s), busy)| {
            let per_sec = s.len() as f64 / busy;
            let row = Row::latency(format!("hello, {label}, {concurrency} in flight"), role, s)
                .throughput(per_sec);
            if *allocator == Allocator::OnDemand {
                row.charted()
            } else {
                row
            }
        })
        .collect();
    let speedup = rows[0].per_second.unwrap_or(0.0) / rows[1].per_second.unwrap_or(f64::NAN);
    Ok(Outcome {
        id: Id::Allocator,
        title: "Instance allocator",
        ratios: vec![ratio("pooling / on-demand (invocations/s)", speedup)],
        goals: vec![at_least(
            "pooling ≥ 2x on-demand invocations/s",
            speedup,
            2.0,
            format!("{speedup:.2}x"),
        )],
        rows,
    })
}

/// A CPU-bound agent metered by fuel and epochs (production), epochs only, and neither. Rounds
/// alternate the three so drift in the machine's speed hits all alike.
async fn metering(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let manifest = ctx.manifest(
        "json-transform",
        guests::JSON_TRANSFORM,
        "{ fuel: 10000000000, memory: 64Mi, timeout: 30s }",
    );
    let modes = [
        (
            Metering::FuelAndEpoch,
            "fuel + epoch (production)",
            "measured",
        ),
        (Metering::EpochOnly, "epoch only", "measured"),
        (Metering::Unmetered, "neither fuel nor epoch", "baseline"),
    ];
    let mut agents = Vec::new();
    for (metering, _, _) in modes {
        let runtime = new_runtime(ctx.host_config(Allocator::Pooling, metering))?;
        let agent = prepare(&runtime, &manifest)?;
        agents.push((runtime, agent));
    }
    // The document, made by the agent itself (same generator, any metering).
    let input = agents[0]
        .1
        .invoke(task(r#"{"generate":100,"seed":7}"#))
        .await
        .result?;
    let (rounds, per_round) = if ctx.quick { (1, 2) } else { (20, 25) };
    let mut samples = vec![Vec::new(); modes.len()];
    for round in 0..rounds {
        for (i, (_, agent)) in agents.iter().enumerate() {
            let warmup = if round == 0 { per_round } else { 2 };
            let (s, _) = timed(agent, &input, warmup, per_round, 1).await?;
            samples[i].extend(s);
        }
    }
    let rows: Vec<Row> = modes
        .iter()
        .zip(samples)
        .map(|((metering, label, role), s)| {
            let row = Row::latency(
                format!("JSON parse + transform of 100 KB, {label}"),
                role,
                s,
            );
            if *metering == Metering::EpochOnly {
                row
            } else {
                row.charted()
            }
        })
        .collect();
    let fuel = rows[0].median() / rows[2].median();
    let epoch = rows[1].median() / rows[2].median();
    Ok(Outcome {
        id: Id::Metering,
        title: "Metering overhead",
        ratios: vec![
            ratio("fuel + epoch / neither (median)", fuel),
            ratio("epoch only / neither (median)", epoch),
        ],
        goals: vec![
            at_most("fuel ≤ 1.3x of neither", fuel, 1.3, format!("{fuel:.3}x")),
            at_most(
                "epoch ≤ 1.15x of neither",
                epoch,
                1.15,
                format!("{epoch:.3}x"),
            ),
        ],
        rows,
    })
}

/// Process start to agent ready (`serve` listening): precompiled cache against compiling.
async fn cold_start(ctx: &Ctx) -> anyhow::Result<Outcome> {
    // Warm the cache for this engine configuration first (unmeasured).
    process::time_until_ready(ctx, &ctx.cache_dir)?;
    let mut cached = Vec::new();
    for _ in 0..ctx.n(30, 2) {
        cached.push(process::time_until_ready(ctx, &ctx.cache_dir)?);
    }
    let mut compiled = Vec::new();
    for i in 0..ctx.n(5, 1) {
        let empty = ctx.work.path().join(format!("cold-cache-{i}"));
        compiled.push(process::time_until_ready(ctx, &empty)?);
        std::fs::remove_dir_all(&empty).ok();
    }
    let cached = Row::latency(
        "`agent-host serve` start → hello ready, precompiled cache",
        "measured",
        cached,
    )
    .charted();
    let compiled = Row::latency(
        "`agent-host serve` start → hello ready, compiling",
        "baseline",
        compiled,
    )
    .charted();
    // Where a cached start goes: the bare process, and the in-process steps.
    let version = process::time_runs(ctx.n(30, 2), || {
        let mut c = process::host_command(ctx);
        c.arg("--version");
        c
    })?;
    // `serve -f` sizes its instance pool to the agents' maxConcurrency.
    let slots = LoadedAgent::from_file(&ctx.hello_manifest)?
        .agent
        .spec
        .limits
        .max_concurrency;
    let (mut runtime_new, mut prepare_cached) = (Vec::new(), Vec::new());
    for _ in 0..ctx.n(20, 2) {
        let t = Instant::now();
        let runtime = new_runtime(HostConfig {
            max_instances: slots,
            ..ctx.host_config(Allocator::Pooling, Metering::FuelAndEpoch)
        })?;
        runtime_new.push(t.elapsed().as_nanos() as f64 / 1000.0);
        let t = Instant::now();
        prepare(&runtime, &ctx.hello_manifest)?;
        prepare_cached.push(t.elapsed().as_nanos() as f64 / 1000.0);
    }
    let parts = [
        (
            "of which: process start and exit (`agent-host --version`)".to_string(),
            version,
        ),
        (
            format!("of which: engine, {slots}-slot instance pool and linker (in-process)"),
            runtime_new,
        ),
        (
            "of which: load hello from the cache and pre-link it (in-process)".to_string(),
            prepare_cached,
        ),
    ]
    .map(|(label, samples)| Row::latency(label, "measured", samples));
    let speedup = compiled.median() / cached.median();
    let median = cached.median();
    let mut rows = vec![cached, compiled];
    rows.extend(parts);
    Ok(Outcome {
        id: Id::ColdStart,
        title: "Cold start",
        ratios: vec![ratio("compile / cache (median)", speedup)],
        goals: vec![
            at_most(
                "ready ≤ 50 ms from the cache",
                median,
                50_000.0,
                crate::chart::format_us(median),
            ),
            at_least(
                "cache ≥ 50x faster than compiling",
                speedup,
                50.0,
                format!("{speedup:.1}x"),
            ),
        ],
        rows,
    })
}

/// `serve` under wrk at concurrency 1 and 32, against in-process invocation.
async fn http(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let mut rows = Vec::new();
    let mut goals = Vec::new();
    let mut ratios = Vec::new();
    let server = process::Server::start(ctx, &[])?;
    if !ctx.quick {
        server.wrk(ctx, 32, 2)?; // warm-up: instance slots, connections, page cache
    }
    let runtime = new_runtime(ctx.host_config(Allocator::Pooling, Metering::FuelAndEpoch))?;
    let agent = prepare(&runtime, &ctx.hello_manifest)?;
    for concurrency in [1, 32] {
        let w = server.wrk(ctx, concurrency, if concurrency == 1 { 1 } else { 2 })?;
        let (samples, per_sec) = timed(
            &agent,
            HELLO_INPUT,
            ctx.n(1_000, 5),
            ctx.n(40_000, 40),
            concurrency,
        )
        .await?;
        let local = Row::latency(
            format!("in-process, {concurrency} in flight"),
            "baseline",
            samples,
        )
        .throughput(per_sec);
        ratios.push(ratio(
            &format!("HTTP / in-process at {concurrency} (invocations/s)"),
            w.per_second / per_sec,
        ));
        if concurrency == 32 {
            goals.push(at_least(
                "≥ 10,000 invocations/s at 32",
                w.per_second,
                10_000.0,
                format!("{:.0}/s", w.per_second),
            ));
            goals.push(at_most(
                "p99 ≤ 10 ms at 32",
                w.p99_us,
                10_000.0,
                crate::chart::format_us(w.p99_us),
            ));
        }
        rows.push(w.row(
            format!("HTTP via `serve` + wrk, {concurrency} connections"),
            "measured",
        ));
        rows.push(local);
    }
    drop(server);
    // The production configuration keeps an audit log: its cost at 32.
    let audit = ctx.work.path().join("audit.jsonl");
    let server = process::Server::start(ctx, &["--audit-log".as_ref(), audit.as_os_str()])?;
    let w = server.wrk(ctx, 32, 2)?;
    rows.push(w.row(
        "HTTP via `serve` + wrk, 32 connections, audit log on".into(),
        "measured",
    ));
    Ok(Outcome {
        id: Id::Http,
        title: "HTTP (serve)",
        rows,
        ratios,
        goals,
    })
}

/// A 64 KiB string in and out against 64 bytes; alternating rounds.
async fn abi(ctx: &Ctx) -> anyhow::Result<Outcome> {
    const SMALL: usize = 64;
    const LARGE: usize = 64 * 1024;
    let manifest = ctx.manifest(
        "echo",
        guests::ECHO,
        "{ fuel: 100000000, memory: 32Mi, timeout: 5s, maxOutputBytes: 1Mi }",
    );
    let runtime = new_runtime(ctx.host_config(Allocator::Pooling, Metering::FuelAndEpoch))?;
    let agent = prepare(&runtime, &manifest)?;
    // A JSON string document of exactly `size` bytes.
    let json_string = |size: usize| format!("\"{}\"", "a".repeat(size - 2));
    let (small_in, large_in) = (json_string(SMALL), json_string(LARGE));
    let out = agent.invoke(task(&large_in)).await.result?;
    anyhow::ensure!(out == large_in, "echo did not return its input");
    let (rounds, per_round) = if ctx.quick { (1, 5) } else { (20, 500) };
    let (mut small, mut large) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let warmup = if round == 0 { per_round } else { 10 };
        small.extend(timed(&agent, &small_in, warmup, per_round, 1).await?.0);
        large.extend(timed(&agent, &large_in, warmup, per_round, 1).await?.0);
    }
    let small = Row::latency("echo, 64 B in and out", "baseline", small);
    let large = Row::latency("echo, 64 KiB in and out", "measured", large);
    let ns_per_byte = (large.median() - small.median()) * 1000.0 / (LARGE - SMALL) as f64;
    Ok(Outcome {
        id: Id::Abi,
        title: "ABI: strings in and out",
        ratios: vec![ratio(
            "64 KiB / 64 B (median)",
            large.median() / small.median(),
        )],
        goals: vec![at_most(
            "≤ 2 ns per byte",
            ns_per_byte,
            2.0,
            format!("{ns_per_byte:.3} ns/byte"),
        )],
        rows: vec![
            large,
            small,
            Row::value(
                "extra time per byte of string (median)",
                "measured",
                ns_per_byte,
                "ns/byte",
            ),
        ],
    })
}

pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Used by density, which runs its own agent in a child process.
pub fn slow_tally_manifest(dir: &Path, n: usize) -> PathBuf {
    guests::write_manifest(
        dir,
        "parked",
        guests::SLOW_TALLY,
        &format!(
            "  limits: {{ fuel: 100000000, memory: 32Mi, timeout: 60s, maxConcurrency: {n} }}\n"
        ),
    )
}
