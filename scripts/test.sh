#!/usr/bin/env bash
# berth's one test command: everything CI checks, from a fresh clone. It installs what it needs
# from the package registries (wasm32 target, cargo-fuzz, s3s-fs, wasm-bindgen-cli, npm
# packages: wrangler, esbuild, Node 22) through the project's own scripts; nothing is skipped
# because a tool is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "format"
cargo fmt --all --check

step "lint (clippy -D warnings)"
cargo clippy --workspace --exclude berth-worker --all-targets -- -D warnings

step "engine builds for wasm32-unknown-unknown"
rustup target add wasm32-unknown-unknown
cargo build -p berth-engine --target wasm32-unknown-unknown

step "S3 server for the storage tests (s3s-fs from crates.io)"
scripts/s3-server.sh
export PATH="$HOME/.cargo/bin:$PATH"

step "tests (unit, snapshots, properties, fuzz corpora, conformance in process and against berth serve on memory, directory and S3)"
cargo test --workspace --exclude berth-worker

step "a real client: skopeo pushes and pulls through berth serve, byte-exact"
scripts/skopeo-roundtrip.sh
scripts/skopeo-roundtrip.sh --auth

step "Cloudflare Worker: toolchain (wasm32 target, wasm-bindgen-cli, npm ci), clippy for wasm32"
scripts/worker-setup.sh
cargo clippy -p berth-worker --target wasm32-unknown-unknown -- -D warnings

step "Cloudflare Worker: R2 adapter smoke test under wrangler dev"
scripts/worker-smoke.sh

step "Cloudflare Worker: OCI conformance suite under wrangler dev with local R2 (0 failures, 0 skips)"
scripts/worker-conformance.sh

step "fuzz smoke (every target, bounded time)"
scripts/fuzz-smoke.sh "${BERTH_FUZZ_SECONDS:-20}"

printf '\n==> all checks passed\n'
