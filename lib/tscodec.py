"""A delta codec for TSLog frames: the records of one commit in as few bytes as possible.

TSLog writes the records stored between two commits as one *frame* (lib/tslog.md); a
codec turns them into the frame's payload and back, byte for byte. Frames chain inside
a bucket: a frame is coded against the records before it in the same bucket, except a
*key* frame (the first of a bucket, and the first written after the log was opened),
which starts from nothing. So a reader decodes a bucket from its start, and a torn or
lost frame can only take the frames after it in its own bucket. (A log without a codec
keeps its records as they are: ``tslog_plain.Plain``.)

``Delta(schemas, select)`` is for records made of integer ``struct`` fields (little
endian, ``bBhHiIlLqQ``), one
*schema* per record layout: ``(format, kinds, nulls)``, ``kinds`` one letter per field:

* ``t``: a timestamp: delta of delta from the records before (0 at a fixed interval);
* ``d``: a value: delta from the previous record's value of that field;
* ``r``: rarely changes (a boot counter, a heap size): one bit per record covers every
  ``r`` field and the flags byte when none of them changed;
* ``F``: the flags byte (last field, ``B``), from which ``select(flags) -> key`` tells the
  record's layout (several layouts can share one log).

``nulls``: per field, a bit of the flags byte that marks the field *null* (a failed
reading): the field is then not coded at all and reads back as 0 (``record.encode``
stores 0 there), and the next value is coded against the last one that was not null.

Residuals are zigzag mapped and Rice coded with a per-field parameter that follows the
mean of the recent residuals (as in LOCO-I/JPEG-LS), so no table is stored; a residual
too large for it is escaped (20 ones, 7-bit length, its bits). A *key record* (the first
of a key frame, or the first of another layout) carries its layout's descriptor (field
count, then per field its struct code, kind and null bit: 10 bits) and its fields' bits
as they are, so a frame decodes without the writer's schemas: a firmware that does not
know a layout still reads its records back byte for byte (and its uploader then sets
them aside, as ``record.decode`` refuses an unknown layout). On the firmware's weather
(noisy sensors at 2 s) a record takes about 3 bytes instead of 29 (docs/tslog.md).
"""

import struct

from micropython import const

_ESC = const(20)  # a Rice quotient this long is an escape: 7-bit length, then the bits
_HALVE = const(32)  # the Rice statistics forget half their past every this many records
_CODES = "bBhHiIlLqQ"  # struct codes a schema may use (4 bits each in a descriptor)
_WIDTH = b"\x08\x08\x10\x10\x20\x20\x20\x20\x40\x40"  # their widths in bits
_KINDS = "tdrF"
# A schema is a tuple: struct format, size, kinds, widths, signed, null bits, indexes of
# the r fields, index of the F field (-1: none), descriptor.
_BITS = const(0)
_SIZE = const(1)
_KIND = const(2)
_WIDE = const(3)
_SIGN = const(4)
_NULL = const(5)
_RARE = const(6)
_FLAGS = const(7)
_DESC = const(8)


def schema(fmt, kinds, nulls=None):
    """The schema tuple of a struct format (see ``Delta``); ValueError if it cannot be coded."""
    codes = [c for c in fmt if c not in "<>=!@ "]
    n = len(codes)
    nulls = tuple(nulls) if nulls else (0,) * n
    if len(kinds) != n or len(nulls) != n or n > 31:
        raise ValueError("schema %r" % fmt)
    desc = [n]
    for i in range(n):
        c = _CODES.find(codes[i])
        k = _KINDS.find(kinds[i])
        b = nulls[i]
        j = 0
        while b:
            j += 1
            b >>= 1
        if c < 0 or k < 0 or (k == 3 and (i < n - 1 or c != 1)) or nulls[i] != (1 << j >> 1):
            raise ValueError("schema %r: field %d" % (fmt, i))
        desc.append(c << 6 | k << 4 | j)
    return ("<" + "".join(codes), struct.calcsize(fmt), kinds,
            bytes(_WIDTH[_CODES.find(c)] for c in codes), tuple(c in "bhilq" for c in codes),
            nulls, tuple(i for i in range(n) if kinds[i] == "r"), n - 1 if k == 3 else -1,
            tuple(desc))


class Delta:
    """Delta/Rice codec for records of integer fields (see the module docstring).

    ``schemas``: ``{key: (format, kinds, nulls)}`` (or a list: keys 0, 1, ...);
    ``select(flags byte)``: the key of a record's schema (needed with more than one);
    ``add()`` registers a later layout. Only the encoder needs them. ``name``: kept in the
    log's meta line, so a log written with another codec is never misread.
    """

    def __init__(self, schemas, select=None, name="delta"):
        self.schemas = {}
        self.known = {}  # descriptor -> schema (the decoder's, shared by every reader)
        self.largest = 1  # bytes of the longest record
        self.select = select
        self.name = name
        self.bound = 0  # bits a record may take, at most
        for key, s in (enumerate(schemas) if isinstance(schemas, list) else schemas.items()):
            self.add(key, *s)

    def add(self, key, fmt, kinds, nulls=None):
        s = schema(fmt, kinds, nulls)
        if (self.schemas and self.select is None) or (self.select and s[_FLAGS] < 0):
            raise ValueError("several layouts need select() and a flags field F")
        self.schemas[key] = self.only = self.known[s[_DESC]] = s
        self.largest = max(self.largest, s[_SIZE])
        self.bound = max(self.bound, 16 + 10 * len(kinds) + sum(w + 32 for w in s[_WIDE]))

    def max_payload(self, count, record_size):
        return (count * self.bound + 7) // 8

    def schema_of(self, flags):
        s = self.schemas.get(self.select(flags)) if self.select else self.only
        if s is None:
            raise ValueError("unknown layout (flags 0x%02x)" % flags)
        return s

    def check(self, data):
        """ValueError unless ``data`` is a record this codec can code."""
        if not data or len(data) != self.schema_of(data[-1])[_SIZE]:
            raise ValueError("record of %d bytes: not its layout's size" % len(data))

    def encoder(self):
        return _Coder(self)

    decoder = encoder


class _Coder:
    """One direction of the Delta codec: the bits of a payload and the state the records
    are coded against (the previous record's fields, the Rice statistics)."""

    def __init__(self, codec):
        self._c = codec
        self._s = None  # schema of the previous record (None: the next one is a key record)
        self._buf = bytearray()
        self._pos = self._end = self._acc = self._nb = 0

    def reset(self):
        """Start from nothing: the next record is a key record."""
        self._s = None

    def _key(self, s, vals):
        n = len(s[_KIND])
        self._s = s
        self._vals = vals
        self._dt = 0  # previous time delta
        self._a = [2] * n  # per field: sum of recent residuals (zigzag) and their count:
        self._n = [1] * n  # the Rice parameter follows a / n

    def _k(self, i, u=None):
        """Field ``i``'s Rice parameter; then, given ``u``, count ``u`` in its statistics."""
        a = self._a[i]
        n = self._n[i]
        k = 0
        while (n << k) < a:
            k += 1
        if u is not None:
            a += u
            n += 1
            if n >= _HALVE:
                a = (a + 1) >> 1
                n >>= 1
            self._a[i] = a
            self._n[i] = n
        return k

    # -- bits out
    def _put(self, v, n):
        """Append the ``n`` low bits of ``v``, 16 at a time (the accumulator stays a small
        int on a 32-bit port)."""
        while n > 16:
            n -= 16
            self._put(v >> n, 16)
        nb = self._nb + n
        acc = (self._acc << n) | (v & ((1 << n) - 1))
        while nb >= 8:
            nb -= 8
            self._buf[self._pos] = (acc >> nb) & 0xFF
            self._pos += 1
        self._acc = acc & ((1 << nb) - 1)
        self._nb = nb

    def _rice(self, i, r):
        u = r << 1 if r >= 0 else ((-r) << 1) - 1  # zigzag
        k = self._k(i, u)
        q = u >> k
        if q < _ESC:
            self._put((1 << (q + 1)) - 2, q + 1)  # q ones, a zero
            self._put(u, k)
            return
        self._put(0xFFFFF, _ESC)
        n = 0
        while u >> n:
            n += 1
        self._put(n, 7)
        self._put(u, n)

    def encode(self, src, lens, i0, count, stride, out, pos):
        """Code records ``i0 .. i0+count-1`` (``src[i*stride:]``, ``lens[i]`` bytes) into
        ``out`` from ``pos``; returns the end position. ValueError for a record that is not
        its layout's size (IndexError when ``out`` is too small)."""
        self._buf = out
        self._pos = pos
        self._acc = self._nb = 0
        for i in range(i0, i0 + count):
            flags = src[i * stride + lens[i] - 1]
            s = self._c.schema_of(flags)
            if lens[i] != s[_SIZE]:
                raise ValueError("record of %d bytes, its layout is %d" % (lens[i], s[_SIZE]))
            self._record(s, struct.unpack_from(s[_BITS], src, i * stride), flags)
        self._put(0, -self._nb & 7)  # pad the last byte with zeros
        return self._pos

    def _record(self, s, vals, flags):
        old = self._s
        key = s is not old
        if old is not None:
            prev = self._vals
            same = not key and flags == self._flags
            for i in s[_RARE]:
                same = same and vals[i] == prev[i]
            if old[_RARE] or old[_FLAGS] >= 0:
                self._put(0 if same else 1, 1)
            if not same:
                if old[_FLAGS] >= 0:
                    self._put(flags, 8)
                self._put(key, 1)  # another layout follows
                if not key:
                    for i in s[_RARE]:
                        if vals[i] == prev[i]:
                            self._put(0, 1)
                        else:
                            self._put(1, 1)
                            self._put(vals[i], s[_WIDE][i])
                            prev[i] = vals[i]
        self._flags = flags
        kinds = s[_KIND]
        nulls = s[_NULL]
        if key:
            desc = s[_DESC]
            self._put(desc[0], 5)
            for d in desc[1:]:
                self._put(d, 10)
            if old is None and s[_FLAGS] >= 0:
                self._put(flags, 8)
            self._key(s, list(vals))
            for i in range(len(vals)):
                if flags & nulls[i]:
                    self._vals[i] = 0  # as the decoder has it
                elif kinds[i] != "F":
                    self._put(vals[i], s[_WIDE][i])
            return
        prev = self._vals
        for i in range(len(vals)):
            kind = kinds[i]
            v = vals[i]
            if kind == "d" and not flags & nulls[i]:
                self._rice(i, v - prev[i])
            elif kind == "t":
                d = v - prev[i]
                self._rice(i, d - self._dt)
                self._dt = d
            else:
                continue
            prev[i] = v

    # -- bits in
    def load(self, buf, pos, end):
        """Decode from ``buf[pos:end]`` (a frame's payload)."""
        self._buf = buf
        self._pos = pos
        self._end = end
        self._acc = self._nb = 0

    def _get(self, n):
        """The next ``n`` bits as an int, 16 at a time; ValueError past the end."""
        v = 0
        while n > 16:
            n -= 16
            v = (v << 16) | self._get(16)
        acc = self._acc
        have = self._nb
        while have < n:
            if self._pos >= self._end:
                raise ValueError("frame too short")
            acc = (acc << 8) | self._buf[self._pos]
            self._pos += 1
            have += 8
        have -= n
        self._nb = have
        self._acc = acc & ((1 << have) - 1)
        return (v << n) | (acc >> have)

    def _field(self, s, i):
        """Field ``i``'s bits as they were stored (a signed field sign-extended)."""
        w = s[_WIDE][i]
        v = self._get(w)
        return v - (1 << w) if s[_SIGN][i] and v >> (w - 1) else v

    def _unrice(self, i):
        k = self._k(i)
        q = 0
        while self._get(1):
            q += 1
            if q == _ESC:
                u = self._get(self._get(7))
                break
        else:
            u = (q << k) | self._get(k)
        self._k(i, u)
        return u >> 1 if not u & 1 else -((u + 1) >> 1)

    def _schema(self):
        desc = [self._get(5)]
        for _ in range(desc[0]):
            desc.append(self._get(10))
        desc = tuple(desc)
        known = self._c.known
        s = known.get(desc)
        if s is None:  # a layout this firmware does not know: its frames still decode
            fmt = kinds = ""
            nulls = []
            for d in desc[1:]:
                fmt += _CODES[d >> 6] if d >> 6 < len(_CODES) else "?"
                kinds += _KINDS[(d >> 4) & 3]
                nulls.append(1 << (d & 15) >> 1)
            s = known[desc] = schema("<" + fmt, kinds, nulls)
        return s

    def next(self, out):
        """Decode the next record into ``out``; returns its length. ValueError if the
        payload is malformed."""
        s = self._s
        flags = 0
        key = 0
        if s is not None:
            flags = self._flags
            if (s[_RARE] or s[_FLAGS] >= 0) and self._get(1):
                if s[_FLAGS] >= 0:
                    flags = self._get(8)
                key = self._get(1)
                if not key:
                    for i in s[_RARE]:
                        if self._get(1):
                            self._vals[i] = self._field(s, i)
        if key or s is None:
            key = 1
            old = s
            s = self._schema()
            if old is None and s[_FLAGS] >= 0:
                flags = self._get(8)
            self._key(s, [0] * len(s[_KIND]))
        kinds = s[_KIND]
        nulls = s[_NULL]
        prev = self._vals
        for i in range(len(kinds)):
            kind = kinds[i]
            if kind == "F":
                prev[i] = flags
            elif flags & nulls[i]:
                continue
            elif key:
                prev[i] = self._field(s, i)
            elif kind == "d":
                prev[i] += self._unrice(i)
            elif kind == "t":
                self._dt += self._unrice(i)
                prev[i] += self._dt
        self._flags = flags
        vals = prev
        if flags:
            for b in nulls:
                if flags & b:
                    vals = [0 if flags & nulls[i] else prev[i] for i in range(len(prev))]
                    break
        try:
            struct.pack_into(s[_BITS], out, 0, *vals)
        except (OverflowError, ValueError, IndexError):
            raise ValueError("record does not fit its layout or the buffer")
        return s[_SIZE]
