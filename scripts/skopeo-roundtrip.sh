#!/usr/bin/env bash
# A real client nobody here wrote: skopeo (Debian) pushes an OCI image to `berth serve` on a
# fresh directory, inspects it, pulls it back, and every blob must come back byte-identical.
# With --auth, berth runs with a user and the token flow (a fresh ES256 signing key) and
# anonymous pull of demo/*: skopeo logs in (401 -> token endpoint -> bearer token), pushes and
# pulls with the stored credentials, a wrong password fails to log in, an anonymous push is
# refused, and demo/app pulls back with no credentials at all.
# Usage: scripts/skopeo-roundtrip.sh [--auth] [path-to-berth-binary]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
auth=""
if [ "${1:-}" = "--auth" ]; then auth=1; shift; fi
berth="${1:-${CARGO_TARGET_DIR:-$root/target}/debug/berth}"
if ! command -v skopeo >/dev/null 2>&1; then
    echo "skopeo-roundtrip: installing Debian's skopeo"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq skopeo
fi
[ -x "$berth" ] || cargo build -q -p berth
work="$(mktemp -d)"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# A small image: one gzipped tar layer with 3 MiB of random data, its config and manifest.
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
    payload = os.urandom(3 * 1024 * 1024)
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

args=()
if [ -n "$auth" ]; then
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/token-key.pem" 2>/dev/null
    password="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
    args=(--auth-token-signing-key "$work/token-key.pem" --auth-anonymous "demo/*:pull")
    export BERTH_AUTH_USER="ci:$password"
fi
"$berth" serve --listen 127.0.0.1:0 --storage "$work/data" "${args[@]}" > "$work/berth.out" 2> "$work/berth.err" &
pid=$!
unset BERTH_AUTH_USER
for _ in $(seq 1 100); do grep -q "listening on" "$work/berth.out" 2>/dev/null && break; sleep 0.1; done
addr="$(sed -n 's/^listening on //p' "$work/berth.out")"
[ -n "$addr" ] || { echo "skopeo-roundtrip: berth did not start"; cat "$work/berth.err"; exit 1; }

creds=()
if [ -n "$auth" ]; then
    authfile="$work/auth.json"
    creds=(--authfile "$authfile")
    if skopeo copy --quiet --dest-tls-verify=false --dest-no-creds "oci:$work/image:v1" "docker://$addr/demo/app:v1" 2>/dev/null; then
        echo "skopeo-roundtrip: an anonymous push was accepted"; exit 1
    fi
    if echo "not-$password" | skopeo login --tls-verify=false --authfile "$authfile" -u ci --password-stdin "$addr" >/dev/null 2>&1; then
        echo "skopeo-roundtrip: a wrong password logged in"; exit 1
    fi
    echo "$password" | skopeo login --tls-verify=false --authfile "$authfile" -u ci --password-stdin "$addr" >/dev/null
    grep -q "$addr" "$authfile"
fi

skopeo copy --quiet --dest-tls-verify=false "${creds[@]}" "oci:$work/image:v1" "docker://$addr/demo/app:v1"
skopeo inspect --tls-verify=false "${creds[@]}" "docker://$addr/demo/app:v1" > "$work/inspect.json"
grep -q '"v1"' "$work/inspect.json"
skopeo copy --quiet --src-tls-verify=false "${creds[@]}" "docker://$addr/demo/app:v1" "oci:$work/pulled:v1"
count=0
for original in "$work"/image/blobs/sha256/*; do
    cmp -s "$original" "$work/pulled/blobs/sha256/$(basename "$original")" || { echo "skopeo-roundtrip: $(basename "$original") differs"; exit 1; }
    count=$((count + 1))
done
if [ -n "$auth" ]; then
    # A private repository: pushed and pulled with the login, refused without it.
    skopeo copy --quiet --dest-tls-verify=false "${creds[@]}" "oci:$work/image:v1" "docker://$addr/private/app:v1"
    skopeo copy --quiet --src-tls-verify=false "${creds[@]}" "docker://$addr/private/app:v1" "oci:$work/private:v1"
    if skopeo inspect --tls-verify=false --no-creds "docker://$addr/private/app:v1" >/dev/null 2>&1; then
        echo "skopeo-roundtrip: an anonymous client read a private repository"; exit 1
    fi
    # demo/* is public: pulled with no credentials at all.
    skopeo copy --quiet --src-tls-verify=false --src-no-creds "docker://$addr/demo/app:v1" "oci:$work/anonymous:v1"
    cmp -s "$work/pulled/index.json" "$work/anonymous/index.json" || { echo "skopeo-roundtrip: the anonymous pull differs"; exit 1; }
    ! grep -q "$password" "$work/berth.err" || { echo "skopeo-roundtrip: the password is in the log"; exit 1; }
    skopeo logout --authfile "$authfile" "$addr" >/dev/null
    echo "skopeo-roundtrip --auth: logged in through the token flow, pushed and pulled $count blobs (and a private repository), anonymous push and wrong password refused, public repository pulled anonymously"
else
    echo "skopeo-roundtrip: pushed and pulled $count blobs through berth at $addr, byte-identical"
fi
