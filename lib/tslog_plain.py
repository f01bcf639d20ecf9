"""TSLog's default codec: each record of a frame as it is, behind its length; and the
packing of ``TSLog.store(*values)`` with the log's ``format``.

Imported by ``tslog.TSLog`` only for a log opened without a codec (the Zerynth API's
``format`` logs, tests, tools), so the firmware, whose queue uses ``tscodec.Delta``,
never loads it. The codec interface is ``tscodec``'s.
"""

import struct


def _nvalues(fmt):
    """How many values ``struct.pack(fmt, ...)`` takes (MicroPython does not check)."""
    n, rep = 0, ""
    for c in fmt:
        if "0" <= c <= "9":
            rep += c
        elif c in "<>!=@ ":
            rep = ""
        else:
            n += 1 if c in "sx" else int(rep or "1")
            n -= 1 if c == "x" else 0
            rep = ""
    return n


def pack(fmt, values):
    """``values`` packed with ``fmt``; ValueError if they do not fit."""
    if not fmt:
        raise ValueError("store() needs a format; use store_record()")
    n = _nvalues(fmt)
    if len(values) != n:
        raise ValueError("format %r takes %d values, got %d" % (fmt, n, len(values)))
    # No "except ... as e" here: in a function taking a tuple of values it made every call
    # allocate and run much slower on the unix port, even when nothing is raised.
    try:
        return struct.pack(fmt, *values)
    except Exception:
        pass
    raise ValueError("values %r do not fit format %r" % (values, fmt))


class Plain:
    """Records as they are, each behind its length (1 byte; 2 when ``record_size`` > 255).
    Both directions in one object (the log asks it for an encoder and a decoder)."""

    name = "plain"

    def __init__(self, record_size=255):
        self._w = 1 if record_size < 256 else 2
        self._buf = b""
        self._pos = self._end = 0

    def max_payload(self, count, record_size):
        return count * (record_size + self._w)

    def check(self, data):
        pass

    def encoder(self):
        return Plain(255 if self._w == 1 else 256)

    decoder = encoder

    def reset(self):
        pass

    def encode(self, src, lens, i0, count, stride, out, pos):
        for i in range(i0, i0 + count):
            n = lens[i]
            out[pos] = n & 0xFF
            if self._w == 2:
                out[pos + 1] = n >> 8
            pos += self._w
            out[pos:pos + n] = src[i * stride:i * stride + n]
            pos += n
        return pos

    def load(self, buf, pos, end):
        self._buf = buf
        self._pos = pos
        self._end = end

    def next(self, out):
        p = self._pos
        n = self._buf[p] | (self._buf[p + 1] << 8 if self._w == 2 else 0)
        p += self._w
        if n > len(out) or p + n > self._end:
            raise ValueError("bad record length in frame")
        out[:n] = self._buf[p:p + n]
        self._pos = p + n
        return n
