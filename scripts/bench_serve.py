#!/usr/bin/env python3
"""Serve-mode benchmark: `agent-host serve` with the hello agent loaded by wrk
on loopback, next to the same agent invoked in-process (`agent-host bench`)
in the same run, so the cost of the HTTP layer shows as a ratio.

Usage: scripts/bench_serve.py [--duration 10] [--bin target/release/agent-host]
Prints a table and writes the figures to target/bench-serve.json.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANIFEST = os.path.join(ROOT, "examples/hello/agent.yaml")
LUA = os.path.join(ROOT, "scripts/wrk-invoke.lua")
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(url, connections, threads, duration):
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", "-s", LUA, url],
        check=True, capture_output=True, text=True,
    ).stdout
    if "Non-2xx or 3xx responses" in out or "Socket errors" in out:
        sys.exit(f"wrk saw failed requests:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    pct = {}
    for q, value, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
        pct[q] = float(value) * UNITS[unit]
    return {"rps": rps, "p50_ms": pct["50"], "p99_ms": pct["99"], "raw": out}


def in_process(binary, concurrency, iterations, env):
    out = subprocess.run(
        [binary, "bench", "-f", MANIFEST, "--input", '{"name":"bench"}', "--allocator", "pooling",
         "--concurrency", str(concurrency), "--iterations", str(iterations), "--warmup", "1000", "--json"],
        check=True, capture_output=True, text=True, env=env,
    ).stdout
    s = json.loads(out)["scenarios"][0]
    return {"rps": s["invocations_per_sec"], "p50_ms": s["median_us"] / 1e3, "p99_ms": s["p99_us"] / 1e3}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/agent-host"))
    ap.add_argument("--audit", action="store_true", help="serve with the audit log on")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found: install Debian's wrk package (make setup does)")

    env = dict(os.environ)
    env.setdefault("AGENT_HOST_CACHE_DIR", os.path.join(ROOT, "target/agent-host-cache"))
    env.setdefault("AGENT_HOST_LOG", "warn")
    cmd = [args.bin, "serve", "-f", MANIFEST, "--listen", "127.0.0.1:0"]
    audit_path = os.path.join(ROOT, "target/bench-audit.jsonl")
    if args.audit:
        if os.path.exists(audit_path):
            os.remove(audit_path)
        cmd += ["--audit-log", audit_path]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = server.stdout.readline().strip()
        if not line.startswith("listening on "):
            sys.exit(f"server did not start: {line!r}")
        base = line.removeprefix("listening on ")
        url = f"{base}/v1/agents/hello/invocations"
        wrk(url, 32, 2, 2)  # warm-up: instance slots, page cache, branch predictors
        rows = []
        for connections, threads, iterations in [(1, 1, 20000), (32, 2, 60000)]:
            http = wrk(url, connections, threads, args.duration)
            local = in_process(args.bin, connections, iterations, env)
            rows.append({"concurrency": connections, "http": {k: v for k, v in http.items() if k != "raw"},
                         "in_process": local,
                         "throughput_ratio": http["rps"] / local["rps"],
                         "p50_ratio": http["p50_ms"] / local["p50_ms"]})
        with urllib.request.urlopen(f"{base}/metrics") as r:
            metrics = r.read().decode()
        served = sum(float(l.rsplit(" ", 1)[1]) for l in metrics.splitlines()
                     if l.startswith('agent_host_invocations_total{agent="hello",outcome="ok"}'))
    finally:
        server.terminate()
        server.wait(timeout=30)

    print(f"hello over HTTP (wrk, {args.duration}s per row) vs in-process (agent-host bench), "
          f"{os.cpu_count()} cores, audit log {'on' if args.audit else 'off'}, log level {env['AGENT_HOST_LOG']}")
    print(f"{'conc':>4} | {'HTTP inv/s':>10} {'p50 ms':>7} {'p99 ms':>7} | {'in-proc inv/s':>13} {'p50 ms':>7} {'p99 ms':>7} | {'HTTP/in-proc inv/s':>18}")
    for r in rows:
        h, l = r["http"], r["in_process"]
        print(f"{r['concurrency']:>4} | {h['rps']:>10.0f} {h['p50_ms']:>7.3f} {h['p99_ms']:>7.3f} | "
              f"{l['rps']:>13.0f} {l['p50_ms']:>7.3f} {l['p99_ms']:>7.3f} | {r['throughput_ratio']:>17.2f}x")
    print(f"server counted {served:.0f} successful invocations")
    out = os.path.join(ROOT, "target/bench-serve.json")
    with open(out, "w") as f:
        json.dump({"rows": rows, "audit": args.audit, "served": served}, f, indent=2)
    print(f"figures written to {out}")


if __name__ == "__main__":
    main()
