#!/usr/bin/env bash
# berth's one test command: everything CI checks, from a fresh clone. It installs what it needs
# from the package registries (wasm32 target, cargo-fuzz, s3s-fs, wasm-bindgen-cli, npm
# packages) through the project's own scripts; nothing is skipped because a tool is missing.
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

step "tests"
cargo test --workspace --exclude berth-worker

step "fuzz smoke (every target, bounded time)"
scripts/fuzz-smoke.sh "${BERTH_FUZZ_SECONDS:-20}"

printf '\n==> all checks passed\n'
