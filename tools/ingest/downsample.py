"""Downsampling for the dashboard: the rule every store backend shares.

A series request names a range ``[since, until)`` (ns) and a number of buckets ``n`` (the
plot's width in pixels).  The rule, so that any backend (and a test) gives the same answer:

* **Bucket width** ``w``: ``(until - since) / n`` rounded up to a whole second; from one
  minute up, to a whole minute; from 15 minutes up, to a whole quarter of an hour (so that
  a backend can answer from rollups of those steps, see ``ROLLUP_STEPS``).  Buckets are
  ``[k*w, (k+1)*w)`` counted from 1970 (not from ``since``), so a sliding range keeps its
  buckets; every bucket that meets the range is returned whole.  At most ``n + 1``
  buckets, and ``n`` is capped at ``MAX_BUCKETS``.
* **Per bucket**: the number of records, the first and last capture time, and per field
  the min, max and mean of its non-null values (null when the bucket holds none: a sensor
  that failed all through it).  The bucket is plotted at the midpoint of its first and last
  record, so a bucket of one record sits exactly on it.
* **Gaps**: between two consecutive non-empty buckets, when the time from the last record
  of the one to the first record of the next exceeds ``max(w, 3 * typical spacing)``, one
  point of nulls is put between them (a plot draws a break there).  The typical spacing is
  the median of the spacings seen (inside buckets: ``(last - first) / (count - 1)``;
  between consecutive buckets: first of the next minus last of the one), so a board
  sampling every minute is not drawn as a gap per minute, and an outage is.

A backend provides ``bucket rows``: ``(k, count, first_ns, last_ns, [(n, min, max, sum)
per field])`` for the non-empty buckets (in any order, possibly several rows per ``k``:
``merge`` adds them up), and calls ``assemble``.
"""

import math

ROLLUP_STEPS = (60 * 10**9, 900 * 10**9)  # the rollups a backend may keep (see store.py)
MAX_BUCKETS = 2000
MIN_BUCKETS = 10
GAP_FACTOR = 3


def bucket_width(since, until, n):
    """The bucket width in ns for ``n`` buckets over ``[since, until)``."""
    n = max(MIN_BUCKETS, min(MAX_BUCKETS, int(n)))
    w = -(-(until - since) // n)
    w = -(-w // 10**9) * 10**9 or 10**9
    for step in ROLLUP_STEPS:
        if w >= step:
            w = -(-w // step) * step
    return w


def bucket_span(since, until, w):
    """(first k, last k + 1) of the buckets meeting ``[since, until)``."""
    return since // w, -(-until // w)


def merge(rows, nfields):
    """{k: [count, first, last, [[n, min, max, sum] per field]]} from bucket rows."""
    out = {}
    for k, count, first, last, fields in rows:
        b = out.get(k)
        if b is None:
            out[k] = [count, first, last, [list(f) for f in fields]]
            continue
        b[0] += count
        b[1] = min(b[1], first)
        b[2] = max(b[2], last)
        for acc, (n, lo, hi, total) in zip(b[3], fields):
            if not n:
                continue
            if acc[0]:
                acc[1] = min(acc[1], lo)
                acc[2] = max(acc[2], hi)
                acc[3] += total
            else:
                acc[1], acc[2], acc[3] = lo, hi, total
            acc[0] += n
    return out


def _median(values):
    s = sorted(values)
    if not s:
        return 0
    m = len(s) // 2
    return s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2


def assemble(buckets, fields, w):
    """The series as the dashboard gets it: {"bucket_s", "gap_s", "t", "n", "fields":
    {name: {"min", "max", "mean"}}} with times in seconds since 1970 (float), one entry
    per non-empty bucket plus one null entry per gap."""
    ks = sorted(buckets)
    spacings = []
    prev = None
    for k in ks:
        count, first, last = buckets[k][:3]
        if count > 1:
            spacings.append((last - first) / (count - 1))
        if prev is not None:
            spacings.append(first - prev)
        prev = last
    gap = max(w, GAP_FACTOR * _median(spacings))
    t, n = [], []
    cols = {f: {"min": [], "max": [], "mean": []} for f in fields}
    prev = None
    for k in ks:
        count, first, last, acc = buckets[k]
        if prev is not None and first - prev > gap:
            t.append(round((prev + first) / 2e9, 3))
            n.append(None)
            for c in cols.values():
                c["min"].append(None)
                c["max"].append(None)
                c["mean"].append(None)
        prev = last
        t.append(round((first + last) / 2e9, 3))
        n.append(count)
        for f, (m, lo, hi, total) in zip(fields, acc):
            c = cols[f]
            if m:
                c["min"].append(lo)
                c["max"].append(hi)
                mean = total / m
                c["mean"].append(round(mean, 6) if math.isfinite(mean) else None)
            else:
                c["min"].append(None)
                c["max"].append(None)
                c["mean"].append(None)
    return {"bucket_s": w / 1e9, "gap_s": gap / 1e9, "t": t, "n": n, "fields": cols}
