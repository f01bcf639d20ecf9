# cpython-only: drives the desktop ingest server with raw TLS sockets, threads and a subprocess
"""Hostile input against tools/ingest on loopback (issue 17): framing, sizes, slow clients,
connection caps, file handles running out, login throttling, amplification, exposure beyond
loopback.  Each test writes valid records first, then abuses the server, then checks that
every one of those records is stored exactly once and that nothing was answered 500.

The servers here get small limits (1.5 s deadlines, 64 KiB bodies, 12 connections) so that
the whole file runs in well under a minute; docs/ingest.md "Limits" has the defaults.
Connections "from other clients" come from other loopback addresses (127.0.0.2 ...), which
Linux routes to 127.0.0.1 like any other."""

import base64
import http.client
import io
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time

import support
from tools.ingest import IngestServer
from tools.ingest import config as ingest_config
from tools.ingest import schema as ingest_schema
from tools.ingest.store import parse_time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STREAM = "weather-data"
WRITE = "/api/v0/weather-data/write"
BASIC = "Basic " + base64.b64encode(b"web:secret").decode()
T0 = parse_time("2026-11-24T10:00:00Z")
HOSTILE = {"request_timeout_s": 1.5, "idle_timeout_s": 1.5, "max_body_bytes": 64 * 1024,
           "max_messages": 500, "max_error_entries": 20, "max_connections": 12,
           "max_connections_per_client": 4}
CLOSED = (OSError, ssl.SSLError)


def start(cfg=None, name="hostile", **kw):
    c = dict(HOSTILE)
    c.update(cfg or {})
    return IngestServer(support.tmpdir(name), c, port=0, **kw).start()


def context(srv):
    return ssl.create_default_context(cafile=srv.ca_pem)


def https(srv, src="127.0.0.1"):
    return http.client.HTTPSConnection("127.0.0.1", srv.port, context=context(srv), timeout=10,
                                       source_address=(src, 0))


def raw(srv, src="127.0.0.1", tls=True, timeout=10):
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=timeout,
                                 source_address=(src, 0))
    return context(srv).wrap_socket(s, server_hostname="127.0.0.1") if tls else s


def rec(seq, i=None, **over):
    i = seq if i is None else i
    m = {"$type": "weather_record", "symbol": "esp2462a1b2c3",
         "timestamp": ingest_schema.format_timestamp(T0 + i * 2000000000),
         "am2320_temp": 21.5, "am2320_humidity": 40.25, "bmp180_temp": 21.0,
         "bmp180_pressure": 101325.0, "bmp180_altitude": 12.5, "mem_used": 1000 + i,
         "mem_free": 90000, "seq": seq}
    m.update(over)
    return m


def call(c, method, path, body=None, headers=None):
    if isinstance(body, (list, dict)):
        body = json.dumps(body)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    raw_body = r.read()
    try:
        data = json.loads(raw_body)
    except ValueError:
        data = raw_body
    return r.status, {k.lower(): v for k, v in r.getheaders()}, data


def login(srv, src="127.0.0.1", user="admin", password="admin"):
    st, h, d = call(https(srv, src), "POST", "/oauth/token",
                    "grant_type=password&username=%s&password=%s" % (user, password),
                    {"Authorization": BASIC})
    return st, h, d


def token(srv, src="127.0.0.1"):
    st, _, d = login(srv, src)
    assert st == 200, d
    return d["access_token"]


def write_valid(srv, seqs, src="127.0.0.1"):
    """The valid records of a test, written (twice: the retry is absorbed) before the abuse."""
    c = https(srv, src)
    tok = token(srv, src)
    batch = [rec(s) for s in seqs]
    for _ in range(2):
        st, _, d = call(c, "POST", WRITE, batch, {"Authorization": "Bearer " + tok})
        assert (st, d) == (200, []), (st, d)
    return tok


def assert_once(srv, seqs):
    """Every valid record written before the abuse is stored exactly once; no 500."""
    got = sorted(r["seq"] for r in srv.store.query(STREAM) if r["seq"] in set(seqs))
    assert got == sorted(seqs), got
    s = srv.stats_snapshot()
    assert s["server_errors"] == 0 and s["collisions"] == 0, s


def read_reply(s, wait):
    """Read until the server closes or ``wait`` s pass.  -> (status, headers, body, closed)."""
    s.settimeout(0.2)
    data, closed = b"", False
    end = time.monotonic() + wait
    while time.monotonic() < end:
        try:
            got = s.recv(65536)
        except TimeoutError:
            continue
        except CLOSED:
            closed = True
            break
        if not got:
            closed = True
            break
        data += got
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if data else None
    headers = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body, closed


def exchange(srv, data, src="127.0.0.1", wait=4.0):
    """Send raw bytes over TLS without closing our side; the server must answer and close."""
    s = raw(srv, src)
    try:
        s.sendall(data)
        return read_reply(s, wait)
    finally:
        s.close()


def wait_for(cond, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


# -- framing -------------------------------------------------------------------------------

def test_malformed_framing_is_400_and_a_close_on_every_route():
    """Issue 17 item 3: a negative, non-numeric, doubled or conflicting length, a bad chunk
    size, an unknown transfer coding: 400 at once and a close, with or without a login, on
    every route; never a read to EOF (the old server buffered Content-Length: -1 until the
    client closed) and never a 500."""
    srv = start()
    try:
        seqs = list(range(1, 21))
        tok = write_valid(srv, seqs)
        routes = [("POST", "/oauth/token", BASIC), ("POST", WRITE, "Bearer " + tok),
                  ("GET", "/ping", ""), ("GET", "/nowhere", ""), ("POST", "/admin/faults", ""),
                  ("POST", "/api/v0/weather-data/select", "Bearer " + tok),
                  ("POST", "/login", ""), ("GET", "/", ""), ("GET", "/dash/series", ""),
                  ("GET", "/dash/export", "Bearer " + tok)]
        heads = [("Content-Length: -1", 400), ("Content-Length: abc", 400),
                 ("Content-Length: +5", 400), ("Content-Length: 5\r\nContent-Length: 6", 400),
                 ("Content-Length: 1" + "0" * 30, 400),
                 ("Transfer-Encoding: chunked\r\nContent-Length: 5", 400),
                 ("Transfer-Encoding: gzip, chunked", 400)]
        chunks = [(b"-1\r\n", 400), (b"zz\r\n", 400), (b"5\r\nhelloXY", 400),
                  (b"1" * 100 + b"\r\n", 400), (b"f" * 17 + b"\r\n", 400),
                  (b"f" * 16 + b"\r\n", 413)]
        cases = [(m, p, a, h, b"", code) for m, p, a in routes for h, code in heads]
        cases += [("POST", p, a, "Transfer-Encoding: chunked", body, code)
                  for m, p, a in routes[:2] for body, code in chunks]
        for method, path, auth, head, body, code in cases:
            req = "%s %s HTTP/1.1\r\nHost: x\r\n%s%s\r\n\r\n" % (
                method, path, "Authorization: %s\r\n" % auth if auth else "", head)
            st, h, _, closed = exchange(srv, req.encode() + body)
            assert (st, closed) == (code, True), (method, path, head, body, st, closed)
            assert h.get("connection") == "close", (path, head, h)
        assert srv.stats_snapshot()["client_errors"] >= len(cases)
        assert_once(srv, seqs)
    finally:
        srv.stop()


# -- sizes ---------------------------------------------------------------------------------

def test_sizes_are_capped_before_they_are_read():
    """Bodies over their cap are 413 without being buffered (a login body: 64 KiB, no
    login needed to try; a /write body: max_body_bytes), a chunked body that never ends is
    cut at the cap, oversized heads are 431/414; a body just over the cap keeps keep-alive."""
    srv = start()
    try:
        seqs = list(range(100, 120))
        tok = write_valid(srv, seqs)
        st, _, _, closed = exchange(srv, b"POST /oauth/token HTTP/1.1\r\nHost: x\r\n"
                                    b"Content-Length: 100000000\r\n\r\ngrant_type=pass")
        assert (st, closed) == (413, True)
        # Just over the cap, sent whole: 413, and the connection serves the next request.
        c = https(srv)
        st, _, _ = call(c, "POST", "/oauth/token", "x" * (65 * 1024), {"Authorization": BASIC})
        assert st == 413
        assert call(c, "GET", "/ping")[2] == b"pong"
        # A chunked /write that never ends: 413 and a close once past max_body_bytes.
        s = raw(srv)
        s.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n" % (WRITE, tok)).encode())
        sent, chunk = 0, b"4000\r\n" + b"[" * 16384 + b"\r\n"
        try:
            while sent < 64 * 1024 * 1024:
                s.sendall(chunk)
                sent += len(chunk)
        except CLOSED:
            pass
        st, _, _, closed = read_reply(s, 4.0)
        s.close()
        assert sent < 64 * 1024 * 1024 and (st in (413, None)) and closed, (sent, st)
        # Heads: 200 header lines, 40 KiB of headers, a 70 KiB request line.
        many = "".join("X-%d: y\r\n" % i for i in range(200))
        assert exchange(srv, ("GET /ping HTTP/1.1\r\n%s\r\n" % many).encode())[0] == 431
        big = "".join("X-%d: %s\r\n" % (i, "y" * 4000) for i in range(10))
        assert exchange(srv, ("GET /ping HTTP/1.1\r\n%s\r\n" % big).encode())[0] == 431
        assert exchange(srv, ("GET /%s HTTP/1.1\r\n\r\n" % ("a" * 70000)).encode())[0] == 414
        assert_once(srv, seqs)
    finally:
        srv.stop()


def test_error_reply_and_work_are_bounded():
    """Issue 17 item 4: tiny invalid messages cannot amplify.  The reply lists at most
    max_error_entries entries plus one with the count (WebAdmin layout); a body with more
    than max_messages messages is 413 and is not parsed past that point."""
    srv = start()
    try:
        seqs = list(range(200, 220))
        tok = write_valid(srv, seqs)
        auth = {"Authorization": "Bearer " + tok}
        c = https(srv)
        body = "[" + ",".join(["{}"] * 499 + [json.dumps(rec(220))]) + "]"
        st, _, d = call(c, "POST", WRITE, body, auth)
        assert st == 200 and len(d) == 21, (st, len(d))
        assert [e["index"] for e in d[:20]] == list(range(20)) and d[20]["rejected"] == 499
        assert "479 more" in d[20]["message"] and len(json.dumps(d)) < 16 * 1024
        st, _, d = call(c, "POST", WRITE, "[" + ",".join(["1"] * 501) + "]", auth)
        assert st == 413 and "500 messages" in d["message"]
        # The same with the default limits: a 128 KiB body of 1-byte messages.
        dflt = IngestServer(support.tmpdir("amp-default"), port=0).start()
        try:
            t2 = token(dflt)
            c2 = https(dflt)
            st, _, d = call(c2, "POST", WRITE, "[" + ",".join(["1"] * 65536) + "]",
                            {"Authorization": "Bearer " + t2})
            assert st == 413, st
            st, h, d = call(c2, "POST", WRITE, "[" + ",".join(["{}"] * 10000) + "]",
                            {"Authorization": "Bearer " + t2})
            assert st == 200 and len(d) == 101 and int(h["content-length"]) < 64 * 1024
        finally:
            dflt.stop()
        assert_once(srv, seqs + [220])
    finally:
        srv.stop()


# -- slow clients --------------------------------------------------------------------------

def _client_hello():
    """The first bytes a TLS client sends (its ClientHello), to dribble by hand."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ssl.create_default_context().wrap_bio(inc, out, server_hostname="127.0.0.1")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def _dribble(sock, data, step_s, result, name, budget_s=8.0):
    """Send ``data`` a byte every ``step_s``; note how long the server let this go on."""
    t0 = time.monotonic()
    try:
        for i in range(len(data)):
            if time.monotonic() - t0 > budget_s:
                break
            sock.send(data[i:i + 1])
            time.sleep(step_s)
        else:  # all sent: wait for the close
            sock.settimeout(budget_s)
            sock.recv(1)
        result[name] = ("not cut", time.monotonic() - t0)
    except CLOSED:
        result[name] = ("cut", time.monotonic() - t0)
    finally:
        sock.close()


def test_slow_clients_meet_a_whole_request_deadline():
    """Issue 17 item 5: a byte every 0.2 s never extends a request: a dribbled TLS
    handshake, request head or body is cut at request_timeout_s (1.5 s here), while a
    normal client is served meanwhile.  (The old server's timeout was per read: a byte a
    second kept a connection for ever.)"""
    srv = start()
    try:
        seqs = list(range(300, 320))
        tok = write_valid(srv, seqs)
        result = {}
        head = ("POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                "Content-Length: 100\r\n\r\n" % (WRITE, tok)).encode()
        slow = []
        s = raw(srv, "127.0.0.2", tls=False)
        slow.append((s, _client_hello(), "handshake"))
        s = raw(srv, "127.0.0.3")
        slow.append((s, head, "head"))
        s = raw(srv, "127.0.0.4")
        s.sendall(head)
        slow.append((s, b"[" + b" " * 98 + b"]", "body"))
        threads = [threading.Thread(target=_dribble, args=(sk, data, 0.2, result, name))
                   for sk, data, name in slow]
        for t in threads:
            t.start()
        silent = raw(srv, "127.0.0.5", tls=False)  # connects and says nothing at all
        c = https(srv)  # a normal client meanwhile
        assert call(c, "POST", WRITE, [rec(320)], {"Authorization": "Bearer " + tok})[2] == []
        c.close()
        for t in threads:
            t.join()
        silent.settimeout(8)
        t0 = time.monotonic()
        try:
            silent.recv(1)
        except CLOSED:
            pass
        silent.close()
        assert time.monotonic() - t0 < 4
        for name in ("handshake", "head", "body"):
            how, took = result[name]
            assert how == "cut" and took < 1.5 + 2.5, (name, result)
        # An idle keep-alive connection is closed after idle_timeout_s.
        c = https(srv)
        assert call(c, "GET", "/ping")[2] == b"pong"
        assert wait_for(lambda: srv.stats_snapshot()["request_timeouts"] >= 4, 3)
        time.sleep(2.5)  # (1 s of slack for a loaded machine)
        st = None
        try:
            st = call(c, "GET", "/ping")[0]
        except (http.client.HTTPException, OSError):
            pass
        assert st is None, st
        assert_once(srv, seqs + [320])
    finally:
        srv.stop()


# -- connection caps -----------------------------------------------------------------------

def test_connection_caps_in_all_and_per_client():
    """Issue 17 item 5: at most max_connections_per_client (4) from one address and
    max_connections (12) in all; the rest are closed at once, and a slot is free again as
    soon as a connection ends."""
    srv = start({"request_timeout_s": 20, "idle_timeout_s": 20}, name="caps")
    held = []
    try:
        seqs = list(range(400, 420))
        tok = write_valid(srv, seqs)

        def hold(src):
            s = raw(srv, src)  # handshake done: the server counts it
            held.append((src, s))

        def refused(src):
            try:
                s = raw(srv, src, timeout=3)
                s.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
                got = s.recv(100)
                s.close()
                return not got
            except CLOSED:
                return True

        for _ in range(4):
            hold("127.0.0.2")
        assert refused("127.0.0.2")  # the 5th from one client
        for src in ("127.0.0.3", "127.0.0.4"):
            for _ in range(4):
                hold(src)
        assert refused("127.0.0.5")  # the 13th in all, from a new client
        for src, s in held:
            if src == "127.0.0.3":
                s.close()
        held[:] = [(src, s) for src, s in held if src != "127.0.0.3"]
        assert wait_for(lambda: not refused("127.0.0.5"), 5)  # a slot is free again
        c = https(srv, "127.0.0.5")
        assert call(c, "POST", WRITE, [rec(420)], {"Authorization": "Bearer " + tok})[2] == []
        assert srv.stats_snapshot()["connections_refused"] >= 2
        assert_once(srv, seqs + [420])
    finally:
        for _, s in held:
            s.close()
        srv.stop()


def test_accept_backs_off_when_file_handles_run_out():
    """Issue 17 item 5: with the open-files limit at 64 and connections allowed past it,
    a flood of idle connections exhausts the file handles; accept() then fails, and the
    server backs off (50 ms doubling to 1 s) instead of spinning on it; once the flood is
    gone a valid client is served, and the start-up said the limit was too low."""
    d = support.tmpdir("nofile")
    ready = os.path.join(d, "ready.json")
    cmd = [sys.executable, "-m", "tools.ingest", "serve", "--port", "0", "--data-dir", d,
           "--ready-file", ready, "--idle-exit", "30", "--set", "max_connections=500",
           "--set", "max_connections_per_client=500", "--set", "request_timeout_s=30"]

    def low_nofile():
        import resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(
            resource.RLIMIT_NOFILE)[1]))

    p = subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         preexec_fn=low_nofile)
    flood = []
    try:
        assert wait_for(lambda: os.path.exists(ready), 20), "no ready file"
        info = json.load(open(ready))

        class Srv:
            port = info["port"]
            ca_pem = info["ca_pem"]

        seqs = list(range(500, 520))
        c = https(Srv)
        st, _, t = call(c, "POST", "/oauth/token",
                        "grant_type=password&username=admin&password=admin",
                        {"Authorization": BASIC})
        tok = t["access_token"]
        assert call(c, "POST", WRITE, [rec(s) for s in seqs],
                    {"Authorization": "Bearer " + tok})[2] == []
        c.close()
        for _ in range(80):  # more than the server has file handles for
            flood.append(socket.create_connection(("127.0.0.1", Srv.port), timeout=5))
        cpu0 = _cpu_s(p.pid)
        time.sleep(2.5)  # the server is out of handles all this time
        cpu = _cpu_s(p.pid) - cpu0
        assert cpu < 1.0, cpu  # a spinning accept loop burns most of the 2.5 s
        for s in flood:
            s.close()
        flood = []
        c = None
        end = time.monotonic() + 10
        while c is None and time.monotonic() < end:
            try:
                c = https(Srv)
                st, _, stats = call(c, "GET", "/stats")
            except CLOSED:
                c = None
                time.sleep(0.2)
        assert c is not None, "not served after the flood"
        assert 1 <= stats["accept_failures"] <= 40, stats  # spinning: thousands
        assert call(c, "POST", WRITE, [rec(s) for s in seqs] + [rec(520)],
                    {"Authorization": "Bearer " + tok})[2] == []
        stats = call(c, "GET", "/stats")[2]
        assert stats["written"] == 21 and stats["duplicates"] == 20, stats
        assert stats["server_errors"] == 0, stats
        p.send_signal(15)
        out = p.communicate(timeout=10)[0]
    finally:
        for s in flood:
            s.close()
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert "WARNING: the open-files limit (64)" in out, out
    assert "users: admin/admin (the built-in default: served on loopback only" in out, out
    assert "accept failed (Too many open files)" in out, out


def _cpu_s(pid):
    """CPU seconds (user + system) a process has used, from /proc (0 where there is none)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- logins --------------------------------------------------------------------------------

class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_failed_logins_are_throttled_per_client_and_per_user():
    """Issue 17 item 6: 100 wrong passwords in a row: the first 5 are checked, then the
    client is locked out (429, Retry-After; the password is not even looked at) for 1, 2, 4
    ... s; the right password is refused too until the lockout ends.  Spread over clients,
    10 failures lock the user out; a refresh grant still works (nothing to guess there)."""
    log = io.StringIO()
    srv = start({"users": {"admin": {"password": "s3cret-pw", "authorities": [
        "TB_ALLOW_READ", "TB_ALLOW_WRITE"]}}}, name="logins", verbose=2, out=log)
    clock_c, clock_u = FakeClock(), FakeClock()
    srv.logins_by_client.clock = clock_c
    srv.logins_by_user.clock = clock_u
    try:
        st, _, good = login(srv, "127.0.0.1", password="s3cret-pw")
        assert st == 200
        seqs = list(range(600, 620))
        c = https(srv)
        assert call(c, "POST", WRITE, [rec(s) for s in seqs],
                    {"Authorization": "Bearer " + good["access_token"]})[2] == []
        answers = [login(srv, "127.0.0.2", password="guess%d" % i) for i in range(100)]
        codes = [a[0] for a in answers]
        assert codes[:6] == [400] * 6 and codes[6:] == [429] * 94, codes
        assert answers[-1][1]["retry-after"] == "2" and "try again" in str(answers[-1][2])
        assert login(srv, "127.0.0.2", password="s3cret-pw")[0] == 429  # locked: not checked
        clock_c.t += 1.01
        assert login(srv, "127.0.0.2", password="s3cret-pw")[0] == 200  # and that resets it
        assert login(srv, "127.0.0.2", password="nope")[0] == 400
        # A wrong client secret counts as a failed login too.
        bad_client = {"Authorization": "Basic " + base64.b64encode(b"web:guess").decode()}
        codes = [call(https(srv, "127.0.0.6"), "POST", "/oauth/token",
                      "grant_type=password&username=admin&password=x", bad_client)[0]
                 for _ in range(7)]
        assert codes == [401] * 6 + [429], codes
        # Per user: with "nope" above, 10 failures spread over clients (each under its own
        # limit of 5) are free; the 11th locks the user out, whichever client asks.
        for src in ("127.0.0.3", "127.0.0.4", "127.0.0.5"):
            assert [login(srv, src, password="x")[0] for _ in range(3)] == [400] * 3
        assert login(srv, "127.0.0.8", password="x")[0] == 400
        assert login(srv, "127.0.0.7", password="s3cret-pw")[0] == 429  # the user is locked
        st, _, r = call(https(srv, "127.0.0.7"), "POST", "/oauth/token",
                        "grant_type=refresh_token&refresh_token=" + good["refresh_token"],
                        {"Authorization": BASIC})
        assert st == 200, r  # the board renews its token meanwhile
        clock_u.t += 1.01
        assert login(srv, "127.0.0.7", password="s3cret-pw")[0] == 200
        # A password in the query string (the form may come there too) is not logged.
        st, _, _ = call(https(srv, "127.0.0.9"), "POST", "/oauth/token?grant_type=password"
                        "&username=admin&password=s3cret-pw", "", {"Authorization": BASIC})
        assert st == 200 and "s3cret" not in log.getvalue() and "guess" not in log.getvalue()
        s = srv.stats_snapshot()
        assert s["login_failures"] == 6 + 1 + 6 + 10 and s["logins_throttled"] == 94 + 1 + 1 + 1
        assert_once(srv, seqs)
    finally:
        srv.stop()


def test_default_credentials_never_served_beyond_loopback():
    """Issue 17 item 6: bound beyond loopback with the built-in admin/admin, the server
    generates a password at first start (data dir, mode 0600, reused later, never printed)
    and says where it is; a configured default password or the admin API are refused."""
    d = support.tmpdir("exposed")
    srv = IngestServer(d, host="0.0.0.0", port=0).start()
    try:
        path = os.path.join(d, "credentials.json")
        assert oct(os.stat(path).st_mode & 0o777) == "0o600"
        pw = json.load(open(path))["users"]["admin"]["password"]
        assert len(pw) >= 16 and pw != "admin"
        assert any(path in n and "generated now" in n for n in srv.notes), srv.notes
        assert not any(pw in n for n in srv.notes)
        assert login(srv, password="admin")[0] == 400
        st, _, t = login(srv, password=pw)
        assert st == 200
        seqs = list(range(700, 720))
        assert call(https(srv), "POST", WRITE, [rec(s) for s in seqs],
                    {"Authorization": "Bearer " + t["access_token"]})[2] == []
        assert_once(srv, seqs)
    finally:
        srv.stop()
    again = IngestServer(d, host="127.0.0.1", port=0).start()  # reused, on loopback too
    try:
        assert login(again, password=pw)[0] == 200 and login(again)[0] == 400
        assert not any("generated now" in n for n in again.notes)
    finally:
        again.stop()
    for cfg in ({"users": {"me": {"password": "admin", "authorities": []}}},
                {"admin_api": True}):
        err = support.raises(ingest_config.ConfigError, IngestServer,
                             support.tmpdir("refused"), cfg, host="0.0.0.0", port=0)
        assert "loopback" in str(err), err
