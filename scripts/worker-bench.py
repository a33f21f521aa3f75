#!/usr/bin/env python3
"""Pushes a large blob in chunks through berth's Worker and pulls it back, digest-checked.

Usage: worker-bench.py BASE_URL WORKERD_PIDS_FILE [SIZE_MIB [CHUNK_MIB [PARALLEL]]]

BASE_URL is the Worker under `wrangler dev` (scripts/worker-bench.sh starts one). The blob
(default 1024 MiB of random bytes, made on the fly, never on disk) goes up as chunked-upload
PATCHes of CHUNK_MIB (default 64) with Content-Range, closed by a PUT with the digest; then it
is pulled with one GET, hashed as it arrives, and compared. With PARALLEL > 1, that many blobs
of SIZE_MIB are pushed at once (one connection each), then pulled one after another. Meanwhile a thread samples the RSS of
the processes whose ids WORKERD_PIDS_FILE lists (re-read as they appear), every 100 ms.
With the diagnostics routes on (BERTH_SELFTEST=true), it also reports the Worker's wasm
memory after the push and the pull (the simulated R2 runs in the same workerd process, so
workerd's RSS is the Worker and the R2 simulator together).
Prints the figures, one `name: value` per line. Talks only to the given (loopback) URL.
"""

import hashlib
import http.client
import os
import sys
import threading
import time
import urllib.parse

MIB = 1024 * 1024


def rss_kib(pid, field):
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Sampler(threading.Thread):
    def __init__(self, pids_file):
        super().__init__(daemon=True)
        self.pids_file = pids_file
        self.peak_kib = 0
        self.stop = threading.Event()

    def pids(self):
        try:
            with open(self.pids_file) as f:
                return [int(p) for p in f.read().split()]
        except (OSError, ValueError):
            return []

    def run(self):
        while not self.stop.wait(0.1):
            total = sum(rss_kib(pid, "VmRSS") for pid in self.pids())
            self.peak_kib = max(self.peak_kib, total)


def wasm_memory(conn):
    """The Worker's wasm linear memory (its peak: it never shrinks), from the selftest route."""
    import json

    conn.request("GET", "/_berth/selftest/memory")
    response = conn.getresponse()
    body = response.read()
    if response.status != 200:
        return None
    return json.loads(body)["wasm_memory_bytes"]


def push(connect, name, size, chunk):
    """One chunked push: POST, PATCHes of `chunk` with Content-Range, closing PUT. Returns the
    digest and the number of PATCHes."""
    conn = connect()
    conn.request("POST", f"/v2/{name}/blobs/uploads/", headers={"Content-Length": "0"})
    response = conn.getresponse()
    response.read()
    assert response.status == 202, f"upload start: {response.status}"
    location = response.getheader("Location")
    digest = hashlib.sha256()
    offset = 0
    requests = 0
    while offset < size:
        n = min(chunk, size - offset)
        data = os.urandom(n)
        digest.update(data)
        path = urllib.parse.urlsplit(location)
        target = path.path + ("?" + path.query if path.query else "")
        conn.request(
            "PATCH",
            target,
            body=data,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{offset + n - 1}",
                "Content-Length": str(n),
            },
        )
        response = conn.getresponse()
        body = response.read()
        assert response.status == 202, f"PATCH at {offset}: {response.status} {body[:300]!r}"
        location = response.getheader("Location")
        offset += n
        requests += 1
    hexdigest = "sha256:" + digest.hexdigest()
    path = urllib.parse.urlsplit(location)
    query = (path.query + "&" if path.query else "") + "digest=" + hexdigest
    conn.request("PUT", f"{path.path}?{query}", headers={"Content-Length": "0"})
    response = conn.getresponse()
    body = response.read()
    assert response.status == 201, f"closing PUT: {response.status} {body[:300]!r}"
    conn.close()
    return hexdigest, requests


def main():
    base = urllib.parse.urlsplit(sys.argv[1])
    pids_file = sys.argv[2]
    size = int(sys.argv[3] if len(sys.argv) > 3 else 1024) * MIB
    chunk = int(sys.argv[4] if len(sys.argv) > 4 else 64) * MIB
    parallel = int(sys.argv[5] if len(sys.argv) > 5 else 1)
    assert base.hostname == "127.0.0.1", "loopback only"
    stamp = int(time.time())
    names = [f"bench/blob{stamp}-{i}" for i in range(parallel)]

    sampler = Sampler(pids_file)
    sampler.start()

    def connect():
        return http.client.HTTPConnection(base.hostname, base.port, timeout=600)

    started = time.monotonic()
    results = [None] * parallel
    errors = []

    def run(i):
        try:
            results[i] = push(connect, names[i], size, chunk)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(parallel)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    push_secs = time.monotonic() - started
    push_peak = sampler.peak_kib
    conn = connect()
    push_wasm = wasm_memory(conn)

    started = time.monotonic()
    ok = True
    content_lengths = set()
    for name, (hexdigest, _) in zip(names, results):
        conn.request("GET", f"/v2/{name}/blobs/{hexdigest}")
        response = conn.getresponse()
        assert response.status == 200, f"GET: {response.status}"
        content_lengths.add(response.getheader("Content-Length"))
        pulled = hashlib.sha256()
        received = 0
        while True:
            block = response.read(4 * MIB)
            if not block:
                break
            pulled.update(block)
            received += len(block)
        ok = ok and received == size and "sha256:" + pulled.hexdigest() == hexdigest
    pull_secs = time.monotonic() - started
    sampler.stop.set()
    sampler.join()
    total = size * parallel
    requests = sum(r[1] for r in results)
    print(f"blobs: {parallel} of {size // MIB} MiB, {', '.join(r[0] for r in results)}")
    print(f"push: {push_secs:.1f} s ({total / MIB / push_secs:.1f} MiB/s), {parallel} at once, {requests} PATCHes of {chunk // MIB} MiB, then PUTs")
    print(f"pull: {pull_secs:.1f} s ({total / MIB / pull_secs:.1f} MiB/s), one after another, Content-Length {' '.join(sorted(map(str, content_lengths)))}")
    print(f"digests verified on pull: {'yes' if ok else 'NO'}")
    print(f"workerd peak RSS sampled during push: {push_peak / 1024:.1f} MiB")
    print(f"workerd peak RSS sampled overall: {sampler.peak_kib / 1024:.1f} MiB")
    wasm = wasm_memory(conn)
    if push_wasm is not None and wasm is not None:
        print(f"Worker wasm memory after push: {push_wasm / MIB:.1f} MiB, after pull: {wasm / MIB:.1f} MiB")
    hwm = sum(rss_kib(pid, "VmHWM") for pid in sampler.pids())
    print(f"workerd VmHWM: {hwm / 1024:.1f} MiB")
    sys.exit(0 if ok and content_lengths == {str(size)} else 1)


if __name__ == "__main__":
    main()
