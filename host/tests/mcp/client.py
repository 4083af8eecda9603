"""An MCP client session against agent-host, with the official Python SDK
(PyPI `mcp`, pinned in scripts/install-tools.sh). Driven by host/tests/mcp.rs.

    client.py http  <url>   <version> <audit-log>
    client.py stdio <audit-log> <version> <agent-host> <args>...
    client.py change <manifest> <version> <agent-host> <args>...   (list changes)

<version> pins the protocol: `legacy` is the initialize handshake (the
SDK's latest handshake version, 2025-11-25), or a modern version such as
`2026-07-28`. Prints one JSON object: what the server answered to each step.
"""

import json
import os
import sys
import time

import anyio
from mcp import Client, StdioServerParameters


def dump(result):
    return result.model_dump(by_alias=True, mode="json", exclude_none=True)


async def wait_for_end(audit, agent, within=15.0):
    """The audit's invocation.end record of `agent`, polled (the log is written behind)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with open(audit) as f:
                for line in f:
                    record = json.loads(line)
                    if record.get("kind") == "invocation.end" and record.get("agent") == agent:
                        return record
        except FileNotFoundError:
            pass
        await anyio.sleep(0.05)
    return None


async def session(server, mode, audit):
    report = {}
    async with Client(server, mode=mode) as client:
        report["protocolVersion"] = client.protocol_version
        tools = await client.list_tools()
        report["tools"] = [dump(t) for t in tools.tools]
        report["call"] = dump(await client.call_tool("echo", {"message": "hi", "count": 2}))
        report["invalid"] = dump(await client.call_tool("echo", {"message": "hi", "count": "two"}))
        report["breach"] = dump(await client.call_tool("spinner", {}))
        report["unknown"] = None
        try:
            await client.call_tool("no-such-agent", {})
        except Exception as e:  # the SDK raises the JSON-RPC error
            report["unknown"] = str(e)
        # Stateless HTTP at a 2025 version has no way to cancel but closing the
        # connection: its notifications/cancelled may reach any replica.
        if not (isinstance(server, str) and mode == "legacy"):
            progress = []

            async def on_progress(value, total, message):
                progress.append({"progress": value, "message": message})

            started = time.monotonic()
            with anyio.move_on_after(2.5):
                await client.call_tool("sleeper", {}, progress_callback=on_progress)
            report["cancelledAfter"] = time.monotonic() - started
            report["progress"] = progress
            report["sleeperEnd"] = await wait_for_end(audit, "sleeper")
    return report


async def changes(server, mode, manifest):
    """Rewrites `manifest` twice (a new description, then an invalid spec) and
    reports the tools listed after each notifications/tools/list_changed."""
    changed = anyio.Event()
    box = {"event": changed}

    async def on_message(message):
        m = getattr(message, "root", message)
        if getattr(m, "method", None) == "notifications/tools/list_changed":
            box["event"].set()

    async def listed():
        return {t.name: t.description for t in (await client.list_tools()).tools}

    report = {}
    original = open(manifest).read()
    async with Client(server, mode=mode, message_handler=on_message) as client:
        report["capabilities"] = client.session.initialize_result.capabilities.model_dump(
            by_alias=True, mode="json", exclude_none=True
        )
        report["before"] = await listed()
        for step, text in [
            ("edited", original.replace("Echoes its arguments back.", "Echoes, second edition.")),
            ("broken", original.replace("type: object", "type: objekt", 1)),
            ("restored", original),
        ]:
            box["event"] = anyio.Event()
            with open(manifest, "w") as f:
                f.write(text)
            with anyio.fail_after(20):
                await box["event"].wait()
            report[step] = await listed()
    return report


def main():
    kind = sys.argv[1]
    if kind == "change":
        manifest, mode, command, args = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
        env = {k: v for k, v in os.environ.items() if k.startswith("AGENT_HOST_")}
        server = StdioServerParameters(command=command, args=args, env=env)
        print(json.dumps(anyio.run(changes, server, mode, manifest)))
        return
    if kind == "http":
        server, mode, audit = sys.argv[2], sys.argv[3], sys.argv[4]
    else:
        audit, mode, command, args = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
        # The host's settings reach it; the SDK passes only a safe default set otherwise.
        env = {k: v for k, v in os.environ.items() if k.startswith("AGENT_HOST_")}
        server = StdioServerParameters(command=command, args=args, env=env)
    report = anyio.run(session, server, mode, audit)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
