#!/usr/bin/env bash
# Builds berth's Cloudflare Worker into runtime-worker/build/ without worker-build (which
# downloads its tools at run time):
#   1. cargo build -p berth-worker --target wasm32-unknown-unknown --release
#   2. wasm-bindgen --target module (the CLI at the version Cargo.lock pins; see
#      scripts/worker-setup.sh), with the reset-state export the entry module uses after a panic
#   3. esbuild bundles runtime-worker/js/entry.mjs with the glue into build/worker.mjs; the
#      .wasm stays beside it as build/berth_bg.wasm (a CompiledWasm module for wrangler)
#   4. wasm-opt, only if BERTH_WASM_OPT=1 and the npm package binaryen is installed
#
# Environment: CARGO_TARGET_DIR (default: the workspace's target/), BERTH_WORKER_PROFILE
# (`release`, default, or `dev`), BERTH_WASM_OPT=1 to run wasm-opt -Oz.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
crate="$root/runtime-worker"
out="$crate/build"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
profile="${BERTH_WORKER_PROFILE:-release}"
export PATH="$HOME/.cargo/bin:$PATH"

say() { printf 'worker-build: %s\n' "$*" >&2; }

lock_version() {
  awk -v name="$1" '$0 == "name = \"" name "\"" { getline; gsub(/version = |"/, ""); print; exit }' \
    "$root/Cargo.lock"
}

want="$(lock_version wasm-bindgen)"
have="$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)"
if [[ -z "$want" ]]; then
  say "Cargo.lock has no wasm-bindgen entry"; exit 1
fi
if [[ "$have" != "$want" ]]; then
  say "wasm-bindgen CLI ${have:-missing}, Cargo.lock pins $want: run scripts/worker-setup.sh"
  exit 1
fi
esbuild="$crate/node_modules/.bin/esbuild"
if [[ ! -x "$esbuild" ]]; then
  say "esbuild is missing: run 'npm ci' in runtime-worker (or scripts/worker-setup.sh)"
  exit 1
fi

case "$profile" in
  release) cargo_profile=(--release); profile_dir=release ;;
  dev) cargo_profile=(); profile_dir=debug ;;
  *) say "BERTH_WORKER_PROFILE must be release or dev"; exit 1 ;;
esac

# Size over speed for the wasm: the workspace profile keeps line tables for host backtraces,
# which a Worker cannot use, and an upload's size counts against the Worker size limit.
# (Env overrides, so that the workspace Cargo.toml stays shared with the host runtime.)
export CARGO_PROFILE_RELEASE_DEBUG="${CARGO_PROFILE_RELEASE_DEBUG:-false}"
export CARGO_PROFILE_RELEASE_OPT_LEVEL="${CARGO_PROFILE_RELEASE_OPT_LEVEL:-s}"
export CARGO_PROFILE_RELEASE_LTO="${CARGO_PROFILE_RELEASE_LTO:-true}"
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS="${CARGO_PROFILE_RELEASE_CODEGEN_UNITS:-1}"

say "cargo build (wasm32-unknown-unknown, $profile)"
(cd "$root" && cargo build -p berth-worker --target wasm32-unknown-unknown "${cargo_profile[@]}")
wasm="$target_dir/wasm32-unknown-unknown/$profile_dir/berth_worker.wasm"

stage="$(mktemp -d "${TMPDIR:-/tmp}/berth-worker-build.XXXXXX")"
trap 'rm -rf "$stage"' EXIT

say "wasm-bindgen $have"
wasm-bindgen "$wasm" --out-dir "$stage" --out-name berth --target module --no-typescript \
  --experimental-reset-state-function
# `--target module` imports the wasm as `import source m from "./berth_bg.wasm"` (the
# source-phase import proposal); workerd and wrangler give a CompiledWasm module to a plain
# default import of a .wasm file.
sed -i 's/^import source \(.*\.wasm["'"'"']\)/import \1/' "$stage/berth.js"
if grep -q '^import source ' "$stage/berth.js"; then
  say "unexpected 'import source' left in the wasm-bindgen glue"; exit 1
fi

if [[ "${BERTH_WASM_OPT:-0}" == 1 ]]; then
  wasm_opt="$crate/node_modules/.bin/wasm-opt"
  if [[ ! -x "$wasm_opt" ]]; then
    say "BERTH_WASM_OPT=1 but wasm-opt is missing: npm install --no-save binaryen"; exit 1
  fi
  say "wasm-opt -Oz"
  "$wasm_opt" -Oz --all-features "$stage/berth_bg.wasm" -o "$stage/berth_bg.opt.wasm"
  mv "$stage/berth_bg.opt.wasm" "$stage/berth_bg.wasm"
fi

cp "$crate/js/entry.mjs" "$stage/entry.mjs"
say "esbuild $("$esbuild" --version)"
"$esbuild" "$stage/entry.mjs" --bundle --format=esm --platform=neutral --target=es2022 \
  --external:./berth_bg.wasm --external:'cloudflare:*' --minify-syntax --minify-whitespace \
  --log-level=warning --outfile="$stage/worker.mjs"

mkdir -p "$out"
rm -f "$out"/*.wasm "$out"/*.mjs "$out"/*.js
cp "$stage/worker.mjs" "$stage/berth_bg.wasm" "$out/"
size() { stat -c %s "$1"; }
gz() { gzip -9c "$1" | wc -c; }
say "built $out: berth_bg.wasm $(size "$out/berth_bg.wasm") B ($(gz "$out/berth_bg.wasm") B gzip)," \
  "worker.mjs $(size "$out/worker.mjs") B ($(gz "$out/worker.mjs") B gzip)"
