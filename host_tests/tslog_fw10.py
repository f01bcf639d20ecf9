"""Firmware 1.0's TSLog (the first format: one slot per record), kept as it was.

Not part of the firmware: tests use it to write the queues that an update must move into
the current format (host_tests/test_oldqueue.py), and bench/bench_tslog.py measures it
beside the current one. The two files of firmware 1.0 (lib/tslog.py and lib/tslog_raw.py)
are joined here; the code is unchanged but for the import of the raw backend.
"""

import binascii
import os
import struct

from micropython import const

_HDR = const(6)  # seqn u32 + len u16
_CRC = const(4)
_MAX_READERS = const(4)
_ENOSPC = const(28)
_CURSOR = "<III"
_RANGE = "<Iqq"  # magic, smallest, largest timestamp (+ crc u32): index file, raw trailer
_RANGE_SIZE = const(24)
_I_MAGIC = const(0x494C5354)  # "TSLI": a bucket's time range
_I_EMPTY = const(0x454C5354)  # "TSLE": a bucket without timestamps


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _crc(buf, n):
    return binascii.crc32(memoryview(buf)[:n]) & 0xFFFFFFFF


def _seal(buf, n):
    """Put the crc32 of ``buf[:n]`` at ``buf[n:n+4]``."""
    struct.pack_into("<I", buf, n, _crc(buf, n))


def _sealed(buf, n):
    """True if ``buf[n:n+4]`` is the crc32 of ``buf[:n]``."""
    return struct.unpack_from("<I", buf, n)[0] == _crc(buf, n)


def _fsync(f):
    f.flush()
    fileno = getattr(f, "fileno", None)
    fsync = getattr(os, "fsync", None)
    if fileno and fsync:  # CPython: make the flush reach the disk
        fsync(fileno())


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


def _unpack_range(buf):
    """(lo, hi), (None, None) for a bucket without timestamps, or None if invalid."""
    if len(buf) < _RANGE_SIZE or not _sealed(buf, 20):
        return None
    magic, lo, hi = struct.unpack_from(_RANGE, buf, 0)
    if magic == _I_MAGIC:
        return lo, hi
    return (None, None) if magic == _I_EMPTY else None


def _check_line(have, want, where):
    """Compare meta lines; ValueError if the record size or format differ."""
    parts = have.split(" ", 4)
    wparts = want.split(" ", 4)
    hfmt = (parts[4:] or [""])[0]
    wfmt = (wparts[4:] or [""])[0]
    if parts[1] != wparts[1] or hfmt != wfmt:
        raise ValueError("%s holds records of size %s format %r, not size %s format %r"
                         % (where, parts[1], hfmt, wparts[1], wfmt))


class _Dir:
    """Buckets, cursors and time ranges as files in a folder.

    ``meta``; ``b<first seqn, 10 digits>`` (slots back to back); ``i<first>``
    (the closed bucket's time range); ``r<n>a``/``r<n>b`` (cursor copies).
    """

    reclaims = True  # consumed buckets are deleted; space is watched with statvfs

    def __init__(self, log, folder, recreate):
        self.log = log
        self.folder = folder.rstrip("/")
        self.stride = log.slot_size
        self._file = None
        if recreate:
            self._remove_all()
        self._mkdirs()

    def path(self, name):
        return self.folder + "/" + name

    def _names(self):
        """File names as bytes: a damaged FAT directory may hold names that are not
        valid UTF-8, which must not make the listing raise."""
        return os.listdir(self.folder.encode())

    def _mkdirs(self):
        cur = "/" if self.folder.startswith("/") else ""
        for part in self.folder.split("/"):
            if part:
                cur = cur + part
                if not _exists(cur):
                    os.mkdir(cur)
                cur += "/"

    def _remove_all(self):
        if _exists(self.folder):
            for name in self._names():
                os.remove(self.folder.encode() + b"/" + name)

    def check_meta(self, want, recreate):
        try:
            with open(self.path("meta")) as f:
                have = f.read().strip()
        except (OSError, ValueError):  # ValueError: UnicodeError on a damaged file
            have = None
        if have == want:
            return
        if have is not None and have.startswith("tslog1 ") and len(have.split(" ")) >= 4:
            _check_line(have, want, self.folder)
        elif have is not None:
            self.log.corrupt += 1
            _log("meta file unreadable, rewritten")
        tmp = self.path("meta.tmp")
        with open(tmp, "w") as f:
            f.write(want)
        if have is not None and _exists(self.path("meta")):
            os.remove(self.path("meta"))  # FAT's rename does not replace
        os.rename(tmp, self.path("meta"))

    def buckets(self):
        out = []
        index = []
        for name in self._names():
            if len(name) == 11 and name[1:].isdigit():
                if name[0] == 98:  # b"b%010d": a bucket
                    out.append(int(name[1:]))
                elif name[0] == 105:  # b"i%010d": its time range
                    index.append(int(name[1:]))
        out.sort()
        have = set(out)
        for first in index:  # left by a cut between removing a bucket and its index
            if first not in have:
                os.remove(self.path("i%010d" % first))
        return out

    def _name(self, first):
        return self.path("b%010d" % first)

    def tail_count(self, first):
        """(valid slots from the start, clean): clean when nothing follows them."""
        path = self._name(first)
        size = os.stat(path)[6]
        n = size // self.stride
        log = self.log
        with open(path, "rb") as f:
            while n > 0 and not log._read_slot(f, n - 1, first + n - 1, log._slot):
                n -= 1
                log.corrupt += 1
        return n, size == n * self.stride

    def open(self, first):
        try:
            return open(self._name(first), "rb")
        except OSError:
            return None

    def read(self, f, index, buf):
        f.seek(index * self.stride)
        return f.readinto(buf) == len(buf)

    def close(self, f):
        f.close()

    def append(self, first, index, slot):
        if self._file is None:
            self._file = open(self._name(first), "ab")
        self._file.write(slot)

    def sync(self):
        if self._file is not None:
            _fsync(self._file)

    def close_write(self):
        if self._file is not None:
            self._file.close()
            self._file = None

    def victim(self):
        return None  # space is made by _make_room() after the new bucket exists

    def new(self, first):
        with open(self._name(first), "wb"):
            pass

    def remove(self, first):
        os.remove(self._name(first))
        try:
            os.remove(self.path("i%010d" % first))
        except OSError:
            pass

    def free_bytes(self):
        try:
            st = os.statvfs(self.folder)
        except (OSError, AttributeError):
            return 1 << 30
        return st[0] * st[4]

    def free_records(self):
        log = self.log
        return max(0, self.free_bytes() - log.reserve_bytes) // log.slot_size

    def load_cursor(self, n):
        """(generation, seqn) of reader n's newest valid cursor copy."""
        best = (0, 0)
        buf = bytearray(12)
        log = self.log
        for tag in "ab":
            try:
                with open(self.path("r%d%s" % (n, tag)), "rb") as f:
                    got = f.readinto(buf)
            except OSError:
                continue
            gen, seqn, _ = struct.unpack(_CURSOR, buf)
            if got != 12 or not _sealed(buf, 8) or seqn > log.last_seqn:
                log.corrupt += 1
                continue
            if gen > best[0]:
                best = (gen, seqn)
        return best

    def save_cursor(self, n, gen, seqn):
        buf = bytearray(12)
        struct.pack_into("<II", buf, 0, gen, seqn)
        _seal(buf, 8)
        with open(self.path("r%d%s" % (n, "ab"[gen & 1])), "wb") as f:
            f.write(buf)
            _fsync(f)

    def save_range(self, first, buf):
        # A plain small file: a cut leaves it missing or failing its CRC, and the
        # range is then rebuilt from the bucket's slots.
        with open(self.path("i%010d" % first), "wb") as f:
            f.write(buf)
            _fsync(f)

    def load_range(self, first):
        buf = bytearray(_RANGE_SIZE)
        try:
            with open(self.path("i%010d" % first), "rb") as f:
                if f.readinto(buf) != _RANGE_SIZE:
                    return None
        except OSError:
            return None
        return buf


class TSLog:
    """A log of fixed-size records in buckets, in a folder or on a raw partition.

    ``where``: a folder path, or a block device/partition (``esp32.Partition``).
    ``format``: a ``struct`` format; when given it sets the record size.
    ``record_size``: bytes per record (ignored when ``format`` gives it).
    ``bucket_size``: records per bucket file (on a partition: what one erase block
    holds). ``commit_delta``: stores between automatic commits. ``nreaders``: 1..4.
    ``recreate``: start empty. ``reserve_bytes``: free space kept for the
    filesystem's own needs. ``time_of``: function raw record -> int timestamp or
    None, enables ``between()``.
    """

    def __init__(self, folder, format="", record_size=128, bucket_size=1024,
                 commit_delta=16, nreaders=1, recreate=False, reserve_bytes=None,
                 time_of=None):
        if not 1 <= nreaders <= _MAX_READERS:
            raise ValueError("nreaders must be 1..4, not %d" % nreaders)
        if format:
            record_size = struct.calcsize(format)
        if not 1 <= record_size <= 65535:
            raise ValueError("record_size must be 1..65535")
        if bucket_size < 1 or commit_delta < 1:
            raise ValueError("bucket_size and commit_delta must be >= 1")
        self.format = format
        self._nvalues = _nvalues(format)
        self.record_size = record_size
        self.commit_delta = commit_delta
        self.nreaders = nreaders
        self.time_of = time_of
        self.slot_size = _HDR + record_size + _CRC
        self.reserve_bytes = (reserve_bytes if reserve_bytes is not None
                              else 2 * bucket_size * self.slot_size + 16384)
        self.corrupt = 0  # bad slots or cursor copies found (counted, skipped)
        self.dropped = 0  # unread records deleted to make room
        self._slot = bytearray(self.slot_size)
        self._since_commit = 0
        self.last_seqn = 0
        self._buckets = []  # type: list
        if isinstance(folder, str):
            self.folder = folder.rstrip("/")
            self._st = _Dir(self, folder, recreate)
        else:
            self.folder = ""
            self._st = RawStore(self, folder, recreate)
            bucket_size = self._st.cap
        self.bucket_size = bucket_size
        self._st.check_meta(self._meta_line(), recreate)
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
        return ("tslog1 %d %d %d %s" % (self.record_size, self.bucket_size, self.nreaders,
                                        self.format)).rstrip()

    def _read_slot(self, h, index, seqn, buf):
        """Read slot ``index`` of open bucket ``h`` into ``buf``; True if valid, ``seqn``."""
        if not self._st.read(h, index, buf):
            return False
        s, n = struct.unpack_from("<IH", buf, 0)
        if s != seqn or n > self.record_size:
            return False
        return _sealed(buf, self.slot_size - _CRC)

    def _open_tail(self):
        """Find the committed end: the last valid slot of the newest bucket."""
        if not self._buckets:
            self._first = 1
            self.last_seqn = 0
            self._count = self.bucket_size  # the first store creates bucket 1
        else:
            self._first = self._buckets[-1]
            n, clean = self._st.tail_count(self._first)
            self._count = n
            self.last_seqn = self._first + n - 1
            if not clean:
                _log("bucket %d: torn tail after seqn %d, new bucket" % (self._first,
                                                                        self.last_seqn))
                self._count = self.bucket_size  # never append after a bad tail
        self.committed_seqn = self.last_seqn

    # ---------------------------------------------------------------- writing
    def store(self, *values):
        """Pack ``values`` with ``format`` and append them; return the new seqn."""
        if not self.format:
            raise ValueError("store() needs a format; use store_record()")
        if len(values) != self._nvalues:
            raise ValueError("format %r takes %d values, got %d" % (
                self.format, self._nvalues, len(values)))
        # No "except ... as e" here: in a function taking *args it made every call
        # allocate and run ~100x slower on the unix port, even when nothing is raised.
        try:
            data = struct.pack(self.format, *values)
        except Exception:
            data = None
        if data is None:
            raise ValueError("values %r do not fit format %r" % (values, self.format))
        return self.store_record(data)

    def store_record(self, data):
        """Append raw bytes (at most ``record_size``); return the new seqn."""
        n = len(data)
        if n > self.record_size:
            raise ValueError("record of %d bytes, record_size is %d" % (n, self.record_size))
        t = self.time_of(data) if self.time_of else None
        seqn = self.last_seqn + 1
        slot = self._slot
        struct.pack_into("<IH", slot, 0, seqn, n)
        slot[_HDR:_HDR + n] = data
        for i in range(_HDR + n, self.slot_size - _CRC):
            slot[i] = 0
        _seal(slot, self.slot_size - _CRC)
        try:
            self._append(seqn)
        except OSError as e:
            if e.args[0] != _ENOSPC:
                raise
            # The failed write may be torn: close the bucket, make room, start a new one.
            self._st.close_write()
            self._count = self.bucket_size
            self._drop_oldest()
            self._append(seqn)
        if t is not None and self._range_known:
            if self._lo is None or t < self._lo:
                self._lo = t
            if self._hi is None or t > self._hi:
                self._hi = t
        self.last_seqn = seqn
        self._since_commit += 1
        if self._since_commit >= self.commit_delta:
            self.commit()
        return seqn

    def _append(self, seqn):
        if self._count >= self.bucket_size:
            self._new_bucket(seqn)
        self._st.append(self._first, self._count, self._slot)
        self._count += 1

    def _new_bucket(self, first):
        self.commit()
        st = self._st
        if self.time_of and self._buckets and self.last_seqn >= self._first:
            st.save_range(self._first, _pack_range(self._open_range()))
        st.close_write()
        victim = st.victim()  # raw: the ring comes back to the oldest bucket
        while victim is not None and victim in self._buckets:
            self._drop_oldest()
        st.new(first)
        self._first = first
        self._count = 0
        self._buckets.append(first)
        self._lo = self._hi = None
        self._range_known = True
        if st.reclaims:
            self._delete_consumed()
            while st.free_bytes() < self.reserve_bytes and len(self._buckets) > 1:
                self._drop_oldest()

    def commit(self):
        """Make every record stored so far survive a power cut; return the last seqn."""
        if self._since_commit:
            self._st.sync()
        self._since_commit = 0
        self.committed_seqn = self.last_seqn
        return self.last_seqn

    # ---------------------------------------------------------------- space
    def free(self):
        """How many more records fit before the oldest unread bucket must be dropped."""
        return self._st.free_records()

    def buckets(self):
        """How many buckets the log holds (no flash access)."""
        return len(self._buckets)

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
            if r and r._hfirst == first:
                r._close()
        self._ranges.pop(first, None)
        self._st.remove(first)

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
        """(bucket first seqn, slot index) of ``seqn`` (index -1: below the oldest bucket)."""
        bks = self._buckets
        if not bks:
            return seqn, -1
        if seqn < bks[0]:  # dropped while the flash was full
            return bks[0], -1
        lo, hi = 0, len(bks) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if bks[mid] <= seqn:
                lo = mid
            else:
                hi = mid - 1
        return bks[lo], seqn - bks[lo]

    def _records(self, start, end):
        """Generator of (seqn, bytes) for the valid records ``start..end``."""
        h = None
        hfirst = 0
        buf = bytearray(self.slot_size)
        st = self._st
        try:
            s = start
            while s <= end:
                first, index = self._locate(s)
                if index < 0:
                    if first <= s:
                        return
                    s = first
                    continue
                if h is None or hfirst != first:
                    if h is not None:
                        st.close(h)
                    h = st.open(first)
                    hfirst = first
                    if h is None:  # deleted meanwhile (consumed or dropped): go on after it
                        later = [b for b in self._buckets if b > first]
                        if not later:
                            return
                        s = later[0]
                        continue
                if index < self.bucket_size and self._read_slot(h, index, s, buf):
                    n = struct.unpack_from("<H", buf, 4)[0]
                    yield s, bytes(buf[_HDR:_HDR + n])
                s += 1
        finally:
            if h is not None:
                st.close(h)

    def tail(self, n):
        """Generator of the last ``n`` committed records as (seqn, bytes), oldest first.

        Reads only the last bucket(s)."""
        end = self.committed_seqn
        start = end - n + 1
        if self._buckets and start < self._buckets[0]:
            start = self._buckets[0]
        return self._records(max(start, 1), end)

    def _scan_range(self, first, end):
        lo = hi = None
        time_of = self.time_of
        if time_of is None:
            return lo, hi
        for _, rec in self._records(first, end):
            t = time_of(rec)
            if t is not None:
                if lo is None or t < lo:
                    lo = t
                if hi is None or t > hi:
                    hi = t
        return lo, hi

    def _open_range(self):
        if not self._range_known:
            self._lo, self._hi = self._scan_range(self._first, self.last_seqn)
            self._range_known = True
        return self._lo, self._hi

    def _range(self, bks, i):
        """(smallest, largest) timestamp in bucket ``bks[i]``; (None, None) if none."""
        first = bks[i]
        if first == self._first:
            return self._open_range()
        rng = self._ranges.get(first)
        if rng is None:
            rng = _unpack_range(self._st.load_range(first) or b"")
            if rng is None:  # never written (cut, or no time_of then): rebuild
                end = bks[i + 1] - 1 if i + 1 < len(bks) else self.last_seqn
                rng = self._scan_range(first, end)
            if len(self._ranges) >= 32:
                self._ranges = {}
            self._ranges[first] = rng
        return rng

    def _upper(self, bks, i):
        """Largest timestamp up to bucket i (None: none yet), for the binary search."""
        while i >= 0:
            hi = self._range(bks, i)[1]
            if hi is not None:
                return hi
            i -= 1
        return None

    def between(self, t0, t1):
        """Generator of committed (seqn, bytes) with ``t0 <= time_of(record) < t1``.

        Binary-searches the buckets' time ranges (assumes timestamps mostly grow:
        a bucket starting at or after ``t1`` ends the search); records whose
        ``time_of`` is None are skipped."""
        if self.time_of is None:
            raise ValueError("between() needs a log opened with time_of")
        bks = list(self._buckets)
        lo, hi = 0, len(bks)
        while lo < hi:  # the first bucket whose largest timestamp so far is >= t0
            mid = (lo + hi) // 2
            top = self._upper(bks, mid)
            if top is None or top < t0:
                lo = mid + 1
            else:
                hi = mid
        return self._between(bks, lo, t0, t1)

    def _between(self, bks, i, t0, t1):
        time_of = self.time_of
        while time_of is not None and i < len(bks):
            rng = self._range(bks, i)
            if rng[0] is not None:
                if rng[0] >= t1:
                    return
                if rng[1] >= t0:
                    end = bks[i + 1] - 1 if i + 1 < len(bks) else self.committed_seqn
                    for s, rec in self._records(bks[i], min(end, self.committed_seqn)):
                        t = time_of(rec)
                        if t is not None and t0 <= t < t1:
                            yield s, rec
            i += 1

    def stats(self):
        """(last_seqn, bucket_index, readers_lag): lag = last seqn - smallest reader cursor."""
        low = self.last_seqn
        for n in range(self.nreaders):
            r = self._readers[n]
            low = min(low, r.seqn if r else self._load_cursor(n)[1])
        return self.last_seqn, (self._first - 1) // self.bucket_size, self.last_seqn - low

    def close(self):
        """Commit and close the log and its readers."""
        self.commit()
        self._st.close_write()
        for r in self._readers:
            if r:
                r.close()


class TSReader:
    """Reads committed records in order; ``seqn`` is the last returned record's seqn."""

    def __init__(self, log, n):
        self._log = log
        self._n = n
        self._gen, self.seqn = log._load_cursor(n)
        self._saved = self.seqn
        self._h = None
        self._hfirst = 0
        self._buf = bytearray(log.slot_size)

    def next_record(self):
        """The next committed record as bytes, or None when none is left."""
        log = self._log
        reopened = False
        while self.seqn < log.committed_seqn:
            want = self.seqn + 1
            first, index = log._locate(want)
            if index < 0:  # dropped while full: skip to the oldest record kept
                if first <= want:
                    return None
                self.seqn = first - 1
                continue
            if self._h is None or self._hfirst != first:
                self._close()
                self._h = log._st.open(first)
                if self._h is None:
                    return None
                self._hfirst = first
            ok = index < log.bucket_size and log._read_slot(self._h, index, want, self._buf)
            if not ok and not reopened:
                # The data may have been synced after this handle was opened: look again.
                reopened = True
                self._close()
                continue
            reopened = False
            self.seqn = want
            if not ok:
                log.corrupt += 1
                _log("reader %d: bad slot for seqn %d skipped" % (self._n, want))
                continue
            n = struct.unpack_from("<H", self._buf, 4)[0]
            return bytes(self._buf[_HDR:_HDR + n])
        return None

    def next(self):
        """The next committed record unpacked with the log's format, or None."""
        rec = self.next_record()
        if rec is None:
            return None
        return struct.unpack(self._log.format, rec)

    def commit(self):
        """Persist the cursor: after a reboot this reader resumes after ``seqn``."""
        if self.seqn == self._saved:
            return  # unchanged: spare the flash
        self._gen += 1
        self._log._save_cursor(self._n, self._gen, self.seqn)
        self._saved = self.seqn

    def _close(self):
        if self._h is not None:
            self._log._st.close(self._h)
            self._h = None

    def close(self):
        self._close()


# Raw partition layout (see lib/tslog.md).
_ALIGN = const(32)  # slots and entries start on 32-byte boundaries (program unit)
_M_MAGIC = const(0x4D4C5354)  # "TSLM": meta/cursor block header
_B_MAGIC = const(0x424C5354)  # "TSLB": data block header
_C_MAGIC = const(0x52000000)  # cursor entry tag | reader
_META_HDR = "<III48s"  # magic, generation, epoch, meta line (+ crc u32): 64 bytes
_META_SIZE = const(64)
_BLK_HDR = "<IIII"  # magic, epoch, first seqn, serial (+ crc u32): 20 bytes
_ENTRY = "<III"  # tag | reader, generation, seqn (+ crc u32): 16 bytes
_FF = b"\xff" * _ALIGN
_FF16 = b"\xff" * 16


class RawStore:
    """Buckets in the erase blocks of a raw partition, used as a ring.

    Blocks 0..k-1: a ring of meta header + cursor entries. Blocks k..: a data
    header, ``cap`` slots on 32-byte boundaries, a time-range trailer.
    """

    reclaims = False  # blocks are erased only when the ring comes back to them

    def __init__(self, log, dev, recreate):
        self.log = log
        self.dev = dev
        self.bs = dev.ioctl(5, 0)
        self.nblocks = dev.ioctl(4, 0)
        self.stride = (log.slot_size + _ALIGN - 1) // _ALIGN * _ALIGN
        per = self.bs // self.stride
        if per < 3 or self.nblocks < max(2, self.nblocks // 20) + 2 or self.bs < 2 * _META_SIZE:
            raise ValueError("partition too small for records of %d bytes" % log.record_size)
        self.cap = per - 2  # slot 0 is the header, the last slot the trailer
        # Cursor blocks: a ring of about 1/20 of the partition, so that they wear
        # no faster than the data blocks when readers commit every ~5 records.
        self.k = max(2, self.nblocks // 20)
        self.nentries = (self.bs - _META_SIZE) // 16
        self._buf = bytearray(_META_SIZE)
        self._b32 = bytearray(_ALIGN)
        self._b16 = bytearray(16)
        self.blk = {}  # first seqn -> block
        self.cursors = {}  # reader -> (generation, seqn)
        self.epoch = 0
        self.serial = 0  # of the newest data block
        self.cur = 0  # meta block in use
        self.gen = 0
        self.wp = 0  # next free entry in it
        self.recreate = recreate

    # -- low level
    def _read(self, block, off, n):
        buf = memoryview(self._buf)[:n]
        self.dev.readblocks(block, buf, off)
        return buf

    def _erased(self, block, off, n):
        """True if ``n`` bytes at ``off`` are all 0xFF (n a multiple of 8)."""
        end = off + n
        while off < end:
            k = min(_ALIGN, end - off)
            buf = self._b32 if k == _ALIGN else bytearray(k)
            self.dev.readblocks(block, buf, off)
            if buf != (_FF if k == _ALIGN else _FF[:k]):
                return False
            off += k
        return True

    def _program(self, block, off, buf):
        self.dev.writeblocks(block, buf, off)

    def _erase(self, block):
        self.dev.ioctl(6, block)

    # -- meta and cursors
    def _meta_hdr(self, block):
        b = self._read(block, 0, _META_SIZE)
        magic, gen, epoch, line = struct.unpack_from(_META_HDR, b, 0)
        if magic != _M_MAGIC or not _sealed(b, _META_SIZE - 4):
            return None
        return gen, epoch, bytes(line).rstrip(b"\x00").decode()

    def _write_meta(self, block, gen, line):
        if len(line) > 48:
            raise ValueError("format too long for a raw partition")
        buf = bytearray(_META_SIZE)
        struct.pack_into(_META_HDR, buf, 0, _M_MAGIC, gen, self.epoch, line.encode())
        _seal(buf, _META_SIZE - 4)
        self._erase(block)
        self._program(block, 0, buf)
        self.cur, self.gen, self.wp = block, gen, 0

    def _data_hdr(self, block):
        b = self._read(block, 0, 20)
        magic, epoch, first, serial = struct.unpack_from(_BLK_HDR, b, 0)
        if magic != _B_MAGIC or not _sealed(b, 16):
            return None
        return epoch, first, serial

    def check_meta(self, want, recreate):
        heads = [self._meta_hdr(b) for b in range(self.k)]
        datas = []
        top_epoch = 0
        for b in range(self.k, self.nblocks):
            h = self._data_hdr(b)
            if h:
                datas.append((b, h[0], h[1], h[2]))
                top_epoch = max(top_epoch, h[0])
        valid = [(h[0], b, h) for b, h in enumerate(heads) if h]
        valid.sort()
        if recreate or not valid:
            for h in heads:
                if h:
                    top_epoch = max(top_epoch, h[1])
            self.epoch = top_epoch + 1  # blocks of older epochs are ignored
            gen = valid[-1][0] + 1 if valid else 1
            self._write_meta((valid[-1][1] + 1) % self.k if valid else 0, gen, want)
        else:
            gen, block, h = valid[-1]
            _check_line(h[2], want, "partition")
            self.epoch, self.cur, self.gen = h[1], block, gen
            self._load_entries(heads)
        # Two blocks may name the same first seqn (a block whose first slot was
        # torn, and the block started after it): the later serial wins.
        serials = {}
        for b, epoch, first, serial in datas:
            if epoch == self.epoch:
                self.serial = max(self.serial, serial)
                if serial >= serials.get(first, -1):
                    serials[first] = serial
                    self.blk[first] = b
        firsts = list(self.blk)
        firsts.sort()
        self.firsts = firsts

    def _load_entries(self, heads):
        buf = self._b16
        # The newest cursor of every reader is in the current block, or (a cut
        # while copying them there) in the previous one.
        for block in ((self.cur - 1) % self.k, self.cur):
            h = heads[block]
            if not h or h[1] != self.epoch:
                continue
            last = -1
            for i in range(self.nentries):
                off = _META_SIZE + i * 16
                self.dev.readblocks(block, buf, off)
                if buf == _FF16:
                    continue
                last = i
                tag, gen, seqn = struct.unpack_from(_ENTRY, buf, 0)
                if tag & 0xFFFFFF00 != _C_MAGIC or not _sealed(buf, 12):
                    self.log.corrupt += 1  # a torn entry: the previous one stands
                    continue
                n = tag & 0xFF
                if gen > self.cursors.get(n, (0, 0))[0]:
                    self.cursors[n] = (gen, seqn)
            if block == self.cur:
                self.wp = last + 1

    def load_cursor(self, n):
        gen, seqn = self.cursors.get(n, (0, 0))
        if seqn > self.log.last_seqn:
            self.log.corrupt += 1
            seqn = self.log.last_seqn
        return gen, seqn

    def save_cursor(self, n, gen, seqn):
        self.cursors[n] = (gen, seqn)
        if self.wp >= self.nentries:
            # Next block of the ring: erase, header, then the newest cursor of every
            # reader; the full block stays valid until the ring comes back to it.
            self._write_meta((self.cur + 1) % self.k, self.gen + 1, self.log._meta_line())
            for k in sorted(self.cursors):
                if k != n:
                    self._entry(k)
        self._entry(n)

    def _entry(self, n):
        gen, seqn = self.cursors[n]
        buf = bytearray(16)
        struct.pack_into(_ENTRY, buf, 0, _C_MAGIC | n, gen, seqn)
        _seal(buf, 12)
        off = _META_SIZE + self.wp * 16
        self.wp += 1
        self._program(self.cur, off, buf)

    # -- buckets
    def buckets(self):
        return self.firsts

    def _slot_off(self, index):
        return (1 + index) * self.stride

    def tail_count(self, first):
        block = self.blk[first]
        log = self.log
        n = 0
        while n < self.cap and log._read_slot(block, n, first + n, log._slot):
            n += 1
        if n == self.cap:
            return n, True  # full: the next store starts a new block anyway
        clean = self._erased(block, self._slot_off(n), self.bs - self._slot_off(n))
        if not clean:
            log.corrupt += 1
        return n, clean

    def open(self, first):
        return self.blk.get(first)

    def read(self, block, index, buf):
        self.dev.readblocks(block, buf, self._slot_off(index))
        return True

    def close(self, block):
        pass

    def append(self, first, index, slot):
        self._program(self.blk[first], self._slot_off(index), slot)

    def sync(self):
        pass  # every slot is programmed when stored

    def close_write(self):
        pass

    def _next_block(self):
        f = self.log._buckets
        if not f:
            return self.k
        return (self.blk[f[-1]] - self.k + 1) % (self.nblocks - self.k) + self.k

    def victim(self):
        """First seqn of the bucket in the block the ring reuses next, or None."""
        b = self._next_block()
        for first in self.log._buckets:
            if self.blk[first] == b:
                return first
        return None

    def new(self, first):
        b = self._next_block()
        self._erase(b)
        buf = bytearray(20)
        self.serial += 1
        struct.pack_into(_BLK_HDR, buf, 0, _B_MAGIC, self.epoch, first, self.serial)
        _seal(buf, 16)
        self._program(b, 0, buf)
        self.blk[first] = b

    def remove(self, first):
        self.blk.pop(first, None)  # erased when the ring comes back to it

    def free_bytes(self):
        return 1 << 30  # not a filesystem: see free_records()

    def free_records(self):
        log = self.log
        low = log._min_committed_cursor()
        bks = log._buckets
        unread = 0
        for i in range(len(bks)):
            end = bks[i + 1] - 1 if i + 1 < len(bks) else log.last_seqn
            if end > low or i == len(bks) - 1:
                unread += 1
        return (self.nblocks - self.k - unread) * self.cap + max(0, self.cap - log._count)

    def save_range(self, first, buf):
        block = self.blk[first]
        off = self.bs - self.stride
        if self._erased(block, off, _RANGE_SIZE):  # a torn trailer is never programmed over
            self._program(block, off, buf)

    def load_range(self, first):
        return bytearray(self._read(self.blk[first], self.bs - self.stride, _RANGE_SIZE))
