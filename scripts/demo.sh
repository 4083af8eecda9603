#!/usr/bin/env bash
# The demo: starts the incident responder's local endpoints (metrics + tickets)
# on loopback, then runs both example agents under their manifests.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${AGENT_HOST_BIN:-target/debug/agent-host}
export AGENT_HOST_CACHE_DIR=${AGENT_HOST_CACHE_DIR:-$PWD/target/agent-host-cache}
export AGENT_HOST_LOG=${AGENT_HOST_LOG:-warn,agent=info}

ready=$(mktemp)
python3 examples/incident-responder/endpoints.py 18090 18091 >"$ready" 2>&1 &
endpoints=$!
trap 'kill $endpoints 2>/dev/null || true; rm -f "$ready"' EXIT
for _ in $(seq 50); do
  grep -q ready "$ready" && break
  kill -0 $endpoints 2>/dev/null || { cat "$ready"; echo "endpoints failed to start" >&2; exit 1; }
  sleep 0.1
done

section() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

section "agent-host check -f examples/incident-responder/agent.yaml"
"$BIN" check -f examples/incident-responder/agent.yaml

section "hello: echoes and logs"
"$BIN" run -f examples/hello/agent.yaml --input '{"name": "platform team"}'

section "incident-responder: metrics query, runbook, ticket"
"$BIN" run -f examples/incident-responder/agent.yaml --input @examples/incident-responder/alert.json

section "tickets filed on the local tickets API"
python3 -c 'import json,urllib.request; print(json.dumps(json.load(urllib.request.urlopen("http://127.0.0.1:18091/api/issues")), indent=2))'

section "serve mode: both agents behind the HTTP API, with an audit log"
audit=target/demo-audit.jsonl
rm -f "$audit"
serve_out=$(mktemp)
"$BIN" serve -f examples/hello/agent.yaml -f examples/incident-responder/agent.yaml \
  --listen 127.0.0.1:0 --audit-log "$audit" --log-format text >"$serve_out" 2>/dev/null &
server=$!
trap 'kill $endpoints $server 2>/dev/null || true; rm -f "$ready" "$serve_out"' EXIT
for _ in $(seq 100); do grep -q listening "$serve_out" && break; sleep 0.1; done
base=$(sed -n 's/^listening on //p' "$serve_out")
echo "listening on $base"
BASE="$base" python3 - <<'PY'
import json, os, time, urllib.request, urllib.error
base = os.environ["BASE"]
def call(method, path, body=None, headers=None):
    req = urllib.request.Request(base + path, method=method, data=body and body.encode(),
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")
def show(label, status, body):
    print(f"{label}\n  -> {status} {json.dumps(body)[:300]}")
show("POST /v1/agents/hello/invocations {\"name\":\"server\"}", *call("POST", "/v1/agents/hello/invocations", '{"name":"server"}'))
status, accepted = call("POST", "/v1/agents/incident-responder/invocations?async=true",
                        open("examples/incident-responder/alert.json").read())
show("POST /v1/agents/incident-responder/invocations?async=true <alert.json>", status, accepted)
for _ in range(100):
    status, body = call("GET", f"/v1/invocations/{accepted['id']}")
    if body["state"] not in ("queued", "running"):
        break
    time.sleep(0.05)
print(f"GET /v1/invocations/{accepted['id']}\n  -> {status} state={body['state']} "
      f"output={json.dumps(body.get('output'))[:200]} httpRequests={body['usage']['httpRequests']}")
key = {"Idempotency-Key": "demo-1"}
first = call("POST", "/v1/agents/hello/invocations", '{"name":"once"}', key)
again = call("POST", "/v1/agents/hello/invocations", '{"name":"once"}', key)
print(f"same Idempotency-Key twice -> same invocation: {first[1]['id'] == again[1]['id']}")
show("same key, different body", *call("POST", "/v1/agents/hello/invocations", '{"name":"twice"}', key))
show("unknown agent", *call("POST", "/v1/agents/nobody/invocations", "{}"))
with urllib.request.urlopen(base + "/metrics") as r:
    print("GET /metrics (invocation counters):")
    for line in r.read().decode().splitlines():
        if line.startswith("agent_host_invocations_total"):
            print("  " + line)
PY
kill -TERM $server
if wait $server; then echo "server drained and exited 0 after SIGTERM"; else echo "server exited with $?" >&2; exit 1; fi

section "agent-host audit verify $audit"
grep -c . "$audit" | xargs echo "records:"
grep '"kind":"capability"' "$audit" | head -3
"$BIN" audit verify "$audit"
