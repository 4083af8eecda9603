#!/usr/bin/env bash
# Builds a TypeScript agent into a component of the WIT world `agent` (wit/):
#   type-check (tsc) -> one ES module (esbuild) -> jco componentize (ComponentizeJS).
#
#   scripts/build-ts-agent.sh APP_DIR OUT.wasm
#
# APP_DIR holds app.ts, whose module exports `run = exportAgent(...)` from
# '@agent-host/guest' (guest-sdk/js, resolved here, no install in APP_DIR).
# The pinned tools are installed into guest-sdk/js/node_modules (npm ci from
# the committed package-lock.json) when missing. The build is skipped when
# APP_DIR, the SDK, wit/, this script and the tool versions hash to the value
# recorded in OUT.wasm.stamp by the last build.
set -euo pipefail

die() { echo "build-ts-agent: $*" >&2; exit 1; }

[ $# -eq 2 ] || die "usage: $0 APP_DIR OUT.wasm"
[ -d "$1" ] || die "APP_DIR $1 is not a directory"
APP=$(cd "$1" && pwd)
[ -f "$APP/app.ts" ] || die "$APP/app.ts not found: the agent's entry module must be app.ts"
mkdir -p "$(dirname "$2")"
OUT="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"
STAMP="$OUT.stamp"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SDK="$ROOT/guest-sdk/js"
BIN="$SDK/node_modules/.bin"
command -v node >/dev/null || die "node not found: install Node.js 20 or later"
command -v npm >/dev/null || die "npm not found: install Node.js 20 or later"

# Builds running at once (a parallel test run) share node_modules and types:
# one installs, the others wait.
exec 9>"$SDK/.build.lock"
flock 9

lock_hash=$(sha256sum "$SDK/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$SDK/node_modules/.agent-host-lock" 2>/dev/null)" != "$lock_hash" ]; then
  echo "build-ts-agent: installing the pinned tools (npm ci in guest-sdk/js)" >&2
  (cd "$SDK" && npm ci --no-audit --no-fund --loglevel=error) >&2 \
    || die "npm ci in $SDK failed (is the npm registry reachable?)"
  echo "$lock_hash" > "$SDK/node_modules/.agent-host-lock"
fi

# Hash of every input: names and contents, plus the tools' versions.
hash_tree() { (cd "$1" && find . -type f ! -path './node_modules/*' -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum); }
wit_hash=$(hash_tree "$ROOT/wit" | sha256sum | cut -d' ' -f1)
inputs=$( {
  echo "app"; hash_tree "$APP"
  echo "sdk"; hash_tree "$SDK/src"
  sha256sum "$SDK/package.json" "$SDK/package-lock.json" "$SDK/tsconfig.json" "${BASH_SOURCE[0]}" | cut -d' ' -f1
  echo "wit $wit_hash"
  echo "node $(node --version)"
} | sha256sum | cut -d' ' -f1)
if [ -f "$OUT" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$inputs" ]; then
  echo "build-ts-agent: $OUT is up to date" >&2
  exit 0
fi

# Type definitions of the world's interfaces, generated from wit/.
TYPES="$SDK/types/wit"
if [ "$(cat "$TYPES/.wit-hash" 2>/dev/null)" != "$wit_hash" ]; then
  rm -rf "$TYPES"
  # jco reads the WIT through a sandbox rooted at the working directory: pass a relative path.
  (cd "$ROOT" && "$BIN/jco" guest-types wit --world-name agent --out-dir guest-sdk/js/types/wit --quiet) \
    || die "jco guest-types could not read $ROOT/wit"
  echo "$wit_hash" > "$TYPES/.wit-hash"
fi

start=$(date +%s.%N)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

cat > "$WORK/tsconfig.json" <<JSON
{
  "extends": "$SDK/tsconfig.json",
  "compilerOptions": {
    "noEmit": true,
    "rootDir": "/",
    "paths": { "@agent-host/guest": ["$SDK/src/index.ts"] }
  },
  "files": ["$APP/app.ts"]
}
JSON
"$BIN/tsc" -p "$WORK/tsconfig.json" >&2 || die "type errors in $APP (see above)"

"$BIN/esbuild" "$APP/app.ts" --bundle --format=esm --platform=neutral --target=es2022 \
  --external:'wasi:*' --external:'agent-host:*' \
  --alias:@agent-host/guest="$SDK/src/index.ts" \
  --outfile="$WORK/app.js" --metafile="$WORK/meta.json" --log-level=warning >&2 \
  || die "bundling $APP/app.ts failed (see above)"
node -e '
  const meta = require(process.argv[1]);
  const exports = Object.values(meta.outputs)[0].exports;
  if (!exports.includes("run")) {
    console.error(`build-ts-agent: ${process.argv[2]}/app.ts exports [${exports}], not run: add \`export const run = exportAgent(...)\``);
    process.exit(1);
  }' "$WORK/meta.json" "$APP"

(cd "$ROOT" && "$BIN/jco" componentize "$WORK/app.js" --wit wit --world-name agent --out "$OUT.tmp") >&2 \
  || die "jco componentize of $APP failed (see above)"
mv "$OUT.tmp" "$OUT"
echo "$inputs" > "$STAMP"
end=$(date +%s.%N)
printf 'build-ts-agent: %s (%s bytes) in %.1fs\n' "$OUT" "$(stat -c %s "$OUT")" "$(awk "BEGIN { print $end - $start }")" >&2
