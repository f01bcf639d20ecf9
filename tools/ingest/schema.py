"""Validation of one JSON message against a stream's schema, as WebAdmin's /write does it.

A message is a JSON object with ``$type`` (matched against the class names: a class whose name
ends with it; may be absent when the stream has one class), ``symbol`` (string, default ""),
``timestamp`` (``yyyy-MM-ddTHH:mm:ss.SSSZ`` UTC; absent = server time), the schema's fields and
an optional ``seq`` (non-negative integer, the device's sequence number, used for dedup).
Other keys are ignored, as WebAdmin does.  Stricter than WebAdmin: every schema field must be
present and non-null unless its type ends with ``?`` (nullable, e.g. ``FLOAT?``), INTEGER
fields must be integral (INT32 in range), bools are not numbers, numbers must be finite
(``1e400``, ``NaN``, ``Infinity`` are refused), timestamps must fit 64-bit nanoseconds
(1678-2261), strings must be valid Unicode (no lone surrogates).

Whatever a message holds, it is a per-message error (``MessageError``); only a body that is
not a JSON array (or holds too many messages) fails as a whole (``parse_batch``).
"""

import calendar
import json
import math
import re

_TS = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{3})Z$")
_INT32 = (-(1 << 31), (1 << 31) - 1)
_INT64 = (-(1 << 63), (1 << 63) - 1)
_WS = re.compile(r"[ \t\n\r]*")
_INT_DIGITS_MAX = 40  # longer integer literals cannot fit 64 bits: not even converted


class _OutOfRange:
    """An integer literal too long for any column (left unconverted: no CPU spent on it)."""

    def __repr__(self):
        return "<integer out of range>"


OUT_OF_RANGE = _OutOfRange()


def _parse_int(text):
    return int(text) if len(text) <= _INT_DIGITS_MAX else OUT_OF_RANGE


_DECODER = json.JSONDecoder(parse_int=_parse_int,
                            parse_constant=lambda name: float(name.replace("inity", "")))


class BatchError(ValueError):
    """The body as a whole is refused: ``status`` 400 (not a JSON array) or 413."""

    def __init__(self, status, text):
        ValueError.__init__(self, text)
        self.status = status


def parse_batch(body, max_messages):
    """The messages of a /write body (bytes): a JSON array, parsed element by element so that
    parsing stops at ``max_messages`` (BatchError 413).  Numbers that cannot be stored
    (``NaN``, ``1e400``, 400-digit integers) parse, and the message holding them fails on
    its own in ``validate``.  Raises BatchError(400) for a body that is not a JSON array."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise BatchError(400, "body is not UTF-8: byte %d" % e.start)
    ws = _WS.match
    i = ws(text, 0).end()
    if text[i:i + 1] != "[":
        raise BatchError(400, "body is not a JSON array")
    if body.count(b",") < max_messages:  # cannot hold more: parse it whole (faster)
        try:
            return _DECODER.decode(text)
        except RecursionError:
            raise BatchError(400, "JSON nested too deeply")
        except ValueError as e:
            raise BatchError(400, "JSON parse error: %s" % str(e)[:200])
    i = ws(text, i + 1).end()
    out = []
    if text[i:i + 1] == "]":
        i += 1
    else:
        while True:
            if len(out) >= max_messages:
                raise BatchError(413, "more than %d messages in one request" % max_messages)
            try:
                obj, i = _DECODER.raw_decode(text, i)
            except RecursionError:
                raise BatchError(400, "JSON nested too deeply (message %d)" % len(out))
            except ValueError as e:
                raise BatchError(400, "JSON parse error: %s" % str(e)[:200])
            out.append(obj)
            i = ws(text, i).end()
            c = text[i:i + 1]
            if c == "]":
                i += 1
                break
            if c != ",":
                raise BatchError(400, "JSON parse error: ',' or ']' expected at char %d" % i)
            i = ws(text, i + 1).end()
    if ws(text, i).end() != len(text):
        raise BatchError(400, "JSON parse error: data after the array")
    return out


class MessageError(ValueError):
    """One rejected message; ``exc`` mimics the Java exception class WebAdmin would name."""

    def __init__(self, text, exc="java.lang.IllegalArgumentException"):
        ValueError.__init__(self, text)
        self.exc = exc


def parse_timestamp(text):
    """``yyyy-MM-ddTHH:mm:ss.SSSZ`` -> ns since 1970-01-01 UTC (any 3-digit fraction)."""
    m = _TS.match(text) if isinstance(text, str) else None
    if not m:
        raise MessageError("Unparseable date: \"%s\"" % str(text)[:40], "java.text.ParseException")
    y, mo, d, h, mi, s, ms = (int(g) for g in m.groups())
    if not (y >= 1 and 1 <= mo <= 12 and 1 <= d <= calendar.monthrange(y, mo)[1] and h < 24
            and mi < 60 and s < 60):
        raise MessageError("Unparseable date: \"%s\"" % text, "java.text.ParseException")
    ns = (calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) * 1000 + ms) * 1000000
    if not _INT64[0] <= ns <= _INT64[1]:
        raise MessageError("timestamp %s out of range (1678 to 2261)" % text,
                           "java.lang.IllegalArgumentException")
    return ns


def format_timestamp(ns):
    """ns since the epoch -> ``yyyy-MM-ddTHH:mm:ss.SSSZ``."""
    import time
    s, rem = divmod(ns, 1000000000)
    t = time.gmtime(s)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (t[:6] + (rem // 1000000,))


def _number(name, v, kind):
    if v is OUT_OF_RANGE:
        raise MessageError("field %s: number out of range" % name,
                           "java.lang.NumberFormatException")
    if isinstance(v, bool):
        raise MessageError("field %s: boolean is not a number" % name,
                           "java.lang.NumberFormatException")
    if isinstance(v, str):  # Gson's getAsDouble/getAsLong accept numeric strings
        try:
            v = float(v) if kind == "FLOAT" else int(v)
        except ValueError:
            raise MessageError("field %s: not a number: %r" % (name, v[:40]),
                               "java.lang.NumberFormatException")
    if not isinstance(v, (int, float)):
        raise MessageError("field %s: expected %s" % (name, kind),
                           "java.lang.IllegalStateException")
    if isinstance(v, float) and not math.isfinite(v):
        raise MessageError("field %s: %r is not a finite number" % (name, v),
                           "java.lang.NumberFormatException")
    if kind == "FLOAT":
        return float(v)
    if isinstance(v, float):
        if not v.is_integer():
            raise MessageError("field %s: %r is not an integer" % (name, v),
                               "java.lang.NumberFormatException")
        v = int(v)
    lo, hi = _INT32 if kind == "INT32" else _INT64
    if not lo <= v <= hi:
        raise MessageError("field %s: %d out of range" % (name, v),
                           "java.lang.IllegalArgumentException")
    return v


def _value(name, v, kind):
    if kind in ("FLOAT", "INTEGER", "INT32"):
        return _number(name, v, kind)
    if kind == "VARCHAR":
        return _text("field " + name, v)
    if not isinstance(v, bool):  # BOOLEAN
        raise MessageError("field %s: expected true/false" % name)
    return int(v)


def _text(what, v):
    if not isinstance(v, str):
        raise MessageError("%s must be a string" % what)
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate ("\\ud800"): SQLite cannot store it
        raise MessageError("%s is not valid Unicode" % what)
    return v


def match_type(types, tname):
    """The class name of ``types`` (dict) that ``tname`` designates, as UnboundWriter does."""
    if tname is None:
        if len(types) == 1:
            return next(iter(types))
        raise MessageError("$type is required: the stream has several classes")
    if not isinstance(tname, str) or not tname:
        raise MessageError("$type must be a non-empty string")
    for full in types:
        if full == tname or full.endswith("." + tname) or full.endswith(tname):
            return full
    raise MessageError("Unknown type: " + tname[:80], "java.lang.IllegalStateException")


def validate(msg, types):
    """Check one message; return a row dict (type, symbol, seq, capture_ns, fields)."""
    if not isinstance(msg, dict):
        raise MessageError("message is not a JSON object", "java.lang.IllegalStateException")
    tname = match_type(types, msg.get("$type"))
    symbol = _text("symbol", msg.get("symbol", ""))
    seq = msg.get("seq")
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int)
                            or not 0 <= seq < (1 << 63)):
        raise MessageError("seq must be a non-negative integer")
    ts = msg.get("timestamp")
    capture_ns = None if ts is None else parse_timestamp(ts)
    fields = {}
    for fname, kind in types[tname].items():
        kind = str(kind).upper()
        v = msg.get(fname)
        if v is None:
            if kind.endswith("?"):  # nullable: a sensor that failed this time
                fields[fname] = None
                continue
            raise MessageError("field %s is required (non-nullable)" % fname,
                               "java.lang.IllegalArgumentException")
        fields[fname] = _value(fname, v, kind.rstrip("?"))
    return {"type": tname, "symbol": symbol, "seq": seq, "capture_ns": capture_ns,
            "fields": fields}


def error_entry(index, msg, err):
    """One element of /write's per-message error array (WebAdmin layout + ``index``)."""
    try:
        text = json.dumps(msg, separators=(",", ":"))
    except (TypeError, ValueError):
        text = repr(msg)
    if len(text) > 300:
        text = text[:300] + "..."
    return {"message": "Message is invalid:" + text.replace('"', "'"),
            "error": "%s:%s" % (getattr(err, "exc", "java.lang.Exception"), err),
            "stacktrace": "", "index": index}
