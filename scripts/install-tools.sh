#!/usr/bin/env bash
# Installs the Debian tools the tests and benchmarks use, if missing:
# promtool (package prometheus) checks /metrics in the tests; wrk loads the
# server in `make bench`. Idempotent; uses sudo when not root.
set -euo pipefail

missing=()
command -v promtool >/dev/null || missing+=(prometheus)
if [[ "${1:-}" == "--bench" ]]; then
  command -v wrk >/dev/null || missing+=(wrk)
fi
[[ ${#missing[@]} -eq 0 ]] && exit 0

sudo=""
[[ $(id -u) -eq 0 ]] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
install() { $sudo apt-get install -y --no-install-recommends "${missing[@]}"; }
echo "installing ${missing[*]} (Debian packages)" >&2
install || { $sudo apt-get update -q && install; }
