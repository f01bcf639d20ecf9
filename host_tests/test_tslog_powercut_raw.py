"""Cut the power at every flash write of a TSLog workload on a raw partition.

The same checks as the LittleFS sweep: every record covered by a returned
``commit()`` is there after the reboot, in order, byte-identical; no corrupt
record is returned; the reader's committed cursor never moves back nor past the
log's end. The partition is tiny (512-byte blocks) so that the workload wraps
the data ring twice and switches cursor blocks (28 entries each) twice.
"""

import gc

import tslog
from flash import FlashBlockDevice, PowerCut
from tslog_workload import FMT, Progress, check, time_of, workload


def _open(dev):
    return tslog.TSLog(dev, format=FMT, commit_delta=4, time_of=time_of)


def _check(dev, p):
    log = _open(dev)
    s = check(log, p)
    assert log.dropped == 0
    log.close()
    # ... and what it stored after recovery survives another reboot.
    log = _open(dev.reboot())
    assert log.stats()[0] == s and log.reader(0).seqn >= p.cursor
    log.close()


def sweep(torn):
    dev = FlashBlockDevice(block_size=512, block_count=8)  # 6 x 14 records in the ring
    base = bytes(dev.data)
    start = dev.writes
    workload(lambda: _open(dev), Progress(), 160, read_every=3, read_stop=7)
    total_writes = dev.writes - start
    cuts = 0
    for k in range(1, total_writes + 1):
        dev.data[:] = base
        dev.restore()
        p = Progress()
        dev.cut_after(k, torn)
        try:
            workload(lambda d=dev: _open(d), p, 160, read_every=3, read_stop=7)
        except PowerCut:
            cuts += 1
        dev = dev.reboot()
        gc.collect()
        _check(dev, p)
    print("tslog raw-partition power-cut sweep: %d writes, %d cuts, torn=%s"
          % (total_writes, cuts, torn))
    return cuts


def test_raw_cut_at_every_write():
    assert sweep(torn=False) > 100


def test_raw_cut_at_every_write_torn():
    assert sweep(torn=True) > 100
