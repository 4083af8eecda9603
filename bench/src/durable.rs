//! The durable store (issue 14), through the HTTP API as callers use it:
//! async accept-to-completion with two `serve` replicas on one Redis, and
//! synchronous invocations carrying an `Idempotency-Key` on Redis and on the
//! embedded store — each against today's in-memory synchronous path at 32
//! connections, measured in the same scenario.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use agent_host_test_guests::{self as guests, RedisServer};
use anyhow::Context as _;

use crate::process::{run_wrk, Server};
use crate::scenarios::{at_least, ratio, Ctx, Goal, Id, Outcome, Row};

/// wrk's request with a fresh `Idempotency-Key` each.
const KEYED_SCRIPT: &str = include_str!("../wrk-keyed.lua");
/// Redis as `deploy/` runs it: append-only, fsync every second.
const REDIS_ARGS: [&str; 4] = ["--appendonly", "yes", "--appendfsync", "everysec"];
/// The agent: hello, with a queue bound (all replicas together) that holds a round.
const AGENT: &str = "hello-durable";
/// Client connections, as in the HTTP scenario's c=32.
const CONNECTIONS: usize = 32;

fn manifest(ctx: &Ctx) -> PathBuf {
    ctx.manifest(
        AGENT,
        guests::HELLO,
        "{ fuel: 500000000, memory: 32Mi, timeout: 5s, maxOutputBytes: 64Ki, maxQueue: 10000 }",
    )
}

/// `serve` of the agent with its own state dir, on `redis` when given.
fn serve(ctx: &Ctx, redis: Option<&RedisServer>, name: &str) -> anyhow::Result<Server> {
    let state = ctx.work.path().join(format!("state-{name}"));
    let mut extra: Vec<OsString> = vec!["--state-dir".into(), state.into()];
    if let Some(redis) = redis {
        extra.extend(["--store".into(), redis.url.clone().into()]);
    }
    let extra: Vec<&std::ffi::OsStr> = extra.iter().map(|a| a.as_os_str()).collect();
    Server::start_agent(ctx, &manifest(ctx), AGENT, &extra)
}

/// Async invocations accepted by two replicas on one Redis (32 client
/// connections alternating between them) until every one has completed.
pub async fn async_two_replicas(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let redis = RedisServer::start_with(&REDIS_ARGS);
    let replicas = [
        serve(ctx, Some(&redis), "async-a")?,
        serve(ctx, Some(&redis), "async-b")?,
    ];
    let n = ctx.n(8_000, 40);
    if !ctx.quick {
        accept_to_completion(&replicas, n)?; // warm-up: instance slots, connections
    }
    let (mut done, mut busy, mut last) = (0, 0.0, Vec::new());
    for _ in 0..ctx.n(3, 1) {
        let (accepted, secs) = accept_to_completion(&replicas, n)?;
        done += accepted.len();
        busy += secs;
        last = accepted;
    }
    let per_second = done as f64 / busy;
    let answered = answered_elsewhere(&replicas, &last)?;
    drop(replicas);
    drop(redis);

    let plain = serve(ctx, None, "async-plain")?;
    let sync = plain.wrk(ctx, CONNECTIONS, 2)?;
    drop(plain);
    let measured = Row::value(
        format!("async accept → completed, 2 replicas on one Redis, {CONNECTIONS} connections"),
        "measured",
        per_second,
        "invocations/s",
    )
    .throughput(per_second);
    let versus = per_second / sync.per_second;
    Ok(Outcome {
        id: Id::DurableAsync,
        title: "Durable async, two replicas",
        ratios: vec![ratio(
            "async completed (2 replicas, Redis) / in-memory sync at 32 (invocations/s)",
            versus,
        )],
        goals: vec![
            at_least(
                "≥ 5,000 completed invocations/s with two replicas",
                per_second,
                5_000.0,
                format!("{per_second:.0}/s"),
            ),
            Goal {
                goal: "every invocation is answered by the replica that did not accept it".into(),
                figure: format!("{answered} of {}", last.len()),
                met: answered == last.len(),
            },
        ],
        rows: vec![
            measured,
            sync.row(
                format!("in-memory sync via `serve` + wrk, {CONNECTIONS} connections"),
                "baseline",
            ),
        ],
    })
}

/// Synchronous invocations each with a new `Idempotency-Key` on Redis and
/// on the embedded store, and unkeyed ones with `--store redis` (the path
/// that must stay as it is), against unkeyed in-memory sync.
pub async fn keyed_sync(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let plain = serve(ctx, None, "keyed-plain")?;
    let baseline = plain.wrk(ctx, CONNECTIONS, 2)?;
    drop(plain);

    let redis = RedisServer::start_with(&REDIS_ARGS);
    let on_redis = serve(ctx, Some(&redis), "keyed-redis")?;
    let keyed = |server: &Server, tag: &str| {
        run_wrk(
            ctx,
            CONNECTIONS,
            2,
            server.url(),
            KEYED_SCRIPT,
            &[format!("{nonce}{tag}")],
        )
    };
    let redis_keyed = keyed(&on_redis, "r")?;
    let recorded = redis_keys(&redis)?;
    let redis_plain = on_redis.wrk(ctx, CONNECTIONS, 2)?;
    drop(on_redis);
    drop(redis);
    let embedded = serve(ctx, None, "keyed-embedded")?;
    let embedded_keyed = keyed(&embedded, "e")?;
    drop(embedded);

    let of = |w: &crate::process::Wrk| w.per_second / baseline.per_second;
    let (on_redis, on_embedded, unkeyed) =
        (of(&redis_keyed), of(&embedded_keyed), of(&redis_plain));
    let c = CONNECTIONS;
    Ok(Outcome {
        id: Id::DurableKeyed,
        title: "Keyed sync on the durable store",
        ratios: vec![
            ratio(
                "keyed sync on Redis / in-memory sync (invocations/s)",
                on_redis,
            ),
            ratio(
                "keyed sync on the embedded store / in-memory sync (invocations/s)",
                on_embedded,
            ),
            ratio(
                "unkeyed sync with --store redis / in-memory sync (invocations/s)",
                unkeyed,
            ),
        ],
        goals: vec![
            at_least(
                "keyed sync on Redis ≥ 0.5x in-memory sync at 32",
                on_redis,
                0.5,
                format!("{on_redis:.2}x"),
            ),
            at_least(
                "unkeyed sync unchanged with --store redis (≥ 0.9x)",
                unkeyed,
                0.9,
                format!("{unkeyed:.2}x"),
            ),
            Goal {
                goal: "keyed invocations are recorded in Redis".into(),
                figure: format!("{recorded} keys"),
                met: recorded > 0,
            },
        ],
        rows: vec![
            redis_keyed.row(
                format!("keyed sync, Redis (append-only), {c} connections"),
                "measured",
            ),
            embedded_keyed.row(
                format!("keyed sync, embedded store, {c} connections"),
                "measured",
            ),
            redis_plain.row(
                format!("unkeyed sync with --store redis, {c} connections"),
                "measured",
            ),
            baseline.row(
                format!("unkeyed in-memory sync, {c} connections"),
                "baseline",
            ),
        ],
    })
}

/// Submits `n` async invocations over [`CONNECTIONS`] keep-alive connections
/// spread over `replicas`, then waits until the replicas together report `n`
/// more successful invocations. The accepted ids (with the replica that
/// accepted each) and the seconds from the first request to the last completion.
fn accept_to_completion(
    replicas: &[Server],
    n: usize,
) -> anyhow::Result<(Vec<(String, usize)>, f64)> {
    let before = succeeded(replicas)?;
    let path = format!("/v1/agents/{AGENT}/invocations?async=true");
    let started = Instant::now();
    let accepted = std::thread::scope(|s| {
        let workers: Vec<_> = (0..CONNECTIONS)
            .map(|i| {
                let (replica, path) = (i % replicas.len(), &path);
                let share = n / CONNECTIONS + usize::from(i < n % CONNECTIONS);
                let base = replicas[replica].base();
                s.spawn(move || -> anyhow::Result<Vec<(String, usize)>> {
                    let mut client = Client::connect(base)?;
                    (0..share)
                        .map(|_| {
                            let (status, body) =
                                client.call("POST", path, r#"{"name":"bench"}"#)?;
                            anyhow::ensure!(status == 202, "async POST answered {status}: {body}");
                            let id = serde_json::from_str::<serde_json::Value>(&body)?["id"]
                                .as_str()
                                .with_context(|| format!("no id in {body}"))?
                                .to_string();
                            Ok((id, replica))
                        })
                        .collect()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("client thread"))
            .collect::<anyhow::Result<Vec<_>>>()
    })?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = succeeded(replicas)? - before;
        if done >= n as u64 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {done} of {n} accepted invocations completed within 120 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok((accepted.concat(), started.elapsed().as_secs_f64()))
}

/// How many of `accepted` the other replica reports `succeeded` (any replica
/// answers for durable work); each must have succeeded where it was accepted.
fn answered_elsewhere(replicas: &[Server], accepted: &[(String, usize)]) -> anyhow::Result<usize> {
    let mut clients = replicas
        .iter()
        .map(|r| Client::connect(r.base()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut answered = 0;
    for (id, at) in accepted {
        let state = |client: &mut Client| -> anyhow::Result<Option<String>> {
            let (status, body) = client.call("GET", &format!("/v1/invocations/{id}"), "")?;
            if status != 200 {
                return Ok(None);
            }
            let body: serde_json::Value = serde_json::from_str(&body)?;
            Ok(body["state"].as_str().map(str::to_string))
        };
        let home = state(&mut clients[*at])?;
        anyhow::ensure!(
            home.as_deref() == Some("succeeded"),
            "invocation {id} is {home:?} on the replica that accepted it, not succeeded"
        );
        let other = (at + 1) % clients.len();
        if state(&mut clients[other])?.as_deref() == Some("succeeded") {
            answered += 1;
        }
    }
    Ok(answered)
}

/// `agent_host_invocations_total{agent=AGENT,outcome="ok"}`, all replicas.
fn succeeded(replicas: &[Server]) -> anyhow::Result<u64> {
    let mut total = 0;
    for r in replicas {
        let (status, text) = Client::connect(r.base())?.call("GET", "/metrics", "")?;
        anyhow::ensure!(status == 200, "/metrics answered {status}");
        total += text
            .lines()
            .filter(|l| {
                l.starts_with("agent_host_invocations_total{")
                    && l.contains(&format!("agent=\"{AGENT}\""))
                    && l.contains("outcome=\"ok\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64;
    }
    Ok(total)
}

/// Keys in the Redis database (`redis-cli dbsize`).
fn redis_keys(redis: &RedisServer) -> anyhow::Result<u64> {
    let port = redis
        .url
        .rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .context("redis url without a port")?;
    let out = std::process::Command::new("redis-cli")
        .args(["-p", port, "dbsize"])
        .output()
        .context("redis-cli (Debian package redis-server)")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0))
}

/// A minimal HTTP/1.1 keep-alive client: bodies with `content-length` only
/// (what `serve` sends).
struct Client {
    reader: BufReader<TcpStream>,
    host: String,
}

impl Client {
    fn connect(base: &str) -> anyhow::Result<Self> {
        let host = base
            .strip_prefix("http://")
            .with_context(|| format!("not an http:// base: {base}"))?
            .to_string();
        let stream = TcpStream::connect(&host).with_context(|| format!("connecting to {host}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        Ok(Self {
            reader: BufReader::new(stream),
            host,
        })
    }

    /// Sends one request; the status and the body as text.
    fn call(&mut self, method: &str, path: &str, body: &str) -> anyhow::Result<(u16, String)> {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        );
        let stream = self.reader.get_mut();
        stream.write_all(head.as_bytes())?;
        stream.write_all(body.as_bytes())?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {line:?}"))?;
        let mut length = 0;
        loop {
            line.clear();
            anyhow::ensure!(self.reader.read_line(&mut line)? > 0, "connection closed");
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((k, v)) = header.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse()?;
                } else if k.eq_ignore_ascii_case("transfer-encoding") {
                    anyhow::bail!("chunked responses are not read by this client");
                }
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}
