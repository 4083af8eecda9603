#!/usr/bin/env python3
"""Demo endpoints for the ops-assistant agent, on loopback only, standard
library only.

* model (default 18094): a stand-in for an OpenAI-compatible chat-completions
  API. ``POST /v1/chat/completions`` must carry ``Authorization: Bearer <key>``
  with the key read from ``--api-key-file``. With no tool result in the
  conversation yet it asks for the offered ``*service_status`` and
  ``*recent_deploys`` tools on the service the question names; once results
  are there it answers from them.
* MCP server (default 18095): a stand-in for a remote MCP server speaking
  streamable HTTP (JSON responses, no session) at ``POST /mcp``; every request
  must carry ``Authorization: Bearer <token>`` with the token read from
  ``--token-file``, else 401. It offers ``service_status``, ``recent_deploys``
  and ``restart_service``. Each request is printed on stdout as one line
  (``mcp <method> ...``); ``GET /calls`` returns the tool calls it served.

Usage::

    endpoints.py --api-key-file FILE --token-file FILE [MODEL_PORT [MCP_PORT]]

Once both listen it prints ``ready model=<port> mcp=<port>``.
"""

import argparse
import hmac
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SERVICES = {
    "checkout": {"status": "degraded", "p99Ms": 2400, "errorRate": 0.031},
    "payments": {"status": "ok", "p99Ms": 180, "errorRate": 0.001},
    "search": {"status": "ok", "p99Ms": 95, "errorRate": 0.0},
}
DEPLOYS = {
    "checkout": [{"id": "d-1234", "at": "10:02", "change": "payment client 3.2 with retries on every call"}],
    "payments": [],
    "search": [{"id": "d-1201", "at": "yesterday", "change": "index refresh"}],
}
SERVICE_SCHEMA = {
    "type": "object",
    "properties": {"service": {"type": "string", "enum": sorted(SERVICES)}},
    "required": ["service"],
}
TOOLS = [
    {"name": "service_status", "description": "Current status, p99 latency and error rate of a service.",
     "inputSchema": SERVICE_SCHEMA},
    {"name": "recent_deploys", "description": "Deploys of a service in the last 24 hours.",
     "inputSchema": SERVICE_SCHEMA},
    {"name": "restart_service", "description": "Restarts every instance of a service.",
     "inputSchema": SERVICE_SCHEMA},
]
lock = threading.Lock()
calls = []


class JsonHandler(BaseHTTPRequestHandler):
    def reply(self, status, body, content_type="application/json"):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def read_json(self):
        length = int(self.headers.get("content-length") or 0)
        try:
            return json.loads(self.rfile.read(length))
        except ValueError:
            return None

    def authorized(self, secret):
        sent = self.headers.get("authorization", "")
        return hmac.compare_digest(sent.encode(), f"Bearer {secret}".encode())

    def log_message(self, fmt, *args):
        pass


def service_of(text):
    for name in SERVICES:
        if re.search(rf"\b{name}\b", text, re.IGNORECASE):
            return name
    return "checkout"


class ModelHandler(JsonHandler):
    api_key = ""

    def do_POST(self):
        if self.path != "/v1/chat/completions":
            return self.reply(404, {"error": {"message": f"no route {self.path}"}})
        if not self.authorized(self.api_key):
            return self.reply(401, {"error": {"message": "invalid API key"}})
        request = self.read_json() or {}
        messages = request.get("messages") or []
        offered = [t.get("function", {}).get("name", "") for t in request.get("tools") or []]
        question = next((m.get("content", "") for m in messages if m.get("role") == "user"), "")
        results = [m.get("content", "") for m in messages if m.get("role") == "tool"]
        service = service_of(question)
        if not results:
            wanted = [n for n in offered if n.endswith("service_status") or n.endswith("recent_deploys")]
            message = {"role": "assistant", "content": "", "tool_calls": [
                {"id": f"call_{i}", "type": "function",
                 "function": {"name": name, "arguments": json.dumps({"service": service})}}
                for i, name in enumerate(wanted)]}
            finish = "tool_calls" if wanted else "stop"
            if not wanted:
                message["content"] = "I have no tools to look that up."
        else:
            facts = []
            for text in results:
                try:
                    value = json.loads(text)
                except ValueError:
                    facts.append(text)
                    continue
                if "p99Ms" in value:
                    facts.append(f"{service} is {value['status']} (p99 {value['p99Ms']} ms, "
                                 f"{value['errorRate']:.1%} errors)")
                for deploy in value.get("deploys", []):
                    facts.append(f"deploy {deploy['id']} at {deploy['at']} shipped {deploy['change']}")
            answer = "; ".join(facts) or "nothing found"
            message = {"role": "assistant", "content": f"{answer[0].upper()}{answer[1:]}."}
            finish = "stop"
        used = sum(len(json.dumps(m)) for m in messages) // 4
        self.reply(200, {"choices": [{"message": message, "finish_reason": finish}],
                         "usage": {"prompt_tokens": used, "completion_tokens": 30}})


class McpHandler(JsonHandler):
    token = ""

    def do_GET(self):
        if self.path == "/calls":
            with lock:
                return self.reply(200, list(calls))
        self.reply(405, None)

    def do_POST(self):
        if self.path != "/mcp":
            return self.reply(404, None)
        if not self.authorized(self.token):
            print("mcp refused: missing or wrong token", flush=True)
            return self.reply(401, {"error": "missing or wrong token"})
        message = self.read_json()
        if not isinstance(message, dict):
            return self.reply(400, {"jsonrpc": "2.0", "id": None,
                                    "error": {"code": -32700, "message": "parse error"}})
        method, params = message.get("method", ""), message.get("params") or {}
        print(f"mcp {method} {json.dumps(params)[:120]}", flush=True)
        if "id" not in message:
            return self.reply(202, None)
        rid = message["id"]

        def result(value):
            self.reply(200, {"jsonrpc": "2.0", "id": rid, "result": value})

        def error(code, text):
            self.reply(200, {"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": text}})

        if method == "initialize":
            return result({"protocolVersion": params.get("protocolVersion", "2025-06-18"),
                           "capabilities": {"tools": {}},
                           "serverInfo": {"name": "status-stand-in", "version": "1.0"}})
        if method == "tools/list":
            return result({"tools": TOOLS})
        if method == "tools/call":
            name, args = params.get("name"), params.get("arguments") or {}
            service = args.get("service")
            if service not in SERVICES:
                return error(-32602, f"unknown service {service!r}")
            with lock:
                calls.append({"tool": name, "arguments": args})
            if name == "service_status":
                value = {"service": service, **SERVICES[service]}
            elif name == "recent_deploys":
                value = {"service": service, "deploys": DEPLOYS[service]}
            elif name == "restart_service":
                value = {"service": service, "restarted": True}
            else:
                return error(-32602, f"unknown tool {name!r}")
            return result({"content": [{"type": "text", "text": json.dumps(value)}],
                           "structuredContent": value, "isError": False})
        error(-32601, f"method {method} not found")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--api-key-file", required=True)
    parser.add_argument("--token-file", required=True)
    parser.add_argument("model_port", nargs="?", type=int, default=18094)
    parser.add_argument("mcp_port", nargs="?", type=int, default=18095)
    args = parser.parse_args()
    ModelHandler.api_key = open(args.api_key_file).read().strip()
    McpHandler.token = open(args.token_file).read().strip()
    model = ThreadingHTTPServer(("127.0.0.1", args.model_port), ModelHandler)
    mcp = ThreadingHTTPServer(("127.0.0.1", args.mcp_port), McpHandler)
    threading.Thread(target=mcp.serve_forever, daemon=True).start()
    print(f"ready model={model.server_address[1]} mcp={mcp.server_address[1]}", flush=True)
    model.serve_forever()


if __name__ == "__main__":
    main()
