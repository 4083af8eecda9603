//! `agent-host run`: one task, one fresh instance, output and usage printed.

use std::path::PathBuf;
use std::process::ExitCode;

use agent_host::config::Allocator;
use agent_host::manifest::LoadedAgent;
use agent_host::{Invocation, Runtime, TaskInput};

use super::{fail, HostArgs};
use agent_host::manifest::human_bytes;

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The Agent manifest (YAML)
    #[arg(short = 'f', long = "file")]
    manifest: PathBuf,
    /// Task input: JSON text, or @path to read it from a file
    #[arg(long, default_value = "{}")]
    input: String,
    /// Invocation id [default: a random UUID]
    #[arg(long)]
    id: Option<String>,
    /// Task metadata as key=value (repeatable)
    #[arg(long = "meta", value_parser = parse_kv)]
    metadata: Vec<(String, String)>,
    /// Print one JSON object (output, outcome, usage) instead of a report
    #[arg(long)]
    json: bool,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not key=value"))
}

pub async fn run(host: &HostArgs, args: RunArgs) -> ExitCode {
    let input = match args.input.strip_prefix('@') {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => return fail(format!("--input @{path}: {e}")),
        },
        None => args.input,
    };
    let mut loaded = match LoadedAgent::from_file(&args.manifest) {
        Ok(loaded) => loaded,
        Err(e) => return fail(e),
    };
    let config = match host.config(Allocator::Pooling) {
        Ok(config) => config,
        Err(e) => return fail(e),
    };
    if let Err(e) = super::check::resolve(host, &config, &mut loaded).await {
        return fail(e);
    }
    let runtime = match Runtime::new(config) {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the runtime: {e:#}")),
    };
    let agent = match runtime.prepare(&loaded) {
        Ok(agent) => agent,
        Err(e) => return fail(e),
    };
    let invocation = agent
        .invoke(TaskInput {
            id: args.id,
            input,
            metadata: args.metadata,
        })
        .await;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report_json(&invocation)).expect("serialisable")
        );
    } else {
        print_report(&invocation, &agent);
    }
    if invocation.result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The machine-readable form of an invocation (also used by the demo).
pub fn report_json(inv: &Invocation) -> serde_json::Value {
    let (output, error) = match &inv.result {
        Ok(text) => {
            let value = serde_json::from_str(text)
                .unwrap_or_else(|_| serde_json::Value::String(text.clone()));
            (value, serde_json::Value::Null)
        }
        Err(e) => (
            serde_json::Value::Null,
            serde_json::json!({ "code": e.code(), "message": e.to_string() }),
        ),
    };
    serde_json::json!({
        "agent": inv.agent,
        "invocation": inv.id,
        "outcome": inv.outcome(),
        "output": output,
        "error": error,
        "usage": inv.usage,
    })
}

fn print_report(inv: &Invocation, agent: &agent_host::PreparedAgent) {
    let (u, limits) = (&inv.usage, agent.limits());
    println!("agent       {}", inv.agent);
    println!("invocation  {}", inv.id);
    println!("outcome     {}", inv.outcome());
    match &inv.result {
        Ok(output) => println!("output      {output}"),
        Err(e) => println!("error       {e}"),
    }
    println!("usage");
    println!("  fuel        {} of {}", u.fuel_consumed, limits.fuel);
    println!(
        "  memory      {} peak of {}",
        human_bytes(u.peak_memory_bytes),
        limits.memory
    );
    println!(
        "  wall time   {:.3} ms of {}",
        u.wall_time_us as f64 / 1000.0,
        limits.timeout
    );
    for (kind, line) in agent.grants().report(&u.caps, limits) {
        println!("  {:<11} {line}", kind.as_str());
    }
    println!(
        "  log         {} records, {} bytes dropped",
        u.log_records, u.log_dropped_bytes
    );
    println!(
        "  output      {} of {}",
        human_bytes(u.output_bytes),
        limits.max_output_bytes
    );
    let calls: Vec<String> = u
        .host_calls
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!(
        "  host calls  {}",
        if calls.is_empty() {
            "none".to_string()
        } else {
            calls.join(" ")
        }
    );
}
