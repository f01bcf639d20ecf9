"""The dedup rule of tools.ingest, in one place so that every store backend applies the same.

A record's *key* (``identity``):

* ``(symbol, seq)`` when it has a ``seq``;
* else ``(symbol, $type, timestamp)`` when it carries a device timestamp;
* else none: nothing tells a retry from a new reading, so it is always stored.

A record whose key is already taken is absorbed only when it is an *exact repeat*: same
symbol, seq, ``$type``, timestamp and values, which is what a retry produces (``digest``
covers all of them).  A *different* record under a taken key (two boards sharing a symbol, a
queue that restarted at seq 1, two readings in one second without seq) is a *collision*: it
is stored as well, flagged, counted and logged; it is never dropped and never refused.
Repeats and collisions inside one batch follow the same rule.

A backend keeps, for every key, the digests of the records stored under it (an index it can
rebuild from its rows), and calls ``sort_batch`` with a lookup over that index.  A digest
covers the values of the record's own class, in the class's field order and in canonical
form (FLOAT as float, INTEGER/INT32/BOOLEAN as int, VARCHAR as str, null as None), which is
what ``schema.validate`` produces; a backend rebuilding its index passes the stored values
through ``canonical`` first.  ``PROBE`` is the digest of a fixed record: a backend keeps it
with its index and rebuilds the index when it differs (a Python whose encoding changed).
"""

import hashlib
import marshal


def identity(symbol, tname, seq, capture_ns):
    """The key text of a record, or None (no seq and no device timestamp: no identity).
    ``capture_ns`` is the device's timestamp in ns, None when the message had none."""
    if seq is not None:
        return "s|%d|%s" % (seq, symbol)  # the digits end at the first '|': unambiguous
    if capture_ns is not None:
        return "t|%d|%d:%s|%s" % (capture_ns, len(tname), tname, symbol)
    return None


def canonical(kinds, values):
    """Stored ``values`` of a record's class fields (``kinds``: their types, FLOAT, INTEGER,
    INT32, BOOLEAN, VARCHAR, in the same order) in the form ``schema.validate`` gives."""
    out = []
    for kind, v in zip(kinds, values):
        if v is not None:
            if kind.startswith("FLOAT"):
                v = float(v)
            elif not kind.startswith("VARCHAR") and isinstance(v, float) and v.is_integer():
                v = int(v)
        out.append(v)
    return tuple(out)


def digest(symbol, tname, seq, capture_ns, values):
    """16 bytes that differ when any part of the record differs: BLAKE2b over marshal's
    version-2 encoding (types kept: 21 and 21.0 differ; no object references)."""
    return hashlib.blake2b(marshal.dumps((symbol, tname, seq, capture_ns, values), 2),
                           digest_size=16).digest()


PROBE = digest("esp", "weather_record", 1, 1795478400000000000,
               (21.5, None, -0.25, 101325.0, 12, "x\u00e9"))


def sort_batch(rows, lookup):
    """Sort validated rows (see schema.validate) by the rule.

    ``lookup(keys)`` returns ``{key: set of digests}`` for the keys the backend has stored.
    Returns ``(keep, repeats)``: ``keep`` lists ``(index, key, digest, collision)`` for the
    rows to store, in batch order (``key`` and ``digest`` None for a row without identity,
    ``collision`` True when its key was taken by a different record); ``repeats`` counts
    the exact repeats absorbed.
    """
    prepared = []
    for i, r in enumerate(rows):
        key = identity(r["symbol"], r["type"], r["seq"], r["capture_ns"])
        d = None if key is None else digest(r["symbol"], r["type"], r["seq"],
                                            r["capture_ns"], tuple(r["fields"].values()))
        prepared.append((i, key, d))
    known = lookup([p[1] for p in prepared if p[1] is not None])
    keep, repeats = [], 0
    for i, key, d in prepared:
        if key is None:
            keep.append((i, None, None, False))
            continue
        have = known.get(key)
        if have is None:
            known[key] = {d}
            keep.append((i, key, d, False))
        elif d in have:
            repeats += 1
        else:
            have.add(d)
            keep.append((i, key, d, True))
    return keep, repeats
