#!/usr/bin/env bash
# `npm run dev -- [wrangler dev options]`: builds berth's Worker and runs it under
# `wrangler dev` on 127.0.0.1 (default port 8787; pass --port PORT) with a local, simulated R2
# bucket for the REGISTRY binding, persisted under BERTH_WORKER_STATE (default
# runtime-worker/.wrangler/state; a relative path is taken from runtime-worker/).
#
# Uses runtime-worker/wrangler.toml, created from wrangler.toml.example if absent. The
# diagnostics routes are off unless BERTH_SELFTEST=true (scripts/worker-smoke.sh and
# worker-bench.sh set it; the Worker serves them only on loopback and only with no credentials
# configured). Anonymous access is on (BERTH_ALLOW_ANONYMOUS, default true here: it is served
# on loopback only) unless credentials are configured (USERNAME/PASSWORD etc. in
# runtime-worker/.dev.vars, which is not committed), and
# GET /cdn-cgi/local/scheduled?cron=... runs the scheduled handler. The build is
# wrangler.toml's [build] command, which wrangler dev runs first and again when src/ or js/
# change.
set -euo pipefail
scripts="$(cd "$(dirname "$0")" && pwd)"
crate="$(cd "$scripts/../runtime-worker" && pwd)"
if [[ ! -f "$crate/wrangler.toml" ]]; then
  cp "$crate/wrangler.toml.example" "$crate/wrangler.toml"
  echo "worker-dev: created runtime-worker/wrangler.toml from wrangler.toml.example" >&2
fi
state="${BERTH_WORKER_STATE:-.wrangler/state}"
exec "$scripts/worker-wrangler.sh" dev --ip 127.0.0.1 --persist-to "$state" \
  --var "BERTH_SELFTEST:${BERTH_SELFTEST:-false}" \
  --var "BERTH_ALLOW_ANONYMOUS:${BERTH_ALLOW_ANONYMOUS:-true}" "$@"
