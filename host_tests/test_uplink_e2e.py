# cpython-only: orchestrates the ingest server (CPython) and MicroPython "boards" as processes
"""End to end: lib/https + lib/oauth + lib/sender under the real MicroPython unix port,
against tools/ingest over HTTPS (its own CA), with the fault matrix of issue 6.

The server runs in this (CPython) process so faults, restarts and the SQLite store are
driven and checked directly; each "board" is a ``micropython host_tests/uplink_device.py``
subprocess with the real lib modules (and lib/tslog.py when present).
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

    return IngestServer(d + "/srv", cfg, port=0).start()


def _run_device(d, srv, timeout=240, **cfg):
    conf = {"url": "https://localhost:%d" % srv.port, "ca": srv.ca_der, "dir": d + "/dev",
            "user": "admin", "password": "admin"}
    conf.update(cfg)
    support.makedirs(conf["dir"])
    path = d + "/device.json"
    with open(path, "w") as f:
        json.dump(conf, f)
    env = dict(os.environ, MICROPYPATH=":".join(
        [str(ROOT / "host_tests" / "fakes"), str(ROOT / "lib"), str(ROOT / "host_tests"),
         ".frozen"]))
    p = subprocess.run([MP, str(ROOT / "host_tests" / "uplink_device.py"), path], env=env,
                       capture_output=True, text=True, timeout=timeout, cwd=str(ROOT))
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
    """Token expiry mid-run (access 1 s, refresh 4 s), 5xx bursts, connections cut before
    the body and after the store (dedup by seq), a server restart (new key: all tokens
    invalid), per-message errors (poisoned records): every record arrives exactly once."""
    d = support.tmpdir("e2e")
    srv = _server(d, access_token_lifetime_s=1, refresh_token_lifetime_s=4,
                  faults={"error_rate": 0.1, "drop_after_store_rate": 0.08,
                          "drop_before_body_rate": 0.05, "seed": 6})
    srv.faults.update(error_next=3)  # a 5xx burst at the start
    restarted = []

    def restart_midway():
        while not srv._done.is_set():
            if srv.stats_snapshot().get("written", 0) >= 250 and not restarted:
                srv.restart()
                restarted.append(1)
                return
            time.sleep(0.05)

    threading.Thread(target=restart_midway, daemon=True).start()
    try:
        n, poison = 600, [7, 333]
        figs = _run_device(d, srv, count=n, poison=poison, pace_ms=15, batch_max=25,
                           deadline_s=150)
        seqs = _seqs(srv)
        stats = srv.stats_snapshot()
    finally:
        srv.stop()
    off = figs["first_seq"] - 1  # TSLog numbering (1 with the stand-in)
    want = [i + off for i in range(1, n + 1) if i not in poison]
    assert sorted(seqs) == want, (len(seqs), figs)
    assert len(seqs) == len(set(seqs))  # zero duplicates in the store
    assert sorted(_dead(d)) == [p + off for p in poison] and figs["dead"] == 2
    assert restarted and stats["duplicates"] > 0, stats  # a cut reply was re-sent
    assert stats["token_requests"] >= 3 and figs["grants"] >= 3, (stats, figs)
    assert not figs["secret_in_logs"]
    print("e2e figures:", figs, stats)


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
