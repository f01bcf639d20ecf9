# cpython-only: drives headless Chromium against the ingest server (desktop tools)
"""The dashboard (issue 14) in a real browser: Debian's headless Chromium over the DevTools
protocol (host_tests/cdp.py) against tools.ingest over HTTPS, holding known data.

Checks what a person would: sign-in with the server's users (read permission needed), the
plotted points against the stored data (recomputed here from the rows by the rule in
docs/ingest.md), gaps drawn as gaps, a range change, the board panel with its offline
state, local time with UTC on hover, the CSV download against ``query``; that a JS error
is caught; and keeps a screenshot (.test-artifacts/dashboard.png).  Without Chromium the
browser test is skipped, except under CI (``.ci/run`` installs it), where it fails."""

import datetime
import hashlib
import http.client
import json
import math
import os
import random
import ssl
import subprocess
import sys
import time
import urllib.parse

import support
from tools.ingest import IngestServer, Store
from tools.ingest.schema import format_timestamp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHOT = os.path.join(ROOT, ".test-artifacts", "dashboard.png")
STREAM = "weather-data"
TZ = "Europe/Paris"
USERS = {"viewer": {"password": "view-pw-1", "authorities": ["TB_ALLOW_READ"]},
         "board": {"password": "board-pw-1", "authorities": ["TB_ALLOW_WRITE"]}}
FIELDS = ("am2320_temp", "bmp180_temp", "am2320_humidity", "bmp180_pressure")
MIN = 60 * 10**9


def _weather(sym, seq, t, rng):
    h = t / 3.6e12
    temp = 12.0 - 5.0 * math.cos(2 * math.pi * (h - 3.0) / 24.0)
    return {"type": "weather_record", "symbol": sym, "seq": seq, "capture_ns": t,
            "fields": {"am2320_temp": round(temp + rng.gauss(0, 0.1), 1),
                       "am2320_humidity": round(70.0 - 2.0 * temp + rng.gauss(0, 0.3), 1),
                       "bmp180_temp": None if seq % 11 == 0 else round(temp + 0.4, 1),
                       "bmp180_pressure": float(round(101300 + 80 * math.sin(h / 5)
                                                      + rng.gauss(0, 3))),
                       "bmp180_altitude": 12.0, "mem_used": 50000, "mem_free": 60000}}


def _health(sym, t, **over):
    f = {"boot": 3, "reset_cause": "power", "resets": "1:power,2:wdt,3:power", "uptime_s": 93784,
         "heap_free": 61440, "heap_used": 49152, "flash_free": 30000, "queue_lag": 2,
         "rssi": -61, "wifi_drops": 1, "samples": 1, "stored": 1, "missed": 0,
         "sensor_failed": 0, "am2320_fails": 0, "bmp180_fails": 4, "dropped": 5, "dead": 1,
         "sent": 40000, "firmware": "1.0.0"}
    f.update(over)
    return {"type": "health_record", "symbol": sym, "seq": None, "capture_ns": t, "fields": f}


def make_data(d, now):
    """Two boards, one sample a minute for 30 h: esp-roof sends until now with a 2-hour
    outage 10 h ago; esp-shed went quiet 3 h ago.  Written as uploads arrive: every
    10 minutes, a batch of what was measured since (so acquisition times are real)."""
    rng = random.Random(14)
    rows = {}
    for sym, end in (("esp-roof", now), ("esp-shed", now - 3 * 3600 * 10**9)):
        out = []
        t0 = now - 30 * 3600 * 10**9
        for i in range(30 * 60):
            t = t0 + i * MIN + rng.randrange(-300, 300) * 10**6
            if t > end or now - 10 * 3600 * 10**9 <= t < now - 8 * 3600 * 10**9:
                continue
            out.append(_weather(sym, i, t, rng))
        rows[sym] = out
    clock = [0]
    st = Store(d, clock_ns=lambda: clock[0])
    batches = {}
    for out in rows.values():
        for r in out:
            batches.setdefault(r["capture_ns"] // (10 * MIN), []).append(r)
    for k in sorted(batches):
        clock[0] = min(now - 10**9, (k + 1) * 10 * MIN + 5 * 10**9)
        st.write(STREAM, batches[k])
    clock[0] = now - 30 * 10**9
    st.write(STREAM, [_health("esp-roof", now - 40 * 10**9)])
    clock[0] = now - 3 * 3600 * 10**9 + 20 * 10**9
    st.write(STREAM, [_health("esp-shed", now - 3 * 3600 * 10**9, firmware="", rssi=0,
                              reset_cause="brownout")])
    st.close()
    return rows


# -- the rule, recomputed from the rows (docs/ingest.md "Dashboard", downsample.py) ---------
def expected(rows, since, until, w):
    k0, k1 = since // w, -(-until // w)
    buckets = {}
    for r in rows:
        k = r["capture_ns"] // w
        if k0 <= k < k1:
            buckets.setdefault(k, []).append(r)
    spacing = []
    prev = None
    for k in sorted(buckets):
        ts = [r["capture_ns"] for r in buckets[k]]
        if len(ts) > 1:
            spacing.append((max(ts) - min(ts)) / (len(ts) - 1))
        if prev is not None:
            spacing.append(min(ts) - prev)
        prev = max(ts)
    spacing.sort()
    m = len(spacing) // 2
    med = spacing[m] if len(spacing) % 2 else (spacing[m - 1] + spacing[m]) / 2
    gap = max(w, 3 * med)
    out = []  # (x s, {field: (mean, min, max)}) or (x, None) for a gap
    prev = None
    for k in sorted(buckets):
        ts = [r["capture_ns"] for r in buckets[k]]
        if prev is not None and min(ts) - prev > gap:
            out.append(((prev + min(ts)) / 2e9, None))
        prev = max(ts)
        vals = {}
        for f in FIELDS:
            v = [r["fields"][f] for r in buckets[k] if r["fields"][f] is not None]
            vals[f] = (sum(v) / len(v), min(v), max(v)) if v else (None, None, None)
        out.append(((min(ts) + max(ts)) / 2e9, vals))
    return out


def _ns(iso):
    dt = datetime.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return round(dt.timestamp() * 1000) * 10**6


def close(a, b, tol=1e-6):
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


def check_plotted(page, rows, sym):
    """The uPlot data of each plot of ``sym`` against the rows: x, mean, min, max."""
    got = page.eval("(() => { const s = dash.series[%r]; return {from: s.from, to: s.to, "
                    "w: s.bucket_s, plots: dash.plots[%r].map((u) => u.data)}; })()"
                    % (sym, sym))
    w = round(got["w"] * 1e9)
    exp = expected(rows, _ns(got["from"]), _ns(got["to"]), w)
    scale = {"bmp180_pressure": 0.01}
    plots = [("am2320_temp", "bmp180_temp"), ("am2320_humidity",), ("bmp180_pressure",)]
    gaps = 0
    for data, fields in zip(got["plots"], plots):
        assert len(data[0]) == len(exp), (sym, len(data[0]), len(exp))
        assert len(data[0]) <= 2 * 2000 + 1  # a few thousand points per series at most
        for j, (x, vals) in enumerate(exp):
            assert close(data[0][j], x, 1e-9), (sym, j, data[0][j], x)
            for i, f in enumerate(fields):
                trio = (None, None, None) if vals is None else tuple(
                    None if v is None else v * scale.get(f, 1) for v in vals[f])
                plotted = (data[1 + 3 * i][j], data[2 + 3 * i][j], data[3 + 3 * i][j])
                assert all(close(p, e) for p, e in zip(plotted, trio)), (sym, f, j, plotted, trio)
        gaps = sum(1 for _, v in exp if v is None)
    return w, gaps


def _local(t):
    from zoneinfo import ZoneInfo
    return datetime.datetime.fromtimestamp(t, ZoneInfo(TZ)).strftime("%Y-%m-%d %H:%M:%S")


def https(srv, method, path, body=None, headers=None):
    ctx = ssl.create_default_context(cafile=srv.ca_pem)
    c = http.client.HTTPSConnection("127.0.0.1", srv.port, context=ctx, timeout=10)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def sign_in(srv, user, password):
    return https(srv, "POST", "/login", urllib.parse.urlencode(
        {"username": user, "password": password}),
        {"Content-Type": "application/x-www-form-urlencoded"})


def test_sign_in_and_read_permission():
    """Nothing but the form without a session; only a user with TB_ALLOW_READ gets one; a
    wrong password counts as a failed login (and is throttled like /oauth/token); the
    session is no access token, and no password reaches the log."""
    import io

    log = io.StringIO()
    srv = IngestServer(support.tmpdir("dash-auth"), {"users": USERS}, port=0, out=log,
                       verbose=2).start()
    try:
        assert https(srv, "GET", "/")[:2] == (303, https(srv, "GET", "/")[1])
        assert https(srv, "GET", "/")[1]["location"] == "/login"
        st, h, body = https(srv, "GET", "/login")
        assert st == 200 and b"<form" in body and "frame-ancestors 'none'" in \
            h["content-security-policy"]
        for path in ("/dash/boards", "/dash/series?symbol=x&from=1&to=2", "/dash/export",
                     "/static/dashboard.js", "/static/uPlot.iife.min.js"):
            assert https(srv, "GET", path)[0] == 401, path
        assert sign_in(srv, "viewer", "wrong")[0] == 401
        st, h, body = sign_in(srv, "board", "board-pw-1")  # right password, no read
        assert st == 403 and b"TB_ALLOW_READ" in body and "set-cookie" not in h
        st, h, _ = sign_in(srv, "viewer", "view-pw-1")
        assert st == 303 and h["location"] == "/"
        cookie = h["set-cookie"]
        for attr in ("HttpOnly", "SameSite=Strict", "Secure", "Path=/"):
            assert attr in cookie, cookie
        jar = {"Cookie": cookie.split(";")[0]}
        st, _, body = https(srv, "GET", "/dash/boards", headers=jar)
        assert st == 200 and json.loads(body)["user"] == "viewer"
        assert https(srv, "GET", "/static/dashboard.js", headers=jar)[0] == 200
        assert https(srv, "GET", "/static/../config.py", headers=jar)[0] == 404
        token = cookie.split(";")[0].split("=", 1)[1]  # a session is not an access token
        assert https(srv, "GET", "/api/v0/streams",
                     headers={"Authorization": "Bearer " + token})[0] == 401
        st, h, _ = https(srv, "POST", "/logout", headers=jar)
        assert st == 303 and "Max-Age=0" in h["set-cookie"]
        for _ in range(6):  # past 5 failures in a row from one address: locked, as /oauth/token
            assert sign_in(srv, "viewer", "wrong")[0] == 401
        st, h, _ = sign_in(srv, "viewer", "view-pw-1")
        assert st == 429 and "retry-after" in h
        assert srv.stats_snapshot()["login_failures"] == 7
    finally:
        srv.stop()
    text = log.getvalue()
    assert "view-pw-1" not in text and "board-pw-1" not in text and token not in text
    assert "POST /login" in text  # the request line is logged, never the body


def test_vendored_uplot_is_the_pinned_release():
    """uPlot is vendored from its npm package (no CDN, no build step): the files are the
    ones whose checksums static/vendor/README.md records, with the licence."""
    vendor = os.path.join(ROOT, "tools", "ingest", "static", "vendor")
    readme = open(os.path.join(vendor, "README.md")).read()
    sums = [ln.split() for ln in readme.splitlines() if len(ln.split()) == 2
            and len(ln.split()[0]) == 64]
    assert len(sums) == 3
    for digest, name in sums:
        with open(os.path.join(vendor, name), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == digest, name
    page = open(os.path.join(ROOT, "tools", "ingest", "static", "dashboard.html")).read()
    assert "//" not in page.replace("https://", "").split("<body>")[0].replace("/static/", "")


def _browser_or_skip():
    import cdp

    if cdp.find_chromium() is None:
        if os.environ.get("CI"):
            raise AssertionError("Chromium missing under CI: .ci/run installs Debian's chromium")
        support.skip("no Chromium (apt-get install chromium)")
    return cdp


def test_dashboard_in_headless_chromium():
    cdp = _browser_or_skip()
    d = support.tmpdir("dash")
    now = time.time_ns()
    rows = make_data(d, now)
    srv = IngestServer(d, {"users": USERS}, port=0).start()
    browser = cdp.Browser(trust_cert=srv.tls_paths["cert"],
                          log_path=os.path.join(d, "chromium.log"))
    try:
        page = browser.new_page(timezone=TZ)
        page.navigate(srv.url + "/")  # not signed in: the form
        assert page.eval("location.pathname") == "/login"
        page.eval("document.querySelector('[name=username]').value = 'viewer';"
                  "document.querySelector('[name=password]').value = 'view-pw-1';"
                  "document.querySelector('form').submit()")
        page.wait_for("window.dash && dash.loads >= 1")
        assert page.eval("location.search") == "?stream=weather-data&range=24h"  # the default
        assert page.eval("document.querySelector('[data-range=\"24h\"]')"
                         ".getAttribute('aria-pressed')") == "true"

        # 24 h: buckets of whole minutes from the per-minute rollups, one gap (the outage)
        w, gaps = check_plotted(page, rows["esp-roof"], "esp-roof")
        assert w % MIN == 0 and gaps == 1, (w, gaps)
        w, gaps = check_plotted(page, rows["esp-shed"], "esp-shed")
        assert gaps == 1
        n = page.eval("dash.plots['esp-roof'][0].data[0].length")
        assert 300 < n < 2100

        # the board panel
        panel = page.eval("""Object.fromEntries([...document.querySelectorAll('section.board')]
            .map((s) => [s.dataset.symbol, {state: s.querySelector('.state').textContent,
              cls: s.querySelector('.state').className, items: Object.fromEntries(
              [...s.querySelectorAll('dl.panel div')].map((e) => [e.dataset.k,
                e.querySelector('dd').textContent]))}]))""")
        roof, shed = panel["esp-roof"], panel["esp-shed"]
        assert roof["state"] == "online" and "online" in roof["cls"]
        assert roof["items"]["queue_lag"] == "2 records" and roof["items"]["dropped"] == "5"
        assert roof["items"]["dead"] == "1" and roof["items"]["rssi"] == "-61 dBm"
        assert roof["items"]["heap"] == "60 / 48 KiB" and roof["items"]["uptime"] == "1 d 2 h"
        assert roof["items"]["reset_cause"] == "power (boot 3)"
        assert roof["items"]["firmware"] == "1.0.0"
        last = max(r["capture_ns"] for r in rows["esp-roof"])
        assert roof["items"]["last_sample"] == _local(last // 10**9)
        shed_last = max(r["capture_ns"] for r in rows["esp-shed"])  # its last upload:
        seen = max((shed_last // (10 * MIN) + 1) * 10 * MIN + 5 * 10**9,  # a batch
                   now - 3 * 3600 * 10**9 + 20 * 10**9) / 1e9  # or its health record
        assert "offline" in shed["cls"] and shed["state"].startswith(
            "offline since " + _local(int(seen))), shed
        assert shed["state"].endswith("(3 h ago)")
        assert shed["items"]["firmware"] == "not reported" and shed["items"]["rssi"] == "unknown"

        # local time on the axis, UTC on hover
        box = page.eval("(() => { const r = document.querySelector("
                        "'section[data-symbol=\"esp-roof\"] .u-over').getBoundingClientRect(); "
                        "return [r.x, r.y, r.width, "
                        "r.height]; })()")
        page.eval("window.scrollTo(0, 0)")
        page.mouse("mouseMoved", box[0] + box[2] * 0.5, box[1] + box[3] * 0.5)
        hover = page.wait_for("(() => { const v = document.querySelector('section[data-symbol="
                              "\"esp-roof\"] .u-legend .u-series .u-value').textContent; "
                              "return v.includes('UTC') && v; })()")
        local, utc = hover.split(" (")
        t = datetime.datetime.strptime(utc.rstrip(")"), "%Y-%m-%d %H:%M:%S UTC").replace(
            tzinfo=datetime.timezone.utc).timestamp()
        assert local == _local(t), hover
        x = int(now // 10**9) // 3600 * 3600 - 7200  # a whole hour (not midnight): its label
        x -= 3600 if _local(x)[11:13] == "00" else 0
        tick = page.eval("(() => { const u = dash.plots['esp-roof'][0]; "
                         "return u.axes[0].values(u, [%d], 0, 50, 3600)[0]; })()" % x)
        assert tick == _local(x)[11:16], (tick, _local(x))  # local time, 24-hour clock

        # the download button: the same CSV as `query --format csv`
        href = page.eval("document.querySelector('section[data-symbol=\"esp-roof\"] "
                         "a.download').href")
        csv_page = page.eval("fetch(%r).then((r) => r.text())" % href)
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(href).query)
        p = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "ingest"), "query",
                            "--data-dir", d, "--symbol", "esp-roof", "--type", "weather_record",
                            "--since", q["from"][0], "--until", q["to"][0]],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        assert csv_page == p.stdout and csv_page.count("\n") > 1000

        # a range change: 1 h, buckets of seconds read from the rows (no rollup)
        page.eval("document.querySelector('[data-range=\"1h\"]').click()")
        page.wait_for("dash.loads >= 2")
        assert page.eval("location.search") == "?stream=weather-data&range=1h"
        w, gaps = check_plotted(page, rows["esp-roof"], "esp-roof")
        assert w < MIN and gaps == 0
        assert page.eval("dash.series['esp-roof'].t.length") in (59, 60, 61)
        assert "No samples" in page.eval("document.querySelector('section[data-symbol="
                                         "\"esp-shed\"] .plots').textContent")
        # a custom range (by the URL, as a shared link would): the outage and around it
        a = format_timestamp(now - 12 * 3600 * 10**9)
        b = format_timestamp(now - 6 * 3600 * 10**9)
        page.navigate(srv.url + "/?" + urllib.parse.urlencode({"from": a, "to": b}))
        page.wait_for("window.dash && dash.loads >= 1")
        assert page.eval("document.querySelector('#apply') && dash.range") == "custom"
        w, gaps = check_plotted(page, rows["esp-roof"], "esp-roof")
        assert gaps == 1 and page.eval("dash.series['esp-roof'].from") == a

        page.navigate(srv.url + "/?range=24h")
        page.wait_for("window.dash && dash.loads >= 1")
        page.screenshot(SHOT)
        assert os.path.getsize(SHOT) > 20000
        assert page.errors() == [], page.errors()

        # the error check itself works: a JS error is seen (and would fail this test)
        page.eval("setTimeout(() => { throw new Error('probe-14') }, 0); 1")
        page.wait_for("true")
        time.sleep(0.3)
        assert any("probe-14" in e for e in page.errors()), page.errors()
    finally:
        browser.close()
        srv.stop()
