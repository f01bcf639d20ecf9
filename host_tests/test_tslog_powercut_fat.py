# micropython-only: FAT (vfs.VfsFat) over the fake flash exists only in MicroPython
"""Cut the power at every flash write of a (shorter) TSLog workload, on FAT.

FAT is not copy-on-write: a cut while FatFs rewrites a FAT sector, a directory
sector or a partly filled data cluster can lose a file's tail, the file's
directory entry, or (with 4096-byte sectors rewritten by erase + program, as on
the ESP32) every directory entry in that sector. So FAT cannot promise that
committed records survive. What TSLog still promises on FAT, and this sweep
checks after every cut (plain and torn):

- the constructor never raises: the log reopens and keeps working;
- no garbage: every record a reader returns is byte-identical to the one
  stored under that seqn, in strictly increasing seqn order;
- a reader's cursor never passes the log's end.

It also counts the cuts after which committed records were lost (printed,
not asserted): the figure that says how far FAT is from LittleFS.
"""

import vfs

import support
import tslog
from flash import FlashBlockDevice, PowerCut
from tslog_workload import FMT, cut_sweep, values, workload

MNT = "/flash_fat"


def _open():
    return tslog.TSLog(MNT + "/log", format=FMT, bucket_size=8, commit_delta=4)


def check(p):
    """The FAT guarantees: "ok", "lost" (committed records lost) or "damaged"."""
    try:
        log = _open()
    except OSError:
        # The cut hit a FAT sector between erase and program: FatFs sees every
        # cluster as used (the volume looks full) or the folder is unreadable.
        # Only a re-format helps; TSLog cannot and does not hide it.
        return "damaged"
    last = log.stats()[0]
    r = log.reader(0)
    assert r.seqn <= last, (r.seqn, last)
    prev = r.seqn
    got = 0
    while True:
        rec = support.next_values(r)
        if rec is None:
            break
        assert r.seqn > prev and rec == values(r.seqn), (prev, r.seqn, rec)
        prev = r.seqn
        got += 1
    state = "ok" if last >= p.committed and r.seqn == last else "lost"
    # The log keeps working after recovery (unless the volume is damaged).
    try:
        s = log.store(*values(last + 1))
        log.commit()
    except OSError:
        return "damaged"
    assert support.next_values(r) == values(s)
    log.close()
    return state


def _umount():
    try:
        vfs.umount(MNT)
    except (OSError, PowerCut):
        pass


def sweep(torn):
    _umount()
    dev = FlashBlockDevice(block_size=4096, block_count=64)  # ESP32: 4096-byte sectors
    vfs.VfsFat.mkfs(dev)
    seen = {"ok": 0, "lost": 0, "damaged": 0}

    def recover(_dev, p):
        seen[check(p)] += 1

    total_writes, cuts = cut_sweep(dev, lambda d, p: workload(_open, p, 36), recover, torn,
                                   lambda d: vfs.mount(vfs.VfsFat(d), MNT), _umount)
    print("tslog FAT power-cut sweep: %d writes, %d cuts, torn=%s: intact %d, committed records"
          " lost %d, volume damaged %d" % (total_writes, cuts, torn, seen["ok"], seen["lost"],
                                           seen["damaged"]))
    return cuts


def test_fat_cut_at_every_write():
    assert sweep(torn=False) > 20


def test_fat_cut_at_every_write_torn():
    assert sweep(torn=True) > 20
