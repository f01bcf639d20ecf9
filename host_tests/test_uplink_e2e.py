# cpython-only: orchestrates the ingest server (CPython) and MicroPython "boards" as processes
"""End to end: lib/https + lib/oauth + lib/sender under the real MicroPython unix port,
against tools/ingest over HTTPS (its own CA), with the fault matrix of issue 6.

The server runs in this (CPython) process so faults, restarts and the SQLite store are
driven and checked directly; each "board" is a ``micropython`` subprocess running
host_tests/uplink_device.py with the real https, oauth, record, sender and tslog modules,
all loaded as .mpy (compiled once per session, as a board loads them).  Every test checks
that the store holds each record exactly once.  The whole file takes about 60 s (40 s of
it the one-day drain).
"""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import support

ROOT = Path(__file__).resolve().parent.parent
MP = str(Path(sys.executable).parent / "micropython")


def _server(d, **cfg):
    from tools.ingest import IngestServer
    from tools.ingest.config import WEATHER_RECORD

    # The seed's WebAdmin schema: every field non-nullable, so a NaN reading (sent as null)
    # is a per-message error inside a 200: the "poisoned record" of these tests. (The
    # bundled server's default makes the sensor fields nullable.) ``time_estimated``, sent
    # only by a boot that never learned the time, stays optional as it must.
    strict = {k: v if k == "time_estimated" else v.rstrip("?") for k, v in WEATHER_RECORD.items()}
    cfg.setdefault("streams", {"weather-data": {"types": {"weather_record": strict}}})
    return IngestServer(d + "/srv", cfg, port=0).start()


_MPY = []  # the build folder, made once per test session


def mpy_dir():
    """The modules a board runs, compiled as on a board (``make build``/deploy run mpy-cross)
    but without ``-march`` (bytecode only, so the unix port loads them): importing .py
    source would run the compiler on the device heap, which a board never does."""
    if not _MPY:
        import tempfile

        out = tempfile.mkdtemp(prefix="uplink-mpy-", dir=os.environ.get("HOST_TEST_TMP"))
        from tools import mpy

        for src in ("lib/https.py", "lib/oauth.py", "lib/utc.py", "lib/record.py", "lib/sender.py",
                    "lib/sender_refusals.py", "lib/tslog.py", "lib/tslog_dir.py", "lib/tscodec.py",
                    "host_tests/uplink_device.py"):
            mpy.compile(ROOT / src, out)
        _MPY.append(out)
    return _MPY[0]


def _run_device(d, srv, timeout=240, heap=None, mp=None, **cfg):
    conf = {"url": "https://localhost:%d" % srv.port, "ca": srv.ca_der, "dir": d + "/dev",
            "user": "admin", "password": "admin"}
    conf.update(cfg)
    support.makedirs(conf["dir"])
    path = d + "/device.json"
    with open(path, "w") as f:
        json.dump(conf, f)
    env = dict(os.environ, MICROPYPATH=":".join(
        [mpy_dir(), str(ROOT / "host_tests" / "fakes"), ".frozen"]))
    args = [mp or MP] + (["-X", "heapsize=" + heap] if heap else [])
    p = subprocess.run(args + ["-c", "import sys; sys.argv[1:] = [%r]; import uplink_device"
                               % path], env=env, capture_output=True, text=True,
                       timeout=timeout, cwd=str(ROOT))
    for line in p.stdout.splitlines():
        if line.startswith("@@DEVICE "):
            return json.loads(line[9:])
    raise AssertionError("device failed (%d):\n%s\n%s" % (p.returncode, p.stdout[-3000:],
                                                          p.stderr[-3000:]))


def _seqs(srv):
    return [r["seq"] for r in srv.store.query("weather-data", symbol=["esp2462"])]


def _dead(d):
    try:
        with open(d + "/dev/dead.log") as f:
            return [int(line.split("\t")[0]) for line in f]
    except OSError:
        return []


def test_fault_matrix_exactly_once():
    """Access and refresh token expiry mid-run (access 1 s, refresh 4 s, the run paced to
    last ~10 s), 5xx bursts, connections cut before the body and after the store (dedup by
    seq), a server restart (new key: all tokens invalid), per-message errors inside a 200
    (NaN records): every record arrives exactly once.  About 12 s."""
    d = support.tmpdir("e2e")
    srv = _server(d, access_token_lifetime_s=1, refresh_token_lifetime_s=4,
                  faults={"error_rate": 0.1, "drop_after_store_rate": 0.08,
                          "drop_before_body_rate": 0.05, "seed": 6})
    srv.faults.update(error_next=3)  # a 5xx burst at the start
    refreshes = []  # refresh grants served by the token service that a restart replaces

    def restart_midway():
        while not srv._done.is_set():
            if srv.stats_snapshot().get("written", 0) >= 250:
                refreshes.append(srv.tokens.refreshes)
                srv.restart()
                return
            time.sleep(0.05)

    threading.Thread(target=restart_midway, daemon=True).start()
    try:
        n, poison = 600, [7, 333]
        figs = _run_device(d, srv, count=n, poison=poison, pace_ms=150, batch_max=10,
                           deadline_s=150)
        seqs = _seqs(srv)
        stats = srv.stats_snapshot()
        refreshes.append(srv.tokens.refreshes)
    finally:
        srv.stop()
    off = figs["first_seq"] - 1
    want = [i + off for i in range(1, n + 1) if i not in poison]
    assert sorted(seqs) == want, (len(seqs), figs)
    assert len(seqs) == len(set(seqs))  # zero duplicates in the store
    assert sorted(_dead(d)) == [p + off for p in poison] and figs["dead"] == 2
    assert len(refreshes) == 2 and stats["duplicates"] > 0, stats  # a cut reply was re-sent
    assert stats["injected_errors"] >= 3 and stats["dropped_before_body"] > 0, stats
    assert figs["send_s"] > 5, figs  # long enough for the refresh token to expire
    # access expiry -> refresh grants; refresh expiry and the restart -> refused refresh,
    # then the password grant again (initial + at least 2)
    assert sum(refreshes) >= 1 and stats["token_errors"] >= 2, (refreshes, stats)
    assert figs["grants"] - sum(refreshes) >= 3, (refreshes, figs)
    assert not figs["secret_in_logs"]
    print("e2e figures:", figs, stats, refreshes)


def test_wrong_ca_refuses_to_send():
    d = support.tmpdir("e2e-ca")
    import ssl

    import trustme

    with open(d + "/wrong.der", "wb") as f:
        f.write(ssl.PEM_cert_to_DER_cert(trustme.CA().cert_pem.bytes().decode()))
    srv = _server(d)
    try:
        figs = _run_device(d, srv, count=5, ca=d + "/wrong.der", deadline_s=3)
        assert _seqs(srv) == []
    finally:
        srv.stop()
    assert figs["sent"] == 0 and figs["state"] == "backoff"
    assert figs["last_error"].startswith("tls"), figs


def test_dns_failure_then_recovery():
    d = support.tmpdir("e2e-dns")
    srv = _server(d)
    try:
        figs = _run_device(d, srv, count=30, dns_failures=3, deadline_s=30)
        off = figs["first_seq"] - 1
        assert sorted(_seqs(srv)) == list(range(1 + off, 31 + off))
    finally:
        srv.stop()
    assert figs["retries"] >= 3 and figs["sent"] == 30


def test_refresh_token_only_config_ends_in_a_clear_state():
    """The seed's setup: a refresh token in the config and no password.  It works until
    the refresh token expires, then the sender reports auth_failed and keeps the queue."""
    import base64
    import http.client
    import ssl

    d = support.tmpdir("e2e-rt")
    srv = _server(d, access_token_lifetime_s=1, refresh_token_lifetime_s=3)
    try:
        ctx = ssl.create_default_context(cafile=srv.ca_pem)
        c = http.client.HTTPSConnection("localhost", srv.port, context=ctx)
        basic = "Basic " + base64.b64encode(b"web:secret").decode()
        c.request("POST", "/oauth/token", "grant_type=password&username=admin&password=admin"
                  "&scope=trust", {"Authorization": basic,
                                   "Content-Type": "application/x-www-form-urlencoded"})
        tok = json.loads(c.getresponse().read())["refresh_token"]
        c.close()
        figs = _run_device(d, srv, count=10, store_during=400, pace_ms=20, user=None,
                           password=None, refresh_token=tok, deadline_s=12)
        seqs = _seqs(srv)
    finally:
        srv.stop()
    assert figs["state"] == "auth_failed" and figs["oauth_failed"] == "no_credentials", figs
    off = figs["first_seq"] - 1
    assert len(seqs) > 10 and sorted(seqs) == list(range(1 + off, len(seqs) + 1 + off))


def test_read_only_server_keeps_records_queued():
    """WebAdmin's 403 read-only answer for a while: nothing is dead-lettered, all arrive."""
    d = support.tmpdir("e2e-ro")
    srv = _server(d)
    srv.faults.update(read_only=True)

    def writable_later():
        time.sleep(2)
        srv.faults.update(read_only=False)

    threading.Thread(target=writable_later, daemon=True).start()
    try:
        figs = _run_device(d, srv, count=60, batch_max=10, deadline_s=30)
        seqs = _seqs(srv)
    finally:
        srv.stop()
    off = figs["first_seq"] - 1
    assert sorted(seqs) == list(range(1 + off, 61 + off)) and _dead(d) == [], figs
    assert figs["dead"] == 0
    assert figs["retries"] > 0


def test_poisoned_records_never_block_the_queue():
    """Three kinds of poison among 200 queued records: queue entries no layout decodes
    (dead-lettered before sending), a NaN (a per-message error inside a 200), and records
    (two of them adjacent) that make the server refuse their whole batch with 400 (as
    WebAdmin does for a body Jackson cannot bind): the sender halves the batch until the
    record is alone, proves it guilty by sending the next ones, and dead-letters it.
    Everything else arrives once."""
    from tools.ingest import server

    d = support.tmpdir("e2e-poison")
    srv = _server(d)
    orig = server.Handler._read_body

    def strict(self):
        body = orig(self)
        if b'"mem_used":99999,' in body:
            raise server._BadRequest("JSON parse error: Cannot deserialize value")
        return body

    server.Handler._read_body = strict
    bad, nan, refuse = [5, 120], [50], [77, 78, 150]
    try:
        figs = _run_device(d, srv, count=200, bad_layout=bad, poison=nan, refuse=refuse,
                           batch_max=20, deadline_s=60)
        seqs = _seqs(srv)
        stats = srv.stats_snapshot()
    finally:
        server.Handler._read_body = orig
        srv.stop()
    off = figs["first_seq"] - 1
    gone = set(bad + nan + refuse)
    assert sorted(seqs) == [i + off for i in range(1, 201) if i not in gone], figs
    assert sorted(_dead(d)) == sorted(i + off for i in gone) and figs["dead"] == len(gone)
    assert stats["client_errors"] >= 3 and figs["state"] == "idle", (stats, figs)


def test_key_rotation_and_restart_with_long_lived_tokens():
    """WebAdmin's tokens (300 s access, 24 h refresh) die when its signing key changes:
    once by a key rotation, once by a restart.  Both the access and the refresh token are
    refused (401 invalid_token), the board falls back to the password grant, and every
    record arrives once."""
    d = support.tmpdir("e2e-key")
    srv = _server(d)
    events = []

    def rotate_then_restart():
        while not srv._done.is_set() and len(events) < 2:
            w = srv.stats_snapshot().get("written", 0)
            if w >= 100 and not events:
                srv.tokens.rotate_key()
                events.append("rotate")
            elif w >= 250 and len(events) == 1:
                srv.restart()
                events.append("restart")
            time.sleep(0.02)

    threading.Thread(target=rotate_then_restart, daemon=True).start()
    try:
        figs = _run_device(d, srv, count=400, batch_max=10, pace_ms=10, deadline_s=60)
        seqs = _seqs(srv)
    finally:
        srv.stop()
    off = figs["first_seq"] - 1
    assert events == ["rotate", "restart"], events
    assert sorted(seqs) == list(range(1 + off, 401 + off)), figs
    assert figs["grants"] == 3 and figs["dead"] == 0, figs  # login, then once per new key
    assert not figs["secret_in_logs"]


# The 64-bit unix port needs ~1.4x a 32-bit board's heap for the same bytecode: the
# uplink modules (~39 KB), TSLog (~14 KB) and this device script alone take ~60 KB before
# any data (a 32-bit build drains in 64k: docs/uplink.md, "Figures").  88k is the
# smallest size that passes here; 96k leaves room for fragmentation on a loaded host.
DRAIN_HEAP = "96k"


def test_drain_one_day_backlog_while_sampling():
    """43,200 queued records (one day at 0.5 Hz) drained from the real TSLog under
    ``-X heapsize=96k`` (modules loaded as .mpy) while sampling goes on (1,080 more
    stored during the drain): all arrive exactly once, and the live heap during the
    drain stays within a few KB of the heap before sending (it does not grow with the
    backlog).  About 40 s."""
    _drain_one_day(DRAIN_HEAP)


def test_drain_one_day_in_64k_on_a_32_bit_build():
    """The same drain in ``-X heapsize=64k`` on a 32-bit build (``make mp32``; docs/bench.md,
    "A 32-bit MicroPython"), skipped with how to build one when there is none."""
    _drain_one_day("64k", support.micropython32())


def _drain_one_day(heap, mp=None):
    d = support.tmpdir("e2e-drain")
    srv = _server(d)
    n, more = 43200, 1080
    try:
        figs = _run_device(d, srv, heap=heap, mp=mp, count=n, store_during=more, batch_max=16,
                           measure_heap=True, deadline_s=600, timeout=900)
        seqs = _seqs(srv)
    finally:
        srv.stop()
    off = figs["first_seq"] - 1
    assert figs["sent"] == n + more and figs["dead"] == 0, figs
    assert len(seqs) == n + more and sorted(seqs) == list(range(1 + off, n + more + 1 + off))
    before = dict(figs["phases"])["sender"]
    assert figs["heap_peak_live"] - before < 8192, figs
    print("drain figures:", figs)
