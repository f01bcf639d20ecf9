# micropython-only: LittleFS (vfs.VfsLfs2) over the fake flash exists only in MicroPython
"""Cut the power at every single flash write of a TSLog workload, on LittleFS.

After each cut: power back, remount, reopen. Checks: every record covered by a
returned ``commit()`` is there, in order, byte-identical; no corrupt record is
returned; the reader's committed cursor never moves back nor past the log's end.
"""

import vfs

import tslog
from flash import FlashBlockDevice, PowerCut
from tslog_workload import FMT, check, cut_sweep, time_of, workload

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


def _recover(dev, p):
    log = _open()
    check(log, p)
    log.close()


def sweep(torn):
    _umount()
    dev = FlashBlockDevice(block_size=4096, block_count=64)
    vfs.VfsLfs2.mkfs(dev)
    total_writes, cuts = cut_sweep(dev, lambda d, p: workload(_open, p, 160), _recover, torn,
                                   _mount, _umount)
    print("tslog power-cut sweep: %d writes, %d cuts, torn=%s" % (total_writes, cuts, torn))
    return cuts


def test_cut_at_every_write():
    assert sweep(torn=False) > 50


def test_cut_at_every_write_torn():
    assert sweep(torn=True) > 50
