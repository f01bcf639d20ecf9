"""TSLog: a power-cut-safe time-series log of fixed-size records (Zerynth TSLog API).

On flash, in ``folder``:

- ``meta``: ``tslog1 <record_size> <bucket_size> <nreaders> <format>``, written
  once at creation (temp file + rename). Reopening with a different record size
  or format raises ``ValueError``: data is never silently reinterpreted.
- ``b<first seqn, 10 digits>``: a bucket of up to ``bucket_size`` slots. Slot
  ``i`` holds the record with seqn ``first + i``: ``seqn u32 | len u16 |
  data[record_size] | crc32 u32`` (little endian, crc over the rest). The name
  carries the first seqn, so sequence numbers continue across reboots even when
  every record has been read and deleted.
- ``r<n>a`` / ``r<n>b``: reader ``n``'s committed cursor, two alternating copies
  of ``generation u32 | seqn u32 | crc32 u32``; the valid copy with the higher
  generation wins, so a cut while writing one leaves the other intact.

Durability: ``commit()`` syncs the open bucket (``flush`` is ``lfs_file_sync`` on
LittleFS, which is copy-on-write: a cut before the sync leaves the file as at the
previous sync). Every ``commit_delta`` stores commit automatically. A record is
committed once a ``commit()`` covering it has returned; readers only return
committed records. A torn or corrupt slot fails its CRC or seqn check: at open the
log ends at the last valid slot of the newest bucket (and the next store starts a
new bucket, so the bad tail is never overwritten in place); a bad slot found while
reading is counted in ``corrupt`` and skipped, never returned. Opening costs one
directory listing and a backwards check of the newest bucket's tail: it does not
grow with the number of records.

Buckets read by every reader are deleted when a new bucket is created.

Full flash (a weather logger keeps recording): when the filesystem has less than
``reserve_bytes`` free (or a write fails with ENOSPC), the oldest bucket is deleted
even if unread; its records count in ``dropped`` and readers skip to the oldest
record left. ``free()`` tells how many records still fit.

Example::

    log = TSLog("/log", format="<If", bucket_size=1024, commit_delta=16)
    seqn = log.store(1700000000, 21.5)
    log.commit()
    r = log.reader(0)
    rec = r.next()          # (1700000000, 21.5), or None when nothing committed is left
    print(r.seqn, rec)      # the record's seqn, e.g. for tagging uploads
    r.commit()              # persist the cursor
"""

import binascii
import os
import struct

from micropython import const

_HDR = const(6)  # seqn u32 + len u16
_CRC = const(4)
_MAX_READERS = const(4)
_ENOSPC = const(28)
_ENOENT = const(2)
_CURSOR = "<III"


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _crc(buf, n):
    return binascii.crc32(memoryview(buf)[:n]) & 0xFFFFFFFF


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


class TSLog:
    """A log of fixed-size records in bucket files under ``folder``.

    ``format``: a ``struct`` format; when given it sets the record size.
    ``record_size``: bytes per record (ignored when ``format`` gives it).
    ``bucket_size``: records per bucket file. ``commit_delta``: stores between
    automatic commits. ``nreaders``: 1..4. ``recreate``: start empty.
    ``reserve_bytes``: free space kept for the filesystem's own needs.
    """

    def __init__(self, folder, format="", record_size=128, bucket_size=1024,
                 commit_delta=16, nreaders=1, recreate=False, reserve_bytes=None):
        if not 1 <= nreaders <= _MAX_READERS:
            raise ValueError("nreaders must be 1..4, not %d" % nreaders)
        if format:
            record_size = struct.calcsize(format)
        if not 1 <= record_size <= 65535:
            raise ValueError("record_size must be 1..65535")
        if bucket_size < 1 or commit_delta < 1:
            raise ValueError("bucket_size and commit_delta must be >= 1")
        self.folder = folder.rstrip("/")
        self.format = format
        self._nvalues = _nvalues(format)
        self.record_size = record_size
        self.bucket_size = bucket_size
        self.commit_delta = commit_delta
        self.nreaders = nreaders
        self.slot_size = _HDR + record_size + _CRC
        self.reserve_bytes = (reserve_bytes if reserve_bytes is not None
                              else 2 * bucket_size * self.slot_size + 16384)
        self.corrupt = 0  # bad slots or cursor copies found (counted, skipped)
        self.dropped = 0  # unread records deleted to make room
        self._slot = bytearray(self.slot_size)
        self._file = None
        self._since_commit = 0
        if recreate:
            self._remove_all()
        self._mkdirs()
        self._check_meta()
        self._buckets = self._list_buckets()
        self._open_tail()
        self._readers = [None] * nreaders  # type: list

    # ---------------------------------------------------------------- set-up
    def _path(self, name):
        return self.folder + "/" + name

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
            for name in os.listdir(self.folder):
                os.remove(self._path(name))

    def _meta_line(self):
        return "tslog1 %d %d %d %s" % (self.record_size, self.bucket_size, self.nreaders,
                                       self.format)

    def _check_meta(self):
        want = self._meta_line()
        try:
            with open(self._path("meta")) as f:
                have = f.read().strip()
        except OSError:
            have = None
        if have == want:
            return
        if have is not None and have.startswith("tslog1 "):
            parts = have.split(" ", 4)
            if int(parts[1]) != self.record_size or (parts[4:] or [""])[0] != self.format:
                raise ValueError("%s holds records of size %s format %r, not size %d format %r"
                                 % (self.folder, parts[1], (parts[4:] or [""])[0],
                                    self.record_size, self.format))
        elif have is not None:
            self.corrupt += 1
            _log("meta file unreadable, rewritten")
        tmp = self._path("meta.tmp")
        with open(tmp, "w") as f:
            f.write(want)
        os.rename(tmp, self._path("meta"))

    def _list_buckets(self):
        out = []
        for name in os.listdir(self.folder):
            if name[0] == "b" and len(name) == 11 and name[1:].isdigit():
                out.append(int(name[1:]))
        out.sort()
        return out

    def _bucket_name(self, first):
        return self._path("b%010d" % first)

    def _read_slot(self, f, index, seqn, buf):
        """Read slot ``index`` into ``buf``; True if valid and holding ``seqn``."""
        f.seek(index * self.slot_size)
        if f.readinto(buf) != self.slot_size:
            return False
        s, n = struct.unpack_from("<IH", buf, 0)
        if s != seqn or n > self.record_size:
            return False
        crc = struct.unpack_from("<I", buf, self.slot_size - _CRC)[0]
        return crc == _crc(buf, self.slot_size - _CRC)

    def _open_tail(self):
        """Find the committed end: the last valid slot of the newest bucket."""
        self._count = 0  # valid slots in the newest bucket
        if not self._buckets:
            self._first = 1
            self.last_seqn = 0
            self._count = self.bucket_size  # the first store creates bucket 1
        else:
            self._first = self._buckets[-1]
            path = self._bucket_name(self._first)
            n = os.stat(path)[6] // self.slot_size
            with open(path, "rb") as f:
                while n > 0 and not self._read_slot(f, n - 1, self._first + n - 1,
                                                       self._slot):
                    n -= 1
                    self.corrupt += 1
            self._count = n
            self.last_seqn = self._first + n - 1
            if os.stat(path)[6] != n * self.slot_size:
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
        try:
            data = struct.pack(self.format, *values)
        except Exception as e:
            raise ValueError("values do not fit format %r: %s" % (self.format, e))
        return self.store_record(data)

    def store_record(self, data):
        """Append raw bytes (at most ``record_size``); return the new seqn."""
        n = len(data)
        if n > self.record_size:
            raise ValueError("record of %d bytes, record_size is %d" % (n, self.record_size))
        seqn = self.last_seqn + 1
        slot = self._slot
        struct.pack_into("<IH", slot, 0, seqn, n)
        slot[_HDR:_HDR + n] = data
        for i in range(_HDR + n, self.slot_size - _CRC):
            slot[i] = 0
        struct.pack_into("<I", slot, self.slot_size - _CRC, _crc(slot, self.slot_size - _CRC))
        try:
            self._append(seqn)
        except OSError as e:
            if e.args[0] != _ENOSPC:
                raise
            # The failed write may be torn: close the bucket, make room, start a new one.
            self._close_file()
            self._count = self.bucket_size
            self._drop_oldest()
            self._append(seqn)
        self.last_seqn = seqn
        self._since_commit += 1
        if self._since_commit >= self.commit_delta:
            self.commit()
        return seqn

    def _append(self, seqn):
        if self._count >= self.bucket_size:
            self._new_bucket(seqn)
        if self._file is None:
            self._file = open(self._bucket_name(self._first), "ab")
        self._file.write(self._slot)
        self._count += 1

    def _new_bucket(self, first):
        self.commit()
        self._close_file()
        self._first = first
        self._count = 0
        with open(self._bucket_name(first), "wb"):
            pass
        self._buckets.append(first)
        self._delete_consumed()
        while self._free_bytes() < self.reserve_bytes and len(self._buckets) > 1:
            self._drop_oldest()

    def _close_file(self):
        if self._file is not None:
            self._file.close()
            self._file = None

    def commit(self):
        """Make every record stored so far survive a power cut; return the last seqn."""
        if self._file is not None and self._since_commit:
            _fsync(self._file)
        self._since_commit = 0
        self.committed_seqn = self.last_seqn
        return self.last_seqn

    # ---------------------------------------------------------------- space
    def _free_bytes(self):
        try:
            st = os.statvfs(self.folder)
        except (OSError, AttributeError):
            return 1 << 30
        return st[0] * st[4]

    def free(self):
        """How many more records fit before the oldest unread bucket must be dropped."""
        return max(0, self._free_bytes() - self.reserve_bytes) // self.slot_size

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
            if r and r._file_first == first:
                r._close()
        os.remove(self._bucket_name(first))

    # ---------------------------------------------------------------- cursors
    def _load_cursor(self, n):
        """(generation, seqn) of reader n's newest valid cursor copy."""
        best = (0, 0)
        buf = bytearray(12)
        for tag in "ab":
            try:
                with open(self._path("r%d%s" % (n, tag)), "rb") as f:
                    got = f.readinto(buf)
            except OSError:
                continue
            gen, seqn, crc = struct.unpack(_CURSOR, buf)
            if got != 12 or crc != _crc(buf, 8) or seqn > self.last_seqn:
                self.corrupt += 1
                continue
            if gen > best[0]:
                best = (gen, seqn)
        return best

    def _save_cursor(self, n, gen, seqn):
        buf = bytearray(12)
        struct.pack_into("<II", buf, 0, gen, seqn)
        struct.pack_into("<I", buf, 8, _crc(buf, 8))
        with open(self._path("r%d%s" % (n, "ab"[gen & 1])), "wb") as f:
            f.write(buf)
            _fsync(f)

    # ---------------------------------------------------------------- reading
    def reader(self, n):
        """The ``TSReader`` number ``n`` (0..nreaders-1), resuming after its committed cursor."""
        if not 0 <= n < self.nreaders:
            raise ValueError("reader %d out of range 0..%d" % (n, self.nreaders - 1))
        if self._readers[n] is None:
            self._readers[n] = TSReader(self, n)
        return self._readers[n]

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
        self._close_file()
        for r in self._readers:
            if r:
                r.close()


class TSReader:
    """Reads committed records in order; ``seqn`` is the last returned record's seqn."""

    def __init__(self, log, n):
        self._log = log
        self._n = n
        self._gen, self.seqn = log._load_cursor(n)
        self._file = None
        self._file_first = 0
        self._buf = bytearray(log.slot_size)

    def _locate(self, seqn):
        """(bucket first seqn, slot index) of ``seqn`` (index -1: below the oldest bucket)."""
        bks = self._log._buckets
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

    def next_record(self):
        """The next committed record as bytes, or None when none is left."""
        log = self._log
        reopened = False
        while self.seqn < log.committed_seqn:
            want = self.seqn + 1
            first, index = self._locate(want)
            if index < 0:  # dropped while full: skip to the oldest record kept
                if first <= want:
                    return None
                self.seqn = first - 1
                continue
            if self._file is None or self._file_first != first:
                self._close()
                try:
                    self._file = open(log._bucket_name(first), "rb")
                except OSError:
                    return None
                self._file_first = first
            ok = index < log.bucket_size and log._read_slot(self._file, index, want, self._buf)
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
        self._gen += 1
        self._log._save_cursor(self._n, self._gen, self.seqn)

    def _close(self):
        if self._file is not None:
            self._file.close()
            self._file = None

    def close(self):
        self._close()
