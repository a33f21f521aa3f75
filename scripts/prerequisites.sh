#!/usr/bin/env bash
# Everything scripts/test.sh needs, checked (and where a package registry has it, installed)
# before the first build, so that a missing tool stops the run in its first minute with its
# name, not half an hour in. Idempotent: on a machine that has it all, it installs nothing and
# takes a few seconds. Usage: scripts/prerequisites.sh
#
#   must be there already (no registry here has them): rustup with a stable toolchain (cargo,
#     rustc, rustfmt, clippy), bash, coreutils, and apt-get if any Debian package below is
#     missing (installs need root)
#   Debian packages, installed when their command is missing: gcc and g++ (aws-lc-sys and
#     libFuzzer compile C and C++), curl, jq, openssl, python3, nodejs and npm (npm installs
#     wrangler; wrangler gets its own Node 22 from npm), skopeo, util-linux (setsid, flock), procps
#     (kill), diffutils (cmp), gzip
#   rustup: the wasm32-unknown-unknown target; a nightly toolchain for cargo fuzz, installed
#     only when none is (`rustup toolchain install nightly --profile minimal`; an installed one
#     is not updated)
#   crates.io (cargo install, once per machine, into ~/.cargo/bin): cargo-fuzz, s3s-fs
#     (scripts/s3-server.sh), wasm-bindgen-cli (scripts/worker-setup.sh)
#   npm: runtime-worker's packages (npm ci: wrangler, esbuild, Node 22; scripts/worker-setup.sh)
set -euo pipefail
scripts="$(cd "$(dirname "$0")" && pwd)"
export PATH="$HOME/.cargo/bin:$PATH"

say() { printf 'prerequisites: %s\n' "$*"; }

# 1. What no registry reachable from here provides: say what is missing and stop.
missing=()
for tool in rustup cargo rustc; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
  say "missing: ${missing[*]}. Install Rust with rustup (https://rustup.rs), stable toolchain."
  exit 1
fi
for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
    say "installing the rustup component $component"
    rustup component add "$component"
  fi
done

# 2. Debian packages, by the command each provides.
declare -A package_of=(
  [cc]=gcc [c++]=g++ [curl]=curl [jq]=jq [openssl]=openssl [python3]=python3
  [node]=nodejs [npm]=npm [skopeo]=skopeo [setsid]=util-linux [flock]=util-linux [kill]=procps [cmp]=diffutils
  [gzip]=gzip
)
packages=()
for tool in "${!package_of[@]}"; do
  # `kill` is a shell builtin too; the tests run the program (procps).
  if [[ "$tool" == kill ]]; then
    [[ -x /usr/bin/kill || -x /bin/kill ]] && continue
  elif command -v "$tool" >/dev/null 2>&1; then
    continue
  fi
  packages+=("${package_of[$tool]}")
done
if ((${#packages[@]})); then
  mapfile -t packages < <(printf '%s\n' "${packages[@]}" | sort -u)
  if ! command -v apt-get >/dev/null 2>&1 || [[ "$(id -u)" != 0 ]]; then
    say "missing Debian packages: ${packages[*]} (install them, e.g. as root: apt-get install ${packages[*]})"
    exit 1
  fi
  say "installing Debian packages: ${packages[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
fi

# 3. Rust targets, toolchains and tools.
"$scripts/fuzz-smoke.sh" --install
"$scripts/s3-server.sh" --install
"$scripts/worker-setup.sh"
say "all present"
