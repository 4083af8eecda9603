#!/usr/bin/env python3
"""Demo endpoints for the incident-responder agent, on loopback only.

Serves two small APIs, each on its own port:

* metrics (default 18090): ``GET /api/v1/query?query=<promql>`` answers like
  Prometheus' instant-query API with one sample valued "0.27".
* tickets (default 18091): ``POST /api/issues`` with a JSON object records the
  ticket and answers ``201 {"id": <n>}`` (n = 1, 2, ...); ``GET /api/issues``
  lists the recorded tickets.

Usage::

    endpoints.py [METRICS_PORT [TICKETS_PORT]]

A port of 0 picks a free one. Once both listen it prints one line
``ready metrics=<port> tickets=<port>`` and serves until interrupted.

"""

import argparse
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

METRIC_VALUE = "0.27"


class JsonHandler(BaseHTTPRequestHandler):
    """Shared plumbing: JSON replies, quiet logging."""

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):  # keep stdout for the "ready" line
        pass


class MetricsHandler(JsonHandler):
    def do_GET(self):
        url = urlsplit(self.path)
        if url.path != "/api/v1/query":
            return self.reply(404, {"status": "error", "errorType": "not_found", "error": url.path})
        query = parse_qs(url.query).get("query", [""])[0]
        if not query:
            return self.reply(400, {"status": "error", "errorType": "bad_data", "error": "missing query"})
        labels = dict(re.findall(r'(\w+)="([^"]*)"', query))
        sample = {"metric": labels, "value": [round(time.time(), 3), METRIC_VALUE]}
        self.reply(200, {"status": "success", "data": {"resultType": "vector", "result": [sample]}})


class TicketsHandler(JsonHandler):
    tickets = []
    lock = threading.Lock()

    def do_GET(self):
        if self.path != "/api/issues":
            return self.reply(404, {"error": "not found"})
        with self.lock:
            self.reply(200, list(self.tickets))

    def do_POST(self):
        if self.path != "/api/issues":
            return self.reply(404, {"error": "not found"})
        length = int(self.headers.get("content-length") or 0)
        try:
            ticket = json.loads(self.rfile.read(length))
        except ValueError as e:
            return self.reply(400, {"error": f"body is not JSON: {e}"})
        if not isinstance(ticket, dict):
            return self.reply(400, {"error": "body must be a JSON object"})
        with self.lock:
            ticket["id"] = len(self.tickets) + 1
            self.tickets.append(ticket)
        self.reply(201, {"id": ticket["id"]})


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("metrics_port", nargs="?", type=int, default=18090)
    parser.add_argument("tickets_port", nargs="?", type=int, default=18091)
    args = parser.parse_args()

    servers = [
        ThreadingHTTPServer(("127.0.0.1", args.metrics_port), MetricsHandler),
        ThreadingHTTPServer(("127.0.0.1", args.tickets_port), TicketsHandler),
    ]
    metrics_port, tickets_port = (s.server_address[1] for s in servers)
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"ready metrics={metrics_port} tickets={tickets_port}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
