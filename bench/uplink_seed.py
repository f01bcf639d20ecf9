"""The seed firmware's upload, for bench_uplink.py (run under MicroPython).

Usage: micropython uplink_seed.py URL QUEUE.json TOKEN_FILE
As in the seed's main.py: the whole queue is loaded as a list of dicts (json.load), then
posted in one ``requests.post(..., json=[...])`` with ``$type``/``symbol`` added to every
record.  Prints ``@@SEED {json}`` with the outcome, including a MemoryError.
"""

import gc
import json
import sys
import time

import requests


def main():
    url, path = sys.argv[1], sys.argv[2]
    with open(sys.argv[3]) as f:
        token = f.read().strip()
    out = {"ok": False, "loaded": 0}
    t0 = time.ticks_ms()
    try:
        with open(path) as f:
            samples = json.load(f)
        out["loaded"] = len(samples)
        gc.collect()
        out["heap_after_load"] = gc.mem_alloc()
        res = requests.post(
            url + "/api/v0/weather-data/write",
            json=[dict(r, **{"$type": "weather_record", "symbol": "espseed"}) for r in samples],
            headers={"Authorization": "bearer " + token, "Content-Type": "application/json"})
        out["status"] = res.status_code
        res.close()
        out["ok"] = res.status_code // 100 == 2
    except MemoryError as e:
        out["error"] = "MemoryError: %s" % e
    out["s"] = time.ticks_diff(time.ticks_ms(), t0) / 1000
    print("@@SEED " + json.dumps(out))


main()
