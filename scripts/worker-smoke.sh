#!/usr/bin/env bash
# Proves under `wrangler dev` (workerd with a simulated R2) that every R2 operation berth needs
# works through runtime-worker's adapter (src/r2.rs), driven over HTTP through the temporary
# diagnostics routes (src/selftest.rs): head, ranged get, streaming and buffered puts,
# create-if-absent and compare-and-swap puts, delete, list (prefix, start-after, limit,
# delimiter), multipart create / upload part in later requests / complete / abort, streamed
# responses that keep Content-Length on GET and HEAD, a panic answered with a 500, and the
# scheduled handler (the engine's maintenance). The registry API itself is tested by
# scripts/worker-conformance.sh.
#
# Starts wrangler dev on a free loopback port with a fresh R2 state directory, stops it (its
# process group, by id) on exit, prints 'N passed, N failed' and exits non-zero on any
# failure. Needs scripts/worker-setup.sh to have run (wasm32 target, wasm-bindgen, npm ci).
#
# Environment: BERTH_SMOKE_KEEP=1 keeps the temporary directory (logs, state);
# BERTH_SMOKE_STARTUP_SECS (default 600) bounds the build plus start-up.
set -euo pipefail
scripts="$(cd "$(dirname "$0")" && pwd)"
crate="$(cd "$scripts/../runtime-worker" && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/berth-worker-smoke.XXXXXX")"
log="$work/wrangler.log"
pid=""
passed=0
failed=0

stop() {
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    # wrangler runs in its own session (setsid): its process group id is its pid.
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  if [[ "${BERTH_SMOKE_KEEP:-0}" == 1 ]]; then
    echo "kept $work"
  else
    rm -rf "$work"
  fi
}
trap stop EXIT

pass() { passed=$((passed + 1)); printf 'ok   %s\n' "$1"; }
fail() { failed=$((failed + 1)); printf 'FAIL %s\n' "$1"; [[ -z "${2:-}" ]] || printf '     %s\n' "$2"; }
check() { # check NAME EXPECTED ACTUAL
  if [[ "$2" == "$3" ]]; then pass "$1"; else fail "$1" "expected [$2], got [$3]"; fi
}

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
st="$base/_berth/selftest"

echo "==> wrangler dev on 127.0.0.1:$port (state and logs in $work)"
BERTH_WORKER_STATE="$work/state" BERTH_ALLOW_ANONYMOUS=false BERTH_SELFTEST=true setsid "$scripts/worker-dev.sh" --port "$port" \
  >"$log" 2>&1 </dev/null &
pid=$!
deadline=$((SECONDS + ${BERTH_SMOKE_STARTUP_SECS:-600}))
until command curl -s -o /dev/null "$base/" 2>/dev/null; do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "wrangler dev exited:"; tail -40 "$log"; exit 1
  fi
  if ((SECONDS > deadline)); then
    echo "wrangler dev did not start in time:"; tail -40 "$log"; exit 1
  fi
  sleep 1
done
echo "==> ready"

# A failed request is a failed check, not the end of the run (set -e).
curl() { command curl "$@" || true; }
# curl helpers: status code only; headers to a file; body to a file.
code() { curl -s -o /dev/null -w '%{http_code}' --max-time 60 "$@"; }
fetch() { # fetch OUT_BODY OUT_HEADERS CURL_ARGS...
  local body="$1" headers="$2"; shift 2
  curl -s -o "$body" -D "$headers" -w '%{http_code}' --max-time 60 "$@"
}
header() { # header FILE NAME: the header's value, or empty
  tr -d '\r' <"$1" | awk -v name="$(tr 'A-Z' 'a-z' <<<"$2")" -F': ' \
    'tolower($1) == name { print $2 }' | tail -1
}
json() { # json JQ_FILTER CURL_ARGS...: compact JSON
  local filter="$1"; shift
  curl -s --max-time 60 "$@" | jq -c "$filter" 2>/dev/null || true
}
jfile() { # jfile JQ_FILTER FILE_OR_-: raw strings, empty on bad JSON
  jq -r "$1" "$2" 2>/dev/null || true
}
jraw() { # jraw JQ_FILTER CURL_ARGS...: raw strings
  local filter="$1"; shift
  curl -s --max-time 60 "$@" | jq -r "$filter" 2>/dev/null || true
}

head -c 100000 /dev/urandom >"$work/small"
head -c $((5 * 1024 * 1024)) /dev/urandom >"$work/part1"
head -c $((5 * 1024 * 1024)) /dev/urandom >"$work/part2"
head -c 1000000 /dev/urandom >"$work/part3"
head -c $((6 * 1024 * 1024)) /dev/urandom >"$work/part6"
cat "$work/part1" "$work/part2" "$work/part3" >"$work/whole"
small_size=100000
small_md5="$(md5sum "$work/small" | cut -d' ' -f1)"

echo "==> the Worker answers"
check "with no credentials configured the registry refuses every request (fail closed)" 401 \
  "$(code "$base/v2/")"
check "  and says why in the log" yes \
  "$(sleep 1; grep -q 'berth: refused GET /v2/: no credentials are configured' "$log" && echo yes)"

echo "==> the diagnostics routes are served on loopback only"
check "a diagnostics route on 127.0.0.1: 200" 200 "$(code "$st/memory")"
check "the same route with another Host is the registry's 404 (not under /v2/)" \
  "404 no" "$(curl -s -o "$work/out" -w '%{http_code}' -H 'Host: registry.example.com' \
  "$st/memory") $(grep -q wasm_memory_bytes "$work/out" && echo yes || echo no)"

echo "==> put: streaming with a known length, through wasm, buffered"
got="$(curl -s -o "$work/out" -w '%{http_code}' -X PUT --data-binary @"$work/small" "$st/object/o/stream")"
check "put from the request body piped into a FixedLengthStream (no bytes through wasm)" "201 $small_size $small_md5" "$got $(jfile '"\(.size) \(.etag)"' "$work/out")"
got="$(curl -s -o "$work/out" -w '%{http_code}' -X PUT --data-binary @"$work/small" "$st/object/o/chunks?mode=chunks")"
check "put from the request body through wasm (worker::FixedLengthStream)" \
  "201 $small_size $small_md5" "$got $(jfile '"\(.size) \(.etag)"' "$work/out")"
got="$(curl -s -o "$work/out" -w '%{http_code}' -X PUT --data-binary @"$work/small" "$st/object/o/bytes?mode=bytes")"
check "put of bytes buffered in wasm" "201 $small_size $small_md5" \
  "$got $(jfile '"\(.size) \(.etag)"' "$work/out")"
for mode in stream chunks; do
  check "a $mode body shorter than its declared length fails the put" 500 \
    "$(code -X PUT --data-binary x "$st/object/o/short-$mode?mode=$mode&len=10")"
  check "  and stores nothing" 404 "$(code "$st/meta/o/short-$mode")"
  check "a $mode body longer than its declared length fails the put" 500 \
    "$(code -X PUT --data-binary xyz "$st/object/o/long-$mode?mode=$mode&len=2")"
  check "  and stores nothing" 404 "$(code "$st/meta/o/long-$mode")"
done

echo "==> head"
check "head of an object: its size and etag" "{\"key\":\"o/stream\",\"size\":$small_size,\"etag\":\"$small_md5\"}" \
  "$(json . "$st/meta/o/stream")"
check "head of a missing key is None (404)" 404 "$(code "$st/meta/o/missing")"

echo "==> streamed object responses keep Content-Length"
status="$(fetch "$work/got" "$work/h" "$st/object/o/stream")"
check "GET streams the object: 200" 200 "$status"
check "  Content-Length is the object size" "$small_size" "$(header "$work/h" content-length)"
check "  no chunked encoding" "" "$(header "$work/h" transfer-encoding)"
check "  the bytes are the object's" same "$(cmp -s "$work/got" "$work/small" && echo same)"
status="$(fetch "$work/got" "$work/h" -H 'Range: bytes=1000-1999' "$st/object/o/stream")"
check "GET with a range: 206" 206 "$status"
check "  Content-Length is the range length" 1000 "$(header "$work/h" content-length)"
check "  Content-Range" "bytes 1000-1999/$small_size" "$(header "$work/h" content-range)"
check "  the bytes are the range's" same \
  "$(cmp -s "$work/got" <(tail -c +1001 "$work/small" | head -c 1000) && echo same)"
status="$(fetch /dev/null "$work/h" -I "$st/object/o/stream")"
check "HEAD: 200" 200 "$status"
check "  Content-Length is the object size" "$small_size" "$(header "$work/h" content-length)"
check "HEAD of a missing key: 404" 404 "$(code -I "$st/object/o/missing")"
fetch /dev/null "$work/h" "$st/object/o/stream?cl=identity" >/dev/null
check "(runtime behaviour) a stream of unknown length loses a Content-Length header" \
  chunked "$(header "$work/h" transfer-encoding)"

echo "==> get with a byte range, read into wasm"
curl -s -o "$work/got" "$st/read/o/stream?offset=4096&length=100"
check "ranged get returns exactly the range" same \
  "$(cmp -s "$work/got" <(tail -c +4097 "$work/small" | head -c 100) && echo same)"
curl -s -o "$work/got" "$st/read/o/stream"
check "whole get" same "$(cmp -s "$work/got" "$work/small" && echo same)"
check "get of a missing key is None (404)" 404 "$(code "$st/read/o/missing")"

echo "==> conditional puts"
check "create-if-absent (etagDoesNotMatch: \"*\") on an existing key: 412 (put resolved null)" 412 \
  "$(code -X PUT --data-binary new "$st/object/o/stream?if=absent")"
check "  left the object alone" "$small_md5" "$(jraw .etag "$st/meta/o/stream" | tr -d '"')"
check "create-if-absent on a new key: 201" 201 "$(code -X PUT --data-binary v1 "$st/object/o/cas?if=absent")"
etag1="$(jraw .etag "$st/meta/o/cas" | tr -d '"')"
got="$(curl -s -o "$work/out" -w '%{http_code}' -X PUT --data-binary v2 "$st/object/o/cas?if=match&etag=$etag1")"
check "compare-and-swap (etagMatches) with the current etag: 201" 201 "$got"
etag2="$(jfile .etag "$work/out")"
check "  a new etag" different "$([[ -n "$etag2" && "$etag2" != "$etag1" ]] && echo different)"
check "compare-and-swap with a stale etag: 412" 412 \
  "$(code -X PUT --data-binary v3 "$st/object/o/cas?if=match&etag=$etag1")"
check "  left the object alone" v2 "$(curl -s "$st/read/o/cas")"
check "compare-and-swap on a missing key: 412" 412 \
  "$(code -X PUT --data-binary v3 "$st/object/o/absent?if=match&etag=$etag1")"
check "  created nothing" 404 "$(code "$st/meta/o/absent")"
check "compare-and-swap with the HTTP (quoted) etag form: 201" 201 \
  "$(code -X PUT --data-binary v4 "$st/object/o/cas?if=match&etag=%22$etag2%22")"

echo "==> delete"
check "delete: 204" 204 "$(code -X DELETE "$st/object/o/cas")"
check "  gone" 404 "$(code "$st/meta/o/cas")"
check "delete of a missing key succeeds" 204 "$(code -X DELETE "$st/object/o/cas")"

echo "==> list"
for key in l/a l/b/1 l/b/2 l/c l/d/1 l/e m/x; do
  curl -s -o /dev/null -X PUT --data-binary "$key" "$st/object/$key"
done
check "prefix" '{"keys":["l/a","l/b/1","l/b/2","l/c","l/d/1","l/e"],"common_prefixes":[],"truncated":false}' \
  "$(json . "$st/list?prefix=l/")"
check "limit" '{"keys":["l/a","l/b/1"],"common_prefixes":[],"truncated":true}' \
  "$(json . "$st/list?prefix=l/&limit=2")"
check "a full page with nothing after it is not truncated" \
  '{"keys":["l/e"],"common_prefixes":[],"truncated":false}' \
  "$(json . "$st/list?prefix=l/&start_after=l/d/1&limit=1")"
check "start after" '{"keys":["l/b/2","l/c","l/d/1","l/e"],"common_prefixes":[],"truncated":false}' \
  "$(json . "$st/list?prefix=l/&start_after=l/b/1")"
check "delimiter: common prefixes" '{"keys":["l/a","l/c","l/e"],"common_prefixes":["l/b/","l/d/"],"truncated":false}' \
  "$(json . "$st/list?prefix=l/&delimiter=/")"
check "delimiter and limit: keys and prefixes count together" \
  '{"keys":["l/a"],"common_prefixes":["l/b/"],"truncated":true}' \
  "$(json . "$st/list?prefix=l/&delimiter=/&limit=2")"
check "delimiter and start after a common prefix: not repeated" \
  '{"keys":["l/c","l/e"],"common_prefixes":["l/d/"],"truncated":false}' \
  "$(json . "$st/list?prefix=l/&delimiter=/&start_after=l/b/")"
entries=()
after=""
for _ in $(seq 20); do
  page="$(json . "$st/list?prefix=l/&delimiter=/&limit=1&start_after=$after")"
  next="$(jfile '(.keys + .common_prefixes) | .[]' - <<<"$page")"
  [[ -z "$next" ]] || { entries+=("$next"); after="$next"; }
  [[ "$(jfile .truncated - <<<"$page")" == true ]] || break
done
check "paging one entry at a time by start-after visits each entry once" \
  "l/a l/b/ l/c l/d/ l/e" "${entries[*]}"

echo "==> multipart upload across requests"
upload="$(jraw .upload_id -X POST "$st/multipart/mp/big")"
check "create: an upload id" yes "$([[ -n "$upload" && "$upload" != null ]] && echo yes)"
p1="$(jraw .etag -X PUT --data-binary @"$work/part1" "$st/multipart/mp/big?upload_id=$upload&part=1")"
p2="$(jraw .etag -X PUT --data-binary @"$work/part2" "$st/multipart/mp/big?upload_id=$upload&part=2&mode=chunks")"
p3="$(jraw .etag -X PUT --data-binary @"$work/part3" "$st/multipart/mp/big?upload_id=$upload&part=3&mode=bytes")"
check "upload 5 MiB, 5 MiB and 1 MB parts in three later requests (resumed by id)" yes \
  "$([[ -n "$p1" && -n "$p2" && -n "$p3" && "$p1$p2$p3" != *null* ]] && echo yes)"
parts="$(jq -cn --arg a "$p1" --arg b "$p2" --arg c "$p3" '[[1,$a],[2,$b],[3,$c]]')"
whole_size="$(stat -c %s "$work/whole")"
check "complete: the object" "$whole_size" \
  "$(jraw .size -X POST --data "$parts" "$st/complete/mp/big?upload_id=$upload")"
status="$(fetch "$work/got" "$work/h" "$st/object/mp/big")"
check "  streams back whole with Content-Length" "200 $whole_size same" \
  "$status $(header "$work/h" content-length) $(cmp -s "$work/got" "$work/whole" && echo same)"
check "complete again: no such upload (404)" 404 \
  "$(code -X POST --data "$parts" "$st/complete/mp/big?upload_id=$upload")"
upload="$(jraw .upload_id -X POST "$st/multipart/mp/bad")"
q1="$(jraw .etag -X PUT --data-binary @"$work/part1" "$st/multipart/mp/bad?upload_id=$upload&part=1")"
q2="$(jraw .etag -X PUT --data-binary @"$work/part6" "$st/multipart/mp/bad?upload_id=$upload&part=2")"
q3="$(jraw .etag -X PUT --data-binary @"$work/part3" "$st/multipart/mp/bad?upload_id=$upload&part=3")"
parts="$(jq -cn --arg a "$q1" --arg b "$q2" --arg c "$q3" '[[1,$a],[2,$b],[3,$c]]')"
curl -s -o "$work/out" -X POST --data "$parts" "$st/complete/mp/bad?upload_id=$upload"
check "complete with parts of unequal sizes fails (R2 error 10048)" yes \
  "$(grep -q '(10048)' "$work/out" && echo yes)"
check "abort: 204" 204 "$(code -X DELETE "$st/multipart/mp/bad?upload_id=$upload")"
check "abort again succeeds" 204 "$(code -X DELETE "$st/multipart/mp/bad?upload_id=$upload")"
check "upload part after abort: no such upload (404)" 404 \
  "$(code -X PUT --data-binary @"$work/part3" "$st/multipart/mp/bad?upload_id=$upload&part=4")"
check "complete after abort: no such upload (404)" 404 \
  "$(code -X POST --data "$parts" "$st/complete/mp/bad?upload_id=$upload")"
check "  nothing stored" 404 "$(code "$st/meta/mp/bad")"

echo "==> a panic (or another trap) is a logged 500, and the next request is served"
check "panic: 500" 500 "$(code --max-time 30 "$st/panic")"
check "  next request: 200" 200 "$(code --max-time 30 "$st/meta/o/stream")"
sleep 1
check "  logged with its message" yes "$(grep -q 'Rust panic: panicked at .*selftest.rs' "$log" && echo yes)"
check "a trap without a panic (abort): 500" 500 "$(code --max-time 30 "$st/abort")"
check "  next request: 200" 200 "$(code --max-time 30 "$st/meta/o/stream")"

echo "==> scheduled handler"
check "cron trigger runs: 200" 200 "$(code "$base/cdn-cgi/local/scheduled?cron=17+*+*+*+*")"
sleep 1
check "  and runs the engine's maintenance against the bucket" yes \
  "$(grep -q 'berth: maintenance (17 \* \* \* \*): {"expired":' "$log" && echo yes)"

echo
printf '%s passed, %s failed\n' "$passed" "$failed"
if ((failed > 0)); then
  echo "wrangler dev log: $log (BERTH_SMOKE_KEEP=1 keeps it)"
  tail -60 "$log"
  exit 1
fi
