"""tools.ingest throughput: one day of 0.5 Hz records (43,200) over one keep-alive HTTPS
connection in batches, then the same records again (all duplicates).  Prints records/s as the
client sees them and the server's own figures.  CPython; loopback only.

Then hostile bodies of the largest size the default config takes (max_body_bytes): for each,
the reply, its size and the peak memory while it is handled (tracemalloc over the whole
process: server and client), per byte of body.

The records are a plausible day (a diurnal temperature wave, humidity against it, pressure
drifting) with the sensors' noise and resolution (AM2320 0.1 degC / 0.1 %RH, BMP180 0.1 degC /
1 Pa), so the SQLite size is that of real data, not of a flat line."""

import http.client
import json
import math
import os
import random
import ssl
import sys
import tempfile
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tools.ingest import IngestServer  # noqa: E402
from tools.ingest.config import DEFAULTS  # noqa: E402
from tools.ingest.schema import format_timestamp  # noqa: E402

N = 43200
T0 = 1795478400 * 10**9  # 2026-11-24T00:00:00Z


def record(i, rng):
    hour = i * 2 / 3600.0
    temp = 14.0 - 6.0 * math.cos(2 * math.pi * (hour - 3.0) / 24.0)
    pa = 101325.0 + 110.0 * math.cos(4 * math.pi * hour / 24.0)
    bmp_pa = round(pa + rng.gauss(0, 3.0))
    used = 50000 + rng.randrange(4000)
    return {"$type": "weather_record", "symbol": "esp2462a1b2c3", "seq": i,
            "timestamp": format_timestamp(T0 + i * 2 * 10**9),
            "am2320_temp": round(temp + rng.gauss(0, 0.05), 1),
            "am2320_humidity": round(62.0 - 3.0 * (temp - 14.0) + rng.gauss(0, 0.1), 1),
            "bmp180_temp": round(temp + 0.3 + rng.gauss(0, 0.05), 1),
            "bmp180_pressure": float(bmp_pa),
            "bmp180_altitude": round(44330.0 * (1 - (bmp_pa / 101325.0) ** 0.1903), 2),
            "mem_used": used, "mem_free": 110000 - used}


def batches(size):
    rng = random.Random(1)  # the same day every run (and in both passes)
    for start in range(0, N, size):
        yield json.dumps([record(i, rng) for i in range(start, min(N, start + size))]).encode()


def run(srv, bodies, token):
    c = http.client.HTTPSConnection("127.0.0.1", srv.port, timeout=30,
                                    context=ssl.create_default_context(cafile=srv.ca_pem))
    t = time.perf_counter()
    for body in bodies:
        c.request("POST", "/api/v0/weather-data/write?writeMode=APPEND", body,
                  {"Authorization": "Bearer " + token, "Content-Type": "application/json"})
        r = c.getresponse()
        assert (r.status, r.read()) == (200, b"[]")
    c.close()
    return time.perf_counter() - t


def hostile_bodies(cap):
    """(name, body) of at most ``cap`` bytes, each built to cost the server the most."""
    n = (cap - 20) // 3
    yield "one message nesting empty objects", '[{"a":[' + ",".join(["{}"] * n) + ']}]'
    keys, size = [], 4
    while size < cap - 30:
        keys.append('"k%d":%d' % (len(keys), len(keys)))
        size += len(keys[-1]) + 1
    yield "one message with many keys", "[{" + ",".join(keys) + "}]"
    m = json.dumps({"$type": "weather_record", "symbol": "s" * 100, "mem_used": "x"})
    yield "10,000 invalid messages", "[" + ",".join([m] * 10000) + "]"
    yield "tiny messages past max_messages", "[" + ",".join(["1"] * ((cap - 2) // 2)) + "]"


def amplification(srv, token):
    c = http.client.HTTPSConnection("127.0.0.1", srv.port, timeout=120,
                                    context=ssl.create_default_context(cafile=srv.ca_pem))
    for name, text in hostile_bodies(int(DEFAULTS["max_body_bytes"])):
        body = text.encode()
        del text
        tracemalloc.start()
        cpu = time.process_time()
        c.request("POST", "/api/v0/weather-data/write", body, {"Authorization": "Bearer " + token})
        r = c.getresponse()
        reply = r.read()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print("ingest: hostile body, %s: %d bytes -> %d, reply %d bytes, peak %.1f MB "
              "(%.0f bytes per body byte), %.2f s CPU" % (
                  name, len(body), r.status, len(reply), peak / 1e6, peak / len(body),
                  time.process_time() - cpu))
    c.close()


def main():
    d = tempfile.mkdtemp(prefix="bench_ingest-")
    srv = IngestServer(d, port=0, verbose=-1).start()  # figures printed below instead
    c = http.client.HTTPSConnection("127.0.0.1", srv.port,
                                    context=ssl.create_default_context(cafile=srv.ca_pem))
    c.request("POST", "/oauth/token", "grant_type=password&username=admin&password=admin",
              {"Authorization": "Basic d2ViOnNlY3JldA=="})
    token = json.loads(c.getresponse().read())["access_token"]
    for size in (100,):
        bodies = list(batches(size))  # made before the clock starts: the server is measured
        dt = run(srv, bodies, token)
        print("ingest: %d records, batches of %d: %.2f s, %.0f records/s" % (N, size, dt, N / dt))
        dt = run(srv, bodies, token)
        print("ingest: same %d again (all duplicates): %.2f s, %.0f records/s" % (N, dt, N / dt))
    amplification(srv, token)
    figs = srv.stop()
    print("ingest: server figures: written %d, duplicates %d, batches %d, %s msg/s active" % (
        figs["written"], figs["duplicates"], figs["batches"], figs["messages_per_s_active"]))
    print("ingest: store %.1f MB for one day" % (sum(
        os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(os.path.join(d, "streams"))
        for f in fs) / 1e6))


if __name__ == "__main__":
    main()
