//! The outputs: `results.json`, `results.md` (the table the README shows) and
//! `latency.svg`.

use std::path::Path;

use serde::Serialize;

use crate::chart::{format_us, latency_cdf_svg, Series};
use crate::scenarios::{Outcome, Row};

const README_BEGIN: &str = "<!-- bench:begin -->";
const README_END: &str = "<!-- bench:end -->";

/// Where the figures came from.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
}

impl Machine {
    pub fn detect() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or("unknown CPU".into(), |(_, v)| v.trim().to_string());
        let meminfo = read("/proc/meminfo");
        let mem_kib: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        Self {
            cpu,
            cores: crate::scenarios::cores(),
            memory_gib: (mem_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            kernel: format!("Linux {}", read("/proc/sys/kernel/osrelease").trim()),
        }
    }

    fn describe(&self) -> String {
        format!(
            "{}, {} cores, {} GiB, {}",
            self.cpu, self.cores, self.memory_gib, self.kernel
        )
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Results<'a> {
    date: String,
    machine: &'a Machine,
    /// A smoke run: a handful of iterations, figures meaningless.
    quick: bool,
    scenarios: &'a [Outcome],
}

pub struct Written {
    pub table: String,
    pub readme_section: String,
    pub paths: Vec<String>,
}

pub fn write(
    dir: &Path,
    machine: &Machine,
    quick: bool,
    outcomes: &mut [Outcome],
) -> anyhow::Result<Written> {
    let date = jiff::Timestamp::now()
        .strftime("%Y-%m-%d %H:%M UTC")
        .to_string();
    let results = Results {
        date: date.clone(),
        machine,
        quick,
        scenarios: outcomes,
    };
    let json = dir.join("results.json");
    std::fs::write(&json, serde_json::to_string_pretty(&results)? + "\n")?;

    let summary = summary_table(outcomes);
    let details = details_table(outcomes);
    let heading = format!(
        "Measured {date} on {}{} with `make bench`.",
        machine.describe(),
        if quick {
            " (smoke run: figures meaningless)"
        } else {
            ""
        }
    );
    let md = dir.join("results.md");
    std::fs::write(
        &md,
        format!("# agent-host benchmarks\n\n{heading}\n\n{summary}\n![latency distributions](latency.svg)\n\n## Every row\n\n{details}"),
    )?;

    let svg = dir.join("latency.svg");
    std::fs::write(&svg, chart(outcomes, &machine.describe()))?;

    Ok(Written {
        readme_section: format!(
            "{heading}\n\n{summary}\n![latency distributions](bench/latency.svg)\n\nEvery row, with p99s: [bench/results.md](bench/results.md); raw figures: [bench/results.json](bench/results.json).\n"
        ),
        table: summary,
        paths: [json, md, svg].iter().map(|p| p.display().to_string()).collect(),
    })
}

/// One line per goal: the scenario, the figure, the baseline and the verdict.
fn summary_table(outcomes: &[Outcome]) -> String {
    let mut t = String::from(
        "| scenario | goal | measured | ratios (same run) | met |\n|---|---|---|---|---|\n",
    );
    for o in outcomes {
        let ratios: Vec<String> = o
            .ratios
            .iter()
            .map(|r| format!("{}: {:.2}x", r.name, r.value))
            .collect();
        for (i, g) in o.goals.iter().enumerate() {
            t.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                if i == 0 { o.title } else { "" },
                g.goal,
                g.figure,
                if i == 0 {
                    ratios.join("; ")
                } else {
                    String::new()
                },
                if g.met { "yes" } else { "**no**" },
            ));
        }
    }
    t
}

/// Every row of every scenario.
fn details_table(outcomes: &[Outcome]) -> String {
    let mut t = String::from(
        "| scenario | row | role | median | p99 | n | per second / value |\n|---|---|---|---|---|---|---|\n",
    );
    for o in outcomes {
        for r in &o.rows {
            let (median, p99, n) = match &r.latency {
                Some(l) => (format_us(l.median_us), format_us(l.p99_us), l.n.to_string()),
                None => ("".into(), "".into(), "".into()),
            };
            let extra = match (r.per_second, r.value, r.unit) {
                (Some(p), _, _) => format!("{p:.0}/s"),
                (None, Some(v), Some(u)) => format!("{v:.1} {u}"),
                _ => String::new(),
            };
            t.push_str(&format!(
                "| {} | {} | {} | {median} | {p99} | {n} | {extra} |\n",
                o.title, r.label, r.role
            ));
        }
    }
    t
}

/// The CDF chart of every row with samples.
fn chart(outcomes: &[Outcome], machine: &str) -> String {
    let rows: Vec<&Row> = outcomes
        .iter()
        .flat_map(|o| o.rows.iter())
        .filter(|r| r.charted)
        .collect();
    let series: Vec<Series<'_>> = rows
        .iter()
        .map(|r| Series {
            label: &r.label,
            samples_us: &r.samples,
        })
        .collect();
    latency_cdf_svg(
        "agent-host: latency distributions (make bench)",
        machine,
        &series,
    )
}

/// Replaces the README's section between the bench markers with `section`.
pub fn update_readme(path: &Path, section: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)?;
    let (Some(begin), Some(end)) = (text.find(README_BEGIN), text.find(README_END)) else {
        anyhow::bail!(
            "{} has no {README_BEGIN} ... {README_END} section",
            path.display()
        );
    };
    anyhow::ensure!(
        begin < end,
        "{}: {README_END} before {README_BEGIN}",
        path.display()
    );
    let updated = format!(
        "{}{README_BEGIN}\n{section}{}",
        &text[..begin],
        &text[end..]
    );
    std::fs::write(path, updated)?;
    Ok(())
}
