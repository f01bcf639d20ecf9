# run: micropython
"""console.between() for one hour of a long log: with the TSLog time index vs a full scan.

The firmware's workload: one ``record`` every 2 s (43,200 a day), TSLog folder with the
firmware's ``bucket_size`` 1024, on the unix port's own filesystem (a week does not fit
in a board's 2 MiB).  For logs of 1 and 7 days: the time and the bucket files opened by
``console.between(t, t + 1 h)`` for an hour in the middle, cold (log just opened: the
buckets' time ranges are read from their index files) and warm (second call), with the
log opened with ``time_of=record.time_of`` (index) and without (the console's fallback:
a scan of every record), and ``console.tail(10)``.
"""

import gc
import time

import console
import record
import support
import tslog

T0 = 1763942400000  # 2025-11-24T00:00:00Z
STEP = 2000
DAY = 86400000 // STEP
BUCKET = 1024
_opens = [0, 0]  # bucket files, index (time range) files opened for reading


def _counting_open(path, mode="r"):
    if "r" in mode and isinstance(path, str):
        name = path[path.rfind("/") + 1:]
        if name[:1] == "b":
            _opens[0] += 1
        elif name[:1] == "i":
            _opens[1] += 1
    return open(path, mode)


def _open(d, indexed):
    kw = {"time_of": record.time_of} if indexed else {}
    return tslog.TSLog(d, record_size=record.QUEUE_RECORD_SIZE, bucket_size=BUCKET,
                       commit_delta=BUCKET, **kw)


def build(d, n):
    log = _open(d, True)
    vals = [20.5, 55.0, 21.25, 101325.0, 12.5, 40000, 60000]
    t = time.ticks_ms()
    for i in range(n):
        log.store_record(record.encode(T0 + i * STEP, vals, 1, record.FLAG_UTC))
    log.close()
    return time.ticks_diff(time.ticks_ms(), t)


class _Count:
    n = 0

    def __call__(self, line):
        self.n += 1


def _timed(f, *args):
    _opens[0] = _opens[1] = 0
    t = time.ticks_us()
    r = f(*args)
    return r, time.ticks_diff(time.ticks_us(), t) / 1000, "%d+%d" % (_opens[0], _opens[1])


def _quiet_between(t0, t1):
    return console.between(t0, t1, writer=_Count())


def run(days):
    d = support.tmpdir("bench-console-%d" % days)
    n = days * DAY
    ms = build(d, n)
    buckets = (n + BUCKET - 1) // BUCKET
    print("%d day(s): %d records, %d buckets (built in %.1f s)" % (days, n, buckets, ms / 1000))
    t0 = (T0 + (n * STEP) // 2) // 1000  # an hour in the middle
    for indexed in (True, False):
        log = _open(d, indexed)
        console.detach()
        console.attach(log=log)
        name = "index" if indexed else "full scan"
        got, ms1, op1 = _timed(_quiet_between, t0, t0 + 3600)
        assert got == 1800, got
        _, ms2, op2 = _timed(_quiet_between, t0, t0 + 3600)
        print("  between(1 h), %-9s cold %7.1f ms, %6s files | warm %7.1f ms, %6s files"
              % (name, ms1, op1, ms2, op2))
        if indexed:
            got, ms3, op3 = _timed(lambda: len(console.tail(10)))
            print("  tail(10)                     %7.1f ms, %6s files" % (ms3, op3))
        log.close()
        console.detach()
        gc.collect()
    support.rmtree(d)


def main():
    tslog.open = _counting_open  # counts bucket files opened for reading
    console.print = lambda *a, **k: None  # the commands' own summary lines
    print("console.between(): one hour (1800 records) out of a long log;")
    print("files opened for reading: bucket + time-range index files")
    try:
        for days in (1, 7):
            run(days)
    finally:
        del tslog.open
        del console.print


main()
