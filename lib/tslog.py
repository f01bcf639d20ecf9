"""TSLog: a power-cut-safe time-series log of records in buckets (Zerynth TSLog API).

``TSLog(where, ...)``: ``where`` is a folder (any filesystem: LittleFS, FAT) or a
raw partition (an object with the block protocol ``readblocks``/``writeblocks``/
``ioctl``, e.g. ``esp32.Partition``; not mounted as a filesystem). The format and
the recovery rules are in lib/tslog.md; figures in docs/tslog.md.

Records are stored in *frames*: the records stored between two commits are coded
together by the log's *codec* (``tslog_plain`` by default, records as they
are; the firmware's queue uses ``tscodec.Delta``, ~3 bytes a record) and
written at ``commit()`` as one frame with one CRC. Frames chain inside a bucket (a
file, or one erase block of the partition) named by the seqn of its first record,
so sequence numbers continue across reboots. A torn or corrupt frame is never
returned: its CRC, seeded with the seqn it must start at, fails.

``commit()`` makes every record stored so far survive a power cut; every
``commit_delta`` stores commit automatically, so at most ``commit_delta`` records
are at risk; readers only return committed records. Opening never scans the whole
log: one listing (or one header read per erase block) and a walk over the newest
bucket's frames. Each reader's committed cursor is kept as two alternating
CRC-checked copies (files) or as CRC-checked entries in a cursor log (partition).

Full flash (a weather logger keeps recording): the oldest bucket is dropped even
if unread; its unread records count in ``dropped``, readers skip to the oldest
record left. ``free()`` estimates how many more records fit; ``usage()`` tells the
flash the records take.

Time index (optional): with ``time_of`` (raw record bytes -> int timestamp or
None), each bucket's smallest and largest timestamps are saved when the bucket
is closed (CRC-checked; when missing or bad they are rebuilt from the bucket's
records); ``between(t0, t1)`` binary-searches them, ``tail(n)`` reads only the
last buckets.

Example::

    log = TSLog("/log", format="<If", bucket_size=1024, commit_delta=16)
    seqn = log.store(1700000000, 21.5)
    log.commit()
    r = log.reader(0)
    raw = r.next_record()   # its bytes, or None when nothing committed is left
    print(r.seqn, struct.unpack(log.format, raw))  # its seqn (e.g. to tag uploads), values
    r.commit()              # persist the cursor
"""

import binascii
import struct

from micropython import const

_CRC = const(4)
_MAX_READERS = const(4)
_FRAME_MAX = const(64)  # records in one frame (a commit of more is written as several)
_FRAME_BYTES = const(256)  # a frame's size, at most (unless one record needs more)
_ENOSPC = const(28)
_RANGE = "<Iqq"  # magic, smallest, largest timestamp (+ crc u32): index file, raw trailer
_RANGE_SIZE = const(24)
_I_MAGIC = const(0x494C5354)  # "TSLI": a bucket's time range
_I_EMPTY = const(0x454C5354)  # "TSLE": a bucket without timestamps
_META = "tslog2"


class OldFormat(ValueError):
    """The log was written by TSLog's first format (a slot per record): ``lib/oldqueue``
    reads it, to move its records into a new log."""


def _crc(buf, n, seed=0):
    return binascii.crc32(memoryview(buf)[:n], seed) & 0xFFFFFFFF


def _seal(buf, n):
    """Put the crc32 of ``buf[:n]`` at ``buf[n:n+4]``."""
    struct.pack_into("<I", buf, n, _crc(buf, n))


def _sealed(buf, n):
    """True if ``buf[n:n+4]`` is the crc32 of ``buf[:n]``."""
    return struct.unpack_from("<I", buf, n)[0] == _crc(buf, n)


def _log(msg):
    print("tslog:", msg)


def _pack_range(rng):
    buf = bytearray(_RANGE_SIZE)
    if rng[0] is None:
        struct.pack_into(_RANGE, buf, 0, _I_EMPTY, 0, 0)
    else:
        struct.pack_into(_RANGE, buf, 0, _I_MAGIC, rng[0], rng[1])
    _seal(buf, 20)
    return buf


def _meta_fields(line):
    """(record size, frame bytes, codec, format) of a meta line; ValueError if not one
    (OldFormat for TSLog's first format)."""
    parts = line.split(" ", 6)
    if parts[0] == "tslog1":
        raise OldFormat("TSLog's first format")
    if parts[0] != _META or len(parts) < 6:
        raise ValueError("not a TSLog meta line")
    return int(parts[1]), int(parts[4]), parts[5], (parts[6:] or [""])[0]


def _check_line(have, want, where):
    """The frame size of the log whose meta line is ``have``; ValueError if its record
    size, codec or format differ from ``want``'s."""
    h = _meta_fields(have)
    w = _meta_fields(want)
    if h[0] != w[0] or h[2:] != w[2:]:
        raise ValueError("%s holds size %d codec %s format %r, not %d %s %r" % (
            (where,) + h[:1] + h[2:] + w[:1] + w[2:]))
    return h[1]


class _Walk:
    """Decodes one bucket's records in order (a reader, a scan): frames from the
    bucket's start, each checked before its records are trusted."""

    def __init__(self, log):
        self.log = log
        self.dec = log.codec.decoder()
        self.buf = bytearray(log.frame_bytes)
        self.rec = bytearray(log.record_size)
        self.h = None
        self.first = 0
        self.at = 0  # seqn of the record step() decodes next
        self._tag = 0
        self._off = 0
        self._left = 0

    def open(self, first):
        self.close()
        st = self.log._st
        self.h = st.open(first)
        if self.h is None:
            return False
        self.first = self.at = first
        self._tag = st.tag(first)
        self._off = st.start
        self._left = 0
        return True

    def step(self):
        """Decode the next record into ``rec``: its length, or None where the bucket's
        valid frames end (for now, or at a bad frame)."""
        if not self._left:
            fr = self.log._read_frame(self.h, self._tag, self._off, self.at, self.buf)
            if fr is None:
                return None
            count, key, p, end, self._off = fr
            if key:
                self.dec.reset()
            elif self.at == self.first:
                return None  # a bucket starts with a key frame
            self.dec.load(self.buf, p, end)
            self._left = count
        try:
            n = self.dec.next(self.rec)
        except ValueError as e:  # a frame the codec cannot decode (another firmware's)
            _log("bucket %d: record %d undecodable: %s" % (self.first, self.at, e))
            self._left = 0
            self._off = 1 << 30  # nothing after it can be decoded either
            return None
        self._left -= 1
        self.at += 1
        return n

    def read(self, seqn):
        """Decode record ``seqn`` of bucket ``first`` (``seqn >= first``) into ``rec``;
        its length, or None if it is not among the bucket's valid frames."""
        if self.h is None or self.at > seqn:
            if not self.open(self.first):
                return None
        n = None
        while self.at <= seqn:
            n = self.step()
            if n is None:
                return None
        return n

    def close(self):
        if self.h is not None:
            self.log._st.close(self.h)
            self.h = None


class TSLog:
    """A log of records (up to ``record_size`` bytes each) in buckets, in a folder or
    on a raw partition.

    ``where``: a folder path, or a block device/partition (``esp32.Partition``).
    ``format``: a ``struct`` format; when given it sets the record size.
    ``record_size``: bytes per record (ignored when ``format`` gives it).
    ``bucket_size``: records per bucket file (on a partition a bucket is one erase
    block, whatever it holds). ``commit_delta``: stores between automatic commits.
    ``nreaders``: 1..4. ``recreate``: start empty. ``reserve_bytes``: free space kept
    for the filesystem's own needs. ``time_of``: function raw record -> int timestamp
    or None, enables ``between()``. ``codec``: how frames are coded (``tscodec``;
    default ``Plain``); a log keeps the codec it was created with (its name is in the
    meta line).
    """

    def __init__(self, folder, format="", record_size=128, bucket_size=1024,
                 commit_delta=16, nreaders=1, recreate=False, reserve_bytes=None,
                 time_of=None, codec=None):
        if not 1 <= nreaders <= _MAX_READERS:
            raise ValueError("nreaders must be 1..4, not %d" % nreaders)
        if format:
            record_size = struct.calcsize(format)
        if not 1 <= record_size <= 65535:
            raise ValueError("record_size must be 1..65535")
        if bucket_size < 1 or commit_delta < 1:
            raise ValueError("bucket_size and commit_delta must be >= 1")
        self.format = format
        self.record_size = record_size
        self.commit_delta = commit_delta
        self.nreaders = nreaders
        self.time_of = time_of
        if codec is None:
            from tslog_plain import Plain  # loaded only for a log without a codec

            codec = Plain(record_size)
        self.codec = codec
        self.reserve_bytes = 32768 if reserve_bytes is None else reserve_bytes
        self.corrupt = 0  # bad frames, unreadable runs, bad cursor copies (counted, skipped)
        self.dropped = 0  # unread records deleted to make room
        self.last_seqn = 0
        self._buckets = []  # type: list
        if isinstance(folder, str):
            from tslog_dir import DirStore  # loaded only for a folder

            self.folder = folder.rstrip("/")
            self._st = DirStore(self, folder, recreate)
        else:
            self.folder = ""
            from tslog_raw import RawStore  # loaded only for a partition

            self._st = RawStore(self, folder, recreate)
        self.bucket_size = bucket_size
        self.frame_records = min(commit_delta, _FRAME_MAX)
        # A frame's size, at most: the log keeps the one it was created with (the meta line
        # holds it), so its readers' buffers always hold its frames.
        one = 4 + self.codec.max_payload(1, record_size) + _CRC
        self.frame_bytes = max(min(4 + self.codec.max_payload(self.frame_records, record_size)
                                   + _CRC, _FRAME_BYTES), one)
        self.frame_bytes = self._st.check_meta(self._meta_line(), recreate)
        # Records stored, not framed yet, ``_stride`` bytes apart: the largest record the
        # codec knows (grown when a longer one comes), at most record_size.
        self._stride = min(record_size, getattr(self.codec, "largest", record_size))
        self._pend = bytearray(self.frame_records * self._stride)
        self._plen = [0] * self.frame_records
        self._npend = 0
        self._since_commit = 0
        self._enc = self.codec.encoder()
        self._fbuf = bytearray(self.frame_bytes)
        self._seedbuf = bytearray(8)
        self._buckets = self._st.buckets()
        self._ranges = {}  # closed buckets' time ranges read so far (bounded cache)
        self._lo = self._hi = None  # the open bucket's range ...
        self._range_known = False  # ... once known (rebuilt lazily after open)
        self._open_tail()
        self._readers = [None] * nreaders  # type: list

    # ---------------------------------------------------------------- set-up
    def _meta_line(self):
        # rstrip: without a format the line would end in a space, which the stripped line
        # read back never equals, so every open would rewrite the meta file.
        return ("%s %d %d %d %d %s %s" % (_META, self.record_size, self.bucket_size,
                                           self.nreaders, self.frame_bytes,
                                           self.codec.name, self.format)).rstrip()

    def _seed(self, tag, seqn):
        b = self._seedbuf
        # masked: a stray file's name may be any number (hostile input, not a crash)
        struct.pack_into("<II", b, 0, tag & 0xFFFFFFFF, seqn & 0xFFFFFFFF)
        return binascii.crc32(b)

    def _read_frame(self, h, tag, off, seqn, buf):
        """The frame at ``off`` of open bucket ``h``, which must start at ``seqn``:
        (count, key, payload start, payload end, next offset) with the frame in ``buf``,
        or None if there is no valid frame there (erased, short, torn, wrong place)."""
        st = self._st
        got = st.read(h, off, buf, 4)
        count = buf[0] & 0x7F
        if got < 2 or count == 0 or count > _FRAME_MAX:
            return None  # 0xFF: erased flash, the end of the frames
        size = p = 0
        while True:  # the payload's length, LEB128 (1 to 3 bytes)
            p += 1
            if p >= got or p > 3:
                return None
            size |= (buf[p] & 0x7F) << (7 * p - 7)
            if not buf[p] & 0x80:
                break
        end = p + 1 + size
        if end + _CRC > len(buf) or st.read(h, off, buf, end + _CRC) != end + _CRC:
            return None
        if struct.unpack_from("<I", buf, end)[0] != _crc(buf, end, self._seed(tag, seqn)):
            return None
        return count, buf[0] & 0x80, p + 1, end, off + end + _CRC

    def _walk_bucket(self, first):
        """(records in valid frames, offset after them, nothing after them) of a bucket."""
        st = self._st
        h = st.open(first)
        if h is None:
            return 0, st.start, False
        tag = st.tag(first)
        off = st.start
        n = 0
        try:
            while True:
                fr = self._read_frame(h, tag, off, first + n, self._fbuf)
                if fr is None or (n == 0 and not fr[1]):
                    break
                n += fr[0]
                off = fr[4]
            return n, off, st.clean_after(h, off)
        finally:
            st.close(h)

    def _open_tail(self):
        """Find the committed end: the last valid frame of the newest bucket."""
        self._full = False
        self._keyed = False  # the next frame is a key frame
        bks = self._buckets
        while bks:
            first = bks[-1]
            n, end, clean = self._walk_bucket(first)
            if n == 0 and not clean and len(bks) > 1:
                prev = self._walk_bucket(bks[-2])[0]
                if bks[-2] + prev != first:  # garbage, not where the log ends: a stray
                    self.corrupt += 1
                    _log("bucket %d: no valid frame, not after seqn %d: removed" % (
                        first, bks[-2] + prev - 1))
                    bks.pop()
                    self._st.remove(first)
                    continue
            self._first = first
            self._count = n
            self._used = end
            self.last_seqn = first + n - 1
            if not clean:
                self.corrupt += 1
                _log("bucket %d: torn tail after seqn %d, new bucket" % (first, self.last_seqn))
                self._full = True  # never append after a bad tail
            break
        else:
            self._first = None
            self._count = 0
            self._used = 0
            self.last_seqn = 0
        self.committed_seqn = self.last_seqn

    # ---------------------------------------------------------------- writing
    def store(self, *values):
        """Pack ``values`` with ``format`` and append them; return the new seqn."""
        from tslog_plain import pack  # (a format log uses that module's codec anyway)

        return self.store_record(pack(self.format, values))

    def store_record(self, data):
        """Append raw bytes (at most ``record_size``); return the new seqn. The record is
        kept in RAM until the next commit (at most ``commit_delta`` stores away)."""
        n = len(data)
        if n > self.record_size:
            raise ValueError("record of %d bytes, record_size is %d" % (n, self.record_size))
        self.codec.check(data)
        if n > self._stride:
            if self._npend:
                self._flush()
            self._stride = n
            self._pend = bytearray(self.frame_records * n)
        i = self._npend
        off = i * self._stride
        self._pend[off:off + n] = data
        self._plen[i] = n
        self._npend = i + 1
        self.last_seqn += 1
        self._since_commit += 1
        if self._since_commit >= self.commit_delta:
            self.commit()
        elif self._npend >= self.frame_records:
            self._flush()
        return self.last_seqn

    def _frame(self, i, k, seqn):
        """Code pending records ``i .. i+k-1`` (seqn ``seqn`` on) as a frame in ``_fbuf``:
        (start, size), or None if they do not fit in ``frame_bytes``."""
        key = self._count == 0 or not self._keyed
        if key:
            self._enc.reset()
        buf = self._fbuf
        try:
            end = self._enc.encode(self._pend, self._plen, i, k, self._stride, buf, 4)
        except IndexError:  # past the buffer: the coder's state is spoilt, a key frame redoes it
            self._keyed = False
            return None
        if end + _CRC > len(buf):
            self._keyed = False
            return None
        size = end - 4
        start = 2 if size < 128 else 1 if size < 16384 else 0
        for j in range(start + 1, 4):  # the length, LEB128: low 7 bits first
            buf[j] = (size >> (7 * (j - start - 1))) & 0x7F | (0x80 if j < 3 else 0)
        buf[start] = k | (0x80 if key else 0)
        struct.pack_into("<I", buf, end, _crc(memoryview(buf)[start:], end - start,
                                                self._seed(self._st.tag(self._first), seqn)))
        return start, end + _CRC - start

    def _need_bucket(self):
        return (self._first is None or self._full
                or (self._st.reclaims and self._count >= self.bucket_size))

    def _flush(self):
        """Write the pending records as frames (a new bucket when the open one is full)."""
        n = self._npend
        base = self.last_seqn - n + 1
        i = 0
        while i < n:
            if self._need_bucket():
                self._new_bucket(base + i)
            k = n - i
            if self._st.reclaims and k > self.bucket_size - self._count:
                k = self.bucket_size - self._count
            fr = self._frame(i, k, base + i)
            while fr is None or fr[1] > self._st.room(self._used):
                if self._count:  # the open bucket is full: the frame starts the next one
                    self._new_bucket(base + i)
                elif k > 1:  # it does not fit an empty bucket or a frame: fewer records
                    k = (k + 1) // 2
                else:
                    raise ValueError("a record does not fit in a bucket")
                fr = self._frame(i, k, base + i)
            try:
                self._st.append(self._first, self._used, self._fbuf, fr[0], fr[1])
            except OSError as e:
                if e.args[0] != _ENOSPC:
                    raise
                # The failed write may be torn: close the bucket, make room, go on in a new one.
                self._st.close_write()
                self._full = True
                self._drop_oldest()
                continue
            self._used += fr[1]
            self._count += k
            self._keyed = True
            if self.time_of is not None and self._range_known:
                self._frame_range(i, k)
            i += k
        self._npend = 0

    def _frame_range(self, i, k):
        mv = memoryview(self._pend)
        rs = self._stride
        time_of = self.time_of
        for j in range(i, i + k):
            t = time_of(mv[j * rs:j * rs + self._plen[j]]) if time_of else None
            if t is not None:
                if self._lo is None or t < self._lo:
                    self._lo = t
                if self._hi is None or t > self._hi:
                    self._hi = t

    def _new_bucket(self, first):
        st = self._st
        if self.time_of and self._first is not None and self._count:
            st.save_range(self._first, _pack_range(self._open_range()))
        st.close_write()
        victim = st.victim()  # raw: the ring comes back to the oldest bucket
        while victim is not None and victim in self._buckets:
            self._drop_oldest()
        if self._buckets and self._buckets[-1] == first:
            self._buckets.pop()  # an empty bucket with a torn tail: superseded
        st.new(first)
        self._first = first
        self._count = 0
        self._used = st.start
        self._full = False
        self._buckets.append(first)
        self._lo = self._hi = None
        self._range_known = True
        if st.reclaims:
            self._delete_consumed()
            while st.free_bytes() < self.reserve_bytes and len(self._buckets) > 1:
                self._drop_oldest()

    def commit(self):
        """Make every record stored so far survive a power cut; return the last seqn."""
        if self._npend:
            self._flush()
        if self._since_commit:
            self._st.sync()
        self._since_commit = 0
        self.committed_seqn = self.last_seqn
        return self.last_seqn

    def skip_to(self, seqn):
        """Commit; the next record stored gets ``seqn`` (> ``last_seqn``), in a new
        bucket (created now, so the jump survives a reboot). For moving records between
        logs under their own sequence numbers."""
        if seqn <= self.last_seqn:
            raise ValueError("seqn %d is not after %d" % (seqn, self.last_seqn))
        self.commit()
        if seqn > self.last_seqn + 1:
            self.last_seqn = self.committed_seqn = seqn - 1
            self._new_bucket(seqn)

    # ---------------------------------------------------------------- space
    def free(self):
        """About how many more records fit before the oldest unread bucket must be dropped
        (from the flash each record took so far)."""
        return self._st.free_records()

    def buckets(self):
        """How many buckets the log holds (no flash access)."""
        return len(self._buckets)

    def held(self):
        """Records on flash (committed or not), from the oldest bucket's first seqn."""
        return self.last_seqn - self._buckets[0] + 1 if self._buckets else 0

    def usage(self):
        """(records held, flash bytes they take with every overhead, flash bytes the log
        may use): e.g. bytes per record = used / held, days held at ``s`` s a sample =
        total / (used / held) * s / 86400. In a folder "used" counts the log's files and
        "total" is the whole filesystem (code and settings share it)."""
        used, total = self._st.used_bytes()
        return self.held(), used, total

    def _drop_oldest(self):
        if len(self._buckets) < 2:
            raise OSError(_ENOSPC)
        first = self._buckets.pop(0)
        upto = self._buckets[0] - 1
        lost = upto - max(first - 1, self._min_committed_cursor())
        if lost > 0:
            self.dropped += lost
            _log("flash full: dropped %d unread records (%d..%d)" % (lost, first, upto))
        self._remove_bucket(first)

    def _min_committed_cursor(self):
        low = self.last_seqn
        for n in range(self.nreaders):
            low = min(low, self._load_cursor(n)[1])
        return low

    def _delete_consumed(self):
        low = self._min_committed_cursor()
        while len(self._buckets) > 1 and self._buckets[1] - 1 <= low:
            self._remove_bucket(self._buckets.pop(0))

    def _remove_bucket(self, first):
        for r in self._readers:
            if r and r.first == first:
                r.close()
        self._ranges.pop(first, None)
        self._st.remove(first)

    def erase(self):
        """Forget every record: readers move to the end, the next store starts a new
        bucket after the last seqn (sequence numbers never repeat), older buckets go."""
        last = self.commit()
        for n in range(self.nreaders):
            r = self.reader(n)
            r.seek(last)
            r.commit()
            r.close()
        if not (self._buckets and self._buckets[-1] == last + 1):
            self._new_bucket(last + 1)
        while len(self._buckets) > 1:
            self._drop_oldest()

    # ---------------------------------------------------------------- cursors
    def _load_cursor(self, n):
        """(generation, seqn) of reader n's newest valid committed cursor."""
        return self._st.load_cursor(n)

    def _save_cursor(self, n, gen, seqn):
        self._st.save_cursor(n, gen, seqn)

    # ---------------------------------------------------------------- reading
    def reader(self, n):
        """The ``TSReader`` number ``n`` (0..nreaders-1), resuming after its committed cursor."""
        if not 0 <= n < self.nreaders:
            raise ValueError("reader %d out of range 0..%d" % (n, self.nreaders - 1))
        if self._readers[n] is None:
            self._readers[n] = TSReader(self, n)
        return self._readers[n]

    def _locate(self, seqn):
        """(first seqn of the bucket holding ``seqn``, first seqn of the next bucket or
        None); (oldest bucket, -1) below the oldest bucket; (None, None) if none."""
        bks = self._buckets
        if not bks:
            return None, None
        if seqn < bks[0]:  # dropped while the flash was full
            return bks[0], -1
        lo, hi = 0, len(bks) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if bks[mid] <= seqn:
                lo = mid
            else:
                hi = mid - 1
        return bks[lo], bks[lo + 1] if lo + 1 < len(bks) else None

    def _next(self, w, seqn, end):
        """``(s, n)``: the first readable record ``s >= seqn`` (``<= end``), decoded into
        ``w.rec`` (``n`` its length); or ``(s, None)`` when there is none up to ``end``,
        ``s`` then the first seqn not examined. Dropped records and unreadable runs are
        skipped (the latter a bucket at a time, counted and logged)."""
        retried = False
        while seqn <= end:
            first, nxt = self._locate(seqn)
            if first is None:
                break
            if nxt == -1:  # dropped while the flash was full: the oldest record kept
                seqn = first
                continue
            if w.first != first:
                w.close()
                w.first = first
            n = w.read(seqn)
            if n is not None:
                return seqn, n
            if not retried:  # data synced after the handle was opened: look again
                retried = True
                w.close()
                continue
            retried = False
            stop = min(nxt - 1 if nxt is not None else self.committed_seqn, end)
            self.corrupt += 1
            _log("seqn %d..%d unreadable in bucket %d: skipped" % (seqn, stop, first))
            w.close()
            seqn = stop + 1
        return seqn, None

    def records(self, start=1, end=None):
        """Generator of committed (seqn, bytes) from seqn ``start`` on (to ``end``)."""
        w = _Walk(self)
        s = start
        try:
            while True:
                stop = self.committed_seqn if end is None else min(end, self.committed_seqn)
                s, n = self._next(w, s, stop)
                if n is None:
                    return
                yield s, bytes(w.rec[:n])
                s += 1
        finally:
            w.close()

    def _scan_range(self, first, end):
        lo = hi = None
        time_of = self.time_of
        if time_of is None:
            return lo, hi
        w = _Walk(self)
        w.first = first
        s = first
        try:
            while s <= end:
                n = w.read(s)
                if n is None:
                    break
                t = time_of(memoryview(w.rec)[:n])
                if t is not None:
                    if lo is None or t < lo:
                        lo = t
                    if hi is None or t > hi:
                        hi = t
                s += 1
        finally:
            w.close()
        return lo, hi

    def _open_range(self):
        if not self._range_known:
            self._lo, self._hi = self._scan_range(self._first, self.last_seqn)
            self._range_known = True
        return self._lo, self._hi

    def between(self, t0, t1):
        """Generator of committed (seqn, bytes) with ``t0 <= time_of(record) < t1``: reads
        only the buckets whose time range overlaps (``tslog_query``, loaded when used)."""
        import tslog_query

        return tslog_query.between(self, t0, t1)

    def tail(self, n):
        """Generator of the last ``n`` committed records as (seqn, bytes), oldest first;
        reads only the last bucket(s)."""
        import tslog_query

        return tslog_query.tail(self, n)

    def stats(self):
        """(last_seqn, bucket_index, readers_lag): lag = last seqn - smallest reader cursor."""
        low = self.last_seqn
        for n in range(self.nreaders):
            r = self._readers[n]
            low = min(low, r.seqn if r else self._load_cursor(n)[1])
        first = self._first if self._first is not None else 1
        return self.last_seqn, (first - 1) // self.bucket_size, self.last_seqn - low

    def close(self):
        """Commit and close the log and its readers."""
        self.commit()
        self._st.close_write()
        for r in self._readers:
            if r:
                r.close()


class TSReader(_Walk):
    """Reads committed records in order; ``seqn`` is the last returned record's seqn."""

    def __init__(self, log, n):
        _Walk.__init__(self, log)
        self._n = n
        self._gen, self.seqn = log._load_cursor(n)
        self._saved = self.seqn

    def next_record(self):
        """The next committed record as bytes, or None when none is left."""
        log = self.log
        s, n = log._next(self, self.seqn + 1, log.committed_seqn)
        if n is None:
            if s - 1 > self.seqn:  # dropped or unreadable records were skipped
                self.seqn = s - 1
            return None
        rec = bytes(memoryview(self.rec)[:n])  # before seqn moves: a MemoryError here
        self.seqn = s  # leaves the record to be read again
        return rec

    def seek(self, seqn):
        """Read on from the record after ``seqn``: back, again what was read but not used;
        forward, past records. ``commit()`` saves it as the cursor."""
        self.seqn = seqn

    def commit(self):
        """Persist the cursor: after a reboot this reader resumes after ``seqn``."""
        if self.seqn == self._saved:
            return  # unchanged: spare the flash
        self._gen += 1
        self.log._save_cursor(self._n, self._gen, self.seqn)
        self._saved = self.seqn
