# micropython-only: LittleFS (vfs.VfsLfs2) over the fake flash exists only in MicroPython
"""Cut the power at every single flash write of a TSLog workload, on LittleFS.

After each cut: power back, remount, reopen. Checks: every record covered by a
returned ``commit()`` is there, in order, byte-identical; no corrupt record is
returned; the reader's committed cursor never moves back nor past the log's end.
"""

import vfs

import record
import tslog
from flash import FlashBlockDevice, PowerCut
from tslog_workload import FMT, PLAIN, WEATHER, check, cut_sweep, time_of, workload

MNT = "/flash_pc"


def _open(kind=PLAIN):
    if kind is WEATHER:  # the firmware's queue, in a folder
        return record.open_queue(MNT + "/log", bucket_size=8, commit_delta=4)
    return tslog.TSLog(MNT + "/log", format=FMT, bucket_size=8, commit_delta=4,
                       time_of=time_of)


def _mount(dev):
    vfs.mount(vfs.VfsLfs2(dev), MNT)


def _umount():
    try:
        vfs.umount(MNT)
    except (OSError, PowerCut):
        pass


def sweep(torn, kind=PLAIN):
    def recover(dev, p):
        log = _open(kind)
        check(log, p, kind)
        log.close()

    _umount()
    dev = FlashBlockDevice(block_size=4096, block_count=64)
    vfs.VfsLfs2.mkfs(dev)
    total_writes, cuts = cut_sweep(dev, lambda d, p: workload(lambda: _open(kind), p, 160,
                                                              kind=kind),
                                   recover, torn, _mount, _umount)
    print("tslog power-cut sweep (%s): %d writes, %d cuts, torn=%s"
          % (kind.__name__, total_writes, cuts, torn))
    return cuts


def test_cut_at_every_write():
    assert sweep(torn=False) > 50


def test_cut_at_every_write_torn():
    assert sweep(torn=True) > 50


def test_weather_queue_cut_at_every_write():
    assert sweep(torn=False, kind=WEATHER) > 50


def test_weather_queue_cut_at_every_write_torn():
    assert sweep(torn=True, kind=WEATHER) > 50
