# cpython-only: orchestrates NATS, PostgreSQL, collectors and MicroPython boards as processes
"""A one-day backlog drained over MQTT on a board's heap: the firmware's module
(lib/mqtt_uplink.py with the real TSLog) under the MicroPython unix port as a board runs
it (.mpy), in 96 KB on the 64-bit port and in 64 KB on the 32-bit build
(``.mp32/micropython`` from ``make mp32``, or ``MICROPYTHON32``), into a NATS node and a
collector with SQLite; every record stored once, the live heap flat.  Every test stops
what it started."""

import json
import os
import subprocess
import sys
from pathlib import Path

import support

ROOT = Path(__file__).resolve().parent.parent
MP = str(Path(sys.executable).parent / "micropython")


def _fleet(name, **kw):
    from tools.fleet.run import Fleet

    return Fleet(support.tmpdir(name), log=lambda t: None, **kw)


# -- the one-day backlog on a board's heap ------------------------------------------------
_MPY = []


def _mpy_dir():
    if not _MPY:
        import tempfile

        out = tempfile.mkdtemp(prefix="mqtt-mpy-", dir=os.environ.get("HOST_TEST_TMP"))
        from tools import mpy

        for src in ("lib/mqtt_uplink.py", "lib/umqtt_simple.py", "lib/utc.py", "lib/record.py",
                    "lib/tscodec.py", "lib/tslog.py", "lib/tslog_dir.py",
                    "host_tests/mqtt_device.py"):
            mpy.compile(ROOT / src, out)
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
