#!/usr/bin/env bash
# berth's benchmark against the CNCF reference registry, as recorded in the README.
#
# Installs Debian's docker-registry (distribution 2.8) if it is missing, builds berth and the
# benchmark in release mode, and runs it: `scripts/bench.sh [BLOB_GIB [RSS_PUSH_GIB]]`
# (default 1 and 10). The servers and their data live in BENCH_DIR (default: the current
# directory), on loopback; everything is removed afterwards.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/install-reference-registry.sh"
cd "$root"
# The berth binary is built too: `cargo run --example` alone does not rebuild it.
cargo build --release -p berth --bins --examples
exec "${CARGO_TARGET_DIR:-$root/target}/release/examples/bench" "${1:-1}" "${2:-10}"
