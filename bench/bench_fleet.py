"""Records/s end to end through the fleet path on this machine, beside the HTTPS ingest path.

Fleet: light boards (the firmware's lib/mqtt_uplink.py and lib/tslog.py under CPython, 2
processes) each holding a backlog of records (a plausible noisy day), published QoS 1 over
MQTT/TLS into a 3-node NATS JetStream cluster (R3), drained by 1, 2 or 4 collectors into
PostgreSQL 15 or SQLite.  Timed from the boards' start until the store holds every
record (each checked once, in order, per board).  HTTPS: the same records POSTed by 4
boards' worth of clients in batches of 50 (the board's batch_max) over TLS with a bearer
token to tools/ingest (SQLite), one keep-alive connection each.

Everything shares the machine's cores (the boards too), so the figures are what one
machine does as a whole, not a ceiling of any part.  Run: .venv/bin/python
bench/bench_fleet.py [--boards 20 --records 5000]  (part of ``make bench``).
"""

import argparse
import http.client
import json
import os
import ssl
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tools.fleet.run import Fleet  # noqa: E402


def fleet_run(store, collectors, boards, records):
    d = tempfile.mkdtemp(prefix="bench-fleet-")
    f = Fleet(d, nodes=3, collectors=collectors, store=store, boards=boards, mp_boards=0,
              records=records, rate=0, board_procs=2, log=lambda t: None)
    try:
        f.start()
        f.start_boards()
        figs = f.wait_boards()
        want = sum(b["stored"] for b in figs.values())
        got = f.wait_stored(want, timeout=600)
        s = f.summary(figs)
        t_acked = f.t_acked - f.t_boards
    finally:
        f.stop()
    return s, got, t_acked


def https_run(boards, records):
    from tools.fleet.boards import board_path, sample
    from tools.ingest import IngestServer

    board_path()
    import record
    import utc

    d = tempfile.mkdtemp(prefix="bench-https-")
    srv = IngestServer(d, {}, port=0, out=open(os.devnull, "w")).start()
    ctx = ssl.create_default_context(cafile=srv.ca_pem)
    t_end = [0.0]

    def board(k):
        c = http.client.HTTPSConnection("localhost", srv.port, context=ctx)
        c.request("POST", "/oauth/token", "grant_type=password&username=admin&password="
                  "admin&scope=trust", {"Authorization": "Basic d2ViOnNlY3JldA==",
                                        "Content-Type": "application/x-www-form-urlencoded"})
        tok = json.loads(c.getresponse().read())["access_token"]
        ts0 = utc.now_ms() - records * 2000
        for a in range(1, records + 1, 50):
            body = []
            for i in range(a, min(a + 50, records + 1)):
                v = sample(i)
                body.append({"$type": "weather_record", "symbol": "h%03d" % k,
                             "timestamp": utc.iso(ts0 + 2000 * i), "seq": i,
                             **dict(zip(record.SENSOR_FIELDS, v))})
            c.request("POST", "/api/v0/weather-data/write?writeMode=APPEND", json.dumps(body),
                      {"Authorization": "Bearer " + tok, "Content-Type": "application/json"})
            r = c.getresponse()
            assert r.status == 200 and r.read() == b"[]"
        t_end[0] = max(t_end[0], time.monotonic())

    t0 = time.monotonic()
    ts = [threading.Thread(target=board, args=(k,)) for k in range(boards)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    n = srv.store.count("weather-data")
    srv.stop()
    return n, t_end[0] - t0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--boards", type=int, default=20)
    p.add_argument("--records", type=int, default=5000)
    a = p.parse_args()
    total = a.boards * a.records
    print("fleet: %d boards x %d records = %d, 3 NATS nodes (R3), MQTT/TLS QoS 1, "
          "4096-byte messages" % (a.boards, a.records, total))
    for store, cols in (("postgresql", (1, 2, 4)), ("sqlite", (1, 2))):
        for n in cols:
            s, got, acked = fleet_run(store, n, a.boards, a.records)
            print("  %-10s %d collector%s: %6.0f records/s end to end (%d in %.1f s; all "
                  "acked by the cluster after %.1f s)%s" % (
                      store, n, "s" if n > 1 else " ", got / s["seconds"], got, s["seconds"],
                      acked, "" if s["ok"] else "  NOT OK: %s" % s))
    n, secs = https_run(4, total // 4)
    print("  https      4 clients, batches of 50 into tools/ingest (SQLite): %6.0f records/s "
          "(%d in %.1f s)" % (n / secs, n, secs))


if __name__ == "__main__":
    main()
