"""Backlog drain in a small MicroPython heap: lib/sender.py vs the seed's approach.

Orchestrated from CPython: starts tools/ingest (HTTPS, its own CA) in-process, then runs
``micropython -X heapsize=H`` "boards" with every module loaded as .mpy, as a board loads
them (``mpy-cross`` without ``-march``: bytecode only, so the unix port runs it; importing
.py source would run the compiler on the heap being measured, which a board never does):

* ours: host_tests/uplink_device.py stores N records in the real TSLog (lib/tslog.py) and
  drains them with https/oauth/sender while sampling goes on (N/40 more stored during the
  drain); prints the heap taken by code (uplink modules, TSLog, the device script) and by
  data (before sending, largest live heap after a step: gc.collect() then gc.mem_alloc()),
  the drain rate in records/s, and checks the store holds each record exactly once.
* seed: bench/uplink_seed.py loads the same queue as a JSON list of dicts and posts it in one
  ``requests.post(json=...)``, at the same heap sizes.

Run: ``.venv/bin/python bench/bench_uplink.py [N]`` (default 43200, one day at 0.5 Hz).
About 2 minutes: each drain of one day takes ~40 s on a loaded 2-core host.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "host_tests" / "fakes")]
from tools import mpy  # noqa: E402

BIN = Path(sys.executable).parent
MP = str(BIN / "micropython")
# A 32-bit build (the ESP32's pointer size; docs/bench.md, "A 32-bit MicroPython") runs first:
# the one `make mp32` built, or MICROPYTHON32=/path/to/micropython.
MP32 = os.environ.get("MICROPYTHON32") or (
    str(ROOT / ".mp32" / "micropython") if (ROOT / ".mp32" / "micropython").exists() else None)
# 64k is the target: a 32-bit build drains in it; on the 64-bit unix port the code
# takes ~1.4x the heap and nearly fills it, so the next sizes show where it fits there.
HEAPS = ("64k", "80k", "88k", "96k")
SEED_HEAPS = ("64k", "96k", "2m")
MODULES = ("lib/https.py", "lib/oauth.py", "lib/utc.py", "lib/record.py", "lib/sender.py",
           "lib/sender_refusals.py", "lib/tslog.py", "host_tests/uplink_device.py",
           "bench/uplink_seed.py")
MPY_DIR = tempfile.mkdtemp(prefix="bench_uplink-mpy-")


def compile_mpy():
    for src in MODULES:
        mpy.compile(ROOT / src, MPY_DIR)


def run(heap, module, argv, mp=MP):
    """Run ``module`` (.mpy) with ``argv``; returns (stdout lines, last error line, wall s)."""
    env = dict(os.environ, MICROPYPATH=":".join([MPY_DIR, str(ROOT / "host_tests" / "fakes"),
                                                 ".frozen"]))
    t0 = time.monotonic()
    p = subprocess.run([mp, "-X", "heapsize=" + heap, "-c", "import sys; sys.argv[1:] = %r; "
                        "import %s" % (list(argv), module)], env=env, capture_output=True,
                       text=True, cwd=str(ROOT), timeout=3600)
    err = [ln.strip() for ln in (p.stderr or p.stdout).splitlines() if ln.strip()]
    return p.stdout.splitlines(), (err[-1] if p.returncode else ""), time.monotonic() - t0


def kb(n):
    return "%.1f KB" % (n / 1024)


def ours(srv, d, n, heap, mp=MP):
    tag = ("32-" if mp != MP else "") + heap
    dev = d + "/dev-" + tag
    os.makedirs(dev)
    cfg = {"url": "https://localhost:%d" % srv.port, "ca": srv.ca_der, "dir": dev,
           "user": "admin", "password": "admin", "count": n, "batch_max": 16,
           "measure_heap": True, "deadline_s": 3000, "store_during": n // 40,
           "symbol": "esp" + tag}
    with open(dev + ".json", "w") as f:
        json.dump(cfg, f)
    out, err, wall = run(heap, "uplink_device", [dev + ".json"], mp)
    code, phases, figs = None, {}, None
    for line in out:
        if line.startswith("@@CODE "):  # uplink modules, then uplink modules and TSLog
            code = [int(x) for x in line.split()[1:]]
        elif line.startswith("@@PHASE "):
            phases[line.split()[1]] = int(line.split()[2])
        elif line.startswith("@@DEVICE "):
            figs = json.loads(line[9:])
    head = "  ours, %sheapsize=%s:" % ("32-bit, " if mp != MP else "", heap)
    if code and len(code) == 1:
        print("%s code: uplink modules %s, then TSLog did not fit" % (head, kb(code[0])))
        head = "    "
    elif code:
        script = phases.get("start", 0) - code[0] - code[1]
        print("%s code: uplink modules %s + TSLog %s%s" % (
            head, kb(code[0]), kb(code[1]),
            (" + interpreter, device script and config %s = %s live before any data" % (
                kb(script), kb(phases["start"]))) if "start" in phases else ""))
        head = "    "
    total = n + cfg["store_during"]
    if figs is None or figs["sent"] < total:
        print("%s FAILED after phase %r: %s" % (
            head, list(phases)[-1] if phases else "imports",
            err[:120] if figs is None else "sent %d of %d, %s" % (
                figs["sent"], total, figs["last_error"])))
        return False
    seqs = [r["seq"] for r in srv.store.query("weather-data", symbol=[cfg["symbol"]])]
    once = len(seqs) == total and sorted(seqs) == list(
        range(figs["first_seq"], figs["first_seq"] + total))
    data0 = phases["sender"] - phases["start"]
    print("    data: TSLog open %s, after storing %d %s more, https.Client + CA + OAuth %s, "
          "Sender %s = %s before sending; peak live during the drain %s (%s above that) of a "
          "%s heap" % (
              kb(phases["log_open"] - phases["start"]), n,
              kb(phases["stored"] - phases["log_open"]),
              kb(phases["client"] - phases["stored"]),
              kb(phases["sender"] - phases["client"]), kb(data0), kb(figs["heap_peak_live"]),
              kb(figs["heap_peak_live"] - phases["sender"]), kb(figs["heap_total"])))
    print("    drain: sent %d in %.1f s = %.0f records/s (process %.1f s incl. storing %d), "
          "%d batches, %d connection(s), %d token grant(s)" % (
              figs["sent"], figs["send_s"], figs["sent"] / max(figs["send_s"], 1e-3), wall, n,
              figs["batches"], figs["connects"], figs["grants"]))
    print("    store: %d rows (%d queued + %d sampled while draining), exactly once: %s" % (
        len(seqs), n, cfg["store_during"], once))
    return True


def seed(d, n):
    from tools.ingest import IngestServer

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
    # "FATAL: uncaught NLR" in the 1.29-preview unix port), so its server is plain HTTP.
    plain = IngestServer(d + "/srv-http", {}, port=0, tls=False).start()
    try:
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
        for heap in SEED_HEAPS:
            out, err, wall = run(heap, "uplink_seed",
                                 ["http://127.0.0.1:%d" % plain.port, queue, d + "/token"])
            res = [json.loads(ln[7:]) for ln in out if ln.startswith("@@SEED ")]
            if res and res[0].get("ok"):
                r = res[0]
                print("  seed (list + one post json=), heapsize=%s: posted %d in %.1f s" % (
                    heap, r["loaded"], r["s"]))
            elif res:
                r = res[0]
                print("  seed (list + one post json=), heapsize=%s: %s %s (%.1f s)" % (
                    heap, r.get("error") or "HTTP %s" % r.get("status"),
                    "while posting the %d records" % r["loaded"] if r["loaded"] else
                    "while loading the queue (json.load of %d records)" % n, r["s"]))
            else:
                print("  seed (list + one post json=), heapsize=%s: FAILED %s" % (heap,
                                                                                   err[:120]))
    finally:
        plain.stop()


def main():
    from tools.ingest import IngestServer

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 43200
    d = tempfile.mkdtemp(prefix="bench_uplink-")
    compile_mpy()
    print("uplink drain of %d queued records (43200 = one day at 0.5 Hz), modules as .mpy, "
          "real TSLog, 64-bit unix port%s" % (n, " and a 32-bit build" if MP32 else
                                              " (no 32-bit build: make mp32 MP_SRC=...)"))
    try:
        srv = IngestServer(d + "/srv", {}, port=0).start()
        try:
            if MP32:
                ours(srv, d, n, "64k", MP32)
            for heap in HEAPS:
                if ours(srv, d, n, heap):
                    break
        finally:
            srv.stop()
        seed(d, n)
    finally:
        shutil.rmtree(d, ignore_errors=True)
        shutil.rmtree(MPY_DIR, ignore_errors=True)


if __name__ == "__main__":
    main()
