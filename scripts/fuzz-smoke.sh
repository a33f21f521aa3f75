#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time from its committed seed corpus and prints
# the number of executions per target. Installs cargo-fuzz (crates.io) if it is missing; needs
# the nightly toolchain that this machine has. Usage: scripts/fuzz-smoke.sh [seconds-per-target]
set -euo pipefail
seconds="${1:-20}"
root="$(cd "$(dirname "$0")/.." && pwd)"
if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz-smoke: the nightly toolchain is required by cargo fuzz and is not installed" >&2
    exit 1
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "fuzz-smoke: installing cargo-fuzz from crates.io"
    cargo install cargo-fuzz --locked
fi
cd "$root/fuzz"
cargo +nightly fuzz build
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
status=0
for target in $(cargo +nightly fuzz list); do
    # Run from a scratch copy so the committed corpus only changes by hand.
    cp -r "corpus/$target" "$work/$target"
    log="$work/$target.log"
    if cargo +nightly fuzz run "$target" "$work/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
        runs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
        echo "fuzz-smoke: $target: ${runs:-?} executions in ${seconds}s, no crash"
    else
        echo "fuzz-smoke: $target FAILED; last lines:" >&2
        tail -40 "$log" >&2
        status=1
    fi
done
exit $status
