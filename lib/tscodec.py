"""A delta codec for TSLog frames: the records of one commit in as few bytes as possible.

TSLog writes the records stored between two commits as one *frame* (lib/tslog.md); a
codec turns them into the frame's payload and back, byte for byte. Frames chain inside
a bucket: a frame is coded against the records before it in the same bucket, except a
*key* frame (the first of a bucket, and the first written after the log was opened),
which starts from nothing. So a reader decodes a bucket from its start, and a torn or
lost frame can only take the frames after it in its own bucket. (A log without a codec
keeps its records as they are: ``tslog_plain.Plain``.)

``Delta(schemas, select)`` is for records made of ``struct`` fields (little endian), one
*schema* per record layout: ``(format, kinds, nulls)``, ``kinds`` one letter per field:

* ``t``: a timestamp: delta of delta from the records before (0 at a fixed interval);
* ``d``: a value: delta from the previous record's value of that field;
* ``r``: rarely changes (a boot counter, a heap size): one bit per record covers every
  ``r`` field and the flags byte when none of them changed;
* ``f``: a float, stored as its bits;
* ``F``: the flags byte (last field, ``B``), from which ``select(flags) -> key`` tells the
  record's layout (several layouts can share one log).

``nulls``: per field, a bit of the flags byte that marks the field *null* (a failed
reading): the field is then not coded at all and reads back as 0 (``record.encode``
stores 0 there), and the next value is coded against the last one that was not null.

Residuals are zigzag mapped and Rice coded with a per-field parameter that follows the
mean of the recent residuals (as in LOCO-I/JPEG-LS), so no table is stored; a residual
too large for it is escaped (20 ones, 7-bit length, its bits). A *key record* (the first
of a key frame, or the first of another layout) carries its layout's descriptor (field
count, then per field its struct code, kind and null bit: 11 bits) and its fields' bits
as they are, so a frame decodes without the writer's schemas: a firmware that does not
know a layout still reads its records back byte for byte (and its uploader then sets
them aside, as ``record.decode`` refuses an unknown layout). On the firmware's weather
(noisy sensors at 2 s) a record takes about 3 bytes instead of 29 (docs/tslog.md).
"""

import struct

from micropython import const

_ESC = const(20)  # a Rice quotient this long is an escape: 7-bit length, then the bits
_HALVE = const(32)  # the Rice statistics forget half their past every this many records
_CODES = "bBhHiIlLqQfd"  # struct codes a schema may use (4 bits each in a descriptor)
_WIDTH = b"\x08\x08\x10\x10\x20\x20\x20\x20\x40\x40\x20\x40"  # their widths in bits
_KINDS = "tdrfF"
# A schema is a tuple: struct format with floats as their bits, size, kinds, widths,
# signed, null bits, indexes of the r fields, index of the F field (-1: none), descriptor.
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
    desc = [n]
    for i in range(n):
        c = _CODES.find(codes[i])
        k = _KINDS.find(kinds[i]) if i < len(kinds) else -1
        b = nulls[i] if i < len(nulls) else 3
        if c < 0 or k < 0 or (k == 3) != (c > 9) or b & (b - 1) or b > 128 or n > 31 or (
                k == 4 and (i < n - 1 or c != 1)):
            raise ValueError("schema %r %r: field %d cannot be coded" % (fmt, kinds, i))
        j = 0
        while b:
            j += 1
            b >>= 1
        desc.append(c << 7 | k << 4 | j)
    if len(kinds) != n or len(nulls) != n:
        raise ValueError("schema %r: one kind and null bit per field" % fmt)
    bits = "<" + "".join("I" if c == "f" else "Q" if c == "d" else c for c in codes)
    return (bits, struct.calcsize(fmt), kinds, bytes(_WIDTH[_CODES.find(c)] for c in codes),
            tuple(c in "bhilq" for c in codes), nulls,
            tuple(i for i in range(n) if kinds[i] == "r"), n - 1 if kinds[-1] == "F" else -1,
            tuple(desc))


class Delta:
    """Delta/Rice codec for records of integer fields (see the module docstring).

    ``schemas``: ``{key: (format, kinds, nulls)}`` (or a list: keys 0, 1, ...);
    ``select(flags byte)``: the key of a record's schema (needed with more than one);
    ``add()`` registers a later layout. Only the encoder uses them. ``name``: kept in the
    log's meta line, so a log written with another codec is never misread.
    """

    def __init__(self, schemas, select=None, name="delta"):
        self.schemas = {}
        self.select = select
        self.name = name
        self.bound = 0  # bits a record may take, at most
        for key, s in (enumerate(schemas) if isinstance(schemas, list) else schemas.items()):
            self.add(key, *s)

    def add(self, key, fmt, kinds, nulls=None):
        s = schema(fmt, kinds, nulls)
        if (self.schemas and self.select is None) or (self.select and s[_FLAGS] < 0):
            raise ValueError("several layouts need select() and a flags field F")
        self.schemas[key] = self.only = s
        self.bound = max(self.bound, 16 + 11 * len(kinds) + sum(w + 32 for w in s[_WIDE]))

    def max_payload(self, count, record_size):
        return (count * self.bound + 7) // 8

    def schema_of(self, flags):
        if self.select is None:
            return self.only
        s = self.schemas.get(self.select(flags))
        if s is None:
            raise ValueError("record layout unknown to this codec (flags 0x%02x)" % flags)
        return s

    def check(self, data):
        """ValueError unless ``data`` is a record this codec can code."""
        if not data or len(data) != self.schema_of(data[-1])[_SIZE]:
            raise ValueError("record of %d bytes: not its layout's size" % len(data))

    def encoder(self):
        return _Coder(self)

    decoder = encoder


def _rice_k(a, n):
    k = 0
    while (n << k) < a:
        k += 1
    return k


class _Coder:
    """One direction of the Delta codec: the bits of a payload and the state the records
    are coded against (the previous record's fields, the Rice statistics)."""

    def __init__(self, codec):
        self._c = codec
        self._cache = {}  # descriptor -> schema, for decoding
        self._s = None  # schema of the previous record (None: the next one is a key record)
        self._buf = b""
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

    def _stat(self, i, u):
        a = self._a[i] + u
        n = self._n[i] + 1
        if n >= _HALVE:
            a = (a + 1) >> 1
            n >>= 1
        self._a[i] = a
        self._n[i] = n

    # -- bits out
    def _put(self, v, n):
        """Append the ``n`` low bits of ``v`` (``0 <= v < 2**n``, ``n <= 20``: the
        accumulator stays a small int on a 32-bit port)."""
        n += self._nb
        acc = (self._acc << (n - self._nb)) | v
        while n >= 8:
            n -= 8
            self._buf[self._pos] = (acc >> n) & 0xFF
            self._pos += 1
        self._acc = acc & ((1 << n) - 1)
        self._nb = n

    def _wide(self, v, n):
        while n > 16:
            n -= 16
            self._put((v >> n) & 0xFFFF, 16)
        self._put(v & ((1 << n) - 1), n)

    def _rice(self, i, r):
        u = r << 1 if r >= 0 else ((-r) << 1) - 1  # zigzag
        k = _rice_k(self._a[i], self._n[i])
        self._stat(i, u)
        q = u >> k
        if q < _ESC:
            self._put((1 << (q + 1)) - 2, q + 1)  # q ones, a zero
            self._wide(u, k)
            return
        self._put((1 << _ESC) - 1, _ESC)
        n = 0
        while u >> n:
            n += 1
        self._put(n, 7)
        self._wide(u, n)

    def encode(self, src, lens, i0, count, stride, out, pos):
        """Code records ``i0 .. i0+count-1`` (``src[i*stride:]``, ``lens[i]`` bytes) into
        ``out`` from ``pos``; returns the end position. ValueError for a record that is not
        its layout's size."""
        self._buf = out
        self._pos = pos
        self._acc = self._nb = 0
        c = self._c
        for i in range(i0, i0 + count):
            flags = src[i * stride + lens[i] - 1]
            s = c.schema_of(flags)
            if lens[i] != s[_SIZE]:
                raise ValueError("record of %d bytes, its layout is %d" % (lens[i], s[_SIZE]))
            self._record(s, struct.unpack_from(s[_BITS], src, i * stride), flags)
        if self._nb:
            self._put(0, 8 - self._nb)
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
                self._put(1 if key else 0, 1)  # another layout follows
                if not key:
                    for i in s[_RARE]:
                        if vals[i] == prev[i]:
                            self._put(0, 1)
                        else:
                            self._put(1, 1)
                            self._wide(vals[i], s[_WIDE][i])
                            prev[i] = vals[i]
        self._flags = flags
        kinds = s[_KIND]
        nulls = s[_NULL]
        if key:
            desc = s[_DESC]
            self._put(desc[0], 5)
            for d in desc[1:]:
                self._put(d, 11)
            if old is None and s[_FLAGS] >= 0:
                self._put(flags, 8)
            self._key(s, list(vals))
            for i in range(len(vals)):
                if flags & nulls[i]:
                    self._vals[i] = 0  # as the decoder has it
                elif kinds[i] != "F":
                    self._wide(vals[i], s[_WIDE][i])
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
            elif kind == "f":
                self._wide(v, s[_WIDE][i])
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
        """The next ``n`` bits (``n <= 16``) as an int; ValueError past the end."""
        acc = self._acc
        have = self._nb
        while have < n:
            if self._pos >= self._end:
                raise ValueError("frame payload too short")
            acc = (acc << 8) | self._buf[self._pos]
            self._pos += 1
            have += 8
        have -= n
        self._nb = have
        self._acc = acc & ((1 << have) - 1)
        return acc >> have

    def _getw(self, s, i):
        """Field ``i``'s bits as they were stored (signed fields sign-extended)."""
        n = s[_WIDE][i]
        v = 0
        while n > 16:
            n -= 16
            v = (v << 16) | self._get(16)
        v = (v << n) | self._get(n)
        if s[_SIGN][i] and v >> (s[_WIDE][i] - 1):
            v -= 1 << s[_WIDE][i]
        return v

    def _unrice(self, i):
        q = 0
        while self._get(1):
            q += 1
            if q == _ESC:
                n = self._get(7)
                u = 0
                while n > 16:
                    n -= 16
                    u = (u << 16) | self._get(16)
                u = (u << n) | self._get(n)
                break
        else:
            k = _rice_k(self._a[i], self._n[i])
            u = q << k
            if k > 16:
                u |= self._get(k - 16) << 16
                k = 16
            u |= self._get(k)
        self._stat(i, u)
        return u >> 1 if not u & 1 else -((u + 1) >> 1)

    def _schema(self):
        n = self._get(5)
        desc = [n]
        for _ in range(n):
            desc.append(self._get(11))
        desc = tuple(desc)
        s = self._cache.get(desc)
        if s is None:
            fmt = kinds = ""
            nulls = []
            for d in desc[1:]:
                fmt += _CODES[d >> 7] if d >> 7 < len(_CODES) else "?"
                kinds += _KINDS[(d >> 4) & 7] if (d >> 4) & 7 < len(_KINDS) else "?"
                nulls.append(1 << (d & 15) - 1 if d & 15 else 0)
            s = self._cache[desc] = schema("<" + fmt, kinds, nulls)
        return s

    def next(self, out):
        """Decode the next record into ``out``; returns its length. ValueError if the
        payload is malformed."""
        s = self._s
        flags = self._flags if s else 0
        key = s is None
        if not key and (s[_RARE] or s[_FLAGS] >= 0) and self._get(1):
            if s[_FLAGS] >= 0:
                flags = self._get(8)
            key = self._get(1)
            if not key:
                for i in s[_RARE]:
                    if self._get(1):
                        self._vals[i] = self._getw(s, i)
        if key:
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
            elif key or kind == "f":
                prev[i] = self._getw(s, i)
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
