"""The TSLog workload the power-cut sweeps replay (LittleFS, raw partition, FAT).

Stores with automatic commits every 4, a reader that reads and commits its cursor now
and then, a clean reopen half way; ``Progress`` records what a returned commit made
durable, which the checks hold the log to after each cut.

Two kinds of records: ``PLAIN`` (``FMT`` values in a log without a codec) and
``WEATHER`` (the firmware's queue: v2 weather records with noisy readings and now and
then a null sensor, coded by ``record.CODEC``, opened with ``record.open_queue``).
"""

import gc
import struct

from flash import PowerCut

FMT = "<IIf"


def time_of(rec):
    return struct.unpack_from("<I", rec, 0)[0]  # the seqn: a growing timestamp


def values(seqn):
    return (seqn, seqn * 7919 & 0xFFFFFFFF, seqn / 8)


class Plain:
    """Records of ``FMT`` (values from the seqn), timestamp = seqn."""

    @staticmethod
    def make(seqn):
        return struct.pack(FMT, *values(seqn))

    @staticmethod
    def time(seqn):
        return seqn


class Weather:
    """The firmware's v2 records: time 2 s apart, readings with a little noise, the
    AM2320 null (resting) every 13th record."""

    T0 = 1764000000000

    @staticmethod
    def make(seqn):
        import record

        n = (seqn * 2654435761) >> 7 & 0xFFFF  # deterministic noise
        flags = record.FLAG_UTC
        if seqn % 13 == 0:
            flags |= record.FLAG_NO_AM | record.FLAG_AM_REST
        return record.encode(Weather.T0 + 2000 * seqn, (
            200 + n % 3, 550 - n % 2, 190 + n % 4, 101300 + n % 7, 60000 + 16 * (n % 5),
            110000), 3, flags)

    @staticmethod
    def time(seqn):
        return Weather.T0 + 2000 * seqn


PLAIN = Plain
WEATHER = Weather


class Progress:
    def __init__(self):
        self.committed = 0  # highest seqn a returned log.commit() covered
        self.cursor = 0  # highest reader cursor a returned reader.commit() persisted


def workload(open_log, p, total, read_every=10, read_stop=12, kind=PLAIN):
    """Run the workload on ``open_log()``; every ``read_every`` stores the reader reads up
    to a seqn divisible by ``read_stop`` (or the end) and commits its cursor."""
    log = open_log()
    r = log.reader(0)
    for i in range(total):
        if i == total // 2:  # a clean reboot in the middle
            log.close()
            log = open_log()
            r = log.reader(0)
        s = log.store_record(kind.make(log.stats()[0] + 1))
        if s % 4 == 0:
            p.committed = max(p.committed, s)  # auto-commit at commit_delta returned
        if i % read_every == read_every - 1:
            while True:
                rec = r.next_record()
                if rec is None or r.seqn % read_stop == 0:
                    break
            r.commit()
            p.cursor = r.seqn
    p.committed = log.commit()
    log.close()


def cut_sweep(dev, run, recover, torn, mount=None, umount=None):
    """Cut the power at each flash write ``run(dev, p)`` makes, one cut a run on a copy of
    ``dev`` as it is now; after each cut: reboot the chip, then ``recover(dev, p)``.
    ``mount(dev)``/``umount()`` wrap every run and every recovery (a filesystem).
    Returns (writes of an uncut run, runs a cut stopped)."""
    base = bytes(dev.data)
    if mount:
        mount(dev)
    start = dev.writes
    run(dev, Progress())
    total = dev.writes - start
    if umount:
        umount()
    cuts = 0
    for k in range(1, total + 1):
        dev.data[:] = base
        dev.restore()
        if mount:
            mount(dev)
        p = Progress()
        dev.cut_after(k, torn)
        try:
            run(dev, p)
        except PowerCut:
            cuts += 1
        if umount:
            umount()
        dev = dev.reboot()
        gc.collect()  # finalizers of handles abandoned at the cut meet a dead chip
        if mount:
            mount(dev)
        recover(dev, p)
        if umount:
            umount()
    return total, cuts


def check(log, p, kind=PLAIN):
    """The full guarantees (LittleFS, raw): nothing committed lost, no garbage, no cursor
    regression, the time index agrees, and the log keeps working. Returns the last seqn."""
    last = log.stats()[0]
    assert last >= p.committed, (last, p.committed)
    r = log.reader(0)
    assert p.cursor <= r.seqn <= last, (p.cursor, r.seqn, last)
    expect = r.seqn + 1
    while True:
        rec = r.next_record()
        if rec is None:
            break
        assert r.seqn == expect and rec == kind.make(expect), (r.seqn, expect, rec)
        expect += 1
    assert expect - 1 == last, (expect, last)
    # The time index agrees: every record left, in order, and a one-record window.
    first = log._buckets[0] if log._buckets else 1
    got = [s for s, rec in log.between(0, 1 << 62)]
    assert got == list(range(first, last + 1)), (got, first, last)
    if last >= first:
        t = kind.time(last)
        assert [s for s, _ in log.between(t, t + 1)] == [last]
    # The log keeps working after recovery.
    s = log.store_record(kind.make(last + 1))
    log.commit()
    assert r.next_record() == kind.make(s)
    return s
