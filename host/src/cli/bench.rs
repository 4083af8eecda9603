//! `agent-host bench`: per-invocation latency of one agent (fresh instance +
//! `run` + drop, every limit on), pooling allocator against on-demand, in one run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use agent_host::config::Allocator;
use agent_host::latency::{measure, Summary};
use agent_host::manifest::LoadedAgent;
use agent_host::{Runtime, TaskInput};

use super::{fail, HostArgs};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// The Agent manifest (YAML)
    #[arg(short = 'f', long = "file")]
    manifest: PathBuf,
    /// Task input (JSON text)
    #[arg(long, default_value = "{}")]
    input: String,
    /// Measured invocations per allocator
    #[arg(long, default_value_t = 5000)]
    iterations: usize,
    /// Unmeasured invocations first
    #[arg(long, default_value_t = 500)]
    warmup: usize,
    /// Invocations in flight at once (tasks on the async runtime's worker threads)
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Measure only this allocator [default: both, pooling first]
    #[arg(long, value_enum)]
    allocator: Option<Allocator>,
    /// Print the figures as JSON
    #[arg(long)]
    json: bool,
}

/// Latency distribution of one allocator, microseconds.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Figures {
    allocator: &'static str,
    #[serde(flatten)]
    latency: Summary,
    invocations_per_sec: f64,
}

pub async fn bench(host: &HostArgs, args: BenchArgs) -> ExitCode {
    let mut loaded = match LoadedAgent::from_file(&args.manifest) {
        Ok(loaded) => loaded,
        Err(e) => return fail(e),
    };
    let resolved = match host.config(Allocator::Pooling) {
        Ok(config) => super::check::resolve(host, &config, &mut loaded).await,
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = resolved {
        return fail(e);
    }
    let mut results = Vec::new();
    let allocators = [
        (Allocator::Pooling, "pooling"),
        (Allocator::OnDemand, "on-demand"),
    ];
    let chosen = allocators
        .into_iter()
        .filter(|(a, _)| args.allocator.is_none_or(|only| only == *a));
    for (allocator, label) in chosen {
        let config = match host.config(allocator) {
            Ok(config) => config,
            Err(e) => return fail(e),
        };
        let runtime = match Runtime::new(config) {
            Ok(rt) => rt,
            Err(e) => return fail(format!("cannot start the runtime: {e:#}")),
        };
        let agent = match runtime.prepare(&loaded) {
            Ok(agent) => agent,
            Err(e) => return fail(e),
        };
        let task = TaskInput {
            id: Some("bench".into()),
            input: args.input.clone(),
            metadata: vec![],
        };
        for _ in 0..args.warmup {
            if let Err(e) = agent.invoke(task.clone()).await.result {
                return fail(format!("warm-up invocation failed: {e}"));
            }
        }
        let agent = Arc::new(agent);
        let started = Instant::now();
        let mut samples = match measure(&agent, &task, args.iterations, args.concurrency).await {
            Ok(samples) => samples,
            Err(e) => return fail(e),
        };
        let total = started.elapsed().as_secs_f64();
        results.push(Figures {
            allocator: label,
            invocations_per_sec: samples.len() as f64 / total.max(f64::EPSILON),
            latency: Summary::of(&mut samples),
        });
    }
    let ratio = match results.as_slice() {
        [pooling, on_demand] => on_demand.latency.median_us / pooling.latency.median_us,
        _ => f64::NAN,
    };
    if args.json {
        let out = serde_json::json!({
            "agent": loaded.agent.name(),
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "concurrency": args.concurrency.max(1),
            "scenarios": results,
            "onDemandOverPoolingMedian": ratio,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&out).expect("serialisable")
        );
    } else {
        println!(
            "per-invocation latency of {} (fresh instance + run + drop, all limits on), concurrency {}",
            loaded.agent.name(),
            args.concurrency.max(1)
        );
        println!(
            "{:<10} {:>10} {:>10} {:>10} {:>10} {:>12}",
            "allocator", "n", "median µs", "p99 µs", "mean µs", "invocations/s"
        );
        for r in &results {
            println!(
                "{:<10} {:>10} {:>10.1} {:>10.1} {:>10.1} {:>12.0}",
                r.allocator,
                r.latency.n,
                r.latency.median_us,
                r.latency.p99_us,
                r.latency.mean_us,
                r.invocations_per_sec
            );
        }
        if ratio.is_finite() {
            println!("on-demand median / pooling median = {ratio:.2}x");
        }
    }
    ExitCode::SUCCESS
}
