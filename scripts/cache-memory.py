#!/usr/bin/env python3
"""A hub's RSS growth while MB megabytes (env MB, default 60) of 10 KB updates are published.

    scripts/cache-memory.py BINARY [serve flags...]

Starts BINARY serve on a fresh data directory (durable log unless --memory is among the flags),
publishes from 8 threads, and prints one JSON line: RSS before the first publish and 2 s after
the last. Used for docs/storage.md, "Memory: --cache-size". Pin it and pause other work for
figures worth quoting."""
import os, socket, subprocess, sys, tempfile, time, json, urllib.request, hmac, hashlib, base64, concurrent.futures as cf
binp = sys.argv[1]; extra = sys.argv[2:]
KEY = "cachemem-key-cachemem-key-cachemem-key"
d = tempfile.mkdtemp()
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
modern = b"--issuer" in subprocess.run([binp, "serve", "--help"], capture_output=True).stdout
iss = ["--issuer", "urn:cachemem"] if modern else []
p = subprocess.Popen([binp, "serve", "--addr", f"127.0.0.1:{port}", "--jwt-key", KEY, "--publish-rate", "0"] + ([] if "--memory" in extra else ["--data-dir", d + "/data"]) + iss + extra,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, RUST_LOG="warn"))
for _ in range(100):
    try: socket.create_connection(("127.0.0.1", port)).close(); break
    except OSError: time.sleep(0.1)
tokargs = [binp, "token", "--jwt-key", KEY, "--publish", "*", "--ttl", "1h"]
if modern: tokargs += ["--issuer", "urn:cachemem", "--audience", f"http://127.0.0.1:{port}/.well-known/mercure"]
tok = subprocess.run(tokargs, capture_output=True, text=True).stdout.strip().split()[-1]
def rss():
    for l in open(f"/proc/{p.pid}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1])
time.sleep(0.5)
r0 = rss()
size = 10_000; total_mb = float(os.environ.get("MB", "60")); n = int(total_mb * 1e6 / size)
body = ("topic=t&data=" + "x" * size).encode()
def pub(i):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/.well-known/mercure", data=body, headers={"Authorization": "Bearer " + tok, "Content-Type": "application/x-www-form-urlencoded"})
    urllib.request.urlopen(req).read()
with cf.ThreadPoolExecutor(8) as ex: list(ex.map(pub, range(n)))
time.sleep(2)
r1 = rss()
print(json.dumps({"bin": binp, "flags": extra, "updates": n, "mb": total_mb, "rss_start_kib": r0, "rss_end_kib": r1, "growth_mib": round((r1 - r0) / 1024, 1)}))
p.terminate(); p.wait()
