"""Updating a board from firmware 1.0: its queue (TSLog's first format, v1 records) is
moved into the current one with nothing lost and nothing sent twice (both interpreters).

host_tests/tslog_fw10.py is firmware 1.0's TSLog, unchanged: it writes the old queues the
way a board running that firmware left them (folder and raw partition)."""

import os
import struct

import builder
import oldqueue
import record
import support
import tslog
import tslog_fw10
from flash import FlashBlockDevice

T0 = 1764000000000
NAN = float("nan")
V1 = "<qfffffIIHB"


def _v1(i, flags=record.FLAG_UTC):
    """The v1 record firmware 1.0 stored for sample ``i`` (a NaN AM2320 every 5th)."""
    am = NAN if i % 5 == 4 else 20.0 + (i % 9) / 10
    return struct.pack(V1, T0 + 2000 * i, am, 55.5 - (i % 3) / 10, 19.5 + (i % 4) / 10,
                       101300.0 + i % 11, 12.5, 60000 + 16 * (i % 3), 50000 - 16 * (i % 3), 7,
                       flags)


def _texts(rec):
    return dict(record.layout_of(rec).texts(rec))


def _old_folder(d, n, sent, archived=None):
    """Firmware 1.0's queue in ``d``: ``n`` v1 records, reader 0 (the uploader) committed
    at ``sent``, reader 1 (the SD archive) at ``archived``."""
    log = tslog_fw10.TSLog(d, record_size=48, bucket_size=16, commit_delta=16,
                           nreaders=1 if archived is None else 2)
    for i in range(n):
        log.store_record(_v1(i))
    log.commit()
    for k, at in ((0, sent), (1, archived)):
        if at is not None:
            r = log.reader(k)
            while r.seqn < at:
                r.next_record()
            r.commit()
    log.close()


def _check_moved(log, first, last, sent):
    """``log`` holds v2 records ``first..last`` (sample i = seqn - 1), reader 0 at ``sent``."""
    assert log.stats()[0] == last
    r = log.reader(0)
    assert r.seqn == sent
    got = []
    for seqn, raw in log.records(first):
        rec = record.decode(raw)
        old = struct.unpack(V1, _v1(seqn - 1))
        t = _texts(rec)
        if old[1] != old[1]:  # NaN: the AM2320's null
            assert rec[-1] & record.FLAG_NO_AM and t["am2320_temp"] is None
        else:
            assert t["am2320_temp"] == "%.1f" % old[1], (seqn, t, old)
        assert t["am2320_humidity"] in (None, "%.1f" % old[2])
        assert t["bmp180_temp"] == "%.1f" % old[3] and t["bmp180_pressure"] == "%d" % old[4]
        assert t["mem_used"] == "%d" % old[6] and t["mem_free"] == "%d" % old[7]
        assert rec[0] == old[0] and rec[-2] == 7 and rec[-1] & record.FLAG_UTC
        got.append(seqn)
    assert got == list(range(first, last + 1)), got


def test_migrate_keeps_seqns_cursors_and_values():
    d = support.tmpdir("oldq")
    _old_folder(d + "/old", 50, sent=20, archived=12)
    new = record.open_queue(d + "/new", nreaders=2, bucket_size=16)
    assert oldqueue.migrate(oldqueue.open_old(d + "/old"), new, log=lambda m: None) == 38
    new.close()
    log = record.open_queue(d + "/new", nreaders=2, bucket_size=16)
    _check_moved(log, 13, 50, sent=20)  # from the oldest record a reader still needs
    assert log.reader(1).seqn == 12
    assert log.store_record(record.encode(T0, (1, 2, 3, 4, 5, 6), 7, 1)) == 51
    log.close()


def test_migrate_of_a_sent_queue_keeps_seqns_going():
    d = support.tmpdir("oldq")
    _old_folder(d + "/old", 40, sent=40)
    new = record.open_queue(d + "/new")
    assert oldqueue.migrate(oldqueue.open_old(d + "/old"), new, log=lambda m: None) == 0
    new.close()
    log = record.open_queue(d + "/new")  # the jump survives a reboot
    assert log.stats()[0] == 40 and log.reader(0).next_record() is None
    assert log.store_record(record.encode(T0, (1, 2, 3, 4, 5, 6), 7, 1)) == 41
    log.close()


def _open(d, **cfg):
    logs = []
    c = {"tslog_dir": d + "/q", "bucket_size": 16, "commit_delta": 16, "tslog_partition": ""}
    c.update(cfg)
    log, place = builder.open_queue(support.board_cfg(**c), logs.append)
    return place, log, logs


def test_app_moves_a_folder_queue_in_place():
    d = support.tmpdir("oldq")
    _old_folder(d + "/q", 45, sent=30)
    place, log, logs = _open(d)
    assert any("moved 15 queued records" in m for m in logs), logs
    _check_moved(log, 31, 45, sent=30)
    log.close()
    assert sorted(os.listdir(d)) == ["q"]  # no .new, no .v1 left
    with open(d + "/q/meta") as f:
        assert f.read().startswith("tslog2 ")


def test_app_finishes_a_move_a_power_cut_interrupted():
    # cut while copying: the old queue is still there, the half-built one is redone
    d = support.tmpdir("oldq")
    _old_folder(d + "/q", 45, sent=30)
    half = record.open_queue(d + "/q.new", bucket_size=16)
    half.skip_to(31)
    half.store_record(record.encode(T0, (1, 2, 3, 4, 5, 6), 7, 1))
    half.close()
    place, log, logs = _open(d)
    _check_moved(log, 31, 45, sent=30)
    log.close()
    assert sorted(os.listdir(d)) == ["q"]
    # cut between the two renames: the new queue is complete in .new, the old one in .v1
    d = support.tmpdir("oldq")
    _old_folder(d + "/q", 45, sent=30)
    new = record.open_queue(d + "/q.new", bucket_size=16)
    oldqueue.migrate(oldqueue.open_old(d + "/q"), new, log=lambda m: None)
    new.close()
    os.rename(d + "/q", d + "/q.v1")
    place, log, logs = _open(d)
    _check_moved(log, 31, 45, sent=30)
    log.close()
    assert sorted(os.listdir(d)) == ["q"]


def _partition(dev):
    import esp32

    esp32.Partition.reset()
    esp32.Partition.attach("tslog", dev)


def test_app_moves_a_raw_partition_queue_through_the_folder():
    import esp32

    d = support.tmpdir("oldq")
    dev = FlashBlockDevice(block_size=4096, block_count=64)
    old = tslog_fw10.TSLog(dev, record_size=48, commit_delta=16)
    for i in range(300):
        old.store_record(_v1(i))
    old.commit()
    r = old.reader(0)
    while r.seqn < 250:
        r.next_record()
    r.commit()
    old.close()
    try:
        _partition(dev.reboot())
        place, log, logs = _open(d, tslog_partition="tslog")
        assert place == "partition tslog"
        _check_moved(log, 251, 300, sent=250)
        log.close()
        assert not support.exists(d + "/q.new")
        # a cut after the partition was recreated: the folder copy is still there, the
        # partition is filled from it again
        _partition(dev.reboot())
        new = record.open_queue(d + "/q.new", bucket_size=16)
        new.skip_to(251)
        for i in range(250, 300):
            new.store_record(oldqueue.v2_of_v1(_v1(i)))
        new.close()
        n = record.open_queue(d + "/q.new", bucket_size=16)
        rd = n.reader(0)
        rd.seqn = 250
        rd.commit()
        n.close()
        _partition(dev.reboot())
        place, log, logs = _open(d, tslog_partition="tslog")
        _check_moved(log, 251, 300, sent=250)
        log.close()
        assert not support.exists(d + "/q.new")
    finally:
        esp32.Partition.reset()


def test_a_partition_with_the_current_format_is_not_touched():
    import esp32

    d = support.tmpdir("oldq")
    dev = FlashBlockDevice(block_size=4096, block_count=64)
    try:
        _partition(dev)
        place, log, logs = _open(d, tslog_partition="tslog")
        log.store_record(record.encode(T0, (1, 2, 3, 4, 5, 6), 7, 1))
        log.close()
        _partition(dev.reboot())
        place, log, logs = _open(d, tslog_partition="tslog")
        assert log.stats()[0] == 1 and not any("moved" in m for m in logs)
        log.close()
    finally:
        esp32.Partition.reset()
    assert isinstance(log, tslog.TSLog)
