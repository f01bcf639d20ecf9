"""TSLog's time-index queries: ``between(log, t0, t1)`` and ``tail(log, n)``.

``TSLog.between`` and ``TSLog.tail`` call these; the module is imported only when one of
them is used (the console, a script), so the firmware's loop never loads its code. The
index itself (each closed bucket's smallest and largest timestamp) is kept by TSLog;
lib/tslog.md describes it.
"""

import struct

from micropython import const
from tslog import _sealed

# As tslog's (a const is not importable): a closed bucket's time range.
_RANGE = "<Iqq"  # magic, smallest, largest timestamp (+ crc u32)
_RANGE_SIZE = const(24)
_I_MAGIC = const(0x494C5354)  # "TSLI"
_I_EMPTY = const(0x454C5354)  # "TSLE": a bucket without timestamps


def _unpack_range(buf):
    """(lo, hi), (None, None) for a bucket without timestamps, or None if invalid."""
    if len(buf) < _RANGE_SIZE or not _sealed(buf, 20):
        return None
    magic, lo, hi = struct.unpack_from(_RANGE, buf, 0)
    if magic == _I_MAGIC:
        return lo, hi
    return (None, None) if magic == _I_EMPTY else None


def _range(log, bks, i):
    """(smallest, largest) timestamp in bucket ``bks[i]``; (None, None) if none."""
    first = bks[i]
    if first == log._first:
        return log._open_range()
    rng = log._ranges.get(first)
    if rng is None:
        rng = _unpack_range(log._st.load_range(first) or b"")
        if rng is None:  # never written (cut, or no time_of then): rebuild
            end = bks[i + 1] - 1 if i + 1 < len(bks) else log.last_seqn
            rng = log._scan_range(first, end)
        if len(log._ranges) >= 32:
            log._ranges = {}
        log._ranges[first] = rng
    return rng


def _upper(log, bks, i):
    """Largest timestamp up to bucket i (None: none yet), for the binary search."""
    while i >= 0:
        hi = _range(log, bks, i)[1]
        if hi is not None:
            return hi
        i -= 1
    return None


def between(log, t0, t1):
    """Generator of committed (seqn, bytes) with ``t0 <= time_of(record) < t1``.

    Binary-searches the buckets' time ranges (assumes timestamps mostly grow: a bucket
    starting at or after ``t1`` ends the search); records whose ``time_of`` is None are
    skipped."""
    if log.time_of is None:
        raise ValueError("between() needs a log opened with time_of")
    bks = list(log._buckets)
    lo, hi = 0, len(bks)
    while lo < hi:  # the first bucket whose largest timestamp so far is >= t0
        mid = (lo + hi) // 2
        top = _upper(log, bks, mid)
        if top is None or top < t0:
            lo = mid + 1
        else:
            hi = mid
    return _between(log, bks, lo, t0, t1)


def _between(log, bks, i, t0, t1):
    time_of = log.time_of
    while i < len(bks):
        rng = _range(log, bks, i)
        if rng[0] is not None:
            if rng[0] >= t1:
                return
            if rng[1] >= t0:
                end = bks[i + 1] - 1 if i + 1 < len(bks) else log.committed_seqn
                for s, rec in log.records(bks[i], min(end, log.committed_seqn)):
                    t = time_of(rec)
                    if t is not None and t0 <= t < t1:
                        yield s, rec
        i += 1


def tail(log, n):
    """Generator of the last ``n`` committed records as (seqn, bytes), oldest first."""
    end = log.committed_seqn
    start = end - n + 1
    if log._buckets and start < log._buckets[0]:
        start = log._buckets[0]
    return log.records(max(start, 1), end)
