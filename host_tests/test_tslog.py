"""TSLog API and recovery on an ordinary directory (both interpreters)."""

import os
import struct

import support
import tslog

FMT = "<Iff"


def _log(folder, **kw):
    kw.setdefault("format", FMT)
    kw.setdefault("bucket_size", 8)
    kw.setdefault("commit_delta", 4)
    return tslog.TSLog(folder, **kw)


def test_store_read_commit_resume():
    d = support.tmpdir("tslog")
    log = _log(d)
    for i in range(1, 21):
        assert log.store(i, i * 0.5, -i) == i
    assert log.commit() == 20
    r = log.reader(0)
    for i in range(1, 11):
        rec = support.next_values(r)
        assert rec[0] == i and r.seqn == i
    r.commit()
    assert log.stats()[0] == 20 and log.stats()[2] == 10
    log.close()
    log = _log(d)
    assert log.stats()[0] == 20
    r = log.reader(0)
    assert r.seqn == 10
    assert support.next_values(r)[0] == 11
    assert log.store(21, 0.0, 0.0) == 21  # seqn continues across reopen
    log.close()


def test_reader_sees_only_committed_records():
    log = _log(support.tmpdir("tslog"), commit_delta=100)
    log.store(1, 0, 0)
    r = log.reader(0)
    assert support.next_values(r) is None
    log.commit()
    assert support.next_values(r)[0] == 1
    assert support.next_values(r) is None
    log.store(2, 0, 0)
    log.commit()
    assert support.next_values(r)[0] == 2


def test_consumed_buckets_deleted_on_rollover():
    d = support.tmpdir("tslog")
    log = _log(d, bucket_size=4)
    r = log.reader(0)
    for i in range(1, 13):
        log.store(i, 0, 0)
    log.commit()
    while support.next_values(r):
        pass
    r.commit()
    log.store(13, 0, 0)
    log.commit()  # frames it in a new bucket: the three consumed ones go
    buckets = sorted(n for n in os.listdir(d) if n.startswith("b"))
    assert buckets == ["b0000000013"], buckets
    log.close()
    log = _log(d, bucket_size=4)
    assert log.stats()[0] == 13
    assert support.next_values(log.reader(0))[0] == 13  # close() committed it
    log.close()


def test_two_readers_independent():
    log = _log(support.tmpdir("tslog"), nreaders=2)
    for i in range(1, 6):
        log.store(i, 0, 0)
    log.commit()
    a, b = log.reader(0), log.reader(1)
    assert [support.next_values(a)[0] for _ in range(5)] == [1, 2, 3, 4, 5]
    assert support.next_values(b)[0] == 1
    assert log.stats()[2] == 4


def test_store_record_raw_bytes():
    log = tslog.TSLog(support.tmpdir("tslog"), record_size=16, bucket_size=4)
    assert log.store_record(b"abc") == 1
    log.commit()
    assert log.reader(0).next_record() == b"abc"


def test_bad_use_is_a_clear_error():
    d = support.tmpdir("tslog")
    log = _log(d)
    support.raises(ValueError, log.store, 1, 2)
    support.raises(ValueError, log.reader, 1)
    support.raises(ValueError, tslog.TSLog, d + "x", format=FMT, nreaders=5)
    raw = tslog.TSLog(d + "r", record_size=4)
    support.raises(ValueError, raw.store_record, b"12345")
    log.close()
    e = support.raises(ValueError, _log, d, format="<If")
    assert "format" in str(e)


def test_torn_tail_is_dropped_and_log_continues():
    d = support.tmpdir("tslog")
    log = _log(d)
    for i in range(1, 7):
        log.store(i, 0, 0)
    log.close()
    name = d + "/b0000000001"
    with open(name, "ab") as f:
        f.write(b"\x07\x00\x00\x00garbage")  # a half-written slot
    log = _log(d)
    assert log.stats()[0] == 6
    assert log.store(7, 0, 0) == 7
    log.commit()
    r = log.reader(0)
    assert [support.next_values(r)[0] for _ in range(7)] == [1, 2, 3, 4, 5, 6, 7]
    assert support.next_values(r) is None


def test_corrupt_frame_is_skipped_and_counted():
    d = support.tmpdir("tslog")
    log = _log(d)
    for i in range(1, 13):  # bucket 1: frames 1-4, 5-8; bucket 9: frames 9-12
        log.store(i, 0, 0)
    log.close()
    frame = 2 + 4 * 13 + 4  # header, 4 records behind their lengths, crc
    with open(d + "/b0000000001", "r+b") as f:
        f.seek(frame + 10)
        f.write(b"\xAA")  # flip data of seqn 5 or 6
    log = _log(d)
    r = log.reader(0)
    got = []
    while True:
        rec = support.next_values(r)
        if rec is None:
            break
        got.append(rec[0])
    assert got == [1, 2, 3, 4, 9, 10, 11, 12]  # frames chain: the rest of bucket 1 goes
    assert log.corrupt == 1


def test_corrupt_cursor_copy_falls_back_to_other():
    d = support.tmpdir("tslog")
    log = _log(d)
    for i in range(1, 9):
        log.store(i, 0, 0)
    log.commit()
    r = log.reader(0)
    support.next_values(r)
    r.commit()  # generation 1 -> r0b
    support.next_values(r)
    r.commit()  # generation 2 -> r0a
    log.close()
    with open(d + "/r0a", "wb") as f:
        f.write(b"\x00\x01")
    log = _log(d)
    assert log.reader(0).seqn == 1  # older valid copy, never a jump forward
    assert log.corrupt >= 1


def test_corrupt_meta_is_rewritten():
    d = support.tmpdir("tslog")
    _log(d).close()
    with open(d + "/meta", "w") as f:
        f.write("\x00\x00")
    log = _log(d)
    assert log.corrupt == 1


def test_meta_that_is_not_utf8_is_counted_and_rewritten():
    d = support.tmpdir("tslog")
    _log(d).close()
    with open(d + "/meta", "wb") as f:
        f.write(b"\xff\xfe\x80")
    log = _log(d)
    assert log.corrupt == 1
    log.close()
    assert _log(d).corrupt == 0  # rewritten


def test_stray_bucket_far_ahead_is_removed_not_followed():
    """A bucket file named far past the log's end (a copy, a bit flip in a name; even past
    32-bit seqns) holds no frame valid at its place: counted, logged, removed; the readers
    and the next seqn stay where the log is."""
    d = support.tmpdir("tslog")
    log = _log(d)
    for i in range(1, 21):
        log.store(i, 0.5, 1.0)
    log.commit()
    log.close()
    with open(d + "/b0000000017", "rb") as f:
        data = f.read()
    with open(d + "/b9999999999", "wb") as f:
        f.write(data)
    log = _log(d)
    assert log.corrupt == 1 and log.last_seqn == 20
    assert _drain(log.reader(0)) == list(range(1, 21))
    assert log.store(21, 0.5, 1.0) == 21
    assert "b9999999999" not in os.listdir(d)


# ---------------------------------------------------------------- raw partition
def _flash(blocks=8, block_size=4096):
    from flash import FlashBlockDevice
    return FlashBlockDevice(block_size=block_size, block_count=blocks)


def _drain(r):
    out = []
    while True:
        rec = support.next_values(r)
        if rec is None:
            return out
        out.append(rec[0])


# A frame of 4 "<Iff" records with the plain codec: header 2, 4 x (length 1 + 12), crc 4;
# a block holds (4096 - 20 header - 24 trailer) // 58 = 69 frames = 276 records.
_PER_BLOCK = (4096 - 44) // (2 + 4 * 13 + 4) * 4


def test_raw_partition_store_read_resume():
    dev = _flash()
    log = tslog.TSLog(dev, format=FMT, commit_delta=4)
    for i in range(1, 301):
        assert log.store(i, i * 0.5, -i) == i
    log.commit()
    r = log.reader(0)
    assert [support.next_values(r)[0] for _ in range(100)] == list(range(1, 101))
    r.commit()
    log.close()
    log = tslog.TSLog(dev.reboot(), format=FMT, commit_delta=4)
    assert log.stats()[0] == 300 and log.buckets() == 300 // _PER_BLOCK + 1
    r = log.reader(0)
    assert r.seqn == 100
    assert _drain(r) == list(range(101, 301))
    assert log.store(301, 0, 0) == 301
    assert log.corrupt == 0


def test_raw_ring_wraps_and_drops_unread():
    dev = _flash(blocks=6)  # 2 cursor blocks, 4 data blocks of _PER_BLOCK records
    log = tslog.TSLog(dev, format=FMT, commit_delta=4)
    for i in range(1, 2001):
        log.store(i, 0, 0)
    log.commit()
    assert log.buckets() == 4 and log.dropped > 0
    r = log.reader(0)
    got = _drain(r)
    assert got[-1] == 2000 and got == list(range(got[0], 2001))
    assert got[0] == 2001 - len(got) and len(got) > 3 * _PER_BLOCK
    assert log.dropped == got[0] - 1
    assert log.free() == 0  # every block unread: the next block drops the oldest
    held, used, total = log.usage()
    assert held == len(got) and total == 6 * 4096
    assert 3 * _PER_BLOCK * total // used <= held  # the ring keeps at least 3 blocks
    r.commit()
    assert log.free() >= 2 * _PER_BLOCK


def test_raw_cursor_log_switches_blocks():
    dev = _flash(blocks=7, block_size=512)
    log = tslog.TSLog(dev, format=FMT, nreaders=2)
    for i in range(1, 61):  # the data ring holds 5 x 14
        log.store(i, 0, 0)
    log.commit()
    a, b = log.reader(0), log.reader(1)
    support.next_values(b)
    b.commit()
    for _ in range(60):  # 28 entries per cursor block: the ring of 2 wraps
        support.next_values(a)
        a.commit()
    a.commit()  # unchanged: not written again
    log.close()
    log = tslog.TSLog(dev.reboot(), format=FMT, nreaders=2)
    assert log.reader(0).seqn == 60 and log.reader(1).seqn == 1
    assert log.corrupt == 0


def test_raw_bad_use_and_recreate():
    dev = _flash()
    log = tslog.TSLog(dev, format=FMT)
    log.store(1, 0, 0)
    log.close()
    e = support.raises(ValueError, tslog.TSLog, dev, format="<If")
    assert "format" in str(e)
    log = tslog.TSLog(dev, format=FMT, recreate=True)
    assert log.stats()[0] == 0 and log.buckets() == 0
    assert log.store(1, 0, 0) == 1
    log.commit()
    assert _drain(log.reader(0)) == [1]
    support.raises(ValueError, tslog.TSLog, _flash(blocks=3), format=FMT)


def test_raw_torn_frame_starts_new_block():
    dev = _flash()
    log = tslog.TSLog(dev, format=FMT)
    for i in range(1, 11):
        log.store(i, 0, 0)
    log.close()
    # A frame after seqn 10 half-programmed by a power cut (block 2: header 20 bytes,
    # then the frame of 10 records: 3 header bytes + 10 x 13 + 4 bytes of crc).
    dev.program(2 * 4096 + 20 + 137, b"\x04\x34\x0b\x00\x00\x00\x0c")
    log = tslog.TSLog(dev.reboot(), format=FMT)
    assert log.stats()[0] == 10 and log.corrupt == 1
    assert log.store(11, 0, 0) == 11
    log.commit()
    assert log.buckets() == 2
    assert _drain(log.reader(0)) == list(range(1, 12))


# ---------------------------------------------------------------- time index
def _t_of(rec):
    t = struct.unpack_from("<I", rec, 0)[0]
    return None if t == 0 else t


def _timed(where, **kw):
    return tslog.TSLog(where, format=FMT, bucket_size=8, commit_delta=4, time_of=_t_of, **kw)


def _count_reads(log):
    st = log._st
    calls = [0]
    read = st.read

    def counting(h, off, buf, n):
        calls[0] += 1
        return read(h, off, buf, n)
    st.read = counting
    return calls


def _between_tail(where, reopen):
    log = _timed(where)
    for i in range(1, 201):  # t = 1000 + 10 * seqn; every 7th record has no time
        log.store(0 if i % 7 == 0 else 1000 + 10 * i, i, 0)
    log.commit()
    log.store(5000, 0, 0)  # not committed: never returned
    if reopen:
        log.close()
        log = reopen()
        log.store(5000, 0, 0)
        log.commit()
        log.store(6000, 0, 0)
    calls = _count_reads(log)
    got = [s for s, rec in log.between(1500, 1600)]
    assert got == [s for s in range(50, 60) if s % 7], got
    assert all(struct.unpack("<Iff", rec)[1] == s for s, rec in log.between(1500, 1600))
    assert calls[0] < 4 * 8 + 24, calls[0]  # a few buckets, never the whole log
    assert list(log.between(0, 1001)) == [] and list(log.between(9000, 9999)) == []
    last = log.committed_seqn
    assert [s for s, _ in log.between(1000, 99999)] == [
        s for s in range(1, 201) if s % 7] + ([201, 202] if reopen else [])  # close() commits
    tail = list(log.tail(5))
    assert [s for s, _ in tail] == list(range(last - 4, last + 1))
    assert [s for s, _ in log.tail(1000)][0] == 1
    assert log.buckets() == (log.committed_seqn + 7) // 8  # stored, not committed: in RAM
    return log


def test_between_and_tail_in_a_folder():
    d = support.tmpdir("tslog")
    _between_tail(d, None)
    log = _between_tail(d + "r", lambda: _timed(d + "r"))
    assert "i0000000001" in os.listdir(d + "r")  # closed buckets have an index file
    log.close()


def test_between_and_tail_on_a_raw_partition():
    dev = _flash(blocks=40, block_size=512)  # 14 records per block
    log = tslog.TSLog(dev, format=FMT, time_of=_t_of)
    for i in range(1, 201):
        log.store(0 if i % 7 == 0 else 1000 + 10 * i, i, 0)
    log.commit()
    log.close()
    log = tslog.TSLog(dev.reboot(), format=FMT, time_of=_t_of)
    calls = _count_reads(log)
    assert [s for s, _ in log.between(1500, 1600)] == [s for s in range(50, 60) if s % 7]
    assert calls[0] <= 3 * 14 + 16, calls[0]
    assert [s for s, _ in log.tail(3)] == [198, 199, 200]


def test_between_survives_a_bad_index_file_and_needs_time_of():
    d = support.tmpdir("tslog")
    log = _timed(d)
    for i in range(1, 41):
        log.store(1000 + i, 0, 0)
    log.close()
    with open(d + "/i0000000009", "wb") as f:
        f.write(b"\x00" * 5)  # a cut while writing it
    log = _timed(d)
    assert [s for s, _ in log.between(1009, 1012)] == [9, 10, 11]
    support.raises(ValueError, _log(d).between, 0, 1)


def test_raw_on_an_esp32_partition():
    import esp32
    esp32.Partition.reset()
    esp32.Partition.attach("vfs", _flash(blocks=16))
    try:
        part = esp32.Partition.find(esp32.Partition.TYPE_DATA, label="vfs")[0]
        log = tslog.TSLog(part, format=FMT, time_of=_t_of)
        for i in range(1, 301):
            log.store(1000 + i, i, 0)
        log.close()
        log = tslog.TSLog(esp32.Partition.find(esp32.Partition.TYPE_DATA, label="vfs")[0],
                          format=FMT, time_of=_t_of)
        assert log.stats()[0] == 300
        assert [s for s, _ in log.between(1100, 1103)] == [100, 101, 102]
        assert _drain(log.reader(0)) == list(range(1001, 1301))
    finally:
        esp32.Partition.reset()


def test_raw_torn_first_frame_of_a_block():
    from flash import PowerCut
    dev = _flash(blocks=8, block_size=512)  # 8 frames of 4 records per block
    log = tslog.TSLog(dev, format=FMT, commit_delta=4)
    for i in range(1, 33):
        log.store(i, 0, 0)
    for i in range(33, 36):
        log.store(i, 0, 0)
    dev.cut_after(3, torn=True)  # erase, header, then half of the frame of 33..36
    support.raises(PowerCut, log.store, 36, 0, 0)
    log = tslog.TSLog(dev.reboot(), format=FMT, commit_delta=4)
    assert log.stats()[0] == 32
    log.store(33, 0, 0)  # a second block that also starts at seqn 33
    log.close()
    log = tslog.TSLog(dev.reboot(), format=FMT, commit_delta=4)
    assert log.stats()[0] == 33 and log.buckets() == 2
    assert _drain(log.reader(0)) == list(range(1, 34))


def test_tail_goes_on_when_a_bucket_is_deleted_meanwhile():
    d = support.tmpdir("tslog")
    log = _timed(d)
    for i in range(1, 25):
        log.store(1000 + i, 0, 0)
    log.commit()
    it = log.tail(24)
    assert next(it)[0] == 1
    os.remove(d + "/b0000000009")  # as if consumed and deleted by another thread
    log._buckets.remove(9)
    assert [s for s, _ in it] == list(range(2, 9)) + list(range(17, 25))
