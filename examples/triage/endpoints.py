#!/usr/bin/env python3
"""Demo endpoints for the triage agent, on loopback only.

Serves two small APIs, each on its own port (the tickets API the agent also
uses is the incident responder's, ``examples/incident-responder/endpoints.py``):

* model (default 18092): a stand-in for an OpenAI-compatible chat-completions
  API. ``POST /v1/chat/completions`` must carry ``Authorization: Bearer <key>``
  with the key read from ``--api-key-file`` (the secret the host mounts for
  the agent), else 401. It answers with one tool call: ``page_oncall`` when
  the last user message reads like an outage (down, outage, unreachable,
  5xx), ``create_ticket`` otherwise, each only if the request offers that
  tool. ``usage`` counts about 4 bytes of text per token, as a tokenizer
  does for English. Each completion is also printed as one line on stdout
  (``completion <n>: ...``); ``GET /v1/requests`` returns how many it served.
* pager (default 18093): ``POST /page`` with a JSON object records the page
  and answers ``200 {"paged": <n>}``; ``GET /page`` lists the recorded pages.

Usage::

    endpoints.py --api-key-file FILE [MODEL_PORT [PAGER_PORT]]

A port of 0 picks a free one. Once both listen it prints one line
``ready model=<port> pager=<port>`` and serves until interrupted.

"""

import argparse
import hmac
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

OUTAGE = re.compile(r"\b(down|outage|unreachable|5\d\d)\b", re.IGNORECASE)
BYTES_PER_TOKEN = 4


class JsonHandler(BaseHTTPRequestHandler):
    """Shared plumbing: JSON bodies in and out, quiet logging."""

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def read_json(self):
        length = int(self.headers.get("content-length") or 0)
        try:
            return json.loads(self.rfile.read(length))
        except ValueError as e:
            self.reply(400, {"error": f"body is not JSON: {e}"})
            return None

    def log_message(self, fmt, *args):  # keep stdout for the "ready" line
        pass


def tokens(value):
    return -(-len(json.dumps(value)) // BYTES_PER_TOKEN)


def choose_tool(request):
    """The tool call for a request, or None when no fitting tool is offered."""
    offered = {t.get("function", {}).get("name") for t in request.get("tools") or []}
    users = [m for m in request.get("messages") or [] if m.get("role") == "user"]
    text = users[-1].get("content", "") if users else ""
    if OUTAGE.search(text) and "page_oncall" in offered:
        return "page_oncall", {"reason": text}
    if "create_ticket" in offered:
        return "create_ticket", {"title": text[:120], "severity": "medium"}
    return None


class ModelHandler(JsonHandler):
    api_key = ""
    served = 0
    lock = threading.Lock()

    def do_GET(self):
        if self.path != "/v1/requests":
            return self.reply(404, {"error": {"message": f"no route {self.path}"}})
        with self.lock:
            self.reply(200, {"completions": self.served})

    def do_POST(self):
        if self.path != "/v1/chat/completions":
            return self.reply(404, {"error": {"message": f"no route {self.path}"}})
        sent = self.headers.get("authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {self.api_key}".encode()):
            return self.reply(401, {"error": {"message": "invalid API key", "type": "invalid_request_error"}})
        request = self.read_json()
        if request is None:
            return
        if not isinstance(request, dict) or not request.get("messages"):
            return self.reply(400, {"error": {"message": "messages are required"}})
        chosen = choose_tool(request)
        if chosen:
            name, arguments = chosen
            message = {
                "role": "assistant",
                "content": "",
                "tool_calls": [{
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(arguments)},
                }],
            }
            finish = "tool_calls"
        else:
            message = {"role": "assistant", "content": "No fitting tool was offered."}
            finish = "stop"
        prompt = tokens(request["messages"]) + tokens(request.get("tools") or [])
        offered = ", ".join(t.get("function", {}).get("name", "?") for t in request.get("tools") or [])
        with self.lock:
            ModelHandler.served += 1
            served = ModelHandler.served
        self.reply(200, {
            "id": "chatcmpl-demo",
            "object": "chat.completion",
            "model": request.get("model", ""),
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": tokens(message),
                "total_tokens": prompt + tokens(message),
            },
        })
        # After the reply, so a closed stdout cannot cost the caller its answer.
        print(f"completion {served}: model {request.get('model')}, API key accepted, "
              f"{len(request['messages'])} messages, tools offered: {offered or 'none'}; "
              f"answered {chosen[0] if chosen else 'without a tool call'}", flush=True)


class PagerHandler(JsonHandler):
    pages = []
    lock = threading.Lock()

    def do_GET(self):
        if self.path != "/page":
            return self.reply(404, {"error": "not found"})
        with self.lock:
            self.reply(200, list(self.pages))

    def do_POST(self):
        if self.path != "/page":
            return self.reply(404, {"error": "not found"})
        page = self.read_json()
        if page is None:
            return
        if not isinstance(page, dict):
            return self.reply(400, {"error": "body must be a JSON object"})
        with self.lock:
            self.pages.append(page)
            self.reply(200, {"paged": len(self.pages)})


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api-key-file", required=True,
                        help="file holding the API key the model stand-in accepts")
    parser.add_argument("model_port", nargs="?", type=int, default=18092)
    parser.add_argument("pager_port", nargs="?", type=int, default=18093)
    args = parser.parse_args()
    with open(args.api_key_file, encoding="utf-8") as f:
        ModelHandler.api_key = f.read().rstrip("\r\n")

    servers = [
        ThreadingHTTPServer(("127.0.0.1", args.model_port), ModelHandler),
        ThreadingHTTPServer(("127.0.0.1", args.pager_port), PagerHandler),
    ]
    model_port, pager_port = (s.server_address[1] for s in servers)
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"ready model={model_port} pager={pager_port}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
