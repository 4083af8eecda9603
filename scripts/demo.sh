#!/usr/bin/env bash
# The demo: starts the example agents' local endpoints on loopback (metrics +
# tickets for the incident responder; a model stand-in + pager for triage; a
# model and an MCP server stand-in for the ops assistant), then runs the
# example agents under their manifests: in Rust, and hello and triage in
# Python and hello in TypeScript.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v python3 >/dev/null || {
  echo "the demo needs python3 (its endpoints use the standard library only)" >&2
  exit 1
}

BIN=${AGENT_HOST_BIN:-target/debug/agent-host}
export AGENT_HOST_CACHE_DIR=${AGENT_HOST_CACHE_DIR:-$PWD/target/agent-host-cache}
export AGENT_HOST_LOG=${AGENT_HOST_LOG:-warn,agent=info}

# Everything the demo creates outside target/: endpoint output, the model's
# demo API key, the triage agent's key-value state. Removed on exit.
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT

# start NAME COMMAND...: runs COMMAND in the background until it prints "ready".
start() {
  local name=$1 out="$work/$1.out"
  shift
  "$@" >"$out" 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do
    grep -q ready "$out" && return
    kill -0 "${pids[-1]}" 2>/dev/null || { cat "$out"; echo "$name failed to start" >&2; exit 1; }
    sleep 0.1
  done
  cat "$out"; echo "$name did not become ready" >&2; exit 1
}

start incident-endpoints python3 examples/incident-responder/endpoints.py 18090 18091
# The triage manifest names secret model-provider/api-key: a demo key under
# --secrets-dir, which the model stand-in also reads to check what it is sent.
mkdir -m 700 -p "$work/secrets/model-provider"
python3 -c 'import secrets; print("sk-demo-" + secrets.token_hex(16))' \
  >"$work/secrets/model-provider/api-key"
start triage-endpoints python3 examples/triage/endpoints.py \
  --api-key-file "$work/secrets/model-provider/api-key" 18092 18093
# The ops-assistant manifest also names secret status-mcp/token: the MCP
# server's token, which the host adds to its requests (the agent never sees it).
mkdir -m 700 -p "$work/secrets/status-mcp"
python3 -c 'import secrets; print("mcp-demo-" + secrets.token_hex(16))' \
  >"$work/secrets/status-mcp/token"
start ops-endpoints python3 examples/ops-assistant/endpoints.py \
  --api-key-file "$work/secrets/model-provider/api-key" \
  --token-file "$work/secrets/status-mcp/token" 18094 18095

section() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

section "agent-host check -f examples/incident-responder/agent.yaml"
"$BIN" check -f examples/incident-responder/agent.yaml

section "hello: echoes and logs"
"$BIN" run -f examples/hello/agent.yaml --input '{"name": "platform team"}'

section "incident-responder: metrics query, runbook, ticket"
"$BIN" run -f examples/incident-responder/agent.yaml --input @examples/incident-responder/alert.json

section "triage: a model picks the tool, key-value state remembers the alert"
# The shipped manifest as it is; the host flags give it the demo key and a
# fresh embedded key-value store (redb) in the temp dir.
triage=("$BIN" run -f examples/triage/agent.yaml --input @examples/triage/alert.json --json
        --secrets-dir "$work/secrets" --state-dir "$work/state")
summary=$work/triage-summary.py
cat >"$summary" <<'PY'
import json, sys
r = json.load(sys.stdin)
u, out = r["usage"], r["output"] or {}
error = f": {r['error']['message']}" if r["error"] else ""
print(f"  outcome     {r['outcome']}{error}")
print(f"  output      {json.dumps(out)}")
d = out.get("decision") or {}
if out.get("duplicate"):
    print(f"  duplicate   yes: the decision ({d.get('tool')}) was read from key-value bucket 'handled'")
elif d:
    print(f"  tool call   {d['tool']}({json.dumps(d['arguments'])})")
model = " ".join(u.get("llmModel") or ["none"])
print(f"  model       {model}: {u.get('llmRequests', 0)} request(s), {u.get('llmTokens', 0)} tokens")
print(f"  key-value   {u.get('keyValue', 'nothing written')}")
print(f"  http        {u['httpRequests']} sent, {u['httpDenied']} denied")
print("  host calls  " + " ".join(f"{k}={v}" for k, v in u["hostCalls"].items()))
PY
echo "\$ agent-host run -f examples/triage/agent.yaml --input @examples/triage/alert.json --json \\"
echo "      --secrets-dir <tmp>/secrets --state-dir <tmp>/state      (twice, summarised)"
echo "first alert:"
"${triage[@]}" | python3 "$summary"
echo "the same alert again:"
"${triage[@]}" | python3 "$summary"
python3 -c 'import json,urllib.request; n=json.load(urllib.request.urlopen("http://127.0.0.1:18092/v1/requests"))["completions"]; print(f"the model stand-in served {n} completion(s) for the two runs:")'
sed -n 's/^completion/  completion/p' "$work/triage-endpoints.out"

section "ops-assistant: model -> tool call -> MCP call -> model"
echo "\$ agent-host check -f examples/ops-assistant/agent.yaml --secrets-dir <tmp>/secrets   (mcp grant)"
"$BIN" check -f examples/ops-assistant/agent.yaml --secrets-dir "$work/secrets" | grep -E "agent-host:agent/(llm|tools)" | sed "s/  */ /g"
echo "\$ agent-host run -f examples/ops-assistant/agent.yaml --input @examples/ops-assistant/question.json --json --secrets-dir <tmp>/secrets"
ops_summary=$work/ops-summary.py
cat >"$ops_summary" <<'PY'
import json, sys
r = json.load(sys.stdin)
u, out = r["usage"], r["output"] or {}
error = f": {r['error']['message']}" if r["error"] else ""
print(f"  outcome     {r['outcome']}{error}")
print(f"  offered     {', '.join(out.get('toolsOffered', []))}   (restart_service is on the server, not granted)")
for c in out.get("toolCalls", []):
    print(f"  tool call   {c['tool']}({c['arguments']})")
print(f"  answer      {out.get('answer')}")
print(f"  model       {u.get('llmRequests', 0)} request(s), {u.get('llmTokens', 0)} tokens")
print(f"  mcp         {u.get('mcpCalls', 0)} call(s), {u.get('mcpResponseBytes', 0)} bytes received, {u.get('mcpDenied', 0)} denied")
PY
"$BIN" run -f examples/ops-assistant/agent.yaml --input @examples/ops-assistant/question.json --json \
  --secrets-dir "$work/secrets" | python3 "$ops_summary"
echo "what the MCP stand-in received (each request carried the host's bearer token):"
sed -n 's/^mcp /  /p' "$work/ops-endpoints.out"

section "the same hello in Python and TypeScript (componentize-py, jco): same output, same sandbox"
for lang in python ts; do
  echo "\$ agent-host run -f examples/hello-$lang/agent.yaml --input '{\"name\": \"platform team\"}'"
  "$BIN" run -f "examples/hello-$lang/agent.yaml" --input '{"name": "platform team"}' 2>/dev/null \
    | grep -E '^(outcome|output|  fuel|  memory|  wall time)'
done
echo "\$ agent-host check -f examples/hello-python/agent.yaml   (imports it does not use: denied at every call)"
"$BIN" check -f examples/hello-python/agent.yaml | grep -E 'wasi:sockets/tcp-create|^result' | sed "s/  */ /g"

section "triage in Python: the same model, tool call and key-value state as the Rust triage"
triage_py=("$BIN" run -f examples/triage-python/agent.yaml --input @examples/triage/alert.json --json
           --secrets-dir "$work/secrets" --state-dir "$work/state")
echo "first alert:"
"${triage_py[@]}" | python3 "$summary"
echo "the same alert again:"
"${triage_py[@]}" | python3 "$summary"

section "tickets filed on the local tickets API"
python3 -c 'import json,urllib.request; print(json.dumps(json.load(urllib.request.urlopen("http://127.0.0.1:18091/api/issues")), indent=2))'

section "serve mode: both agents behind the HTTP API, with an audit log"
audit=target/demo-audit.jsonl
rm -f "$audit"
serve_out=$work/serve.out
"$BIN" serve -f examples/hello/agent.yaml -f examples/incident-responder/agent.yaml \
  --listen 127.0.0.1:0 --audit-log "$audit" --state-dir "$work/serve-state" --log-format text >"$serve_out" 2>/dev/null &
server=$!
pids+=($server)
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
