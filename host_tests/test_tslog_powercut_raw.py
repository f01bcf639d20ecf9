"""Cut the power at every flash write of a TSLog workload on a raw partition.

The same checks as the LittleFS sweep: every record covered by a returned
``commit()`` is there after the reboot, in order, byte-identical; no corrupt
record is returned; the reader's committed cursor never moves back nor past the
log's end. The partition is tiny (512-byte blocks) so that the workload wraps
the data ring twice and switches cursor blocks (28 entries each) twice.
"""

import gc
import struct

import tslog
from flash import FlashBlockDevice, PowerCut

FMT = "<IIf"


def _t(rec):
    return struct.unpack_from("<I", rec, 0)[0]  # the seqn: a growing timestamp


def _values(seqn):
    return (seqn, seqn * 7919 & 0xFFFFFFFF, seqn / 8)


class Progress:
    def __init__(self):
        self.committed = 0
        self.cursor = 0


def _open(dev):
    return tslog.TSLog(dev, format=FMT, commit_delta=4, time_of=_t)


def workload(dev, p, total=160):
    log = _open(dev)
    r = log.reader(0)
    for i in range(total):
        if i == total // 2:  # a clean reboot in the middle
            log.close()
            log = _open(dev)
            r = log.reader(0)
        s = log.store(*_values(log.stats()[0] + 1))
        if s % 4 == 0:
            p.committed = max(p.committed, s)
        if i % 3 == 2:
            while True:
                rec = r.next()
                if rec is None or r.seqn % 7 == 0:
                    break
            r.commit()
            p.cursor = r.seqn
    p.committed = log.commit()
    log.close()


def check(dev, p):
    log = _open(dev)
    last = log.stats()[0]
    assert last >= p.committed, (last, p.committed)
    r = log.reader(0)
    assert p.cursor <= r.seqn <= last, (p.cursor, r.seqn, last)
    expect = r.seqn + 1
    while True:
        rec = r.next()
        if rec is None:
            break
        assert r.seqn == expect and rec == _values(expect), (r.seqn, expect, rec)
        expect += 1
    assert expect - 1 == last, (expect, last)
    # The time index agrees: every record left, in order, and a one-record window.
    first = log._buckets[0] if log._buckets else 1
    got = [s for s, rec in log.between(0, 1 << 32)]
    assert got == list(range(first, last + 1)), (got, first, last)
    if last >= first:
        assert [s for s, _ in log.between(last, last + 1)] == [last]
    assert log.dropped == 0
    s = log.store(*_values(last + 1))
    log.commit()
    assert r.next() == _values(s)
    log.close()
    # ... and what it stored after recovery survives another reboot.
    log = _open(dev.reboot())
    assert log.stats()[0] == s and log.reader(0).seqn >= p.cursor
    log.close()


def sweep(torn):
    dev = FlashBlockDevice(block_size=512, block_count=8)  # 6 x 14 records in the ring
    base = bytes(dev.data)
    start = dev.writes
    workload(dev, Progress())
    total_writes = dev.writes - start
    cuts = 0
    for k in range(1, total_writes + 1):
        dev.data[:] = base
        dev.restore()
        p = Progress()
        dev.cut_after(k, torn)
        try:
            workload(dev, p)
        except PowerCut:
            cuts += 1
        dev = dev.reboot()
        gc.collect()
        check(dev, p)
    print("tslog raw-partition power-cut sweep: %d writes, %d cuts, torn=%s"
          % (total_writes, cuts, torn))
    return cuts


def test_raw_cut_at_every_write():
    assert sweep(torn=False) > 100


def test_raw_cut_at_every_write_torn():
    assert sweep(torn=True) > 100
