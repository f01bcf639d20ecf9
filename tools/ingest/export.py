"""Exports of stored rows (``Store.query``): CSV, JSON lines, InfluxDB line protocol.

One writer per format, shared by ``python -m tools.ingest query`` and the dashboard's
download button (so both give the same bytes).  Times are ISO 8601 UTC with milliseconds:
``timestamp`` (capture time, as the board sent it) and ``received`` (when the server stored
it); the line protocol carries the capture time in integer nanoseconds, InfluxDB's own
precision, so a point lands at the instant it was measured.

Columns: ``symbol, type, seq, timestamp, received, collision`` then the schema fields of the
classes asked for (every class of the stream when none).  Nulls (a sensor that failed) are
empty CSV cells, JSON ``null``, and absent line-protocol fields.
"""

import csv
import json

from .schema import format_timestamp

BASE = ("symbol", "type", "seq", "timestamp", "received", "collision")
FORMATS = ("csv", "jsonl", "influx", "json")


def columns(spec, types=None):
    """The field columns (name -> TYPE) of a stream ``spec`` for the classes ``types``."""
    out = {}
    for cls, fields in spec["types"].items():
        if types and cls not in types:
            continue
        for f, kind in fields.items():
            out.setdefault(f, str(kind).upper().rstrip("?"))
    return out


def _row(r, fields):
    d = {"symbol": r["symbol"], "type": r["type"], "seq": r["seq"],
         "timestamp": format_timestamp(r["capture_ns"]),
         "received": format_timestamp(r["acquisition_ns"]), "collision": r["collision"]}
    for f in fields:
        d[f] = r.get(f)
    return d


def _escape(text, chars):
    text = str(text).replace("\\", "\\\\") if '"' in chars else str(text)
    for c in chars:
        text = text.replace(c, "\\" + c)
    return text.replace("\n", " ").replace("\r", " ")


def influx_line(r, fields):
    """One line of InfluxDB line protocol: measurement = class, tag ``symbol`` (and
    ``collision=1`` on a record stored under a taken key, so that InfluxDB, which keeps one
    point per series and time, does not overwrite the first with it), the non-null fields
    (``seq`` too), the capture time in ns.  None when the record has no field to write."""
    head = _escape(r["type"], ", ")
    if r["symbol"]:
        head += ",symbol=" + _escape(r["symbol"], ",= ")
    if r["collision"]:
        head += ",collision=1"
    parts = []
    for f, kind in fields.items():
        v = r.get(f)
        if v is None:
            continue
        key = _escape(f, ",= ")
        if kind == "FLOAT":
            parts.append("%s=%r" % (key, float(v)))
        elif kind == "BOOLEAN":
            parts.append("%s=%s" % (key, "true" if v else "false"))
        elif kind == "VARCHAR":
            parts.append('%s="%s"' % (key, _escape(v, '"')))
        else:
            parts.append("%s=%di" % (key, v))
    if r["seq"] is not None:
        parts.append("seq=%di" % r["seq"])
    if not parts:
        return None
    return "%s %s %d\n" % (head, ",".join(parts), r["capture_ns"])


def write(rows, out, fmt, fields, limit=0):
    """Write ``rows`` (an iterator of ``Store.query`` dicts) to the text stream ``out`` in
    ``fmt``; ``fields``: ``columns()``.  Returns the number of rows written."""
    n = 0
    if fmt == "csv":
        w = csv.writer(out, lineterminator="\n")
        w.writerow(list(BASE) + list(fields))
        for r in rows:
            d = _row(r, fields)
            w.writerow(["" if v is None else v for v in d.values()])
            n += 1
            if limit and n >= limit:
                break
    elif fmt in ("jsonl", "json"):
        if fmt == "json":
            out.write("[")
        for r in rows:
            text = json.dumps(_row(r, fields))
            if fmt == "json":
                text = ("," if n else "") + "\n" + text
            else:
                text += "\n"
            out.write(text)
            n += 1
            if limit and n >= limit:
                break
        if fmt == "json":
            out.write("\n]\n")
    elif fmt == "influx":
        for r in rows:
            line = influx_line(r, fields)
            if line is not None:
                out.write(line)
            n += 1
            if limit and n >= limit:
                break
    else:
        raise ValueError("format %r not one of %s" % (fmt, ", ".join(FORMATS)))
    return n
