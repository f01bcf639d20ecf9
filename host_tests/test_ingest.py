# cpython-only: host tool, runs on the desktop
"""tools.ingest over real HTTPS (http.client + ssl with the generated CA): OAuth flows and every
error code, /write with dedup and per-message errors, read endpoints, the seed firmware's own
requests, faults, restart, daily rotation, crash re-indexing, and the CLI."""

import base64
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time

import support
from tools.ingest import IngestServer, Store, parse_time
from tools.ingest import config as icfg
from tools.ingest import schema as ingest_schema

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STREAM = "weather-data"
BASIC = "Basic " + base64.b64encode(b"web:secret").decode()
T0 = parse_time("2026-11-24T10:00:00Z")


def server(cfg=None, name="ingest"):
    return IngestServer(support.tmpdir(name), cfg, port=0).start()


def conn(srv, cafile=None):
    ctx = ssl.create_default_context(cafile=cafile or srv.ca_pem)
    return http.client.HTTPSConnection("127.0.0.1", srv.port, context=ctx, timeout=10)


def req(c, method, path, body=None, headers=None):
    """(status, headers dict lower-case, parsed JSON or raw bytes)."""
    if isinstance(body, (list, dict)):
        body = json.dumps(body)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    raw = r.read()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    try:
        data = json.loads(raw)
    except ValueError:
        data = raw
    return r.status, hdrs, data


def form(**kw):
    return "&".join("%s=%s" % kv for kv in kw.items())


def login(c, user="admin", password="admin"):
    st, _, d = req(c, "POST", "/oauth/token",
                   form(grant_type="password", username=user, password=password, scope="trust"),
                   {"Authorization": BASIC,
                    "Content-Type": "application/x-www-form-urlencoded"})
    assert st == 200, d
    return d


def rec(seq=None, i=0, symbol="esp2462", **over):
    m = {"$type": "weather_record", "symbol": symbol,
         "timestamp": ingest_schema.format_timestamp(T0 + i * 2000000000),
         "am2320_temp": 21.5, "am2320_humidity": 40.25, "bmp180_temp": 21.0,
         "bmp180_pressure": 101325.0, "bmp180_altitude": 12.5, "mem_used": 1000 + i,
         "mem_free": 90000}
    if seq is not None:
        m["seq"] = seq
    m.update(over)
    return m


def write(c, token, msgs, path="/api/v0/weather-data/write"):
    return req(c, "POST", path, msgs, {"Authorization": "Bearer " + token,
                                       "Content-Type": "application/json"})


def count(srv):
    return srv.store.count(STREAM)


# -- OAuth ---------------------------------------------------------------------------------

def test_token_password_and_refresh():
    srv = server()
    try:
        c = conn(srv)
        c.request("POST", "/oauth/token", form(grant_type="password", username="admin",
                                               password="admin", scope="trust"),
                  {"Authorization": BASIC,
                   "Content-Type": "application/x-www-form-urlencoded"})
        r = c.getresponse()
        d = json.loads(r.read())
        assert r.status == 200
        assert r.getheader("Cache-Control") == "no-store" and r.getheader("Pragma") == "no-cache"
        assert r.getheader("Content-Type") == "application/json;charset=UTF-8"
        assert r.getheader("Transfer-Encoding") is None and r.getheader("Content-Length")
        assert set(d) == {"access_token", "token_type", "refresh_token", "expires_in", "scope",
                          "jti"}
        assert d["token_type"] == "bearer" and d["scope"] == "trust"
        assert d["expires_in"] == 299
        # A refresh token is reusable until its own expiry (WebAdmin's JwtTokenStore).
        for _ in range(2):
            st, _, r2 = req(c, "POST", "/oauth/token",
                            form(grant_type="refresh_token", refresh_token=d["refresh_token"]),
                            {"Authorization": BASIC})
            assert st == 200 and r2["access_token"] != d["access_token"]
            assert write(c, r2["access_token"], [rec(1)])[0] == 200
        # Client credentials in the form instead of Basic.
        st, _, _ = req(c, "POST", "/oauth/token",
                       form(grant_type="password", username="admin", password="admin",
                            client_id="web", client_secret="secret"))
        assert st == 200
        assert srv.stats_snapshot()["tokens_refreshed"] == 2
    finally:
        srv.stop()


def test_token_errors():
    srv = server({"users": {"admin": {"password": "p&w=d", "authorities": ["TB_ALLOW_WRITE"]},
                            "reader": {"password": "r", "authorities": ["TB_ALLOW_READ"]}}})
    try:
        c = conn(srv)

        def tok(body, auth=BASIC, method="POST"):
            return req(c, method, "/oauth/token", body, {"Authorization": auth} if auth else {})

        st, h, d = tok(form(grant_type="password", username="admin", password="nope"))
        assert (st, d) == (400, {"error": "invalid_grant", "error_description": "Bad credentials"})
        st, _, d = tok(form(grant_type="password", username="ghost", password="x"))
        assert st == 400 and d["error"] == "invalid_grant"
        for auth in ("Basic " + base64.b64encode(b"web:wrong").decode(), None, "Basic %%%"):
            st, h, d = tok(form(grant_type="password", username="admin", password="x"), auth)
            assert st == 401 and h["www-authenticate"] == 'Basic realm="oauth2/client"'
            assert d["status"] == 401 and d["path"] == "/oauth/token"
        st, _, d = tok("username=admin")
        assert (st, d["error"], d["error_description"]) == (
            400, "invalid_request", "Missing grant type")
        st, _, d = tok(form(grant_type="client_credentials"))
        assert st == 400 and d["error"] == "unsupported_grant_type"
        st, _, d = tok(form(grant_type="password", username="admin", password="p%26w%3Dd",
                            scope="public"))
        assert st == 400 and d["error"] == "invalid_scope" and d["scope"] == "trust"
        # Percent-encoded password with & and = works; the same unencoded is mangled.
        good = tok("grant_type=password&username=admin&password=p%26w%3Dd")[2]
        assert "access_token" in good
        st, _, d = tok(form(grant_type="refresh_token"))
        assert (st, d["error"]) == (400, "invalid_request")
        st, h, d = tok(form(grant_type="refresh_token", refresh_token=good["access_token"]))
        assert (st, d["error_description"]) == (401, "Encoded token is not a refresh token")
        assert h["www-authenticate"].startswith('Bearer error="invalid_token"')
        st, _, d = tok(form(grant_type="refresh_token", refresh_token="garbage.x.y"))
        assert (st, d) == (401, {"error": "invalid_token",
                                 "error_description": "Cannot convert access token to JSON"})
        st, _, d = tok(form(grant_type="password", username="admin", password="x"),
                       method="GET")
        assert st == 405
        # Resource server: no token, bad token, missing authority, refresh token as access.
        st, h, d = req(c, "POST", "/api/v0/weather-data/write", [rec(1)])
        assert (st, d["error"]) == (401, "unauthorized")
        assert h["www-authenticate"].startswith('Bearer realm="oauth2-resource", error=')
        st, _, d = write(c, "not-a-token", [rec(1)])
        assert (st, d["error_description"]) == (401, "Cannot convert access token to JSON")
        st, _, d = write(c, good["refresh_token"], [rec(1)])
        assert (st, d["error"]) == (401, "invalid_token")
        reader = tok(form(grant_type="password", username="reader", password="r"))[2]
        st, _, d = write(c, reader["access_token"], [rec(1)])
        assert (st, d["error"]) == (403, "access_denied")
        st, _, d = req(c, "GET", "/api/v0/weather-data/symbols",
                       headers={"Authorization": "Bearer " + reader["access_token"]})
        assert (st, d) == (200, [])
        assert count(srv) == 0
        # The connection survived every error (keep-alive kept in step).
        assert srv.stats_snapshot()["connections"] == 1
    finally:
        srv.stop()


def test_token_expiry_refresh_expiry_and_revocation():
    srv = server({"access_token_lifetime_s": 2, "refresh_token_lifetime_s": 10})
    try:
        c = conn(srv)
        t = login(c)
        assert t["expires_in"] == 1
        assert write(c, t["access_token"], [rec(1)])[0] == 200
        srv.faults.update(token_clock_offset_s=3)  # 3 s later: access expired
        st, h, d = write(c, t["access_token"], [rec(2)])
        assert (st, d["error"]) == (401, "invalid_token")
        assert d["error_description"].startswith("Access token expired: ")
        assert t["access_token"][12:] not in d["error_description"]  # not echoed whole
        assert 'realm="oauth2-resource"' in h["www-authenticate"]
        st, _, r = req(c, "POST", "/oauth/token",
                       form(grant_type="refresh_token", refresh_token=t["refresh_token"]),
                       {"Authorization": BASIC})
        assert st == 200
        assert write(c, r["access_token"], [rec(2)])[2] == []
        srv.faults.update(token_clock_offset_s=11)  # refresh token dead, no sliding
        st, _, d = req(c, "POST", "/oauth/token",
                       form(grant_type="refresh_token", refresh_token=r["refresh_token"]),
                       {"Authorization": BASIC})
        assert (st, d["error"]) == (401, "invalid_token")
        assert d["error_description"].startswith("Invalid refresh token (expired): ")
        t2 = login(c)  # the password grant still works
        assert write(c, t2["access_token"], [rec(3)])[0] == 200
        srv.tokens.revoke_all()
        st, _, d = write(c, t2["access_token"], [rec(4)])
        assert (st, d["error"]) == (401, "invalid_token")
        assert count(srv) == 3
    finally:
        srv.stop()


# -- /write --------------------------------------------------------------------------------

def test_write_dedup_and_per_message_errors():
    srv = server()
    try:
        c = conn(srv)
        tok = login(c)["access_token"]
        batch = [rec(s, s) for s in range(1, 6)]
        assert write(c, tok, batch)[2] == []
        assert write(c, tok, batch)[2] == []  # the retried batch: stored once
        assert count(srv) == 5
        # Without seq: dedup on (symbol, $type, timestamp); repeats inside one batch too.
        noseq = [rec(None, 100), rec(None, 101), rec(None, 100)]
        assert write(c, tok, noseq)[2] == [] and write(c, tok, noseq)[2] == []
        assert count(srv) == 7
        # Same seq from another symbol is a different record.
        assert write(c, tok, [rec(1, 1, symbol="esp0001")])[2] == []
        bad = [rec(10, 10),
               rec(11, 11, **{"$type": "other"}),
               rec(12, 12, timestamp="2026-11-24T10:00:00Z"),  # no .SSS
               rec(13, 13, mem_used="lots"),
               rec(14, 14, mem_used=1.5),
               rec(15, 15, am2320_temp=True),
               {k: v for k, v in rec(16, 16).items() if k != "mem_used"},
               rec(-1, 17),
               "not an object",
               rec(18, 18, am2320_temp="21.5", mem_free=2.0),  # numeric strings: accepted
               rec(19, 19, timestamp="2021-11-28T12:34:56.006Z")]  # the seed's weekday ms
        st, h, d = write(c, tok, bad)
        assert st == 200 and [e["index"] for e in d] == [1, 2, 3, 4, 5, 6, 7, 8]
        for e in d:
            assert e["message"].startswith("Message is invalid:") and ":" in e["error"]
        assert "ParseException" in d[1]["error"]
        assert count(srv) == 11
        s = srv.stats_snapshot()
        assert (s["written"], s["duplicates"], s["rejects"]) == (11, 9, 8)
        assert s["batches"] == 6 and s["messages_per_s"] > 0
        # writeMode: the 1.0.1+ query parameter; every mode appends here.
        for mode in ("APPEND", "REWRITE"):
            assert write(c, tok, [rec(20, 20)],
                         "/api/v0/weather-data/write?writeMode=" + mode)[:3:2] == (200, [])
        assert write(c, tok, [rec(21)], "/api/v0/weather-data/write?writeMode=bogus")[0] == 400
        assert count(srv) == 12
        # A failed sensor is sent as null: the sensor fields are nullable ("FLOAT?"), so
        # the other sensor's values in the same message are stored.
        assert write(c, tok, [rec(22, 22, am2320_temp=None, am2320_humidity=None)])[2] == []
        row = [r for r in srv.store.query("weather-data") if r["seq"] == 22][0]
        assert row["am2320_temp"] is None and row["bmp180_temp"] is not None
        assert len(write(c, tok, [rec(23, 23, mem_used=None)])[2]) == 1  # not nullable
    finally:
        srv.stop()


def test_dedup_absorbs_exact_repeats_only_and_stores_collisions():
    """Issue 17 item 1: only what a retry produces (same symbol, seq, $type, timestamp and
    values) is absorbed; a different record under a taken key is stored, flagged, counted."""
    srv = server()
    try:
        c = conn(srv)
        tok = login(c)["access_token"]
        first = [rec(s, s) for s in range(1, 6)]
        assert write(c, tok, first)[2] == [] and write(c, tok, first)[2] == []  # a retry
        assert count(srv) == 5
        # A queue that restarted at seq 1 (or a second board with this symbol): same
        # (symbol, seq), other time and values.  Stored and answered as written.
        again = [rec(s, s + 1000) for s in range(1, 4)]
        assert write(c, tok, again)[2] == []
        assert write(c, tok, again)[2] == []  # its own retry is absorbed, not a collision
        assert count(srv) == 8
        # The seed firmware (no seq) on two boards sharing the vendor-prefix symbol: the
        # same timestamps, different readings.  21 + 21 samples, 42 stored.
        board_a = [rec(None, 200 + i, mem_used=40000 + i) for i in range(21)]
        board_b = [rec(None, 200 + i, mem_used=50000 + i) for i in range(21)]
        assert write(c, tok, board_a + board_b)[2] == []
        assert write(c, tok, board_b)[2] == []  # board b's retry
        assert count(srv) == 8 + 42
        # No seq and no timestamp: nothing tells a retry from a reading; always stored.
        bare = {k: v for k, v in rec(None, 300).items() if k != "timestamp"}
        assert write(c, tok, [bare, bare, dict(bare, mem_used=7)])[2] == []
        assert count(srv) == 8 + 42 + 3
        s = srv.stats_snapshot()
        assert (s["written"], s["duplicates"], s["collisions"]) == (53, 5 + 3 + 21, 3 + 21)
        flagged = list(srv.store.query(STREAM, collisions=True))
        assert sorted(r["seq"] or 0 for r in flagged) == [0] * 21 + [1, 2, 3]
        assert {r["mem_used"] for r in flagged if r["seq"] is None} == set(
            range(50000, 50021))
        assert sum(r["collision"] for r in srv.store.query(STREAM)) == 24
        assert srv.store.count(STREAM, collisions=True) == 24
    finally:
        srv.stop()


def test_dedup_index_rebuilt_keeps_the_rule():
    """After a lost or old-format index, retries of originals and of collisions are still
    absorbed, rows without timestamp are still never merged, collisions still flagged."""
    d = support.tmpdir("rebuild")
    clock = support.StepClock(T0)
    st = Store(d, clock_ns=clock)
    fields = ingest_schema_fields()

    def row(seq, cap, **over):
        m = rec(seq, timestamp=ingest_schema.format_timestamp(cap), **over)
        return ingest_schema.validate(m, {"weather_record": fields})

    bare = ingest_schema.validate({k: v for k, v in rec(None).items() if k != "timestamp"},
                                  {"weather_record": fields})
    batch = [row(1, T0), row(1, T0 + 10**9), row(None, T0 + 5), bare, bare]
    assert st.write(STREAM, batch)[:3] == (5, 0, 1)
    st.close()
    idx = os.path.join(d, "streams", STREAM, "dedup.sqlite3")
    for k, damage in enumerate(("delete", "old-format")):
        if damage == "delete":
            os.remove(idx)
        else:  # the layout before issue 17: one key per (symbol, seq), no content
            import sqlite3
            os.remove(idx)
            old = sqlite3.connect(idx)
            old.execute("CREATE TABLE seen(k TEXT PRIMARY KEY) WITHOUT ROWID")
            old.execute("CREATE TABLE files(name TEXT PRIMARY KEY, last_id INTEGER)")
            old.execute("INSERT INTO seen VALUES('[\"s\", \"esp2462\", 1]')")
            old.commit()
            old.close()
        st = Store(d, clock_ns=clock)
        res = st.write(STREAM, [row(1, T0), row(1, T0 + 10**9), row(None, T0 + 5),
                                row(1, T0 + (2 + k) * 10**9)])  # a new collision
        assert res[:3] == (1, 3, 1) and res.collided == [3], (damage, res)
        st.close()
    st = Store(d, clock_ns=clock)
    assert st.count(STREAM) == 7 and st.count(STREAM, collisions=True) == 3
    st.close()


def test_bad_messages_are_per_message_errors():
    """Issue 17 item 2: numbers and times no column can hold, NaN, lone surrogates: each is
    an error entry for its message; the good messages of the batch are stored."""
    srv = server()
    try:
        c = conn(srv)
        tok = login(c)["access_token"]

        def j(m):
            return json.dumps(m)

        bad = [
            j(rec(2, 2)).replace('"mem_used": 1002', '"mem_used": 1e400'),
            j(rec(3, 3)).replace('"am2320_temp": 21.5', '"am2320_temp": NaN'),
            j(rec(4, 4)).replace('"am2320_temp": 21.5', '"am2320_temp": -Infinity'),
            j(rec(5, 5)).replace('"am2320_temp": 21.5', '"am2320_temp": 1e400'),
            j(rec(6, 6, timestamp="0000-01-01T00:00:00.000Z")),
            j(rec(7, 7, timestamp="9999-12-31T23:59:59.999Z")),
            j(rec(8, 8, mem_used=10**30)),
            j(rec(9, 9)).replace('"mem_used": 1009', '"mem_used": ' + "9" * 500),
            j(rec(10, 10)).replace('"symbol": "esp2462"', '"symbol": "esp\\ud800"'),
            j(rec(2**63, 11)),
            j(rec(12, 12, am2320_temp="1e400")),
            j(rec(13, 13, **{"$type": "x" * 100000})),
        ]
        body = "[" + ",".join([j(rec(1, 1))] + bad + [j(rec(99, 99))]) + "]"
        st, _, d = req(c, "POST", "/api/v0/weather-data/write", body,
                       {"Authorization": "Bearer " + tok, "Content-Type": "application/json"})
        assert st == 200, d
        assert [e["index"] for e in d] == list(range(1, len(bad) + 1)), d
        assert all(len(e["message"]) < 400 and len(e["error"]) < 400 for e in d)
        assert sorted(r["seq"] for r in srv.store.query(STREAM)) == [1, 99]
        # A row the schema let through but SQLite refuses: a per-message error as well.
        row = ingest_schema.validate(rec(50, 50), {"weather_record": ingest_schema_fields()})
        row["fields"]["mem_used"] = 2**70
        ok = ingest_schema.validate(rec(51, 51), {"weather_record": ingest_schema_fields()})
        res = srv.store.write(STREAM, [row, ok])
        assert res.written == 1 and [i for i, _ in res.rejected] == [0], res
        assert srv.stats_snapshot()["server_errors"] == 0
    finally:
        srv.stop()


def test_write_request_errors():
    srv = server({"max_body_bytes": 4096})
    try:
        c = conn(srv)
        tok = login(c)["access_token"]
        st, _, d = write(c, tok, [rec(1)], "/api/v0/nope/write")
        assert (st, d["status"], d["message"]) == (400, 400, "Unknown stream nope.")
        assert d["path"] == "/api/v0/nope/write"
        # A body that is not a JSON array: 400 (WebAdmin: 500), so that a client halves the
        # batch to find the culprit instead of retrying it forever.
        st, _, d = req(c, "POST", "/api/v0/weather-data/write", "{not json",
                       {"Authorization": "Bearer " + tok})
        assert st == 400 and d["status"] == 400
        assert write(c, tok, {"an": "object"})[0] == 400
        st, _, d = req(c, "GET", "/api/v0/weather-data/nothing",
                       headers={"Authorization": "Bearer " + tok})
        assert st == 404
        st, h, _ = write(c, tok, [rec(i, i) for i in range(40)])  # > 4096 bytes
        assert st == 413
        srv.faults.update(read_only=True)
        st, _, d = write(c, tok, [rec(1)])
        assert st == 403 and b"read-only" in d
        assert count(srv) == 0
        assert srv.stats_snapshot()["connections"] == 1  # keep-alive survived the 413
    finally:
        srv.stop()


def _raw(srv, data, cafile=None):
    """Send raw bytes over TLS; read until the server closes.  -> (head, body)."""
    ctx = ssl.create_default_context(cafile=cafile or srv.ca_pem)
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", srv.port), timeout=10),
                        server_hostname="127.0.0.1")
    try:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            out += chunk
    finally:
        s.close()
    head, _, body = out.partition(b"\r\n\r\n")
    return head.decode(), body


def test_seed_firmware_requests():
    """HTTP/1.0, unencoded form, lower-case bearer, a repeated Content-Type, read to EOF."""
    srv = server()
    try:
        body = b"grant_type=password&scope=trust&password=admin&username=admin"
        head, resp = _raw(srv, b"POST /oauth/token HTTP/1.0\r\nHost: 127.0.0.1\r\n"
                          b"Authorization: Basic d2ViOnNlY3JldA==\r\n"
                          b"Content-Type: application/x-www-form-urlencoded\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        assert " 200 " in head.split("\r\n")[0] and "chunked" not in head.lower()
        tok = json.loads(resp)["access_token"]
        body = json.dumps([rec(None, 1), rec(None, 2)]).encode()
        head, resp = _raw(srv, b"POST /api/v0/weather-data/write HTTP/1.0\r\n"
                          b"Host: 127.0.0.1\r\nAuthorization: bearer %s\r\n"
                          b"Content-Type: application/json\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (tok.encode(), len(body), body))
        assert " 200 " in head.split("\r\n")[0] and "content-length: 2" in head.lower()
        assert resp == b"[]" and count(srv) == 2
    finally:
        srv.stop()


def test_keepalive_and_chunked_request():
    srv = server()
    try:
        c = conn(srv)
        tok = login(c)["access_token"]
        for i in range(5):
            assert write(c, tok, [rec(i, i)])[2] == []
        # A chunked request body (a client streaming a batch without knowing its length).
        c.putrequest("POST", "/api/v0/weather-data/write")
        c.putheader("Authorization", "Bearer " + tok)
        c.putheader("Transfer-Encoding", "chunked")
        c.endheaders()
        data = json.dumps([rec(i, i) for i in range(5, 9)]).encode()
        for k in range(0, len(data), 100):
            part = data[k:k + 100]
            c.send(b"%x\r\n%s\r\n" % (len(part), part))
        c.send(b"0\r\n\r\n")
        r = c.getresponse()
        assert (r.status, r.read()) == (200, b"[]")
        assert count(srv) == 9 and srv.stats_snapshot()["connections"] == 1
    finally:
        srv.stop()


# -- read side -----------------------------------------------------------------------------

def test_read_endpoints():
    srv = server()
    try:
        c = conn(srv)
        tok = login(c)["access_token"]
        auth = {"Authorization": "Bearer " + tok}
        write(c, tok, [rec(i, i) for i in range(10)] + [rec(1, 3, symbol="esp0001")])
        st, _, d = req(c, "GET", "/api/v0/streams", headers=auth)
        assert d == [{"key": STREAM, "name": STREAM, "symbols": 2}]
        assert req(c, "GET", "/api/v0/weather-data/symbols", headers=auth)[2] == [
            "esp0001", "esp2462"]
        st, _, d = req(c, "GET", "/api/v0/weather-data/range?symbols=esp2462", headers=auth)
        assert d == {"start": "2026-11-24T10:00:00.000Z", "end": "2026-11-24T10:00:18.000Z"}
        st, _, d = req(c, "GET", "/api/v0/weather-data/select?symbols=esp2462&rows=3&offset=1"
                       "&from=2026-11-24T10:00:00.000Z", headers=auth)
        assert st == 200 and [m["mem_used"] for m in d] == [1001, 1002, 1003]
        assert list(d[0])[:3] == ["$type", "symbol", "timestamp"]
        assert d[0]["am2320_temp"] == "21.5" and d[0]["mem_free"] == 90000  # FLOAT as text
        st, _, d = req(c, "POST", "/api/v0/weather-data/select",
                       {"symbols": ["esp2462"], "from": "2026-11-24T10:00:04.000Z",
                        "to": "2026-11-24T10:00:08.000Z", "reverse": True}, auth)
        assert [m["mem_used"] for m in d] == [1004, 1003, 1002]
        st, _, d = req(c, "GET", "/api/v0/weather-data/esp0001/select", headers=auth)
        assert [m["symbol"] for m in d] == ["esp0001"]
        st, _, d = req(c, "GET", "/api/v0/nope/select", headers=auth)
        assert st == 400
        assert req(c, "GET", "/api/v0/streams")[0] == 401
        assert req(c, "GET", "/ping")[2] == b"pong"
    finally:
        srv.stop()


# -- faults, restart -----------------------------------------------------------------------

def test_faults_errors_drops_and_delay():
    srv = server()
    try:
        c = conn(srv)
        tok = login(c)["access_token"]
        srv.faults.update(error_next=2)
        assert write(c, tok, [rec(1)])[0] == 503
        assert write(c, tok, [rec(1)])[0] == 503
        assert write(c, tok, [rec(1)])[2] == [] and count(srv) == 1
        srv.faults.update(drop_before_body_next=1)
        assert _fails(lambda: write(c, tok, [rec(2)]))
        assert count(srv) == 1
        c = conn(srv)
        srv.faults.update(drop_after_store_next=1)
        assert _fails(lambda: write(c, tok, [rec(3), rec(4)]))
        assert count(srv) == 3  # stored although the client saw no reply
        c = conn(srv)
        assert write(c, tok, [rec(2), rec(3), rec(4)])[2] == []  # the retry: absorbed by seq
        assert count(srv) == 4
        srv.faults.update(delay_s=0.3)
        t = time.monotonic()
        assert write(c, tok, [rec(5)])[0] == 200 and time.monotonic() - t >= 0.3
        srv.faults.reset()
        srv.faults.update(error_rate=1.0, error_status=500, seed=1)
        assert write(c, tok, [rec(6)])[0] == 500
        s = srv.stats_snapshot()
        assert (s["injected_errors"], s["dropped_before_body"], s["dropped_after_store"]) == (
            3, 1, 1)
        assert s["duplicates"] == 2 and count(srv) == 5
    finally:
        srv.stop()


def _fails(f):
    try:
        f()
    except (OSError, http.client.HTTPException):
        return True
    return False


def test_restart_invalidates_tokens_keeps_data_and_dedup():
    d = support.tmpdir("restart")
    srv = IngestServer(d, port=0).start()
    c = conn(srv)
    t = login(c)
    write(c, t["access_token"], [rec(1), rec(2)])
    srv.restart()  # in place: new key, connections cut
    c = conn(srv)
    st, _, e = write(c, t["access_token"], [rec(3)])
    assert (st, e["error_description"]) == (401, "Cannot convert access token to JSON")
    st, _, e = req(c, "POST", "/oauth/token",
                   form(grant_type="refresh_token", refresh_token=t["refresh_token"]),
                   {"Authorization": BASIC})
    assert (st, e["error"]) == (401, "invalid_token")
    srv.tokens.rotate_key()
    port = srv.port
    figs = srv.stop()
    assert figs["written"] == 2
    srv = IngestServer(d, port=port).start()  # a real restart on the same port and data
    try:
        c = conn(srv)
        tok = login(c)["access_token"]
        assert write(c, tok, [rec(1), rec(2), rec(3)])[2] == []
        assert count(srv) == 3 and srv.stats_snapshot()["duplicates"] == 2
    finally:
        srv.stop()


def test_wrong_ca_is_refused():
    srv = server()
    other = IngestServer(support.tmpdir("other"), port=0)  # another CA
    try:
        err = support.raises(ssl.SSLError, lambda: conn(srv, other.ca_pem).request("GET", "/"))
        assert "CERTIFICATE_VERIFY_FAILED" in str(err)
        for _ in range(100):  # the server counts it in its connection thread
            if srv.stats_snapshot()["tls_failures"]:
                break
            time.sleep(0.02)
        assert srv.stats_snapshot()["tls_failures"] == 1
    finally:
        other.stop()
        srv.stop()


def test_admin_api():
    srv = server({"admin_api": True})
    plain = server()
    try:
        c = conn(srv)
        tok = login(c)["access_token"]
        st, _, d = req(c, "POST", "/admin/faults", {"error_next": 1, "delay_s": 0})
        assert st == 200 and d["error_next"] == 1
        assert write(c, tok, [rec(1)])[0] == 503
        assert req(c, "POST", "/admin/faults", {"bogus": 1})[0] == 400
        assert req(c, "POST", "/admin/faults", {"reset": True})[2]["error_next"] == 0
        assert req(c, "POST", "/admin/revoke")[0] == 200
        assert write(c, tok, [rec(1)])[0] == 401
        tok = login(c)["access_token"]
        assert req(c, "POST", "/admin/rotate-key")[0] == 200
        assert write(c, tok, [rec(1)])[0] == 401
        st, _, d = req(c, "GET", "/stats")
        assert st == 200 and d["injected_errors"] == 1 and d["auth_failures"] == 2
        assert req(c, "POST", "/admin/restart")[0] == 200
        c = conn(srv)
        assert write(c, login(c)["access_token"], [rec(1)])[2] == []
        assert req(conn(plain), "POST", "/admin/revoke")[0] == 404  # off by default
        assert req(c, "POST", "/admin/shutdown")[2] == {"stopping": True}
        assert srv.wait(5)
    finally:
        srv.stop()
        plain.stop()


# -- store: rotation, re-index, query ------------------------------------------------------

def _row(seq, cap_ns, symbol="esp2462"):
    return ingest_schema.validate(rec(seq, symbol=symbol,
                                      timestamp=ingest_schema.format_timestamp(cap_ns)),
                                  {"weather_record": ingest_schema_fields()})


def ingest_schema_fields():
    from tools.ingest.config import WEATHER_RECORD
    return WEATHER_RECORD


def test_daily_rotation_cross_day_dedup_and_query():
    d = support.tmpdir("rot")
    day1 = parse_time("2026-11-24T23:59:59Z")
    clock = support.StepClock(day1)
    st = Store(d, clock_ns=clock)
    assert st.write(STREAM, [_row(i, T0 + i * 10**9) for i in range(3)])[:3] == (3, 0, 0)
    clock.ns = parse_time("2026-11-25T00:00:01Z")  # midnight passed: a new file
    assert st.write(STREAM, [_row(i, T0 + i * 10**9) for i in range(5)])[:3] == (2, 3, 0)
    # A backlog: captured before day 1's records, arriving on day 2.
    assert st.write(STREAM, [_row(100, T0 - 5 * 10**9, "esp0001")])[:3] == (1, 0, 0)
    files = sorted(os.listdir(os.path.join(d, "streams", STREAM)))
    assert [f for f in files if f.endswith(".sqlite3")] == [
        "dedup.sqlite3", "weather-data-2026-11-24.sqlite3", "weather-data-2026-11-25.sqlite3"]
    rows = list(st.query(STREAM))
    assert [r["seq"] for r in rows] == [100, 0, 1, 2, 3, 4]  # capture order across files
    assert rows[1]["acquisition_ns"] > day1 and rows[1]["capture_ns"] == T0
    assert rows[1]["timestamp"] == "2026-11-24T10:00:00.000Z" and rows[1]["mem_used"] == 1000
    assert [r["seq"] for r in st.query(STREAM, symbol="esp2462", since=T0 + 10**9,
                                       until=T0 + 3 * 10**9)] == [1, 2]
    assert [r["seq"] for r in st.query(STREAM, by="acquisition",
                                       since=parse_time("2026-11-25"))] == [3, 4, 100]
    assert [r["seq"] for r in st.query(STREAM, reverse=True)][:2] == [4, 3]
    it = st.query(STREAM)
    assert next(it)["seq"] == 100  # an iterator: rows come one at a time
    it.close()
    st.close()
    # The dedup index is lost or lags (crash between the two commits): rebuilt on open.
    os.remove(os.path.join(d, "streams", STREAM, "dedup.sqlite3"))
    st = Store(d, clock_ns=clock)
    assert st.write(STREAM, [_row(i, T0 + i * 10**9) for i in range(6)])[:3] == (1, 5, 0)
    assert st.count(STREAM) == 7
    st.close()


def test_query_and_stats_cli():
    """Issue 14: --type, ISO UTC times (stats too), CSV / JSON lines / InfluxDB line
    protocol with the original timestamps; read-only commands create nothing, and they work
    from any directory (run as a path, from an empty folder)."""
    srv = server()
    d = srv.data_dir
    c = conn(srv)
    tok = login(c)["access_token"]
    write(c, tok, [rec(i, i) for i in range(4)] + [rec(9, 9, symbol="esp0001")])
    write(c, tok, [rec(1, 50)])  # seq 1 again, another record: a collision
    hr = {"$type": "health_record", "symbol": "esp2462", "timestamp": "2026-11-24T10:05:00.000Z",
          "reset_cause": 'power "on"', "resets": "1:power"}
    hr.update({k: 7 for k, v in icfg.HEALTH_RECORD.items() if v == "INTEGER"})
    assert write(c, tok, [hr])[2] == []
    srv.stop()
    before = snapshot_tree(d)
    cwd = support.tmpdir("cwd")

    def run(*args, code=0):
        p = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "ingest")] + list(args),
                           cwd=cwd, env=dict(os.environ, COLUMNS="300"), capture_output=True,
                           text=True, timeout=30)
        assert p.returncode == code, p.stderr
        return p.stdout if code == 0 else p.stderr

    out = run("query", "--data-dir", d, "--stream", STREAM, "--symbol", "esp2462",
              "--since", "2026-11-24T10:00:02Z", "--until", "2026-11-24T10:00:06Z")
    lines = out.strip().split("\n")
    health_only = [k for k in icfg.HEALTH_RECORD if k not in icfg.WEATHER_RECORD]
    assert lines[0] == ("symbol,type,seq,timestamp,received,collision,am2320_temp,"
                        "am2320_humidity,bmp180_temp,bmp180_pressure,bmp180_altitude,mem_used,"
                        "mem_free,time_estimated," + ",".join(health_only)), lines[0]
    assert [ln.split(",")[2] for ln in lines[1:]] == ["1", "2"]
    assert lines[1].split(",")[3] == "2026-11-24T10:00:02.000Z"
    out = run("query", "--data-dir", d, "--type", "weather_record", "--limit", "1")
    assert out.split("\n")[0].endswith("bmp180_altitude,mem_used,mem_free,time_estimated")
    rows = [json.loads(x) for x in run("query", "--data-dir", d, "--format", "jsonl",
                                        "--type", "weather_record").splitlines()]
    assert [r["seq"] for r in rows] == [0, 1, 2, 3, 9, 1]
    assert [r["collision"] for r in rows] == [0, 0, 0, 0, 0, 1]
    assert rows[1]["timestamp"] == "2026-11-24T10:00:02.000Z" and "capture_ns" not in rows[1]
    assert rows[1]["received"].startswith("20") and rows[1]["received"].endswith("Z")
    rows = json.loads(run("query", "--data-dir", d, "--format", "json", "--collisions"))
    assert [(r["seq"], r["mem_used"]) for r in rows] == [(1, 1050)]
    health = [json.loads(x) for x in run("query", "--data-dir", d, "--format", "jsonl",
                                          "--type", "health_record").splitlines()]
    assert len(health) == 1 and health[0]["uptime_s"] == 7 and "am2320_temp" not in health[0]
    lp = run("query", "--data-dir", d, "--format", "influx", "--symbol", "esp2462").splitlines()
    assert lp[0] == ("weather_record,symbol=esp2462 am2320_temp=21.5,am2320_humidity=40.25,"
                     "bmp180_temp=21.0,bmp180_pressure=101325.0,bmp180_altitude=12.5,"
                     "mem_used=1000i,mem_free=90000i,seq=0i %d" % T0), lp[0]
    assert lp[-2].startswith("weather_record,symbol=esp2462,collision=1 ")  # kept apart
    assert lp[-1].startswith('health_record,symbol=esp2462 boot=7i,reset_cause="power \\"on\\"",')
    assert lp[-1].endswith(" %d" % parse_time("2026-11-24T10:05:00Z"))
    figs = json.loads(run("stats", "--data-dir", d))
    s = figs[STREAM]
    assert s["rows"] == 7 and s["symbols"] == ["esp0001", "esp2462"] and s["collisions"] == 1
    assert s["types"] == {"weather_record": 6, "health_record": 1}
    assert s["first"] == "2026-11-24T10:00:00.000Z" and s["last"] == "2026-11-24T10:05:00.000Z"
    assert s["boards"]["esp0001"]["weather_record"]["last"] == "2026-11-24T10:00:18.000Z"
    # read-only: nothing created, in the data dir (no -wal/-shm) or in the current folder
    assert snapshot_tree(d) == before
    err = run("query", "--data-dir", os.path.join(cwd, "none"), code=2)
    assert "no data in" in err and "--data-dir" in err and len(err.splitlines()) == 1
    assert os.path.join(ROOT, "ingest-data") in run("query", "--help")  # not the cwd's
    err = run("query", "--data-dir", d, "--type", "nope", code=2)
    assert "no class nope" in err
    assert os.listdir(cwd) == []
    assert snapshot_tree(d) == before


def snapshot_tree(d):
    out = {}
    for top, _, files in os.walk(d):
        for f in files:
            p = os.path.join(top, f)
            out[p] = os.path.getsize(p)
    return out


def test_serve_subprocess_ready_file_and_sigterm():
    d = support.tmpdir("sub")
    ready = os.path.join(d, "ready.json")
    p = subprocess.Popen([sys.executable, "-m", "tools.ingest", "serve", "--port", "0",
                          "--data-dir", d, "--ready-file", ready, "--idle-exit", "30"],
                         cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(200):
            if os.path.exists(ready):
                break
            time.sleep(0.05)
        info = json.load(open(ready))
        assert info["url"] == "https://127.0.0.1:%d" % info["port"]
        ctx = ssl.create_default_context(cafile=info["ca_pem"])
        c = http.client.HTTPSConnection("127.0.0.1", info["port"], context=ctx, timeout=10)
        tok = login(c)["access_token"]
        assert write(c, tok, [rec(1), rec(2)])[2] == []
        c.close()
        p.send_signal(signal.SIGTERM)
        out = p.communicate(timeout=10)[0]
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, out
    assert "listening on https://127.0.0.1:%d" % info["port"] in out
    assert '"written": 2' in out and "figures:" in out
    assert "dashboard: https://127.0.0.1:%d/" % info["port"] in out
    assert "board: copy %s onto the board" % info["ca_der"] in out
    assert '"tb_host": "https://127.0.0.1:%d"' % info["port"] in out and "tb_pass" in out
    assert "a board cannot reach it" in out  # loopback only: says how to serve a LAN
    assert "certificate names: localhost, 127.0.0.1" in out
    assert "the password of admin, the built-in default" in out
    assert info["ca_der"].endswith("ca.der") and os.path.getsize(info["ca_der"]) > 100


def test_set_merges_nested_keys_and_names_bad_ones():
    """Issue 14: --set users.admin.password=x keeps admin's authorities (it used to replace
    the whole users block: every write then got 403); a bad value is a one-line error
    naming the key, never a traceback; serve --help shows the defaults."""
    from tools.ingest import config as cfgmod

    cfg = cfgmod.load(None, sets=[cfgmod.parse_set("users.admin.password=pw-1"),
                                  cfgmod.parse_set("faults.error_rate=0.5")])
    assert cfg["users"]["admin"] == {"password": "pw-1",
                                     "authorities": ["TB_ALLOW_READ", "TB_ALLOW_WRITE"]}
    assert cfg["faults"] == {"error_rate": 0.5} and cfg["clients"] == cfgmod.DEFAULTS["clients"]
    srv = IngestServer(support.tmpdir("set"), cfg, port=0).start()
    try:
        c = conn(srv)
        srv.faults.reset()
        tok = login(c, password="pw-1")["access_token"]
        assert write(c, tok, [rec(1)])[:3:2] == (200, [])
    finally:
        srv.stop()
    d = support.tmpdir("set-cli")
    for arg, key in (("access_token_lifetime_s=2s", "access_token_lifetime_s"),
                     ("max_messages=0", "max_messages"), ("nope=1", "nope: unknown key"),
                     ("users.admin=3", "users.admin.password"),
                     ("users.admin.authorities=TB_ALLOW_READ", "users.admin.authorities"),
                     ("max_messages.x=1", "max_messages is not an object"),
                     ("faults.eror_rate=1", "eror_rate"), ("novalue", "KEY=VALUE")):
        p = subprocess.run([sys.executable, "-m", "tools.ingest", "serve", "--port", "0",
                            "--data-dir", d, "--set", arg], cwd=ROOT, capture_output=True,
                           text=True, timeout=30, env=dict(os.environ, PYTHONPATH=ROOT))
        assert p.returncode == 2 and key in p.stderr, (arg, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr, p.stderr
    assert not os.path.exists(os.path.join(d, "streams"))  # refused before opening anything
    p = subprocess.run([sys.executable, "-m", "tools.ingest", "serve", "--help"], cwd=ROOT,
                       capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, PYTHONPATH=ROOT, COLUMNS="300"))
    assert "(default: 8099)" in p.stdout and "(default: 127.0.0.1)" in p.stdout
    assert os.path.join(ROOT, "ingest-data") in p.stdout and "admin/admin" in p.stdout


def test_certificate_names_for_a_lan_and_reissue_with_the_same_ca():
    """Issue 14: a board configured with tb_host https://192.168.1.5:8099 must verify the
    certificate: --name adds names, every interface adds the machine's own, a change of
    names re-issues the server certificate under the same CA (boards keep working)."""
    from tools.ingest import certs

    d = support.tmpdir("names")
    srv = IngestServer(d, None, port=0, names=["pi.local", "192.168.1.5"]).start()
    try:
        assert {"localhost", "127.0.0.1", "pi.local", "192.168.1.5"} <= set(srv.cert_names)
        assert set(certs.cert_names(srv.tls_paths["cert"])) == set(srv.cert_names)
        ca_der = open(srv.ca_der, "rb").read()
        for name in ("pi.local", "192.168.1.5"):  # what a board checks: name vs certificate
            ctx = ssl.create_default_context(cafile=srv.ca_pem)
            with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
                with ctx.wrap_socket(s, server_hostname=name) as t:
                    assert t.version()
    finally:
        srv.stop()
    srv = IngestServer(d, {"users": {"admin": {"password": "pw-lan-1",
                                               "authorities": ["TB_ALLOW_WRITE"]}}},
                       host="0.0.0.0", port=0, names=["weather.example"]).start()
    try:
        assert open(srv.ca_der, "rb").read() == ca_der  # same CA
        assert "pi.local" not in srv.cert_names and "weather.example" in srv.cert_names
        assert socket.gethostname().lower() in srv.cert_names  # the machine's own names
        assert any("issued again" in n for n in srv.notes)
        ctx = ssl.create_default_context(cafile=srv.ca_pem)
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            with ctx.wrap_socket(s, server_hostname="weather.example") as t:
                assert t.version()
    finally:
        srv.stop()
    again = certs.ensure(d, ["weather.example"] + certs.machine_names())
    assert not again["reissued"]  # same names: the certificate is kept


def test_class_missing_from_the_stream_is_logged_once():
    """Issue 14: a stream made as in the seed article has only the weather class; the
    board's health records are refused (per-message error) and the server says so once,
    with the way out, instead of at every record."""
    import io

    out = io.StringIO()
    cfg = {"streams": {STREAM: {"types": {"weather_record": icfg.WEATHER_RECORD}}}}
    srv = IngestServer(support.tmpdir("nocls"), cfg, port=0, out=out).start()
    try:
        c = conn(srv)
        tok = login(c)["access_token"]
        hr = {"$type": "health_record", "symbol": "esp1",
              "timestamp": "2026-11-24T10:05:00.000Z"}
        for i in range(3):
            st, _, errs = write(c, tok, [rec(i, i), hr])
            assert st == 200 and len(errs) == 1
            assert "Unknown type: health_record" in errs[0]["error"]
    finally:
        srv.stop()
    log = out.getvalue()
    assert log.count("class 'health_record' refused") == 1, log
    assert "Health records on a stream without the class" in log


def test_series_from_rollups_equals_series_from_rows():
    """The dashboard's downsampling reads per-minute rollups for buckets of a minute or
    more; a day file without them (written before they existed, read-only) gives the same
    series from its rows; a rollup is rebuilt when the server opens the file."""
    import shutil
    import sqlite3

    d = support.tmpdir("rollup")
    clock = [T0]
    st = Store(d, clock_ns=lambda: clock[0])
    rows = []
    for i in range(2000):
        if 700 <= i < 900:
            continue  # an outage
        rows.append(_row(i, T0 + i * 7 * 10**9 + (i % 3) * 10**8))
        rows[-1]["fields"]["bmp180_temp"] = None if i % 5 == 0 else 20.0 + (i % 17) / 10
        rows[-1]["fields"]["am2320_temp"] = 15 + (i % 23) * 0.37
    for a in range(0, len(rows), 300):
        st.write(STREAM, rows[a:a + 300])
        clock[0] += 10 * 3600 * 10**9  # batches in several day files
    st.close()
    fields = ["am2320_temp", "bmp180_temp"]
    args = (STREAM, "esp2462", "weather_record", fields, T0 - 10**9, T0 + 14000 * 10**9)
    ro = Store(d, readonly=True)
    a = ro.series(*args, 100)
    assert a["bucket_s"] == 180 and None in a["n"]  # rollups; the outage is a gap
    raw = support.tmpdir("rollup-raw")
    shutil.copytree(d, raw, dirs_exist_ok=True)
    for f in os.listdir(os.path.join(raw, "streams", STREAM)):
        if f.startswith(STREAM + "-"):
            c = sqlite3.connect(os.path.join(raw, "streams", STREAM, f))
            c.execute("DROP TABLE rollup")
            c.execute("DROP TABLE rollup_15m")
            c.commit()
            c.close()
    assert Store(raw, readonly=True).series(*args, 100) == a
    srv = IngestServer(raw, None, port=0)  # the server rebuilds what is missing at start
    srv.stop()
    c = sqlite3.connect(os.path.join(raw, "streams", STREAM, sorted(
        f for f in os.listdir(os.path.join(raw, "streams", STREAM)) if f.startswith(STREAM + "-")
    )[0]))
    assert c.execute("SELECT sum(n) FROM rollup").fetchone()[0] == 600  # 2 batches that day
    c.close()
    assert Store(raw, readonly=True).series(*args, 100) == a
    b = ro.series(*args, 5000)  # capped at 2000 buckets of whole seconds: from the rows
    assert b["bucket_s"] == 8 and sum(n for n in b["n"] if n) == len(rows)
    assert ro.latest(STREAM, "weather_record")["esp2462"]["seq"] == 1999
