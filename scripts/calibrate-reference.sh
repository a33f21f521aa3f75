#!/usr/bin/env bash
# Calibration: runs berth's conformance suite against the CNCF reference registry (Debian's
# docker-registry, distribution 2.8) on loopback, to show the suite finds real gaps. The
# results are recorded in conformance/README.md. Exits non-zero if the suite finds nothing
# wrong there (a suite that cannot fail is broken) or if the registry cannot be started.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if ! command -v docker-registry >/dev/null 2>&1; then
    echo "calibrate: installing Debian's docker-registry"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry
fi
work="$(mktemp -d)"
port="${CALIBRATE_PORT:-5099}"
cat > "$work/config.yml" <<CONFIG
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
CONFIG
docker-registry serve "$work/config.yml" > "$work/registry.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -fs "http://127.0.0.1:$port/v2/" >/dev/null || { echo "calibrate: the reference registry did not start"; cat "$work/registry.log"; exit 1; }
cd "$root"
cargo build -q -p berth-conformance
set +e
target/debug/berth-conformance --root-url "http://127.0.0.1:$port" --report-dir "${CALIBRATE_REPORT_DIR:-$work/report}" | tee "$work/out.txt"
status=${PIPESTATUS[0]}
set -e
echo
echo "calibrate: failures against the reference registry:"
grep -E '^FAIL' "$work/out.txt" || true
if [ "$status" -eq 0 ]; then
    echo "calibrate: the suite found nothing wrong with the reference registry; it cannot fail, so it is broken" >&2
    exit 1
fi
