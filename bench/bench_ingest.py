"""tools.ingest throughput: one day of 0.5 Hz records (43,200) over one keep-alive HTTPS
connection in batches, then the same records again (all duplicates).  Prints records/s as the
client sees them and the server's own figures.  CPython; loopback only.

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

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tools.ingest import IngestServer  # noqa: E402
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
    figs = srv.stop()
    print("ingest: server figures: written %d, duplicates %d, batches %d, %s msg/s active" % (
        figs["written"], figs["duplicates"], figs["batches"], figs["messages_per_s_active"]))
    print("ingest: store %.1f MB for one day" % (sum(
        os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(os.path.join(d, "streams"))
        for f in fs) / 1e6))


if __name__ == "__main__":
    main()
