"""Moves the queue firmware 1.0 left into the current one: TSLog's first format (one slot
per record), records in layout v1 (floats).

``migrate(old, new_log)`` copies every record a reader of the old queue has not
committed yet into ``new_log`` (empty, the current format) under the same sequence
numbers, with the old readers' cursors, so nothing queued before an update is lost
and nothing already uploaded is sent again. Each v1 record becomes a v2 record
(``v2_of_v1``): the readings as the integers the drivers had (0.1 degC, 0.1 %RH, Pa: a
float32 holds them exactly), a NaN as the sensor's null flag, ``heap`` = ``mem_used`` +
``mem_free``; ``bmp180_altitude`` is derived from the pressure again when sent, which on
a board gives the value v1 stored. Imported only when an old queue is found.

The first format (lib/tslog.md of firmware 1.0), read-only here:

* a slot ``seqn u32 | len u16 | data[record_size] | crc32`` (little endian);
* in a folder: ``meta`` (``tslog1 <record_size> <bucket_size> <nreaders> <format>``),
  bucket files ``b<first seqn>`` of slots back to back, cursor copies ``r<n>a``/``r<n>b``
  (``generation u32, seqn u32, crc32``);
* on a raw partition: ``k = max(2, blocks // 20)`` cursor blocks (64-byte header
  ``"TSLM" | generation | epoch | meta line[48] | crc32``, then 16-byte entries
  ``0x52000000|reader | generation | seqn | crc32``), then data blocks (20-byte header
  ``"TSLB" | epoch | first seqn | serial | crc32``, slots on 32-byte boundaries from
  offset 32).
"""

import os
import struct

import record
from tslog import _crc

_M_MAGIC = 0x4D4C5354  # "TSLM"
_B_MAGIC = 0x424C5354  # "TSLB"


_V1 = "<qfffffIIHB"  # time_ms, 5 readings (the 5th the altitude), mem_used, mem_free, boot, flags


def _sealed(buf, n):
    return struct.unpack_from("<I", buf, n)[0] == _crc(buf, n)


def _tenths(x):
    return int(round(x * 10))


def v2_of_v1(data):
    """The v2 record of a v1 record's bytes (other bytes are returned as they are)."""
    if len(data) != 39 or data[-1] >> 5:
        return data
    t, amt, amh, bt, p, _, used, free, boot, flags = struct.unpack(_V1, data)
    flags &= record.FLAG_MASK
    am = amt == amt and amh == amh  # not NaN
    bmp = bt == bt and p == p
    if not am:
        flags |= record.FLAG_NO_AM
    if not bmp:
        flags |= record.FLAG_NO_BMP
    return record.encode(t, (_tenths(amt) if am else 0, _tenths(amh) if am else 0,
                             _tenths(bt) if bmp else 0, int(round(p)) if bmp else 0,
                             used, used + free), boot, flags)


class _Folder:
    def __init__(self, folder):
        self.folder = folder.rstrip("/")
        with open(self.folder + "/meta") as f:
            meta = f.read().strip().split(" ", 4)
        self.record_size = int(meta[1])
        self.nreaders = int(meta[3])
        self.slot = self.record_size + 10
        firsts = []
        for name in os.listdir(self.folder):
            if len(name) == 11 and name[0] == "b" and name[1:].isdigit():
                firsts.append(int(name[1:]))
        firsts.sort()
        self.firsts = firsts

    def cursor(self, n):
        best = (0, 0)
        buf = bytearray(12)
        for tag in "ab":
            try:
                with open("%s/r%d%s" % (self.folder, n, tag), "rb") as f:
                    got = f.readinto(buf)
            except OSError:
                continue
            gen, seqn, _ = struct.unpack("<III", buf)
            if got == 12 and _sealed(buf, 8) and gen > best[0]:
                best = (gen, seqn)
        return best[1]

    def slots(self, first):
        """Generator of the slot buffers of bucket ``first``, in order."""
        buf = bytearray(self.slot)
        try:
            f = open("%s/b%010d" % (self.folder, first), "rb")
        except OSError:
            return
        with f:
            while f.readinto(buf) == self.slot:
                yield buf


class _Raw:
    def __init__(self, dev):
        self.dev = dev
        bs = self.bs = dev.ioctl(5, 0)
        nblocks = dev.ioctl(4, 0)
        k = max(2, nblocks // 20)
        buf = bytearray(64)
        heads = []
        for b in range(k):
            dev.readblocks(b, buf, 0)
            magic, gen, epoch = struct.unpack_from("<III", buf, 0)
            if magic == _M_MAGIC and _sealed(buf, 60):
                heads.append((gen, b, epoch, bytes(buf[12:60]).rstrip(b"\x00").decode()))
        if not heads:
            raise ValueError("no first-format TSLog on this partition")
        heads.sort()
        gen, cur, self.epoch, line = heads[-1]
        meta = line.split(" ", 4)
        self.record_size = int(meta[1])
        self.nreaders = int(meta[3])
        self.slot = self.record_size + 10
        self.stride = (self.slot + 31) // 32 * 32
        self.cap = bs // self.stride - 2
        self._cursors = {}
        e = bytearray(16)
        for h in heads[-2:]:  # the newest cursors are in the current block or the one before
            if h[2] != self.epoch:
                continue
            for i in range((bs - 64) // 16):
                dev.readblocks(h[1], e, 64 + i * 16)
                tag, g, seqn = struct.unpack_from("<III", e, 0)
                if tag & 0xFFFFFF00 == 0x52000000 and _sealed(e, 12):
                    n = tag & 0xFF
                    if g > self._cursors.get(n, (0, 0))[0]:
                        self._cursors[n] = (g, seqn)
        self.blk = {}
        serials = {}
        for b in range(k, nblocks):
            dev.readblocks(b, buf, 0)
            magic, epoch, first, serial = struct.unpack_from("<IIII", buf, 0)
            if magic == _B_MAGIC and epoch == self.epoch and _sealed(buf, 16):
                if serial >= serials.get(first, -1):
                    serials[first] = serial
                    self.blk[first] = b
        self.firsts = sorted(self.blk)

    def cursor(self, n):
        return self._cursors.get(n, (0, 0))[1]

    def slots(self, first):
        buf = bytearray(self.slot)
        for i in range(self.cap):
            self.dev.readblocks(self.blk[first], buf, self.stride * (1 + i))
            yield buf


def open_old(where):
    """The first-format queue at ``where`` (folder or partition); ValueError if none."""
    try:
        return _Folder(where) if isinstance(where, str) else _Raw(where)
    except (OSError, IndexError, UnicodeError) as e:
        raise ValueError("no readable first-format TSLog: %s" % e)


def migrate(old, new_log, log=print):
    """Copy the records of first-format queue ``old`` (``open_old``) that some reader has
    not committed into the empty log ``new_log``, same seqns, and set its readers'
    cursors as the old ones were. Returns the number of records copied."""
    cursors = [old.cursor(n) for n in range(old.nreaders)]
    start = min(cursors) + 1
    copied = bad = 0
    expect = None
    last = 0
    firsts = old.firsts
    for j in range(len(firsts)):
        first = firsts[j]
        if j + 1 < len(firsts) and firsts[j + 1] <= start:
            continue  # every record in it was sent
        i = 0
        for buf in old.slots(first):
            seqn, n = struct.unpack_from("<IH", buf, 0)
            if seqn != first + i or n > old.record_size or not _sealed(buf, old.slot - 4):
                if buf[0] != 0xFF or buf[1] != 0xFF:  # not just the erased end of a block
                    bad += 1
                break  # a bucket ends at its first bad slot (a torn tail)
            i += 1
            last = seqn
            if seqn < start:
                continue
            if expect != seqn:
                new_log.skip_to(seqn)
            new_log.store_record(v2_of_v1(bytes(buf[6:6 + n])))
            expect = seqn + 1
            copied += 1
    if expect is None:  # nothing left to send: seqns still go on after the old ones
        new_log.skip_to(max(cursors + [last]) + 1)
    new_log.commit()
    _cursors(new_log, cursors)
    log("tslog: moved %d queued records from the first format (%d bad slots skipped)"
        % (copied, bad))
    return copied


def copy(src, dst, log=print):
    """Copy every committed record of log ``src`` into the empty log ``dst`` (both the
    current format) under the same seqns, and its readers' cursors. Returns the count."""
    cursors = [src.reader(n).seqn for n in range(src.nreaders)]
    expect = None
    copied = 0
    for seqn, raw in src.records():  # (from the oldest record kept)
        if expect != seqn:
            dst.skip_to(seqn)
        dst.store_record(raw)
        expect = seqn + 1
        copied += 1
    if expect is None and src.last_seqn:
        dst.skip_to(src.last_seqn + 1)
    dst.commit()
    _cursors(dst, cursors)
    src.close()
    log("tslog: copied %d queued records" % copied)
    return copied


def _cursors(dst, cursors):
    """Give ``dst``'s readers the cursors ``cursors`` (one per reader of the old log)."""
    for n in range(min(len(cursors), dst.nreaders)):
        r = dst.reader(n)
        r.seek(max(r.seqn, min(cursors[n], dst.last_seqn)))
        r.commit()
