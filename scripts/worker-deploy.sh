#!/usr/bin/env bash
# `npm run deploy -- [wrangler deploy options]`: builds and deploys berth's Worker with the
# runtime-worker/wrangler.toml you made from wrangler.toml.example (see runtime-worker/README.md:
# create the bucket, set the secrets, log in with `npm run wrangler -- login` or
# CLOUDFLARE_API_TOKEN).
set -euo pipefail
scripts="$(cd "$(dirname "$0")" && pwd)"
crate="$(cd "$scripts/../runtime-worker" && pwd)"
if [[ ! -f "$crate/wrangler.toml" ]]; then
  echo "worker-deploy: no runtime-worker/wrangler.toml: copy wrangler.toml.example and edit it" >&2
  exit 1
fi
exec "$scripts/worker-wrangler.sh" deploy "$@"
