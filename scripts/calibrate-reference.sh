#!/usr/bin/env bash
# Calibration: runs berth's conformance suite against the CNCF reference registry (Debian's
# docker-registry, distribution 2.8.2) on loopback, to show the suite finds real gaps. The
# known failures, each checked against the spec, are listed with their reasons in
# conformance/expectations/docker-registry-2.8.txt and explained in conformance/README.md.
#
# Installs docker-registry if missing, starts it with its own config (127.0.0.1 only,
# filesystem storage in a temporary directory, deletes enabled), runs the suite with those
# expectations, stops the registry by PID and prints the results. Exits non-zero if the
# registry cannot be started, if the results differ from the expectations (a new failure, or
# a listed failure that now passes), or if the suite finds nothing wrong there at all (a suite
# that cannot fail is broken).
#
# Environment: CALIBRATE_PORT (default 5099), CALIBRATE_REPORT_DIR (default: a temporary
# directory, removed afterwards), CARGO_TARGET_DIR as for any cargo command.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/install-reference-registry.sh"
work="$(mktemp -d)"
port="${CALIBRATE_PORT:-5099}"
# The packaged config (/etc/docker/registry/config.yml) listens on every interface and wants
# htpasswd auth; this one keeps to loopback, has no auth and deletes for content management.
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
cleanup() {
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break
    sleep 0.1
done
if ! curl -fs "http://127.0.0.1:$port/v2/" >/dev/null; then
    echo "calibrate: the reference registry did not start" >&2
    cat "$work/registry.log" >&2
    exit 1
fi
echo "calibrate: docker-registry $(docker-registry --version | awk '{print $3}') on 127.0.0.1:$port (pid $pid)"
cd "$root"
cargo build -q -p berth-conformance
expectations="$root/conformance/expectations/docker-registry-2.8.txt"
set +e
cargo run -q -p berth-conformance -- \
    --root-url "http://127.0.0.1:$port" \
    --namespace calibrate/repo \
    --crossmount-namespace calibrate/other \
    --expectations "$expectations" \
    --report-dir "${CALIBRATE_REPORT_DIR:-$work/report}" | tee "$work/out.txt"
status=${PIPESTATUS[0]}
set -e
echo
echo "calibrate: tests the reference registry fails, as expected:"
grep -E '^XFAIL' "$work/out.txt" | sed 's/^XFAIL /  /' || true
if grep -qE '^FAIL' "$work/out.txt"; then
    echo "calibrate: results that differ from $expectations:"
    grep -E '^FAIL' "$work/out.txt" | sed 's/^FAIL  /  /'
fi
tail -n 1 "$work/out.txt"
if ! grep -qE '^XFAIL' "$work/out.txt" && [ "$status" -eq 0 ]; then
    echo "calibrate: the suite found nothing wrong with the reference registry; it cannot fail, so it is broken" >&2
    exit 1
fi
if [ "$status" -ne 0 ]; then
    echo "calibrate: the results differ from the expectations: check each against the spec, then fix the suite or the list" >&2
    exit 1
fi
echo "calibrate: the suite fails the reference registry exactly where it departs from the spec (see conformance/README.md)"
