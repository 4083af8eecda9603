//! `agent-host-bench`: every benchmark scenario of agent-host, each against
//! its baseline in the same run, written to `results.json`, `results.md` and
//! `latency.svg` (and, with `--readme`, into the README between its markers).
//!
//! In-process scenarios run in this process; those that need a process per
//! task, a cold start or a real load generator spawn `agent-host`,
//! `hello-native` and `wrk`. Density runs in a child of this binary so that its
//! idle baseline is a fresh host, not one that earlier scenarios warmed up.

mod chart;
mod density;
mod durable;
mod languages;
mod mcp;
mod process;
mod registry;
mod report;
mod scenarios;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "agent-host-bench", about)]
struct Args {
    /// A handful of iterations per scenario: checks that every scenario runs,
    /// the figures mean nothing (the test suite's smoke run)
    #[arg(long)]
    quick: bool,
    /// Directory for results.json, results.md and latency.svg
    #[arg(long, default_value = env!("CARGO_MANIFEST_DIR"))]
    out: PathBuf,
    /// Replace the README section between `<!-- bench:begin -->` and `<!-- bench:end -->`
    #[arg(long)]
    readme: Option<PathBuf>,
    /// The agent-host binary [default: next to this one]
    #[arg(long)]
    host_bin: Option<PathBuf>,
    /// The hello-native binary [default: next to this one]
    #[arg(long)]
    native_bin: Option<PathBuf>,
    /// Seconds of each wrk run in the HTTP scenario
    #[arg(long, default_value_t = 10)]
    http_seconds: u64,
    /// Run only these scenarios (repeatable) [default: all]
    #[arg(long = "only", value_enum)]
    only: Vec<scenarios::Id>,
    #[command(subcommand)]
    child: Option<Child>,
}

#[derive(clap::Subcommand, Debug)]
enum Child {
    /// (internal) The density scenario's host process
    #[command(hide = true)]
    DensityChild(density::ChildArgs),
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AGENT_HOST_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = match args.child {
        Some(Child::DensityChild(child)) => runtime.block_on(density::child(child)),
        None => runtime.block_on(run(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let sibling = |name: &str| -> anyhow::Result<PathBuf> {
        let exe = std::env::current_exe()?;
        Ok(exe.with_file_name(name))
    };
    let host_bin = match args.host_bin {
        Some(p) => p,
        None => sibling("agent-host")?,
    };
    let native_bin = match args.native_bin {
        Some(p) => p,
        None => sibling("hello-native")?,
    };
    for (bin, package) in [(&host_bin, "agent-host"), (&native_bin, "agent-host-bench")] {
        anyhow::ensure!(
            bin.is_file(),
            "{} not found: build it (cargo build --release -p {package}) or pass its path",
            bin.display()
        );
    }
    let ctx = scenarios::Ctx::new(args.quick, host_bin, native_bin, args.http_seconds)?;
    let mut results = scenarios::run_all(&ctx, &args.only).await?;
    let machine = report::Machine::detect();
    std::fs::create_dir_all(&args.out)?;
    let written = report::write(&args.out, &machine, args.quick, &mut results)?;
    println!("{}", written.table);
    if let Some(readme) = &args.readme {
        report::update_readme(readme, &written.readme_section)?;
        println!("updated {}", readme.display());
    }
    println!("wrote {}", written.paths.join(", "));
    Ok(())
}
