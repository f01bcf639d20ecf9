"""The dashboard on a fleet's month: 10 boards x 30 days at 0.5 Hz (12.96 million records).

Prints: the time to build the data (written as day files through the store's own tables and
rollup code, the way ``Store.write`` fills them), ``Store.summary``/``latest`` (the board
panels), ``Store.series`` per board for 1 h / 24 h / 7 d / 30 d at 1,200 buckets (the plot
width) with the points a page receives per series, and, when Chromium is there, the page
itself in headless Chromium at 30 d and 24 h: from navigation to every plot drawn.

The records are plausible weather (a diurnal wave, humidity against it, pressure drifting;
AM2320 0.1 degC / 0.1 %RH, BMP180 1 Pa resolution with noise), with a 6-hour outage per
board and a sensor failing now and then, so the sizes and the gaps are those of real data.
The data dir is kept in the temp folder and reused by the next run (delete it to rebuild).
CPython; loopback only.  ``.venv/bin/python bench/bench_dashboard.py``"""

import math
import os
import random
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "host_tests"))

from tools.ingest import IngestServer, Store  # noqa: E402
from tools.ingest import store as store_mod  # noqa: E402
from tools.ingest.config import DEFAULTS  # noqa: E402

BOARDS = 10
DAYS = 30
STEP_NS = 2 * 10**9
DAY_NS = 86400 * 10**9
END = (time.time_ns() // DAY_NS) * DAY_NS  # today 00:00 UTC: the month before it
DATA = os.path.join(tempfile.gettempdir(), "bench_dashboard-%d-%d-%d" % (
    BOARDS, DAYS, END // DAY_NS))
FIELDS = ("am2320_temp", "bmp180_temp", "am2320_humidity", "bmp180_pressure")


def day_rows(day, rng):
    out = []
    t0 = END - (DAYS - day) * DAY_NS
    names = list(store_mod._config.stream_fields(DEFAULTS["streams"]["weather-data"]))
    for b in range(BOARDS):
        sym = "esp24%02da1b2c3" % b
        off = b * 0.4
        for i in range(DAY_NS // STEP_NS):
            t = t0 + i * STEP_NS + rng.randrange(0, 50) * 10**6
            if day == b + 3 and 6 * 1800 <= i < 12 * 1800:  # a 6-hour outage per board
                continue
            hour = (t % DAY_NS) / 3.6e12
            temp = 9.0 + off - 6.0 * math.cos(2 * math.pi * (hour - 3.0) / 24.0)
            pa = 101325.0 + 600.0 * math.sin(2 * math.pi * (t / DAY_NS) / 9.0) + 50 * b
            f = {"am2320_temp": round(temp + rng.gauss(0, 0.05), 1),
                 "am2320_humidity": round(65.0 - 2.5 * (temp - 9.0) + rng.gauss(0, 0.1), 1),
                 "bmp180_temp": round(temp + 0.3 + rng.gauss(0, 0.05), 1),
                 "bmp180_pressure": float(round(pa + rng.gauss(0, 3.0))),
                 "bmp180_altitude": 44.0, "mem_used": 50000 + rng.randrange(4000),
                 "mem_free": 60000}
            if rng.random() < 0.001:
                f["am2320_temp"] = f["am2320_humidity"] = None  # a failed AM2320 reading
            seq = (day * 86400 // 2) + i
            out.append((sym, "weather_record", seq, t, t + 10 * 10**9, 0) +
                       tuple(f.get(n) for n in names))
    return out, names


def build():
    """Day files written as the server writes them (its tables, its rollup statement),
    rows inserted in bulk; the dedup index is marked up to date without being filled (the
    dashboard never reads it, and rehashing 13 million rows would only time this bench)."""
    if os.path.isdir(os.path.join(DATA, "streams")):
        return None
    st = Store(DATA)
    s = st._stream("weather-data")
    rng = random.Random(1)
    t = time.perf_counter()
    roll = 0.0
    for day in range(DAYS):
        rows, names = day_rows(day, rng)
        conn = s.day_conn(store_mod.utc_day(END - (DAYS - day) * DAY_NS))
        sql = "INSERT INTO messages(symbol, type, seq, capture_ns, acquisition_ns, collision%s)" \
              " VALUES(?, ?, ?, ?, ?, ?%s)" % ("".join(', "%s"' % n for n in names),
                                               ", ?" * len(names))
        conn.execute("BEGIN")
        conn.executemany(sql, rows)
        r0 = time.perf_counter()
        s.roll_up(conn, 0)
        roll += time.perf_counter() - r0
        last = conn.execute("SELECT max(id) FROM messages").fetchone()[0]
        conn.execute("COMMIT")
        s.idx.execute("INSERT OR REPLACE INTO files VALUES(?, ?)",
                      (os.path.basename(store_mod.conn_path(s)), last))
    st.close()
    return time.perf_counter() - t, roll


def size_mb(d):
    return sum(os.path.getsize(os.path.join(a, f)) for a, _, fs in os.walk(d) for f in fs) / 1e6


def main():
    built = build()
    if built:
        print("built %d boards x %d days at 0.5 Hz in %.0f s (rollups %.1f s of it): %s, %.0f MB"
              % (BOARDS, DAYS, built[0], built[1], DATA, size_mb(DATA)))
    else:
        print("reusing %s (%.0f MB)" % (DATA, size_mb(DATA)))
    st = Store(DATA, readonly=True)
    t = time.perf_counter()
    summ = st.summary("weather-data")
    t1 = time.perf_counter()
    st.latest("weather-data", "weather_record")
    t2 = time.perf_counter()
    n = sum(d["count"] for s in summ.values() for d in s.values())
    print("records: %d; summary %.0f ms (first call), %.1f ms (cached); latest %.0f ms" % (
        n, (t1 - t) * 1e3, _ms(lambda: st.summary("weather-data")), (t2 - t1) * 1e3))
    syms = sorted(summ)
    for label, span in (("1 h", 3600), ("24 h", 86400), ("7 d", 7 * 86400),
                        ("30 d", 30 * 86400)):
        until = END
        since = until - span * 10**9
        times, points = [], 0
        for sym in syms:
            t = time.perf_counter()
            s = st.series("weather-data", sym, "weather_record", FIELDS, since, until, 1200)
            times.append(time.perf_counter() - t)
            points = max(points, len(s["t"]))
        print("series %-4s: %4.0f ms for %d boards (%.0f-%.0f ms each), buckets of %g s, "
              "at most %d points per series" % (label, sum(times) * 1e3, len(syms),
                                                 min(times) * 1e3, max(times) * 1e3,
                                                 s["bucket_s"], points))
    browser_figures()


def _ms(fn):
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1e3


def browser_figures():
    import cdp

    if cdp.find_chromium() is None:
        print("page: no Chromium (apt-get install chromium): page figures skipped")
        return
    srv = IngestServer(DATA, {"users": {"viewer": {"password": "bench-view-1",
                                                    "authorities": ["TB_ALLOW_READ"]}}},
                       port=0).start()
    b = cdp.Browser(trust_cert=srv.tls_paths["cert"])
    try:
        page = b.new_page()
        page.navigate(srv.url + "/login")
        page.eval("document.querySelector('[name=username]').value = 'viewer';"
                  "document.querySelector('[name=password]').value = 'bench-view-1';"
                  "document.querySelector('form').submit()")
        page.wait_for("window.dash && dash.loads >= 1", timeout=120)
        iso = lambda s: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(s))  # noqa: E731
        end = END // 10**9
        for label, days in (("30 d", 30), ("7 d", 7), ("24 h", 1)):
            query = "from=%s&to=%s" % (iso(end - days * 86400), iso(end))
            runs = []
            for _ in range(3):
                t = time.perf_counter()
                page.navigate(srv.url + "/?" + query, timeout=120)
                page.wait_for("window.dash && dash.loads >= 1", timeout=120)
                runs.append((time.perf_counter() - t, page.eval("dash.lastLoadMs"),
                             page.eval("dash.doneAt")))
            pts = page.eval("Math.max(...Object.values(dash.plots).flat()"
                            ".map((u) => u.data[0].length))")
            print("page %-4s, %d boards x 3 plots: %.0f-%.0f ms from navigation to every plot "
                  "drawn (%.0f-%.0f ms of it fetching the data and drawing; %.2f-%.2f s as "
                  "this harness sees it, polling included), at most %d points per series" % (
                      label, BOARDS, min(r[2] for r in runs), max(r[2] for r in runs),
                      min(r[1] for r in runs), max(r[1] for r in runs),
                      min(r[0] for r in runs), max(r[0] for r in runs), pts))
        errs = page.errors()
        if errs:
            print("page errors: %s" % errs)
    finally:
        b.close()
        srv.stop()


if __name__ == "__main__":
    main()
