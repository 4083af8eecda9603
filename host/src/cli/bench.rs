//! `agent-host bench`: per-invocation latency of one agent (fresh instance +
//! `run` + drop, every limit on), pooling allocator against on-demand, in one run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use agent_host::config::Allocator;
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
    /// Print the figures as JSON
    #[arg(long)]
    json: bool,
}

/// Latency distribution of one scenario, microseconds.
#[derive(serde::Serialize)]
struct Figures {
    allocator: &'static str,
    iterations: usize,
    median_us: f64,
    p99_us: f64,
    mean_us: f64,
    invocations_per_sec: f64,
}

pub async fn bench(host: &HostArgs, args: BenchArgs) -> ExitCode {
    let loaded = match LoadedAgent::from_file(&args.manifest) {
        Ok(loaded) => loaded,
        Err(e) => return fail(e),
    };
    let mut results = Vec::new();
    for (allocator, label) in [
        (Allocator::Pooling, "pooling"),
        (Allocator::OnDemand, "on-demand"),
    ] {
        let runtime = match Runtime::new(host.config(allocator)) {
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
        let mut samples = Vec::with_capacity(args.iterations);
        let started = Instant::now();
        for _ in 0..args.iterations {
            let t = Instant::now();
            let inv = agent.invoke(task.clone()).await;
            samples.push(t.elapsed().as_nanos() as f64 / 1000.0);
            if let Err(e) = inv.result {
                return fail(format!("invocation failed: {e}"));
            }
        }
        let total = started.elapsed().as_secs_f64();
        results.push(figures(label, samples, total));
    }
    let ratio = results[1].median_us / results[0].median_us;
    if args.json {
        let out = serde_json::json!({
            "agent": loaded.agent.name(),
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "scenarios": results,
            "onDemandOverPoolingMedian": ratio,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&out).expect("serialisable")
        );
    } else {
        println!(
            "per-invocation latency of {} (fresh instance + run + drop, all limits on)",
            loaded.agent.name()
        );
        println!(
            "{:<10} {:>10} {:>10} {:>10} {:>10} {:>12}",
            "allocator", "n", "median µs", "p99 µs", "mean µs", "invocations/s"
        );
        for r in &results {
            println!(
                "{:<10} {:>10} {:>10.1} {:>10.1} {:>10.1} {:>12.0}",
                r.allocator, r.iterations, r.median_us, r.p99_us, r.mean_us, r.invocations_per_sec
            );
        }
        println!("on-demand median / pooling median = {ratio:.2}x");
    }
    ExitCode::SUCCESS
}

fn figures(allocator: &'static str, mut samples: Vec<f64>, total_secs: f64) -> Figures {
    samples.sort_by(|a, b| a.total_cmp(b));
    let n = samples.len().max(1);
    let at = |q: f64| {
        samples
            .get(((n as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    Figures {
        allocator,
        iterations: samples.len(),
        median_us: at(0.5),
        p99_us: at(0.99),
        mean_us: samples.iter().sum::<f64>() / n as f64,
        invocations_per_sec: samples.len() as f64 / total_secs.max(f64::EPSILON),
    }
}
