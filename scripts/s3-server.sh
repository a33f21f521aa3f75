#!/usr/bin/env bash
# s3s-fs: a real S3 server on a directory (SigV4 signatures enforced, multipart uploads,
# If-None-Match / If-Match on PUT and on CompleteMultipartUpload), from crates.io, for berth's
# S3 tests. s3s-fs 0.15+ needs a newer Rust than this project's, so the version is pinned.
#
#   scripts/s3-server.sh              install s3s-fs if it is missing (the tests start it
#   scripts/s3-server.sh --install    themselves, on a free loopback port; they fail, saying to
#                                     run this, when it is not installed)
#   scripts/s3-server.sh --run [DIR]  install if missing, then serve DIR (default: a new temp
#                                     dir, removed on exit) on a free 127.0.0.1 port with the test
#                                     credentials and a bucket named `berth`; print the
#                                     environment to use as `export` lines; run until interrupted:
#
#       scripts/s3-server.sh --run > /tmp/s3.env &   # then: . /tmp/s3.env
#       berth serve --storage s3://berth --s3-allow-http
set -euo pipefail
version=0.14.1
access_key=berth-test-access
secret_key=berth-test-secret-key

binary() {
    if command -v s3s-fs >/dev/null 2>&1; then
        command -v s3s-fs
    elif [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs" ]; then
        echo "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs"
    else
        return 1
    fi
}

install() {
    if bin=$(binary) && "$bin" --version 2>/dev/null | grep -q "$version"; then
        echo "s3s-fs $version: installed at $bin" >&2
        return 0
    fi
    echo "s3s-fs: installing $version from crates.io" >&2
    cargo install s3s-fs --version "$version" --features binary --locked \
        || cargo install s3s-fs --version "$version" --features binary
}

free_port() {
    local port
    for _ in $(seq 1 100); do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    echo "no free port found" >&2
    return 1
}

case "${1:-}" in
    "" | --install)
        install
        ;;
    --run)
        install
        bin=$(binary)
        if [ -n "${2:-}" ]; then
            root=$2
            mkdir -p "$root"
            cleanup_root=""
        else
            root=$(mktemp -d -t berth-s3s-XXXXXX)
            cleanup_root=$root
        fi
        mkdir -p "$root/berth"
        port=$(free_port)
        "$bin" --host 127.0.0.1 --port "$port" --access-key "$access_key" \
            --secret-key "$secret_key" "$root" >&2 &
        child=$!
        trap 'kill "$child" 2>/dev/null || true; [ -n "$cleanup_root" ] && rm -rf "$cleanup_root"' EXIT
        trap 'exit 0' INT TERM
        for _ in $(seq 1 200); do
            if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
                break
            fi
            kill -0 "$child" 2>/dev/null || { echo "s3s-fs exited" >&2; exit 1; }
            sleep 0.05
        done
        cat <<EOF
export AWS_ENDPOINT_URL=http://127.0.0.1:$port
export AWS_ACCESS_KEY_ID=$access_key
export AWS_SECRET_ACCESS_KEY=$secret_key
export AWS_REGION=us-east-1
export BERTH_STORAGE=s3://berth
export BERTH_S3_ALLOW_HTTP=true
EOF
        echo "s3s-fs serving $root on http://127.0.0.1:$port (bucket: berth); Ctrl-C stops it" >&2
        wait "$child"
        ;;
    *)
        sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
esac
