#!/usr/bin/env bash
# Installs s3s-fs (a real S3 server on a directory: signatures, multipart, conditional puts)
# from crates.io if it is missing. The tests start it themselves on a free loopback port.
# s3s-fs 0.15+ needs a newer Rust than this machine's, so the version is pinned.
set -euo pipefail
version=0.14.1
if command -v s3s-fs >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/s3s-fs" ]; then
    echo "s3s-fs: installed"
    exit 0
fi
echo "s3s-fs: installing $version from crates.io"
cargo install s3s-fs --version "$version" --locked --features binary
