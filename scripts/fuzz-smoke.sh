#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time from its committed seed corpus and prints
# the number of executions per target. Installs what it needs when it is missing: a nightly
# toolchain (`rustup toolchain install nightly --profile minimal`; an installed nightly is used
# as it is, not updated) and cargo-fuzz (crates.io).
#
#   scripts/fuzz-smoke.sh [seconds-per-target]   build and run every target (default 20 s)
#   scripts/fuzz-smoke.sh --install              only install the nightly and cargo-fuzz
#
# The fuzz builds (nightly, sanitizers, release) share nothing with the workspace's, so they go
# to a target directory kept between runs and checkouts, BERTH_FUZZ_TARGET_DIR (default
# ~/.cache/berth/fuzz-target): the next run, from any clone, rebuilds only berth's own crates,
# not libFuzzer and the dependencies. It is emptied when it grows past
# BERTH_FUZZ_TARGET_MAX_MIB (default 4096), since every checkout path and nightly adds its own
# copy of berth's crates. Runs sharing it wait for each other (flock).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export PATH="$HOME/.cargo/bin:$PATH"

say() { printf 'fuzz-smoke: %s\n' "$*"; }

install() {
    if rustup toolchain list | grep -q '^nightly'; then
        say "nightly toolchain: installed ($(rustup run nightly rustc --version))"
    else
        say "installing the nightly toolchain (rustup, minimal profile)"
        rustup toolchain install nightly --profile minimal
    fi
    if command -v cargo-fuzz >/dev/null 2>&1; then
        say "cargo-fuzz: installed ($(cargo-fuzz --version))"
    else
        say "installing cargo-fuzz from crates.io"
        cargo install cargo-fuzz --locked
    fi
}

if [[ "${1:-}" == --install ]]; then
    install
    exit 0
fi
seconds="${1:-20}"
install

target_dir="${BERTH_FUZZ_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/berth/fuzz-target}"
mkdir -p "$target_dir"
# One fuzz smoke at a time per target directory (two would only share the cores), so that
# emptying it never pulls the files from under another run.
exec 9>"$target_dir.lock"
flock 9
size_mib=$(du -sm "$target_dir" | cut -f1)
if ((size_mib > ${BERTH_FUZZ_TARGET_MAX_MIB:-4096})); then
    say "emptying $target_dir ($size_mib MiB)"
    rm -rf "${target_dir:?}"/*
fi
cd "$root/fuzz"
say "building every target (target directory $target_dir)"
cargo +nightly fuzz build --target-dir "$target_dir"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
status=0
for target in $(cargo +nightly fuzz list); do
    # Run from a scratch copy so the committed corpus only changes by hand.
    cp -r "corpus/$target" "$work/$target"
    log="$work/$target.log"
    if cargo +nightly fuzz run --target-dir "$target_dir" "$target" "$work/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
        runs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
        say "$target: ${runs:-?} executions in ${seconds}s, no crash"
    else
        say "$target FAILED; last lines:" >&2
        tail -40 "$log" >&2
        status=1
    fi
done
exit $status
