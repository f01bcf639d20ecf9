"""TSLog's folder backend: buckets, cursors and time ranges as files (LittleFS, FAT).

Imported by ``tslog.TSLog`` only when it is given a folder, so a log on a raw partition
(the firmware's default) never loads this code. The layout and recovery rules are in
lib/tslog.md.
"""

import os
import struct

from micropython import const
from tslog import _META, OldFormat, _check_line, _log, _meta_fields, _seal, _sealed

_RANGE_SIZE = const(24)  # as tslog's: a time-range file (a const is not importable)
_CURSOR = "<III"  # generation, seqn (+ crc u32)


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _fsync(f):
    f.flush()
    fileno = getattr(f, "fileno", None)
    fsync = getattr(os, "fsync", None)
    if fileno and fsync:  # CPython: make the flush reach the disk
        fsync(fileno())


class DirStore:
    """Buckets, cursors and time ranges as files in a folder.

    ``meta``; ``b<first seqn, 10 digits>`` (frames back to back); ``i<first>``
    (the closed bucket's time range); ``r<n>a``/``r<n>b`` (cursor copies).
    """

    reclaims = True  # consumed buckets are deleted; space is watched with statvfs
    start = 0  # offset of a bucket's first frame

    def __init__(self, log, folder, recreate):
        self.log = log
        self.folder = folder.rstrip("/")
        self._file = None
        if recreate:
            self._remove_all()
        self._mkdirs()

    def path(self, name):
        return self.folder + "/" + name

    def _names(self):
        """The folder's file names as bytes, one at a time (``os.ilistdir`` where there is
        one: a week of buckets listed at once would take KBs of heap); bytes because a
        damaged FAT directory may hold names that are not valid UTF-8."""
        d = self.folder.encode()
        if not hasattr(os, "ilistdir"):  # CPython
            yield from os.listdir(d)
            return
        for e in os.ilistdir(d):
            yield e[0]

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
            for name in list(self._names()):  # (not while listing)
                os.remove(self.folder.encode() + b"/" + name)

    def check_meta(self, want, recreate):
        """The frame size of the log there (writing ``want`` if it has no meta file)."""
        try:
            with open(self.path("meta"), "rb") as f:
                raw = f.read()
        except OSError:
            raw = None
        have = None
        if raw is not None:
            try:
                have = raw.decode().strip()
            except UnicodeError:
                have = ""
        if have == want:
            return _meta_fields(want)[1]
        if have:
            try:
                return _check_line(have, want, self.folder)
            except OldFormat:
                raise
            except ValueError as e:
                if have.startswith(_META + " "):
                    raise
                del e
        if raw is not None:
            self.log.corrupt += 1
            _log("meta file unreadable (%d bytes), rewritten" % len(raw))
        tmp = self.path("meta.tmp")
        with open(tmp, "w") as f:
            f.write(want)
        if raw is not None and _exists(self.path("meta")):
            os.remove(self.path("meta"))  # FAT's rename does not replace
        os.rename(tmp, self.path("meta"))
        return _meta_fields(want)[1]

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

    def tag(self, first):
        return 0

    def open(self, first):
        try:
            return open(self._name(first), "rb")
        except OSError:
            return None

    def read(self, f, off, buf, n):
        f.seek(off)
        return f.readinto(memoryview(buf)[:n])

    def clean_after(self, f, off):
        """True if the bucket ends at ``off`` (nothing after its last valid frame)."""
        return f.seek(0, 2) == off

    def close(self, f):
        f.close()

    def append(self, first, off, buf, start, n):
        if self._file is None:
            self._file = open(self._name(first), "ab")
        self._file.write(memoryview(buf)[start:start + n])

    def room(self, used):
        return 1 << 30  # a file bucket closes by its record count (bucket_size)

    def sync(self):
        if self._file is not None:
            _fsync(self._file)

    def close_write(self):
        if self._file is not None:
            self._file.close()
            self._file = None

    def victim(self):
        return None  # space is made after the new bucket exists

    def new(self, first):
        with open(self._name(first), "wb"):
            pass

    def remove(self, first):
        os.remove(self._name(first))
        try:
            os.remove(self.path("i%010d" % first))
        except OSError:
            pass

    def _statvfs(self):
        try:
            return os.statvfs(self.folder)
        except (OSError, AttributeError):
            return None

    def free_bytes(self):
        st = self._statvfs()
        return st[0] * st[4] if st else 1 << 30

    def free_records(self):
        """About how many records fit in the free space (at the bytes each took so far)."""
        log = self.log
        used = self.used_bytes()[0]
        held = log.held()
        per = used / held if held > 64 else log.record_size + 1
        return int(max(0, self.free_bytes() - log.reserve_bytes) / per)

    def used_bytes(self):
        """(bytes of the log's files, bytes of the filesystem)."""
        total = 0
        for name in self._names():
            try:
                total += os.stat(self.folder.encode() + b"/" + name)[6]
            except OSError:
                pass
        st = self._statvfs()
        return total, (st[0] * st[2] if st else 0)

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
        # range is then rebuilt from the bucket's records.
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
