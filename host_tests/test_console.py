"""lib/console.py on small logs: every command, time parsing, CSV, erase, status (both
interpreters).  The 7-day / 64 KB heap run is host_tests/test_console_heap.py."""

import console
import record
import support
import test_schema
import tslog
import utc

T0 = 1700000000000  # 2023-11-14T22:13:20Z
STEP = 2000


def _vals(i):  # layout v2: 0.1 degC, 0.1 %RH, 0.1 degC, Pa, mem_used, heap
    return (200 + i % 10, 505, 212, 101325 + i, 1000 + i, 91000)


def _texts(i):
    """The CSV cells of _vals(i), as the uploader sends them."""
    return ["%.1f" % (20 + i % 10), "50.5", "21.2", "%d" % (101325 + i),
            "%.7g" % record.altitude_m(101325 + i), "%d" % (1000 + i), "%d" % (90000 - i)]


def _queue(d, indexed=True, **kw):
    if indexed:
        return record.open_queue(d + "/q", **kw)
    return tslog.TSLog(d + "/q", record_size=record.QUEUE_RECORD_SIZE, codec=record.CODEC,
                       **kw)


def _build(n, bucket_size=8, untimed=0, nreaders=2, indexed=True):
    """A log of ``n`` UTC records every 2 s from T0, then ``untimed`` pre-NTP ones;
    ``indexed``: opened with the TSLog time index (else the console scans)."""
    d = support.tmpdir("console")
    log = _queue(d, indexed, bucket_size=bucket_size, commit_delta=64, nreaders=nreaders)
    for i in range(n):
        log.store_record(record.encode(T0 + i * STEP, _vals(i), 1, record.FLAG_UTC))
    for i in range(untimed):
        log.store_record(record.encode(5000 + i * STEP, _vals(i), 2, 0))
    log.commit()
    console.detach()
    console.attach(log=log)
    return d, log


class _Lines:
    def __init__(self):
        self.lines = []

    def __call__(self, line):
        self.lines.append(line)


def test_time_parsing():
    f = console.utc_ms_of
    assert f("2023-11-14T22:13:20Z") == T0
    assert f("2023-11-14T22:13:20") == T0 and f("2023-11-14 22:13:20Z") == T0
    assert f("2023-11-14T22:13:20.250Z") == T0 + 250
    assert f("2023-11-14T22:13Z") == T0 - 20000
    assert f("2023-11-14") == T0 - (22 * 3600 + 13 * 60 + 20) * 1000
    assert f(1700000000) == T0 and f(1700000000.5) == T0 + 500 and f(None) is None
    assert f("1970-01-01T00:00:00Z") == 0 and f("2000-02-29T00:00:00Z") == 951782400000
    assert f("2099-12-31T23:59:59Z") == 4102444799000
    for bad in ("yesterday", "2023-13-01", "2023-11-14T25:00:00Z", "2023-11",
                "2023-11-14T1:2:3:4"):
        e = support.raises(ValueError, f, bad)
        assert bad in str(e) or "range" in str(e), e
    for s in range(0, 4102444800, 86400 * 97 + 3599):  # inverse of record.iso_utc
        assert f(utc.iso(s * 1000)) == s * 1000


def test_tail_returns_last_records_in_order():
    _, log = _build(30)
    got = console.tail(3)
    assert [s for s, _ in got] == [28, 29, 30]
    assert got[-1][1] == (T0 + 29 * STEP,) + _vals(29) + (1, record.FLAG_UTC | 1 << 5)
    assert [s for s, _ in console.tail(100)] == list(range(1, 31))
    assert console.tail(0) == []
    log.close()


def test_between_half_open_and_counts():
    _between(True)
    _between(False)


def _between(indexed):
    _, log = _build(100, indexed=indexed)
    out = _Lines()
    t0 = (T0 + 10 * STEP) // 1000
    n = console.between(t0, t0 + 20, writer=out)  # 20 s = 10 records
    assert n == 10 and len(out.lines) == 10
    assert out.lines[0].split()[0] == "11" and out.lines[-1].split()[0] == "20"
    assert utc.iso(T0 + 10 * STEP) in out.lines[0]
    out = _Lines()
    assert console.between(utc.iso(T0 + 98 * STEP), None, writer=out) == 2
    assert console.between(None, T0 // 1000, writer=_Lines()) == 0
    assert console.between(None, None, writer=_Lines()) == 100
    assert [s for s, _ in console.records(t0, t0 + 4)] == [11, 12]
    log.close()


def test_untimed_records_in_tail_and_dump_not_between():
    _untimed(True)
    _untimed(False)


def _untimed(indexed):
    _, log = _build(5, untimed=3, indexed=indexed)
    got = console.tail(4)
    assert [s for s, _ in got] == [5, 6, 7, 8]
    assert console.between(T0 // 1000, None, writer=_Lines()) == 5
    out = _Lines()
    assert console.dump(writer=out) == 8
    row = out.lines[-1].split(",")
    assert row[1] == "" and row[2] == str(5000 + 2 * STEP) and row[3] == "2"
    # once the boot's epoch is known (the clock part), they get a time
    console.attach(clock=_Clock(T0 + 3600000), guard=_Guard(2))
    out = _Lines()
    console.dump(writer=out)
    assert out.lines[-1].split(",")[1] == utc.iso(T0 + 3600000 + 5000 + 2 * STEP)
    assert "no clock" not in console.line_of(8, got[-1][1], console._epochs())
    log.close()


def test_dump_csv_header_and_rows():
    _, log = _build(20, bucket_size=4)
    out = _Lines()
    assert console.dump(writer=out) == 20
    head = out.lines[0].split(",")
    assert head[:6] == ["seq", "utc", "time_ms", "boot", "flags", "layout"]
    assert head[6:] == list(record.SENSOR_FIELDS)
    assert len(out.lines) == 21
    row = out.lines[1].split(",")
    assert row[:6] == ["1", utc.iso(T0), str(T0), "1", "1", "2"]
    assert row[6:] == _texts(0)
    out = _Lines()
    assert console.dump(writer=out, since=T0 // 1000 + 10, until=T0 // 1000 + 20) == 5
    assert out.lines[1].split(",")[0] == "6"
    log.close()


def test_dump_mixed_layouts_and_nulls():
    _, log = _build(2)
    try:  # a v2 record with the BMP180 failed, then the example update's v3
        log.store_record(record.encode(T0 + 8000, _vals(1), 3,
                                       record.FLAG_UTC | record.FLAG_NO_BMP))
        record.register(test_schema._v3(), current=True)
        log.store_record(record.encode(T0 + 10000, _vals(0) + (92, 3700), 3,
                                       record.FLAG_UTC | record.FLAG_NO_AM))
        log.commit()
        out = _Lines()
        assert console.dump(writer=out) == 4
        head = out.lines[0].split(",")
        assert head[-2:] == ["dew_point", "battery_mv"]
        v2, v2b, v3 = (out.lines[i].split(",") for i in (2, 3, 4))
        assert v2[-1] == v2[-2] == "" and v2[5] == "2"
        assert v2b[5] == "2" and v2b[6] == "20.1" and v2b[8] == v2b[9] == v2b[10] == ""
        assert v3[-2:] == ["9.2", "3700"] and v3[5] == "3" and v3[6] == "" and v3[7] == ""
        assert "dew_point=9.2" in console.line_of(4, console.tail(1)[0][1])
        assert "am2320_temp=- " in console.line_of(4, console.tail(1)[0][1])
    finally:
        record.LAYOUTS.pop(3, None)
        record.CURRENT = 2
    log.close()


def test_erase_needs_the_word_and_seqn_continues():
    _erase(True)
    _erase(False)


def _erase(indexed):
    d, log = _build(30, indexed=indexed)
    snd_reader = log.reader(0)  # the uploader's reader, part-way
    for _ in range(7):
        snd_reader.next_record()
    assert console.erase() is False and console.erase("yes") is False
    assert len(console.tail(100)) == 30
    assert console.erase(confirm="ERASE") is True
    assert console.tail(5) == [] and console.dump(writer=_Lines()) == 0
    assert snd_reader.next_record() is None and snd_reader.seqn == 30
    assert log.stats()[2] == 0
    assert log.store_record(record.encode(T0, _vals(0), 1, 1)) == 31
    log.commit()
    assert [s for s, _ in console.tail(5)] == [31]
    assert console.between(T0 // 1000, None, writer=_Lines()) == 1
    assert console.erase(confirm="ERASE") is True and console.erase(confirm="ERASE") is True
    log.close()
    log = _queue(d, indexed, bucket_size=8, nreaders=2)
    assert log.stats()[0] == 31 and log.reader(0).next_record() is None
    assert log.store_record(record.encode(T0, _vals(0), 1, 1)) == 32
    log.close()


def test_open_log_from_meta_without_attach():
    d, log = _build(12, bucket_size=5)
    log.close()
    console.detach()
    console.attach(config={"tslog_dir": d + "/q"})
    got = console.tail(2)
    assert [s for s, _ in got] == [11, 12]
    assert console.dump(writer=_Lines()) == 12
    st = console.status()
    assert st["last_seqn"] == 12 and st["buckets"] == 3
    console.detach()
    console.attach(config={"tslog_dir": d + "/none"})
    assert console.tail() == [] and console.dump(writer=_Lines()) == 0
    assert console.status()["last_record"] is None
    console.detach()


class _Clock:
    def __init__(self, epoch):
        self.is_set = True
        self.boot_epoch_ms = epoch

    def mono_ms(self):
        return 93000


class _Guard:
    def __init__(self, boot):
        self.boot = boot
        self.cause = "watchdog"


class _Wifi:
    state = "connected"

    def rssi(self):
        return -61


class _Sampler:
    interval_ms = 2000

    def stats(self):
        return {"samples": 10, "stored": 9, "missed": 0, "sensor_failed": 1, "am2320_fails": 1,
                "bmp180_fails": 0}


class _Sender:
    _epochs = {}

    def stats(self):
        return {"sent": 5, "batches": 1, "dead": 0, "retries": 0, "queued": 0,
                "last_ok_ms": None, "backoff_ms": 0, "state": "idle", "last_error": None}


class _CountingLock:
    def __init__(self):
        self.depth = 0
        self.taken = 0

    def __enter__(self):
        assert self.depth == 0, "lock taken twice"
        self.depth += 1
        self.taken += 1
        return self

    def __exit__(self, *exc):
        self.depth -= 1
        return False


def test_status_with_every_part_and_lock():
    _, log = _build(40)
    lock = _CountingLock()
    console.attach(lock=lock, clock=_Clock(T0), guard=_Guard(7), wifi=_Wifi(),
                   sampler=_Sampler(), sender=_Sender(), version="1.2.3")
    st = console.status()
    assert st["version"] == "1.2.3" and st["uptime_s"] == 93 and st["boot"] == 7
    assert st["reset_cause"] == "watchdog" and st["clock_set"] and st["rssi"] == -61
    assert st["last_seqn"] == 40 and st["reader_lag"] == [40, 40] and st["buckets"] == 5
    assert st["last_record"][0] == 40 and st["records_per_day"] == 43200
    assert st["days_until_full"] == st["free_records"] / 43200
    assert st["uploader"]["state"] == "idle" and st["heap_free"] > 0
    assert lock.taken > 0 and lock.depth == 0
    taken = lock.taken
    out = _Lines()

    def writer(line):  # the lock is never held while a line is written
        assert lock.depth == 0
        out.lines.append(line)

    console.dump(writer=writer)
    console.between(T0 // 1000, None, writer=writer)
    assert lock.taken > taken + 80 and len(out.lines) == 81
    log.close()
    console.detach()


def test_rate_from_the_log_when_no_sampler():
    _, log = _build(150)
    st = console.status()
    assert st["records_per_day"] == 43200 and st["uploader"] is None
    log.close()
    console.detach()


def test_help_lists_every_command():
    names = console.help()
    for cmd in ("status", "tail", "between", "dump", "erase", "help"):
        assert any(n.startswith(cmd + "(") for n in names), cmd
