"""Cut the power at every flash write of a TSLog workload on a raw partition.

The same checks as the LittleFS sweep: every record covered by a returned
``commit()`` is there after the reboot, in order, byte-identical; no corrupt
record is returned; the reader's committed cursor never moves back nor past the
log's end. The partition is tiny (512-byte blocks) so that the workload wraps
the data ring twice and switches cursor blocks (28 entries each) twice.
"""

import tslog
from flash import FlashBlockDevice
from tslog_workload import FMT, check, cut_sweep, time_of, workload


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
    total_writes, cuts = cut_sweep(
        dev, lambda d, p: workload(lambda: _open(d), p, 160, read_every=3, read_stop=7),
        _check, torn)
    print("tslog raw-partition power-cut sweep: %d writes, %d cuts, torn=%s"
          % (total_writes, cuts, torn))
    return cuts


def test_raw_cut_at_every_write():
    assert sweep(torn=False) > 100


def test_raw_cut_at_every_write_torn():
    assert sweep(torn=True) > 100
