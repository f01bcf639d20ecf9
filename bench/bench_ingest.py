"""tools.ingest throughput: one day of 0.5 Hz records (43,200) over one keep-alive HTTPS
connection in batches, then the same records again (all duplicates).  Prints records/s as the
client sees them and the server's own figures.  CPython; loopback only."""

import http.client
import json
import os
import ssl
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tools.ingest import IngestServer  # noqa: E402
from tools.ingest.schema import format_timestamp  # noqa: E402

N = 43200
T0 = 1795478400 * 10**9  # 2026-11-24T00:00:00Z


def batches(size):
    for start in range(0, N, size):
        yield json.dumps([
            {"$type": "weather_record", "symbol": "esp2462", "seq": i,
             "timestamp": format_timestamp(T0 + i * 2 * 10**9), "am2320_temp": 21.5,
             "am2320_humidity": 40.0, "bmp180_temp": 21.25, "bmp180_pressure": 101325.0,
             "bmp180_altitude": 12.5, "mem_used": 50000, "mem_free": 60000}
            for i in range(start, min(N, start + size))]).encode()


def run(srv, size, token):
    c = http.client.HTTPSConnection("127.0.0.1", srv.port, timeout=30,
                                    context=ssl.create_default_context(cafile=srv.ca_pem))
    t = time.perf_counter()
    for body in batches(size):
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
        dt = run(srv, size, token)
        print("ingest: %d records, batches of %d: %.2f s, %.0f records/s" % (N, size, dt, N / dt))
        dt = run(srv, size, token)
        print("ingest: same %d again (all duplicates): %.2f s, %.0f records/s" % (N, dt, N / dt))
    figs = srv.stop()
    print("ingest: server figures: written %d, duplicates %d, batches %d, %s msg/s active" % (
        figs["written"], figs["duplicates"], figs["batches"], figs["messages_per_s_active"]))
    print("ingest: store %.1f MB for one day" % (sum(
        os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(os.path.join(d, "streams"))
        for f in fs) / 1e6))


if __name__ == "__main__":
    main()
