#!/usr/bin/env bash
# Installs Debian's docker-registry (the CNCF reference registry, distribution 2.8) if it is
# missing; scripts/bench.sh and scripts/calibrate-reference.sh compare berth against it.
set -euo pipefail
if ! command -v docker-registry >/dev/null 2>&1; then
    echo "installing Debian's docker-registry (the reference registry)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry
fi
