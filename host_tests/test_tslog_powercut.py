# micropython-only: LittleFS (vfs.VfsLfs2) over the fake flash exists only in MicroPython
"""Cut the power at every single flash write of a TSLog workload, on LittleFS.

After each cut: power back, remount, reopen. Checks: every record covered by a
returned ``commit()`` is there, in order, byte-identical; no corrupt record is
returned; the reader's committed cursor never moves back nor past the log's end.
"""

import gc

import vfs

import tslog
from flash import FlashBlockDevice, PowerCut
from tslog_workload import FMT, Progress, check, time_of, workload

MNT = "/flash_pc"


def _open():
    return tslog.TSLog(MNT + "/log", format=FMT, bucket_size=8, commit_delta=4,
                       time_of=time_of)


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
    workload(_open, Progress(), 160)
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
            workload(_open, p, 160)
        except PowerCut:
            cuts += 1
        _umount()
        dev = dev.reboot()
        gc.collect()  # finalizers of handles abandoned at the cut meet a dead chip
        _mount(dev)
        log = _open()
        check(log, p)
        log.close()
        _umount()
    print("tslog power-cut sweep: %d writes, %d cuts, torn=%s" % (total_writes, cuts, torn))
    return cuts


def test_cut_at_every_write():
    assert sweep(torn=False) > 50


def test_cut_at_every_write_torn():
    assert sweep(torn=True) > 50
