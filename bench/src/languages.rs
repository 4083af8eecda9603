//! Agents in Python and TypeScript against the Rust agent, in one run: the
//! per-invocation median of `hello` (a fresh pooled instance per call), the
//! compile of the component into an empty cache, its load from the cache,
//! and the resident memory each invocation adds while in flight (the
//! conformance agent of each language parked in an HTTP call to a server
//! that holds the response).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_host::config::{Allocator, Metering};
use agent_host::HostConfig;
use agent_host_test_guests as guests;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::scenarios::{
    at_most, new_runtime, prepare, ratio, timed, Ctx, Id, Outcome, Row, HELLO_INPUT,
};

/// A language's components: hello and the conformance agent.
struct Lang {
    name: &'static str,
    hello: String,
    conformance: String,
}

fn languages() -> Vec<Lang> {
    vec![
        Lang {
            name: "Rust",
            hello: guests::HELLO.into(),
            conformance: guests::CONFORMANCE.into(),
        },
        Lang {
            name: "Python",
            hello: guests::python_guest("examples/hello-python", "hello"),
            conformance: guests::python_guest("tests/conformance/python", "conformance"),
        },
        Lang {
            name: "TypeScript",
            hello: guests::ts_guest("examples/hello-ts", "hello"),
            conformance: guests::ts_guest("tests/conformance/ts", "conformance"),
        },
    ]
}

/// Resident set of this process, bytes.
fn rss() -> anyhow::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("/proc/self/statm: {statm:?}"))?
        .parse()?;
    Ok(pages * 4096)
}

/// Limits every language fits in (interpreters start with ~12 MiB of memory),
/// with room for the in-flight invocations.
const LIMITS: &str =
    "{ memory: 128Mi, fuel: 2000000000, timeout: 60s, maxConcurrency: 64, maxQueue: 64 }";

pub async fn scenario(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let langs = languages();
    let mut rows = Vec::new();
    let mut medians = Vec::new();
    let mut per_flight = Vec::new();
    for lang in &langs {
        let manifest = ctx.manifest(
            &format!("hello-{}", lang.name.to_lowercase()),
            &lang.hello,
            LIMITS,
        );
        // Compile into an empty cache, then load from it in a fresh runtime.
        let empty = ctx.work.path().join(format!("compile-{}", lang.name));
        let t = Instant::now();
        prepare(&new_runtime(config(ctx, &empty))?, &manifest)?;
        let compile = t.elapsed();
        let runtime = new_runtime(config(ctx, &empty))?;
        let t = Instant::now();
        let agent = prepare(&runtime, &manifest)?;
        let cached = t.elapsed();
        std::fs::remove_dir_all(&empty).ok();

        let (samples, per_sec) =
            timed(&agent, HELLO_INPUT, ctx.n(200, 5), ctx.n(2_000, 20), 1).await?;
        let row = Row::latency(
            format!(
                "{} hello, fresh instance per invocation (pooling)",
                lang.name
            ),
            if lang.name == "Rust" {
                "baseline"
            } else {
                "measured"
            },
            samples,
        )
        .throughput(per_sec);
        medians.push((lang.name, row.median()));
        rows.push(row);
        rows.push(Row::value(
            format!("{} hello: compile into an empty cache", lang.name),
            "measured",
            compile.as_secs_f64() * 1e3,
            "ms",
        ));
        rows.push(Row::value(
            format!("{} hello: load from the cache and pre-link", lang.name),
            "measured",
            cached.as_secs_f64() * 1e3,
            "ms",
        ));
        rows.push(Row::value(
            format!("{} hello: component size", lang.name),
            "measured",
            std::fs::metadata(&lang.hello)?.len() as f64 / (1 << 20) as f64,
            "MiB",
        ));
        let mib = in_flight(ctx, lang, ctx.n(32, 4)).await?;
        per_flight.push((lang.name, mib));
        rows.push(Row::value(
            format!("{}: resident memory per invocation in flight", lang.name),
            if lang.name == "Rust" {
                "baseline"
            } else {
                "measured"
            },
            mib,
            "MiB",
        ));
    }
    let rust = medians[0].1;
    let mut ratios = Vec::new();
    let mut goals = Vec::new();
    for (name, median) in &medians[1..] {
        ratios.push(ratio(
            &format!("{name} / Rust hello (median)"),
            median / rust,
        ));
        goals.push(at_most(
            &format!("{name} hello ≤ 1 ms per invocation (fresh instance)"),
            *median,
            1_000.0,
            crate::chart::format_us(*median),
        ));
    }
    for (name, mib) in &per_flight[1..] {
        goals.push(at_most(
            &format!("{name} ≤ 4 MiB resident per invocation in flight"),
            *mib,
            4.0,
            format!("{mib:.2} MiB"),
        ));
    }
    Ok(Outcome {
        id: Id::Languages,
        title: "Agents in Python and TypeScript",
        rows,
        ratios,
        goals,
    })
}

fn config(ctx: &Ctx, cache: &Path) -> HostConfig {
    HostConfig {
        cache_dir: cache.to_path_buf(),
        max_instances: 64,
        ..ctx.host_config(Allocator::Pooling, Metering::FuelAndEpoch)
    }
}

/// `n` invocations of the language's conformance agent parked at once in an
/// HTTP call whose response is held: the process's resident growth per
/// invocation, MiB, measured once all `n` have reached the server.
async fn in_flight(ctx: &Ctx, lang: &Lang, n: usize) -> anyhow::Result<f64> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let arrived = Arc::new(AtomicUsize::new(0));
    let hold = Arc::new(AtomicBool::new(false));
    let release = Arc::new(tokio::sync::Notify::new());
    let server = {
        let (arrived, hold, release) = (arrived.clone(), hold.clone(), release.clone());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (arrived, hold, release) = (arrived.clone(), hold.clone(), release.clone());
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = socket.read(&mut buf).await;
                    // Registered before `hold` is read: a release in between still wakes it.
                    let wait = release.notified();
                    if hold.load(Ordering::SeqCst) {
                        arrived.fetch_add(1, Ordering::SeqCst);
                        wait.await;
                    }
                    let _ = socket
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                });
            }
        })
    };
    let spec = format!(
        "  capabilities:\n    http: [{{ url: \"http://127.0.0.1:{port}/\", methods: [GET] }}]\n  limits: {LIMITS}\n"
    );
    let manifest = guests::write_manifest(
        ctx.work.path(),
        &format!("flight-{}", lang.name.to_lowercase()),
        &lang.conformance,
        &spec,
    );
    let runtime = new_runtime(config(ctx, &ctx.cache_dir))?;
    let agent = prepare(&runtime, &manifest)?;
    // One invocation first, answered at once, so first-use costs are not counted.
    let input = format!(r#"{{"op": "http", "url": "http://127.0.0.1:{port}/park"}}"#);
    let warm = agent.invoke(task(&input)).await;
    anyhow::ensure!(warm.result.is_ok(), "{}: {:?}", lang.name, warm.result);
    hold.store(true, Ordering::SeqCst);
    let before = rss()?;
    let calls: Vec<_> = (0..n)
        .map(|_| {
            let (agent, input) = (agent.clone(), input.clone());
            tokio::spawn(async move { agent.invoke(task(&input)).await })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while arrived.load(Ordering::SeqCst) < n {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{}: invocations never parked",
            lang.name
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let during = rss()?;
    hold.store(false, Ordering::SeqCst);
    release.notify_waiters();
    for call in calls {
        let inv = call.await?;
        anyhow::ensure!(inv.result.is_ok(), "{}: {:?}", lang.name, inv.result);
    }
    server.abort();
    Ok(during.saturating_sub(before) as f64 / n as f64 / (1 << 20) as f64)
}

fn task(input: &str) -> agent_host::TaskInput {
    agent_host::TaskInput {
        id: None,
        input: input.into(),
        metadata: vec![],
    }
}
