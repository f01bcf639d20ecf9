# micropython-only: LittleFS (vfs.VfsLfs2) over the fake flash exists only in MicroPython
"""Cut the power at every single flash write of a TSLog workload, on LittleFS.

After each cut: power back, remount, reopen. Checks: every record covered by a
returned ``commit()`` is there, in order, byte-identical; no corrupt record is
returned; the reader's committed cursor never moves back nor past the log's end.
"""

import gc
import struct

import vfs

import tslog
from flash import FlashBlockDevice, PowerCut

MNT = "/flash_pc"
FMT = "<IIf"


def _t(rec):
    return struct.unpack_from("<I", rec, 0)[0]  # the seqn: a growing timestamp


def _values(seqn):
    return (seqn, seqn * 7919 & 0xFFFFFFFF, seqn / 8)


class Progress:
    def __init__(self):
        self.committed = 0  # highest seqn a returned log.commit() covered
        self.cursor = 0  # highest reader cursor a returned reader.commit() persisted


def workload(p, total=160):
    log = tslog.TSLog(MNT + "/log", format=FMT, bucket_size=8, commit_delta=4, time_of=_t)
    r = log.reader(0)
    for i in range(total):
        if i == total // 2:  # a clean reboot in the middle
            log.close()
            log = tslog.TSLog(MNT + "/log", format=FMT, bucket_size=8, commit_delta=4, time_of=_t)
            r = log.reader(0)
        s = log.store(*_values(log.stats()[0] + 1))
        if s % 4 == 0:
            p.committed = max(p.committed, s)  # auto-commit at commit_delta returned
        if i % 10 == 9:
            while True:
                rec = r.next()
                if rec is None or r.seqn % 12 == 0:
                    break
            r.commit()
            p.cursor = r.seqn
    p.committed = log.commit()
    log.close()


def check(p):
    log = tslog.TSLog(MNT + "/log", format=FMT, bucket_size=8, commit_delta=4, time_of=_t)
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
    # The log keeps working after recovery.
    s = log.store(*_values(last + 1))
    log.commit()
    assert r.next() == _values(s)
    log.close()


def _mount(dev):
    vfs.mount(vfs.VfsLfs2(dev), MNT)


def _umount():
    try:
        vfs.umount(MNT)
    except (OSError, PowerCut):
        pass


def sweep(torn):
    _umount()
    dev = FlashBlockDevice(block_size=4096, block_count=64)
    vfs.VfsLfs2.mkfs(dev)
    base = bytes(dev.data)
    # How many writes does the whole workload make?
    _mount(dev)
    start = dev.writes
    workload(Progress())
    total_writes = dev.writes - start
    _umount()
    cuts = 0
    for k in range(1, total_writes + 1):
        dev.data[:] = base
        dev.restore()
        _mount(dev)
        p = Progress()
        dev.cut_after(k, torn)
        try:
            workload(p)
        except PowerCut:
            cuts += 1
        _umount()
        dev = dev.reboot()
        gc.collect()  # finalizers of handles abandoned at the cut meet a dead chip
        _mount(dev)
        check(p)
        _umount()
    print("tslog power-cut sweep: %d writes, %d cuts, torn=%s" % (total_writes, cuts, torn))
    return cuts


def test_cut_at_every_write():
    assert sweep(torn=False) > 50


def test_cut_at_every_write_torn():
    assert sweep(torn=True) > 50
