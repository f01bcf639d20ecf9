# cpython-only: hypothesis is CPython only
"""Property tests: random mixes of TSLog operations against a simple model.

Operations: store a record, commit, a reader's next/commit, a clean reopen,
between() and tail(), with tiny buckets so that rollover and deletion of
consumed buckets happen often, in a folder and on a raw partition (fake NOR
flash). After every step the log must agree with the model: seqns, returned
bytes, reader cursors, stats(), the time index, and what survives a reopen.
"""

import os
import shutil
import tempfile

from hypothesis import given, settings
from hypothesis import strategies as st

import tslog
from flash import FlashBlockDevice

RECORD = 8
SETTINGS = settings(max_examples=400, deadline=None)

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("store"), st.integers(0, 3), st.binary(min_size=0, max_size=RECORD - 2)),
        st.tuples(st.just("commit")),
        st.tuples(st.just("next"), st.integers(0, 1)),
        st.tuples(st.just("rcommit"), st.integers(0, 1)),
        st.tuples(st.just("reopen")),
        st.tuples(st.just("between"), st.integers(0, 200), st.integers(0, 40)),
        st.tuples(st.just("tail"), st.integers(0, 30)),
    ),
    max_size=60,
)


class Model:
    def __init__(self):
        self.records = [None]  # index = seqn
        self.committed = 0
        self.since = 0  # stores since the last commit
        self.pos = [0, 0]  # each reader's seqn (last returned)
        self.saved = [0, 0]  # each reader's persisted cursor


def _time_of(rec):
    # Nondecreasing timestamps in the first two bytes; 0 = time unknown.
    t = rec[0] | rec[1] << 8
    return None if t == 0 else t


def _open(d, bucket_size):
    return tslog.TSLog(d, record_size=RECORD, bucket_size=bucket_size, commit_delta=5,
                       nreaders=2, time_of=_time_of)


def _check_buckets(d, log, m, bucket_size):
    if not isinstance(d, str):
        return
    names = sorted(n for n in os.listdir(d) if n.startswith("b"))
    firsts = [int(n[1:]) for n in names]
    assert firsts == log._buckets, (firsts, log._buckets)
    low = min(m.saved)
    # Every unread record is still on flash ...
    if firsts:
        assert firsts[0] <= low + 1 or firsts[0] == 1, (firsts, low)
    # ... and no bucket whose records every reader has committed past is kept,
    # except the newest (deletion happens when a new bucket is created).
    for a, b in zip(firsts, firsts[1:]):
        assert b - a <= bucket_size


@SETTINGS
@given(OPS, st.integers(1, 4), st.booleans())
def test_random_operation_mixes_match_model(ops, bucket_size, raw):
    tmp = tempfile.mkdtemp(prefix="tslog-props-")
    # Raw: 512-byte blocks of 14 slots, a ring of 6 (never wraps in 60 stores).
    d = FlashBlockDevice(block_size=512, block_count=8) if raw else tmp
    t = 0
    try:
        log = _open(d, bucket_size)
        m = Model()
        readers = [log.reader(0), log.reader(1)]
        for op in ops:
            if op[0] == "store":
                t += op[1]
                rec = bytes((t & 0xFF, t >> 8)) + op[2]
                s = log.store_record(rec)
                m.records.append(rec)
                assert s == len(m.records) - 1
                # Opening a new bucket commits what came before; every commit_delta
                # stores since the last commit commit automatically.
                assert m.committed <= log.committed_seqn <= s
                if m.committed < s - 1 == log.committed_seqn:  # a new bucket's commit
                    m.since = 0
                m.since += 1
                if m.since >= 5:
                    assert log.committed_seqn == s, (log.committed_seqn, s)
                    m.since = 0
                m.committed = log.committed_seqn
            elif op[0] == "commit":
                assert log.commit() == len(m.records) - 1
                m.committed = len(m.records) - 1
                m.since = 0
            elif op[0] == "next":
                n = op[1]
                got = readers[n].next_record()
                if m.pos[n] < m.committed:
                    m.pos[n] += 1
                    assert got == m.records[m.pos[n]], (got, m.pos[n])
                else:
                    assert got is None
                assert readers[n].seqn == m.pos[n]
            elif op[0] == "rcommit":
                readers[op[1]].commit()
                m.saved[op[1]] = m.pos[op[1]]
            elif op[0] == "between":
                t0, t1 = op[1], op[1] + op[2]
                got = list(log.between(t0, t1))
                want = [(s, r) for s, r in enumerate(m.records[:m.committed + 1])
                        if s and _time_of(r) is not None and t0 <= _time_of(r) < t1]
                assert got == want, (got, want)
            elif op[0] == "tail":
                got = list(log.tail(op[1]))
                lo = max(1, m.committed - op[1] + 1)
                if isinstance(d, str) and log._buckets:
                    lo = max(lo, log._buckets[0])  # consumed buckets are deleted
                assert got == [(s, m.records[s]) for s in range(lo, m.committed + 1)]
            else:  # reopen: close() commits the log, not the reader cursors
                log.close()
                m.committed = len(m.records) - 1
                m.since = 0
                if raw:
                    d = d.reboot()
                log = _open(d, bucket_size)
                readers = [log.reader(0), log.reader(1)]
                m.pos = list(m.saved)
                assert [r.seqn for r in readers] == m.pos
            last = len(m.records) - 1
            assert log.committed_seqn <= last
            st_ = log.stats()
            assert st_[0] == last
            assert st_[2] == last - min(m.pos), (st_, m.pos)
            _check_buckets(d, log, m, bucket_size)
        log.close()
        # Everything committed survives; each reader resumes after its saved cursor.
        log = _open(d, bucket_size)
        assert log.stats()[0] == len(m.records) - 1
        for n in range(2):
            r = log.reader(n)
            assert r.seqn == m.saved[n]
            for s in range(m.saved[n] + 1, len(m.records)):
                assert r.next_record() == m.records[s]
                assert r.seqn == s
            assert r.next_record() is None
        assert log.corrupt == 0 and log.dropped == 0
        log.close()
    finally:
        shutil.rmtree(tmp)
