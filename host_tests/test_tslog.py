"""TSLog API and recovery on an ordinary directory (both interpreters)."""

import os

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
        rec = r.next()
        assert rec[0] == i and r.seqn == i
    r.commit()
    assert log.stats()[0] == 20 and log.stats()[2] == 10
    log.close()
    log = _log(d)
    assert log.stats()[0] == 20
    r = log.reader(0)
    assert r.seqn == 10
    assert r.next()[0] == 11
    assert log.store(21, 0.0, 0.0) == 21  # seqn continues across reopen
    log.close()


def test_reader_sees_only_committed_records():
    log = _log(support.tmpdir("tslog"), commit_delta=100)
    log.store(1, 0, 0)
    r = log.reader(0)
    assert r.next() is None
    log.commit()
    assert r.next()[0] == 1
    assert r.next() is None
    log.store(2, 0, 0)
    log.commit()
    assert r.next()[0] == 2


def test_consumed_buckets_deleted_on_rollover():
    d = support.tmpdir("tslog")
    log = _log(d, bucket_size=4)
    r = log.reader(0)
    for i in range(1, 13):
        log.store(i, 0, 0)
    log.commit()
    while r.next():
        pass
    r.commit()
    log.store(13, 0, 0)  # opens a new bucket: the three consumed ones go
    buckets = sorted(n for n in os.listdir(d) if n.startswith("b"))
    assert buckets == ["b0000000013"], buckets
    log.close()
    log = _log(d, bucket_size=4)
    assert log.stats()[0] == 13
    assert log.reader(0).next()[0] == 13  # close() committed it
    log.close()


def test_two_readers_independent():
    log = _log(support.tmpdir("tslog"), nreaders=2)
    for i in range(1, 6):
        log.store(i, 0, 0)
    log.commit()
    a, b = log.reader(0), log.reader(1)
    assert [a.next()[0] for _ in range(5)] == [1, 2, 3, 4, 5]
    assert b.next()[0] == 1
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
    assert [r.next()[0] for _ in range(7)] == [1, 2, 3, 4, 5, 6, 7]
    assert r.next() is None


def test_corrupt_record_is_skipped_and_counted():
    d = support.tmpdir("tslog")
    log = _log(d)
    for i in range(1, 5):
        log.store(i, 0, 0)
    log.close()
    slot = 6 + 12 + 4
    with open(d + "/b0000000001", "r+b") as f:
        f.seek(slot + 8)
        f.write(b"\xAA")  # flip data of seqn 2
    log = _log(d)
    r = log.reader(0)
    got = []
    while True:
        rec = r.next()
        if rec is None:
            break
        got.append(rec[0])
    assert got == [1, 3, 4]
    assert log.corrupt == 1


def test_corrupt_cursor_copy_falls_back_to_other():
    d = support.tmpdir("tslog")
    log = _log(d)
    for i in range(1, 9):
        log.store(i, 0, 0)
    log.commit()
    r = log.reader(0)
    r.next()
    r.commit()  # generation 1 -> r0b
    r.next()
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
