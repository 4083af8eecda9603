"""A remote MCP server for the `mcp` capability's end-to-end tests, built
with the official Python SDK's server side (PyPI `mcp`, pinned in
scripts/install-tools.sh). Driven by tests/e2e/mcp_client.rs.

    server.py --log FILE [--token T] [--json-response] [--stateless]

Binds 127.0.0.1 on a free port and prints `PORT <n>` once it serves.
Every HTTP request it receives (method, path, headers, body) is appended
to FILE as one JSON line before anything else happens, so a test can tell
what reached the server. With --token, a request without
`Authorization: Bearer T` is answered 401.
"""

import argparse
import asyncio
import json
import logging
import socket

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel

parser = argparse.ArgumentParser()
parser.add_argument("--log", required=True)
parser.add_argument("--token")
parser.add_argument("--json-response", action="store_true")
parser.add_argument("--stateless", action="store_true")
args = parser.parse_args()

logging.basicConfig(level=logging.WARNING)
server = MCPServer("stand-in", log_level="WARNING")


class Hits(BaseModel):
    query: str
    hits: list[str]


@server.tool()
def search(query: str, limit: int = 3) -> Hits:
    """Searches the ticket tracker."""
    return Hits(query=query, hits=[f"{query}-{i}" for i in range(limit)])


@server.tool()
def create_ticket(title: str, priority: int) -> str:
    """Opens a ticket (never granted in the tests)."""
    return f"created {title} at priority {priority}"


@server.tool()
def fail(reason: str) -> str:
    """Always fails with `reason`."""
    raise ToolError(reason)


@server.tool()
async def slow(seconds: float) -> str:
    """Answers after `seconds`."""
    await asyncio.sleep(seconds)
    return "late"


@server.tool()
def huge(size: int) -> str:
    """Answers with `size` bytes of text."""
    return "x" * size


def record(entry):
    with open(args.log, "a") as f:
        f.write(json.dumps(entry) + "\n")


class Recorder:
    """ASGI middleware: logs each request whole, then checks the token."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        record({"method": scope["method"], "path": scope["path"], "headers": headers,
                "body": body.decode(errors="replace")})
        if args.token and headers.get("authorization") != f"Bearer {args.token}":
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"missing or wrong token"})
            return

        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


app = Recorder(server.streamable_http_app(json_response=args.json_response,
                                          stateless_http=args.stateless))
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen(128)
print(f"PORT {sock.getsockname()[1]}", flush=True)
config = uvicorn.Config(app, log_level="warning", lifespan="on")
asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))
