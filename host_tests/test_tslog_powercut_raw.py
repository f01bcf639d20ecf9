"""Cut the power at every flash write of a TSLog workload on a raw partition.

The same checks as the LittleFS sweep: every record covered by a returned
``commit()`` is there after the reboot, in order, byte-identical; no corrupt
record is returned; the reader's committed cursor never moves back nor past the
log's end. Two logs: records of a struct format without a codec, and the firmware's
queue (v2 weather records coded by ``record.CODEC``). The partitions are tiny so that
the workload wraps the data ring and switches cursor blocks.
"""

import record
import tslog
from flash import FlashBlockDevice
from tslog_workload import FMT, PLAIN, WEATHER, check, cut_sweep, time_of, workload


def _open_plain(dev):
    return tslog.TSLog(dev, format=FMT, commit_delta=4, time_of=time_of)


def _open_weather(dev):
    return record.open_queue(dev, commit_delta=4)


def sweep(torn, kind=PLAIN, blocks=5, block_size=512, total=320):
    """``total`` must be a multiple of 8: the workload's clean reopen half way then falls
    on a commit, so that its "every 4th store commits" holds after it."""
    opener = _open_plain if kind is PLAIN else _open_weather

    def recover(dev, p):
        log = opener(dev)
        s = check(log, p, kind)
        assert log.dropped == 0 or kind is WEATHER  # (the weather ring is smaller)
        log.close()
        # ... and what it stored after recovery survives another reboot.
        log = opener(dev.reboot())
        assert log.stats()[0] == s and log.reader(0).seqn >= p.cursor
        log.close()

    dev = FlashBlockDevice(block_size=block_size, block_count=blocks)
    total_writes, cuts = cut_sweep(
        dev, lambda d, p: workload(lambda: opener(d), p, total, read_every=2, read_stop=7,
                                   kind=kind), recover, torn)
    print("tslog raw-partition power-cut sweep (%s): %d writes, %d cuts, torn=%s"
          % (kind.__name__, total_writes, cuts, torn))
    return cuts


def test_raw_cut_at_every_write():
    assert sweep(torn=False) > 150


def test_raw_cut_at_every_write_torn():
    assert sweep(torn=True) > 150


def test_raw_weather_queue_cut_at_every_write():
    assert sweep(torn=False, kind=WEATHER, blocks=5, block_size=256, total=240) > 150


def test_raw_weather_queue_cut_at_every_write_torn():
    assert sweep(torn=True, kind=WEATHER, blocks=5, block_size=256, total=240) > 150
