//! Density: resident memory of a host with N invocations in flight, each
//! parked in a host call (a sleep), against the same host idle. Runs in a child
//! process so that the idle figure is a fresh host's.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_host::config::{Allocator, Metering};
use agent_host::manifest::LoadedAgent;
use agent_host::{HostConfig, TaskInput};
use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::scenarios::{new_runtime, slow_tally_manifest, Ctx, Goal, Id, Outcome, Ratio, Row};

#[derive(clap::Args, Debug)]
pub struct ChildArgs {
    #[arg(long)]
    manifest: PathBuf,
    #[arg(long)]
    cache_dir: PathBuf,
    #[arg(long)]
    n: usize,
    #[arg(long)]
    sleep_ms: u64,
}

/// What the child reports, bytes.
#[derive(Serialize, Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct Report {
    idle_rss: u64,
    in_flight_rss: u64,
    in_flight_anon: u64,
    n: usize,
}

pub async fn scenario(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let n = ctx.n(1_000, 20);
    let manifest = slow_tally_manifest(ctx.work.path(), n);
    let out = Command::new(std::env::current_exe()?)
        .arg("density-child")
        .arg("--manifest")
        .arg(&manifest)
        .arg("--cache-dir")
        .arg(&ctx.cache_dir)
        .args(["--n", &n.to_string(), "--sleep-ms"])
        .arg(if ctx.quick { "1000" } else { "4000" })
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "density child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Report = serde_json::from_slice(&out.stdout).context("density child's report")?;
    let per_in_flight =
        report.in_flight_rss.saturating_sub(report.idle_rss) as f64 / n as f64 / 1024.0;
    let kib = |b: u64| b as f64 / 1024.0;
    Ok(Outcome {
        id: Id::Density,
        title: "Density",
        rows: vec![
            Row::value(
                format!("resident memory, {n} invocations parked in a host call"),
                "measured",
                kib(report.in_flight_rss),
                "KiB",
            ),
            Row::value(
                "resident memory, idle host (agent loaded)",
                "baseline",
                kib(report.idle_rss),
                "KiB",
            ),
            Row::value(
                "resident memory per in-flight invocation",
                "measured",
                per_in_flight,
                "KiB",
            ),
            Row::value(
                "of which anonymous, per in-flight invocation",
                "measured",
                kib(report.in_flight_anon) / n as f64,
                "KiB",
            ),
        ],
        ratios: vec![Ratio {
            name: format!("{n} in flight / idle (resident memory)"),
            value: report.in_flight_rss as f64 / report.idle_rss as f64,
        }],
        goals: vec![Goal {
            goal: "≤ 256 KiB per in-flight invocation".into(),
            figure: format!("{per_in_flight:.1} KiB"),
            met: per_in_flight <= 256.0,
        }],
    })
}

/// The child: a host with the parked agent loaded; idle RSS, then N invocations
/// started and RSS once they are all parked; prints the report as JSON.
pub async fn child(args: ChildArgs) -> anyhow::Result<()> {
    let runtime = new_runtime(HostConfig {
        cache_dir: args.cache_dir,
        allocator: Allocator::Pooling,
        metering: Metering::FuelAndEpoch,
        max_instances: args.n as u32,
        ..HostConfig::default()
    })?;
    let agent = Arc::new(runtime.prepare(&LoadedAgent::from_file(&args.manifest)?)?);
    let task = |ms: u64| TaskInput {
        id: None,
        input: format!(r#"{{"sleepMs":{ms}}}"#),
        metadata: vec![],
    };
    for _ in 0..3 {
        agent.invoke(task(0)).await.result?;
    }
    let idle = rss()?;
    let finished = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..args.n)
        .map(|_| {
            let (agent, finished, task) = (agent.clone(), finished.clone(), task(args.sleep_ms));
            tokio::spawn(async move {
                let inv = agent.invoke(task).await;
                finished.fetch_add(1, Ordering::SeqCst);
                inv.result
            })
        })
        .collect();
    // Parked when every slot is taken and resident memory has stopped growing.
    let mut last = rss()?;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = rss()?;
        let all_in = agent.available_slots() == 0;
        if all_in && now.resident.abs_diff(last.resident) < 64 * 1024 {
            last = now;
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_millis(args.sleep_ms / 2),
            "the invocations did not all park within {} ms",
            args.sleep_ms / 2
        );
        last = now;
    }
    anyhow::ensure!(
        finished.load(Ordering::SeqCst) == 0,
        "an invocation ended before the measurement"
    );
    for h in handles {
        h.await??;
    }
    let report = Report {
        idle_rss: idle.resident,
        in_flight_rss: last.resident,
        in_flight_anon: last.anon.saturating_sub(idle.anon),
        n: args.n,
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

struct Rss {
    resident: u64,
    anon: u64,
}

/// This process's resident set (`VmRSS`) and its anonymous part, bytes.
fn rss() -> anyhow::Result<Rss> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib = |key: &str| -> anyhow::Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(key))
            .with_context(|| format!("{key} missing from /proc/self/status"))?;
        let value = line[key.len()..].trim().trim_end_matches("kB").trim();
        Ok(value.parse::<u64>()? * 1024)
    };
    Ok(Rss {
        resident: kib("VmRSS:")?,
        anon: kib("RssAnon:")?,
    })
}
