#!/usr/bin/env bash
# berth's one test command: everything CI checks, from a fresh clone. It first checks what the
# machine must have and installs what the package registries have (scripts/prerequisites.sh:
# Debian packages, the wasm32 target, a nightly for cargo fuzz, cargo-fuzz, s3s-fs,
# wasm-bindgen-cli, npm packages: wrangler, esbuild, Node 22), so a missing tool stops the run
# at its start, and nothing is skipped because a tool is missing. Tools are installed once per
# machine (~/.cargo/bin, rustup, runtime-worker/node_modules per clone); the fuzz builds keep
# their target directory between runs (scripts/fuzz-smoke.sh). Each step's wall time is
# printed at the end, also when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

step_names=()
step_seconds=()
step_started=""
finish_step() {
  if [[ -n "$step_started" ]]; then
    step_seconds+=($((SECONDS - step_started)))
    step_started=""
  fi
}
step() {
  finish_step
  step_names+=("$*")
  step_started=$SECONDS
  printf '\n==> %s\n' "$*"
}
timings() {
  local status=$? i
  finish_step
  printf '\n==> time per step (wall clock, s)\n'
  for i in "${!step_seconds[@]}"; do
    printf '%6d  %s\n' "${step_seconds[$i]}" "${step_names[$i]}"
  done
  printf '%6d  total\n' "$SECONDS"
  if ((status == 0)); then
    printf '\n==> all checks passed\n'
  else
    printf '\n==> FAILED (exit status %d) in: %s\n' "$status" "${step_names[${#step_names[@]}-1]}"
  fi
}
trap timings EXIT

step "prerequisites (checked; installed from Debian, rustup, crates.io and npm where missing)"
scripts/prerequisites.sh

step "format"
cargo fmt --all --check

step "lint (clippy -D warnings)"
cargo clippy --workspace --exclude berth-worker --all-targets -- -D warnings

# One check of the wasm32 build for the engine and the Worker, instead of a separate debug
# build of the engine: the Worker's release build below compiles the engine for wasm32 too.
step "lint for wasm32-unknown-unknown: the engine and the Worker (clippy -D warnings)"
cargo clippy -p berth-engine -p berth-worker --target wasm32-unknown-unknown -- -D warnings

step "tests (unit, snapshots, properties, fuzz corpora, conformance in process and against berth serve on memory, directory and S3)"
cargo test --workspace --exclude berth-worker

step "a real client: skopeo pushes and pulls through berth serve, byte-exact"
scripts/skopeo-roundtrip.sh
scripts/skopeo-roundtrip.sh --auth

step "Cloudflare Worker: release build (wasm32, wasm-bindgen, esbuild)"
scripts/worker-build.sh

step "Cloudflare Worker: R2 adapter smoke test under wrangler dev"
scripts/worker-smoke.sh

# The suite's binary from the test step: `cargo build -p berth-conformance` alone would resolve
# features differently from the workspace and compile most of its dependencies again.
step "Cloudflare Worker: OCI conformance suite under wrangler dev with local R2 (0 failures, 0 skips)"
BERTH_CONFORMANCE_BIN="${CARGO_TARGET_DIR:-target}/debug/berth-conformance" scripts/worker-conformance.sh

step "fuzz smoke (every target, bounded time)"
scripts/fuzz-smoke.sh "${BERTH_FUZZ_SECONDS:-20}"
