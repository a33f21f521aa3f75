#!/usr/bin/env bash
# The README's client notes, checked: each client that installs here pushes an image (or an
# artifact) to `berth serve` on 127.0.0.1 and pulls it back, in each authentication mode:
#
#   none    no authentication (loopback)
#   basic   a user (BERTH_AUTH_USER) and anonymous pull of public/* (--auth-anonymous)
#   token   the same plus the token flow (--auth-token-signing-key: a fresh P-256 key)
#
# and with no credentials pulls from public/* (basic, token). Prints one line per check,
# `ok` or `FAIL` with the client's own words, then 'N passed, N failed' (a FAIL is a finding to
# compare with the README, not always a berth defect: see the notes). Not part of CI: it
# installs Debian's skopeo, podman, buildah and containerd and PyPI's oras (in a virtualenv in
# its temporary directory) when they are missing, and takes a few minutes.
#
# Usage: scripts/client-matrix.sh [CLIENT...]   (skopeo podman buildah ctr oras-py; default all)
# Environment: BERTH (default: target/debug/berth, built if missing), CLIENT_MATRIX_KEEP=1
# keeps the temporary directory.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
berth="${BERTH:-${CARGO_TARGET_DIR:-$root/target}/debug/berth}"
clients=("$@")
((${#clients[@]})) || clients=(skopeo podman buildah ctr oras-py)
# Lower case: podman names an image pulled from an OCI layout after the layout's path.
work="${TMPDIR:-/tmp}/berth-client-matrix.$$.$RANDOM"
mkdir -m 700 "$work"
berth_pid=""
containerd_pid=""
passed=0
failed=0

stop_berth() {
  if [[ -n "$berth_pid" ]]; then
    kill "$berth_pid" 2>/dev/null || true
    wait "$berth_pid" 2>/dev/null || true
    berth_pid=""
  fi
}
cleanup() {
  stop_berth
  if [[ -n "$containerd_pid" ]]; then
    kill "$containerd_pid" 2>/dev/null || true
    wait "$containerd_pid" 2>/dev/null || true
  fi
  if [[ "${CLIENT_MATRIX_KEEP:-0}" == 1 ]]; then
    echo "kept $work"
  else
    # podman's and buildah's vfs layers can be read-only: make them removable first.
    chmod -R u+w "$work" 2>/dev/null || true
    rm -rf "$work"
  fi
}
trap cleanup EXIT

# check NAME COMMAND...: runs it, its output to a log; ok or FAIL with the last lines.
check() {
  local name="$1"; shift
  local log="$work/log.$((passed + failed))"
  if "$@" >"$log" 2>&1; then
    passed=$((passed + 1))
    printf 'ok    %s\n' "$name"
  else
    failed=$((failed + 1))
    printf 'FAIL  %s\n' "$name"
    grep -v '^\s*$' "$log" | tail -3 | cut -c1-300 | sed 's/^/      /'
  fi
}
# refused NAME COMMAND...: the command must fail (an anonymous push, say).
refused() {
  local name="$1"; shift
  if "$@" >"$work/refused.log" 2>&1; then
    failed=$((failed + 1))
    printf 'FAIL  %s (it was accepted)\n' "$name"
  else
    passed=$((passed + 1))
    printf 'ok    %s\n' "$name"
  fi
}

apt_install() {
  local missing=()
  for tool in "$@"; do command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool#*:}"); done
  if ((${#missing[@]})); then
    echo "client-matrix: installing Debian's ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

[[ -x "$berth" ]] || (cd "$root" && cargo build -q -p berth)

# The image: one gzipped tar layer (1 MiB of random data), its config and manifest, as an OCI
# layout at $work/image:v1.
python3 - "$work/image" <<'PY'
import gzip, hashlib, io, json, os, sys, tarfile
root = sys.argv[1]
os.makedirs(f"{root}/blobs/sha256")
def blob(data):
    digest = hashlib.sha256(data).hexdigest()
    open(f"{root}/blobs/sha256/{digest}", "wb").write(data)
    return "sha256:" + digest, len(data)
tar = io.BytesIO()
with tarfile.open(fileobj=tar, mode="w") as t:
    payload = os.urandom(1024 * 1024)
    info = tarfile.TarInfo("data.bin"); info.size = len(payload)
    t.addfile(info, io.BytesIO(payload))
layer = tar.getvalue()
layer_digest, layer_size = blob(gzip.compress(layer, mtime=0))
config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]}}).encode()
config_digest, config_size = blob(config)
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer_size}]}).encode()
manifest_digest, manifest_size = blob(manifest)
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
    "digest": manifest_digest, "size": manifest_size, "annotations": {"org.opencontainers.image.ref.name": "v1"}}]},
    open(f"{root}/index.json", "w"))
open(f"{root}/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
PY

password="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/token-key.pem" 2>/dev/null
# A file for clients that read credentials from an auth file: empty, so that no login of the
# machine's user is used.
echo '{}' >"$work/empty-auth.json"
export REGISTRY_AUTH_FILE="$work/empty-auth.json"

# start_berth MODE: berth serve on a fresh directory and a free port; sets $addr.
start_berth() {
  stop_berth
  local args=() data="$work/data-$1"
  case "$1" in
    none) ;;
    basic) args=(--auth-anonymous 'public/*:pull') ;;
    token) args=(--auth-anonymous 'public/*:pull' --auth-token-signing-key "$work/token-key.pem") ;;
  esac
  if [[ "$1" == none ]]; then
    "$berth" serve --listen 127.0.0.1:0 --storage "$data" "${args[@]}" \
      >"$work/berth-$1.out" 2>"$work/berth-$1.err" &
  else
    BERTH_AUTH_USER="ci:$password" "$berth" serve --listen 127.0.0.1:0 --storage "$data" \
      "${args[@]}" >"$work/berth-$1.out" 2>"$work/berth-$1.err" &
  fi
  berth_pid=$!
  for _ in $(seq 1 100); do grep -q "listening on" "$work/berth-$1.out" 2>/dev/null && break; sleep 0.1; done
  addr="$(sed -n 's/^listening on //p' "$work/berth-$1.out")"
  [[ -n "$addr" ]] || { echo "berth did not start"; cat "$work/berth-$1.err"; exit 1; }
}

# Seeds public/seed:v1 with skopeo (logged in), for the anonymous pulls.
seed_public() {
  skopeo copy --quiet --dest-tls-verify=false --dest-creds "ci:$password" \
    "oci:$work/image:v1" "docker://$addr/public/seed:v1"
}

same_blobs() { # same_blobs OCI_DIR: every blob of the original image is there, byte-identical
  local original
  for original in "$work"/image/blobs/sha256/*; do
    cmp -s "$original" "$1/blobs/sha256/$(basename "$original")" || return 1
  done
}

skopeo_pull() { # skopeo_pull REF DIR CREDS...: pulls REF to the OCI layout DIR, compares
  local ref="$1" dir="$2"; shift 2
  skopeo copy --quiet --src-tls-verify=false "$@" "docker://$ref" "oci:$dir:v1" && same_blobs "$dir"
}

run_skopeo() {
  apt_install skopeo
  local mode n=0
  for mode in none basic token; do
    start_berth "$mode"
    n=$((n + 1))
    local dest=() src=()
    [[ "$mode" == none ]] || { dest=(--dest-creds "ci:$password"); src=(--src-creds "ci:$password"); }
    check "skopeo $(skopeo --version | awk '{print $3}'), $mode: push" \
      skopeo copy --quiet --dest-tls-verify=false "${dest[@]}" \
      "oci:$work/image:v1" "docker://$addr/team/skopeo:v1"
    check "skopeo, $mode: pull, byte-identical" \
      skopeo_pull "$addr/team/skopeo:v1" "$work/skopeo-$n" "${src[@]}"
    if [[ "$mode" != none ]]; then
      seed_public
      refused "skopeo, $mode: an anonymous push is refused" skopeo copy --quiet \
        --dest-tls-verify=false --dest-no-creds "oci:$work/image:v1" "docker://$addr/team/anon:v1"
      check "skopeo, $mode: anonymous pull of public/* (--src-no-creds)" \
        skopeo_pull "$addr/public/seed:v1" "$work/skopeo-anon-$n" --src-no-creds
    fi
  done
}

# podman and buildah keep their images in a storage of their own under $work (vfs: no
# overlay mounts needed), not the machine's.
# (podman refuses a runroot path longer than 50 characters: keep these short.)
storage_args() { echo --root "$work/$1/root" --runroot "$work/$1/run" --storage-driver vfs; }

run_podman() {
  apt_install podman
  local mode p n=0
  read -ra p <<<"$(storage_args pd)"
  for mode in none basic token; do
    start_berth "$mode"
    n=$((n + 1))
    local creds=()
    [[ "$mode" == none ]] || creds=(--creds "ci:$password")
    check "podman $(podman --version | awk '{print $3}'), $mode: push (from an OCI layout)" \
      podman "${p[@]}" push --tls-verify=false "${creds[@]}" \
      "$(podman "${p[@]}" pull -q "oci:$work/image:v1")" "docker://$addr/team/podman:v1"
    check "podman, $mode: pull" \
      podman "${p[@]}" pull -q --tls-verify=false "${creds[@]}" "$addr/team/podman:v1"
    if [[ "$mode" != none ]]; then
      check "podman, $mode: login, then push and pull with the stored credentials" bash -c "
        echo '$password' | podman ${p[*]} login --tls-verify=false --authfile $work/podman-auth.json -u ci --password-stdin $addr &&
        podman ${p[*]} push --tls-verify=false --authfile $work/podman-auth.json $addr/team/podman:v1 docker://$addr/team/podman:login &&
        podman ${p[*]} pull -q --tls-verify=false --authfile $work/podman-auth.json $addr/team/podman:login"
      seed_public
      check "podman, $mode: anonymous pull of public/*" \
        podman "${p[@]}" pull -q --tls-verify=false "$addr/public/seed:v1"
    fi
  done
}

run_buildah() {
  apt_install buildah
  local mode b n=0
  read -ra b <<<"$(storage_args bd)"
  head -c 100000 /dev/urandom >"$work/buildah-file"
  local container image
  container="$(buildah "${b[@]}" from scratch)"
  buildah "${b[@]}" copy "$container" "$work/buildah-file" /file >/dev/null
  image="$(buildah "${b[@]}" commit -q "$container" buildah-image)"
  for mode in none basic token; do
    start_berth "$mode"
    n=$((n + 1))
    local creds=()
    [[ "$mode" == none ]] || creds=(--creds "ci:$password")
    check "buildah $(buildah --version | awk '{print $3}'), $mode: push (built from scratch)" \
      buildah "${b[@]}" push --tls-verify=false "${creds[@]}" "$image" "docker://$addr/team/buildah:v1"
    check "buildah, $mode: pull" \
      buildah "${b[@]}" pull -q --tls-verify=false "${creds[@]}" "$addr/team/buildah:v1"
    if [[ "$mode" != none ]]; then
      seed_public
      check "buildah, $mode: anonymous pull of public/*" \
        buildah "${b[@]}" pull -q --tls-verify=false "$addr/public/seed:v1"
    fi
  done
}

ctr_push_and_fetch() { # ctr_push_and_fetch FETCHED NEW [--user U:P]
  local fetched="$1" new="$2"; shift 2
  "${c[@]}" images tag --force "$fetched" "$new" &&
    "${c[@]}" images push --plain-http "$@" "$new" &&
    "${c[@]}" images rm "$new" &&
    "${c[@]}" content fetch --plain-http "$@" "$new"
}

run_ctr() {
  apt_install containerd ctr:containerd
  # A containerd of its own: its root, state and socket under $work, no CRI plugin.
  local dir="$work/containerd"
  mkdir -p "$dir"
  cat >"$dir/config.toml" <<TOML
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$dir/containerd.sock"
[ttrpc]
  address = "$dir/containerd.sock.ttrpc"
TOML
  containerd --config "$dir/config.toml" >"$dir/log" 2>&1 &
  containerd_pid=$!
  for _ in $(seq 1 100); do [[ -S "$dir/containerd.sock" ]] && break; sleep 0.1; done
  c=(ctr --address "$dir/containerd.sock" --namespace berth-matrix)
  local mode n=0
  for mode in none basic token; do
    start_berth "$mode"
    n=$((n + 1))
    local user=()
    [[ "$mode" == none ]] || user=(--user "ci:$password")
    # ctr pushes what its content store holds: seed the registry with skopeo, pull, re-push.
    local dest=()
    [[ "$mode" == none ]] || dest=(--dest-creds "ci:$password")
    skopeo copy --quiet --dest-tls-verify=false "${dest[@]}" "oci:$work/image:v1" \
      "docker://$addr/team/seed:v1"
    check "ctr (containerd $(containerd --version | awk '{print $3}')), $mode: pull (fetch, no unpack)" \
      "${c[@]}" content fetch --plain-http "${user[@]}" "$addr/team/seed:v1"
    check "ctr, $mode: push (of the image it fetched, under another tag), then fetch it back" \
      ctr_push_and_fetch "$addr/team/seed:v1" "$addr/team/ctr:v1" "${user[@]}"
    if [[ "$mode" != none ]]; then
      seed_public
      check "ctr, $mode: anonymous pull of public/*" \
        "${c[@]}" content fetch --plain-http "$addr/public/seed:v1"
    fi
  done
}

run_oras_py() {
  local venv="$work/oras-venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q oras
  local version
  version="$("$venv/bin/pip" show oras | sed -n 's/^Version: //p')"
  local py=("$venv/bin/python" "$root/scripts/client-matrix-oras.py")
  local mode
  for mode in none basic token; do
    start_berth "$mode"
    if [[ "$mode" == none ]]; then
      check "oras-py $version, none: push and pull, byte-identical" \
        "${py[@]}" "$addr" team/oras token "" "" "$work/oras-none"
      continue
    fi
    check "oras-py, $mode: default auth backend (\"token\"): push and pull" \
      "${py[@]}" "$addr" team/oras-default token ci "$password" "$work/oras-$mode-default"
    check "oras-py, $mode: auth_backend=\"basic\": push and pull, byte-identical" \
      "${py[@]}" "$addr" team/oras-basic basic ci "$password" "$work/oras-$mode-basic"
    check "oras-py, $mode: default auth backend: pull (logged in), of what the basic backend pushed" \
      "${py[@]}" "$addr" team/oras-basic token ci "$password" "$work/oras-$mode-default-pull" pull
    check "oras-py, $mode: anonymous pull of public/* (default backend)" bash -c "
      '${py[0]}' '${py[1]}' $addr public/oras basic ci '$password' $work/oras-$mode-seed push &&
      '${py[0]}' '${py[1]}' $addr public/oras token '' '' $work/oras-$mode-anon pull"
  done
}

for client in "${clients[@]}"; do
  echo "==> $client"
  case "$client" in
    skopeo) run_skopeo ;;
    podman) run_podman ;;
    buildah) run_buildah ;;
    ctr) run_ctr ;;
    oras-py) run_oras_py ;;
    *) echo "unknown client $client (skopeo podman buildah ctr oras-py)"; exit 2 ;;
  esac
done
echo
printf '%s passed, %s failed\n' "$passed" "$failed"
((failed == 0))
