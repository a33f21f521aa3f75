#!/usr/bin/env bash
# Runs the OCI conformance suite (berth-conformance, all four workflows, 106 tests) against
# berth's Cloudflare Worker under `wrangler dev` (workerd with a simulated R2 that enforces R2's
# multipart rules), and requires every test the suite lists (`--list`) to pass: N passed,
# 0 failed, 0 skipped, with N the suite's own count. Also checks that with credentials
# configured the diagnostics routes stay closed even with BERTH_SELFTEST=true.
#
# From a fresh clone: installs what it needs from the package registries through
# scripts/worker-setup.sh (wasm32 target, wasm-bindgen-cli from crates.io, npm ci), builds the
# Worker (wrangler dev runs scripts/worker-build.sh), starts wrangler dev on a free loopback
# port with a fresh R2 state in a temporary directory, runs the suite with Basic credentials
# (the Worker's USERNAME/PASSWORD vars and the suite's OCI_USERNAME/OCI_PASSWORD), and stops
# wrangler (its process group, by the id it started) on exit.
#
# Environment: BERTH_CONFORMANCE_BIN, a berth-conformance binary to run instead of building
# one (scripts/test.sh passes the one its `cargo test --workspace` built: `cargo build -p
# berth-conformance` alone resolves its dependencies' features differently from the
# workspace, so it would compile most of them again); BERTH_CONFORMANCE_PROFILE (`dev`,
# default, or `release`) for the suite's own build otherwise; BERTH_WORKER_CONFORMANCE_KEEP=1 keeps the
# temporary directory (wrangler log, R2 state, reports); BERTH_WORKER_STARTUP_SECS (default
# 900) bounds the build plus start-up; CARGO_TARGET_DIR is honoured.
set -euo pipefail
scripts="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$scripts/.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/berth-worker-conformance.XXXXXX")"
log="$work/wrangler.log"
pid=""
export PATH="$HOME/.cargo/bin:$PATH"

say() { printf 'worker-conformance: %s\n' "$*"; }

stop() {
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    # wrangler runs in its own session (setsid): its process group id is its pid.
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  if [[ "${BERTH_WORKER_CONFORMANCE_KEEP:-0}" == 1 ]]; then
    say "kept $work"
  else
    rm -rf "$work"
  fi
}
trap stop EXIT

"$scripts/worker-setup.sh"

if [[ -n "${BERTH_CONFORMANCE_BIN:-}" ]]; then
  suite="$(cd "$root" && realpath "$BERTH_CONFORMANCE_BIN")"
  [[ -x "$suite" ]] || { say "BERTH_CONFORMANCE_BIN=$BERTH_CONFORMANCE_BIN is not an executable"; exit 1; }
  say "the conformance suite: $suite"
else
  case "${BERTH_CONFORMANCE_PROFILE:-dev}" in
    dev) profile=(); profile_dir=debug ;;
    release) profile=(--release); profile_dir=release ;;
    *) say "BERTH_CONFORMANCE_PROFILE must be dev or release"; exit 1 ;;
  esac
  say "building the conformance suite"
  (cd "$root" && cargo build -q -p berth-conformance "${profile[@]}")
  suite="${CARGO_TARGET_DIR:-$root/target}/$profile_dir/berth-conformance"
  [[ "$suite" == /* ]] || suite="$root/$suite"
fi

# Credentials for this run only: the Worker gets them as vars, the suite as OCI_*.
username="conformance"
password="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
say "wrangler dev on 127.0.0.1:$port (state and log in $work)"
BERTH_WORKER_STATE="$work/state" BERTH_SELFTEST=true setsid "$scripts/worker-dev.sh" \
  --port "$port" --var "USERNAME:$username" --var "PASSWORD:$password" \
  >"$log" 2>&1 </dev/null &
pid=$!
deadline=$((SECONDS + ${BERTH_WORKER_STARTUP_SECS:-900}))
until curl -s -o /dev/null "$base/v2/" 2>/dev/null; do
  if ! kill -0 "$pid" 2>/dev/null; then
    say "wrangler dev exited:"; tail -40 "$log"; exit 1
  fi
  if ((SECONDS > deadline)); then
    say "wrangler dev did not start in time:"; tail -40 "$log"; exit 1
  fi
  sleep 1
done
say "ready"

# Authentication is on: no credentials and a wrong password are refused, and the failed login
# is logged with the user name but without the password.
no_credentials="$(curl -s -o /dev/null -w '%{http_code}' "$base/v2/")"
wrong="wrong-$password"
wrong_password="$(curl -s -o /dev/null -w '%{http_code}' -u "$username:$wrong" "$base/v2/")"
right_password="$(curl -s -o /dev/null -w '%{http_code}' -u "$username:$password" "$base/v2/")"
sleep 1
if [[ "$no_credentials $wrong_password $right_password" != "401 401 200" ]]; then
  say "authentication: expected 401 401 200 (none, wrong, right), got $no_credentials $wrong_password $right_password"
  exit 1
fi
if ! grep -q "refused GET /v2/ (401): user \"$username\"" "$log" || grep -q -- "$wrong" "$log"; then
  say "authentication: the failed login is not logged, or its password is"
  exit 1
fi
say "authentication: no credentials 401, wrong password 401 (logged without it), right one 200"

# BERTH_SELFTEST=true is set above on purpose: with credentials configured the diagnostics
# routes (which skip authentication) must stay closed, even on loopback.
selftest="$(curl -s -o "$work/selftest" -w '%{http_code}' "$base/_berth/selftest/memory")"
if [[ "$selftest" != 404 ]] || grep -q wasm_memory_bytes "$work/selftest"; then
  say "the diagnostics routes answer ($selftest) although credentials are configured"
  exit 1
fi
say "diagnostics routes: closed with credentials configured (the registry's 404)"

# The number of tests the suite has (all four workflows, as run below): a run that silently
# ran fewer must not pass.
expected="$("$suite" --list | grep -c .)"
if ! [[ "$expected" =~ ^[1-9][0-9]*$ ]]; then
  say "could not count the suite's tests (--list gave ${expected:-nothing})"
  exit 1
fi
say "the suite lists $expected tests"

say "running the suite"

started=$SECONDS
set +e
# Unset the suite's workflow switches so that all four run, as --list counted.
(cd "$root" && unset OCI_TEST_PULL OCI_TEST_PUSH OCI_TEST_CONTENT_DISCOVERY \
  OCI_TEST_CONTENT_MANAGEMENT && OCI_ROOT_URL="$base" OCI_NAMESPACE="berth-worker/conformance" \
  OCI_USERNAME="$username" OCI_PASSWORD="$password" OCI_REPORT_DIR="$work/report" \
  "$suite") | tee "$work/conformance.out"
status=${PIPESTATUS[0]}
set -e
summary="$(grep -E '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$work/conformance.out" | tail -1)"
say "suite ran in $((SECONDS - started)) s: ${summary:-no summary line}"
if [[ "$status" != 0 || "$summary" != "$expected passed, 0 failed, 0 skipped" ]]; then
  say "FAILED (exit status $status); the Worker's log ends with:"
  grep -a -E 'berth|ERROR|Error' "$log" | tail -20 || true
  exit 1
fi
say "passed: all $expected tests, 0 failures, 0 skips"
