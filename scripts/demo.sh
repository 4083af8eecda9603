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
