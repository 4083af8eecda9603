//! `agent-host check` and `agent-host compile`.

use std::path::PathBuf;
use std::process::ExitCode;

use agent_host::cap::imports::Binding;
use agent_host::config::Allocator;
use agent_host::manifest::LoadedAgent;
use agent_host::Runtime;

use super::{fail, HostArgs};

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// The Agent manifest (YAML)
    #[arg(short = 'f', long = "file")]
    manifest: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct CompileArgs {
    /// Agent manifests whose components to precompile (repeatable)
    #[arg(short = 'f', long = "file", required = true)]
    manifests: Vec<PathBuf>,
}

pub async fn check(host: &HostArgs, args: CheckArgs) -> ExitCode {
    let mut loaded = match LoadedAgent::from_file(&args.manifest) {
        Ok(loaded) => loaded,
        Err(e) => return fail(e),
    };
    println!("manifest    {}: valid", args.manifest.display());
    let config = match host.config(Allocator::Pooling) {
        Ok(config) => config,
        Err(e) => return fail(e),
    };
    if let Err(e) = resolve(host, &config, &mut loaded).await {
        return fail(e);
    }
    if let Some(image) = &loaded.image {
        println!("image       {}", image.reference);
        println!(
            "signer      {} ({})",
            image.signer.as_deref().unwrap_or("unsigned, allowed"),
            image.rule
        );
        println!("ceiling     {}", image.ceiling.join(" · "));
    }
    let runtime = match Runtime::new(config) {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the runtime: {e:#}")),
    };
    let inspection = match runtime.inspect(&loaded) {
        Ok(i) => i,
        Err(e) => return fail(e),
    };
    let limits = &loaded.agent.spec.limits;
    println!("agent       {}", inspection.agent);
    println!(
        "component   {} (sha256 {})",
        loaded.component_path.display(),
        inspection.digest
    );
    println!(
        "limits      fuel {} · memory {} · timeout {} · output {} · log {} · http requests {} · concurrency {}",
        limits.fuel,
        limits.memory,
        limits.timeout,
        limits.max_output_bytes,
        limits.max_log_bytes,
        limits.max_http_requests,
        limits.max_concurrency
    );
    println!("imports");
    for binding in &inspection.imports {
        println!("  {binding}");
    }
    let refused = inspection.refused().count();
    let denied = inspection
        .imports
        .iter()
        .filter(|b| matches!(b.binding, Binding::Denied { .. }))
        .count();
    if refused > 0 {
        println!("result      REFUSED: {refused} import(s) the host does not provide");
        ExitCode::from(1)
    } else if denied > 0 {
        println!("result      ok: every import is bound; {denied} not granted (every call denied)");
        ExitCode::SUCCESS
    } else {
        println!("result      ok: every import is bound");
        ExitCode::SUCCESS
    }
}

/// Pulls and verifies an image Agent's component (a local file passes as is).
pub(super) async fn resolve(
    host: &HostArgs,
    config: &agent_host::HostConfig,
    loaded: &mut LoadedAgent,
) -> Result<(), String> {
    if loaded.agent.spec.component.image.is_none() {
        return Ok(());
    }
    let puller = host.puller(config)?;
    puller.resolve(loaded).await.map_err(|e| e.to_string())
}

pub async fn compile(host: &HostArgs, args: CompileArgs) -> ExitCode {
    let config = match host.config(Allocator::Pooling) {
        Ok(config) => config,
        Err(e) => return fail(e),
    };
    let runtime = match Runtime::new(config) {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the runtime: {e:#}")),
    };
    for manifest in &args.manifests {
        let mut loaded = match LoadedAgent::from_file(manifest) {
            Ok(loaded) => loaded,
            Err(e) => return fail(e),
        };
        if let Err(e) = resolve(host, runtime.config(), &mut loaded).await {
            return fail(e);
        }
        match runtime.compile_agent(&loaded) {
            Ok((_, digest, status)) => println!(
                "{}: {} sha256 {digest} ({status:?}) -> {}",
                loaded.agent.name(),
                loaded.component_path.display(),
                runtime.cache().entry_path(&digest).display()
            ),
            Err(e) => return fail(e),
        }
    }
    ExitCode::SUCCESS
}
