"""oras-py (PyPI `oras`) against berth, for scripts/client-matrix.sh: pushes a 2 MiB artifact
and pulls it back byte-identical, over plain HTTP, with the auth backend given ("token", oras-py's
default, or "basic"), logged in as USER (or anonymous when USER is empty).

usage: client-matrix-oras.py ADDR REPO BACKEND USER PASSWORD WORKDIR [push|pull|push+pull]"""
import os, sys, traceback, hashlib
import oras.client

addr, repo, backend, user, password, work = sys.argv[1:7]
os.makedirs(work, exist_ok=True)
os.chdir(work)  # oras-py only uploads files below the working directory
payload = os.urandom(2 * 1024 * 1024 + 17)
open("artifact.bin", "wb").write(payload)
target = f"{addr}/{repo}:v1"
mode = sys.argv[7] if len(sys.argv) > 7 else "push+pull"
client = oras.client.OrasClient(hostname=addr, insecure=True, auth_backend=backend)
if user:
    client.login(username=user, password=password, hostname=addr, config_path=os.path.join(work, "config.json"))
try:
    if "push" in mode:
        response = client.push(target=target, files=["artifact.bin"])
        print("push:", response.status_code)
        if response.status_code not in (200, 201):
            sys.exit(1)
    if "pull" in mode:
        files = client.pull(target=target, outdir=os.path.join(work, "out"))
        got = open(files[0], "rb").read()
        if "push" in mode and got != payload:
            print("pull: bytes differ"); sys.exit(1)
        print("pull:", len(got), "bytes", "byte-identical" if "push" in mode else "")
except SystemExit:
    raise
except Exception as e:
    print("FAILED:", type(e).__name__, str(e)[:300])
    sys.exit(1)
