#!/usr/bin/env bash
# Installs the tools the tests and benchmarks use, if missing. Idempotent and quiet
# when all is there; uses sudo for apt when not root.
#   Debian: promtool (package prometheus) checks /metrics in the tests; wrk loads
#           the server in the benchmarks (and in their smoke run in the tests);
#           redis-server (with redis-cli) backs the Redis runs of the key-value,
#           state-store and replica tests; openssl makes the certificates of
#           the rediss:// test; docker-registry (Distribution) and skopeo
#           serve and copy OCI artifacts in the push, pull and signing tests;
#           htpasswd (apache2-utils) writes the bcrypt password file of the
#           registry-auth test.
#   PyPI:   kubernetes-validate (the official Kubernetes schemas, offline) and
#           jsonschema check deploy/ in host/tests/deploy.rs; mcp (the official
#           MCP SDK) is the client of host/tests/mcp.rs; componentize-py builds
#           the Python agents (scripts/build-python-agent.py). componentize-py is
#           not pure Python: a manylinux wheel (abi3) carrying its Rust core and
#           the CPython it embeds into components (a 48 MB shared library).
#   Node.js and npm (Debian's nodejs, npm when missing) run jco and
#           ComponentizeJS, which scripts/build-ts-agent.sh installs with npm
#           into guest-sdk/js/node_modules, pinned by its package-lock.json.
#
# With --guests-only: only what builds Python and TypeScript agents
# (componentize-py, Node.js and npm), for `make demo`.
set -euo pipefail

guests_only=false
[[ ${1:-} == --guests-only ]] && guests_only=true

# --- Debian packages
missing=()
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if ! $guests_only; then
  command -v promtool >/dev/null || missing+=(prometheus)
  command -v wrk >/dev/null || missing+=(wrk)
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v redis-cli >/dev/null || missing+=(redis-tools)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v docker-registry >/dev/null || missing+=(docker-registry)
  command -v skopeo >/dev/null || missing+=(skopeo)
  command -v htpasswd >/dev/null || missing+=(apache2-utils)
fi
if [[ ${#missing[@]} -gt 0 ]]; then
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  install() { $sudo apt-get install -y --no-install-recommends "${missing[@]}"; }
  echo "installing ${missing[*]} (Debian packages)" >&2
  install || { $sudo apt-get update -q && install; }
fi

# --- PyPI packages, pinned, for the python3 the tests run
pins=(componentize-py==0.25.1)
$guests_only || pins+=(kubernetes-validate==1.37.0 jsonschema==4.26.0 mcp==2.3.0)
py_missing=()
for pin in "${pins[@]}"; do
  python3 -c 'import importlib.metadata as m, sys; sys.exit(m.version(sys.argv[1]) != sys.argv[2])' \
    "${pin%%==*}" "${pin##*==}" 2>/dev/null || py_missing+=("$pin")
done
if [[ ${#py_missing[@]} -gt 0 ]]; then
  echo "installing ${py_missing[*]} (PyPI packages)" >&2
  pip=(python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore)
  # A Debian-managed python3 refuses system-wide installs (PEP 668); only then
  # override it, as these packages (pure Python, and componentize-py's
  # self-contained wheel) do not touch Debian's own.
  if ! out=$("${pip[@]}" "${py_missing[@]}" 2>&1); then
    if grep -q externally-managed-environment <<<"$out"; then
      "${pip[@]}" --break-system-packages "${py_missing[@]}"
    else
      echo "$out" >&2
      exit 1
    fi
  fi
fi
