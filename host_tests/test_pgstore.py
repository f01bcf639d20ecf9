# cpython-only: a host-side store (tools/ingest/pgstore.py) against a real PostgreSQL server
"""tools/ingest/pgstore.py on a throw-away PostgreSQL 15 (tools/fleet/pg.py, one server for
this file, stopped by its last test): the dedup rule of dedup.py exactly as the SQLite
store applies it, parallel writers storing each record once, day partitions, rows
PostgreSQL refuses, the read side equal to the SQLite store's, and ``query --store``."""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import support

ROOT = Path(__file__).resolve().parent.parent
_pg = []
DAY_NS = 86400 * 10**9
T0 = 1795478400 * 10**9  # 2026-11-24T00:00:00Z


def pg():
    if not _pg:
        from tools.fleet.pg import PgServer

        try:
            _pg.append(PgServer().start())
        except FileNotFoundError as e:
            support.skip(str(e))
    return _pg[0]


def fresh(**kw):
    """A PgStore on a database of its own (tests do not see each other's rows)."""
    import psycopg

    from tools.ingest.pgstore import PgStore

    name = "t%s" % os.urandom(4).hex()
    with psycopg.connect(pg().dsn, autocommit=True) as c:
        c.execute("CREATE DATABASE %s" % name)
    return PgStore(pg().dsn.rsplit("/", 1)[0] + "/" + name, **kw)


def rows(symbol, seqs, temp=21.5, ts_step=2, t0=T0):
    from tools.ingest.config import DEFAULTS
    from tools.ingest.schema import format_timestamp, validate

    types = DEFAULTS["streams"]["weather-data"]["types"]
    return [validate({"$type": "weather_record", "symbol": symbol,
                      "timestamp": format_timestamp(t0 + s * ts_step * 10**9), "seq": s,
                      "am2320_temp": temp, "am2320_humidity": 40.25 + s / 100,
                      "bmp180_temp": None, "bmp180_pressure": 101325.0 + s,
                      "bmp180_altitude": 12.5, "mem_used": 1000 + s, "mem_free": 90000}, types)
            for s in seqs]


def test_the_dedup_rule_as_the_sqlite_store():
    from tools.ingest.store import Store

    clock = support.StepClock(T0 + DAY_NS)
    a = fresh(clock_ns=clock)
    b = Store(support.tmpdir("sqlite-twin"), clock_ns=support.StepClock(T0 + DAY_NS))
    batches = [rows("esp1", range(1, 6)), rows("esp1", range(3, 9)),  # repeats of 3..5
               rows("esp1", [2], temp=9.0),  # a collision: seq 2 with other values
               rows("esp1", [2], temp=9.0) + rows("esp2", [1, 1])]  # repeats in one batch
    for batch in batches:
        assert a.write("weather-data", batch) == b.write("weather-data", batch)
    assert a.count("weather-data") == b.count("weather-data") == 10
    assert a.count("weather-data", collisions=True) == 1
    strip = ("acquisition_ns",)
    got = [{k: v for k, v in r.items() if k not in strip} for r in a.query("weather-data")]
    want = [{k: v for k, v in r.items() if k not in strip} for r in b.query("weather-data")]
    assert got == want, (got[:2], want[:2])
    assert [r["seq"] for r in a.query("weather-data", symbol="esp1", collisions=True)] == [2]
    assert a.symbols("weather-data") == b.symbols("weather-data") == ["esp1", "esp2"]
    assert a.time_range("weather-data", ["esp2"]) == b.time_range("weather-data", ["esp2"])
    since, until = T0 + 4 * 10**9, T0 + 11 * 10**9
    assert [r["seq"] for r in a.query("weather-data", since=since, until=until)] == \
        [r["seq"] for r in b.query("weather-data", since=since, until=until)] == [2, 2, 3, 4, 5]
    a.close()
    b.close()


def test_parallel_writers_store_each_record_once_and_flag_collisions():
    first = fresh()
    dsn = first.dsn
    first.close()
    from tools.ingest.pgstore import PgStore

    errors = []

    def writer(k):
        s = PgStore(dsn)
        try:
            for j in range(20):  # overlapping batches of the same 4 boards
                for sym in ("b1", "b2", "b3", "b4"):
                    s.write("weather-data", rows(sym, range(j * 5, j * 5 + 25)))
            s.write("weather-data", rows("b1", [7], temp=30.0 + k))  # 4 different seq-7s
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))
        finally:
            s.close()

    ts = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors
    s = PgStore(dsn)
    for sym in ("b2", "b3", "b4"):
        seqs = [r["seq"] for r in s.query("weather-data", symbol=sym)]
        assert seqs == list(range(0, 120)), (sym, len(seqs))
    b1 = [r for r in s.query("weather-data", symbol="b1") if r["seq"] == 7]
    assert len(b1) == 5 and sum(r["collision"] for r in b1) == 4, b1  # first one unflagged
    s.close()


def test_a_day_partition_per_arrival_day_and_a_repeat_after_midnight_absorbed():
    clock = support.StepClock(T0 + DAY_NS - 5000)  # 5 us before midnight
    s = fresh(clock_ns=clock)
    assert s.write("weather-data", rows("esp1", range(1, 4))).written == 3
    clock.ns = T0 + DAY_NS + 10**9  # the next day: the retry of a batch
    w = s.write("weather-data", rows("esp1", range(1, 6)))
    assert (w.written, w.duplicates) == (2, 3)
    assert s.files("weather-data") == ["weather-data_2026_11_24", "weather-data_2026_11_25"]
    assert s.count("weather-data") == 5
    s.close()


def test_a_row_postgresql_refuses_is_rejected_alone():
    from tools.ingest.schema import validate

    types = {"event": {"text": "VARCHAR"}}
    s = fresh(streams={"ev": {"types": types}})
    batch = [validate({"symbol": "e", "seq": i, "timestamp": "2026-11-24T00:00:00.000Z",
                       "text": t}, types) for i, t in enumerate(["ok", "nul\u0000byte", "fine"])]
    w = s.write("ev", batch)
    assert w.written == 2 and [i for i, _ in w.rejected] == [1], w
    again = s.write("ev", batch[1:2])  # its key stayed free: refused again, not a "repeat"
    assert again.written == 0 and len(again.rejected) == 1 and again.duplicates == 0
    s.close()


def test_query_and_stats_commands_read_postgresql():
    s = fresh()
    s.write("weather-data", rows("esp9", range(1, 4)))
    dsn = s.dsn
    s.close()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-m", "tools.ingest", "query", "--store", dsn,
                        "--stream", "weather-data", "--format", "json"], capture_output=True,
                       text=True, cwd=str(ROOT), env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    assert [r["seq"] for r in json.loads(p.stdout)] == [1, 2, 3]
    p = subprocess.run([sys.executable, "-m", "tools.ingest", "stats", "--store", dsn],
                       capture_output=True, text=True, cwd=str(ROOT), env=env, timeout=60)
    st = json.loads(p.stdout)["weather-data"]
    assert st["rows"] == 3 and st["files"] == 1 and st["symbols"] == ["esp9"], st


def test_a_restarted_server_is_reconnected():
    s = fresh()
    s.write("weather-data", rows("r1", [1]))
    pg().restart(crash=True)
    import psycopg

    e = support.raises(psycopg.OperationalError, s.write, "weather-data", rows("r1", [2]))
    assert e is not None  # the dead connection fails once; the caller retries
    assert s.write("weather-data", rows("r1", [1, 2])).written == 1
    s.close()


def test_zz_stop_server():
    if _pg:
        _pg.pop().cleanup()
