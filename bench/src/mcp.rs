//! MCP `tools/call` on `serve`'s `/mcp` against the plain HTTP invocation of
//! the same agent on the same server, at 1 and 32 connections, in one run.

use std::io::{Read as _, Write as _};

use anyhow::Context as _;

use crate::process::{self, run_wrk};
use crate::scenarios::{at_least, ratio, Ctx, Id, Outcome};

const WRK_MCP: &str = include_str!("../wrk-mcp.lua");
/// The goal: MCP at least this share of the HTTP API's invocations/s.
const GOAL: f64 = 0.7;

pub async fn scenario(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let server = process::Server::start(ctx, &[])?;
    let mcp = format!("{}/mcp", server.base());
    check_call(&mcp)?;
    if !ctx.quick {
        server.wrk(ctx, 32, 2)?; // warm-up: instance slots, connections, page cache
    }
    let (mut rows, mut ratios, mut goals) = (Vec::new(), Vec::new(), Vec::new());
    for connections in [1, 32] {
        let threads = if connections == 1 { 1 } else { 2 };
        let http = server.wrk(ctx, connections, threads)?;
        let tools = run_wrk(ctx, connections, threads, &mcp, WRK_MCP, &[])?;
        let share = tools.per_second / http.per_second;
        ratios.push(ratio(
            &format!("MCP / HTTP at {connections} (invocations/s)"),
            share,
        ));
        goals.push(at_least(
            &format!("MCP ≥ {GOAL}x of HTTP at {connections}"),
            share,
            GOAL,
            format!("{share:.2}x"),
        ));
        rows.push(tools.row(
            format!("MCP tools/call via `/mcp` + wrk, {connections} connections"),
            "measured",
        ));
        rows.push(http.row(
            format!("HTTP via `serve` + wrk, {connections} connections"),
            "baseline",
        ));
    }
    Ok(Outcome {
        id: Id::Mcp,
        title: "MCP (serve /mcp)",
        rows,
        ratios,
        goals,
    })
}

/// One call before measuring: wrk counts only HTTP statuses, so a tool error
/// (which is a 200) would otherwise pass for a result.
fn check_call(url: &str) -> anyhow::Result<()> {
    let addr = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .context("no address in the MCP URL")?;
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hello","arguments":{"name":"bench"}}}"#;
    let mut tcp = std::net::TcpStream::connect(addr)?;
    write!(
        tcp,
        "POST /mcp HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\nmcp-protocol-version: 2025-11-25\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    tcp.read_to_string(&mut answer)?;
    anyhow::ensure!(
        answer.starts_with("HTTP/1.1 200") && answer.contains("\"isError\":false"),
        "tools/call of hello did not succeed: {answer}"
    );
    Ok(())
}
