//! Invocation latency measurement, shared by `agent-host bench` and the
//! project's benchmark harness so both report the same statistics.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::runtime::{PreparedAgent, TaskInput};

/// Order statistics of a set of latency samples, microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// 50th percentile.
    pub median_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Arithmetic mean.
    pub mean_us: f64,
    /// Fastest sample.
    pub min_us: f64,
    /// Slowest sample.
    pub max_us: f64,
}

impl Summary {
    /// Summarises `samples` (sorted in place). Percentiles are nearest-rank on
    /// the sorted samples; an empty set gives all zeros.
    pub fn of(samples: &mut [f64]) -> Self {
        samples.sort_by(f64::total_cmp);
        let n = samples.len();
        if n == 0 {
            return Self::default();
        }
        let at = |q: f64| samples[((n as f64 - 1.0) * q).round() as usize];
        Self {
            n,
            median_us: at(0.5),
            p99_us: at(0.99),
            mean_us: samples.iter().sum::<f64>() / n as f64,
            min_us: samples[0],
            max_us: samples[n - 1],
        }
    }
}

/// Runs `iterations` invocations of `task`, `concurrency` at a time (tasks on
/// the current async runtime), and returns each one's latency in µs. The first
/// failed invocation ends the measurement with its error.
pub async fn measure(
    agent: &Arc<PreparedAgent>,
    task: &TaskInput,
    iterations: usize,
    concurrency: usize,
) -> Result<Vec<f64>, String> {
    let remaining = Arc::new(AtomicUsize::new(iterations));
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (agent, task, remaining) = (agent.clone(), task.clone(), remaining.clone());
            tokio::spawn(async move {
                let mut samples = Vec::new();
                while remaining
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
                {
                    let t = Instant::now();
                    let inv = agent.invoke(task.clone()).await;
                    samples.push(t.elapsed().as_nanos() as f64 / 1000.0);
                    if let Err(e) = inv.result {
                        return Err(format!("invocation of {} failed: {e}", agent.name()));
                    }
                }
                Ok(samples)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(iterations);
    for worker in workers {
        all.extend(worker.await.map_err(|e| e.to_string())??);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_takes_nearest_rank_percentiles() {
        let mut samples: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let s = Summary::of(&mut samples);
        assert_eq!(s.n, 100);
        assert_eq!(s.median_us, 51.0); // rank round(99 * 0.5) = 50 (0-based)
        assert_eq!(s.p99_us, 99.0);
        assert_eq!((s.min_us, s.max_us), (1.0, 100.0));
        assert_eq!(s.mean_us, 50.5);
        assert_eq!(Summary::of(&mut []), Summary::default());
    }
}
