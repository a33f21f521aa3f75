#!/usr/bin/env bash
# Figures for berth's Worker under `wrangler dev` (workerd with a simulated R2): a 1 GiB blob
# pushed in chunks (PATCHes of 64 MiB, with Content-Range) and pulled back with its digest
# verified, the time of each, and workerd's peak memory (its RSS sampled every 100 ms from
# /proc, and its VmHWM at the end); then the bundle size (wasm + JS, raw and gzip).
#
# Usage: scripts/worker-bench.sh [SIZE_MIB [CHUNK_MIB [PARALLEL]]]   (defaults 1024, 64, 1;
# PARALLEL blobs of SIZE_MIB are pushed at once)
#
# Starts wrangler dev on a free loopback port with a fresh R2 state in a temporary directory
# (about twice SIZE_MIB of disk), stops it (its process group, by the id it started) on exit.
# Needs scripts/worker-setup.sh to have run, and python3. Not part of CI.
set -euo pipefail
scripts="$(cd "$(dirname "$0")" && pwd)"
crate="$(cd "$scripts/../runtime-worker" && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/berth-worker-bench.XXXXXX")"
log="$work/wrangler.log"
pid=""

stop() {
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap stop EXIT

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
echo "==> wrangler dev on 127.0.0.1:$port"
BERTH_WORKER_STATE="$work/state" BERTH_SELFTEST=true setsid "$scripts/worker-dev.sh" \
  --port "$port" >"$log" 2>&1 </dev/null &
pid=$!
deadline=$((SECONDS + 900))
until curl -s -o /dev/null "$base/v2/" 2>/dev/null; do
  if ! kill -0 "$pid" 2>/dev/null || ((SECONDS > deadline)); then
    echo "wrangler dev did not start:"; tail -40 "$log"; exit 1
  fi
  sleep 1
done
# The workerd processes wrangler started (in its process group).
pgrep -g "$pid" -x workerd >"$work/workerd.pids" || true
echo "==> workerd: $(tr '\n' ' ' <"$work/workerd.pids")"

python3 "$scripts/worker-bench.py" "$base" "$work/workerd.pids" "${1:-1024}" "${2:-64}" "${3:-1}"

echo "==> bundle (as deployed: build/worker.mjs + build/berth_bg.wasm)"
for f in "$crate/build/berth_bg.wasm" "$crate/build/worker.mjs"; do
  printf '%s: %s B raw, %s B gzip -9\n' "$(basename "$f")" "$(stat -c %s "$f")" "$(gzip -9c "$f" | wc -c)"
done
total_raw=$(($(stat -c %s "$crate/build/berth_bg.wasm") + $(stat -c %s "$crate/build/worker.mjs")))
total_gz=$(($(gzip -9c "$crate/build/berth_bg.wasm" | wc -c) + $(gzip -9c "$crate/build/worker.mjs" | wc -c)))
echo "total: $total_raw B raw, $total_gz B gzip -9"
