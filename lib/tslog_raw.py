"""TSLog's raw-partition backend: buckets in the erase blocks of a partition, no filesystem.

Imported by ``tslog.TSLog`` only when it is given a partition (``esp32.Partition`` or any
object with ``readblocks``/``writeblocks``/``ioctl``), so a log in a folder never loads
this code. The layout and recovery rules are in lib/tslog.md.
"""

import binascii
import struct

from micropython import const
from tslog import OldFormat, _check_line, _meta_fields, _seal, _sealed  # tslog's helpers

# Raw partition layout (see lib/tslog.md).
_RANGE_SIZE = const(24)  # as tslog's: a time-range trailer (a const is not importable)
_M_MAGIC = const(0x434C5354)  # "TSLC": cursor block header
_B_MAGIC = const(0x464C5354)  # "TSLF": data block header
_OLD_M_MAGIC = const(0x4D4C5354)  # "TSLM": a cursor block of TSLog's first format
_C_TAG = const(0xA0)  # cursor entry tag | reader
_META_HDR = "<III48s"  # magic, generation, epoch, meta line (+ crc u32): 64 bytes
_META_SIZE = const(64)
_BLK_HDR = "<IIII"  # magic, epoch, first seqn, serial (+ crc u32): 20 bytes
_BLK_SIZE = const(20)
_ENTRY = const(8)  # tag | reader u8, seqn u32, crc24 (seeded with the block's generation)
_FF = b"\xff" * 32


class RawStore:
    """Buckets in the erase blocks of a raw partition, used as a ring.

    Blocks 0..k-1: a ring of cursor blocks (header + 8-byte cursor entries). Blocks k..:
    a data header, frames back to back, a time-range trailer in the last 24 bytes.
    """

    reclaims = False  # blocks are erased only when the ring comes back to it
    start = _BLK_SIZE  # offset of a block's first frame

    def __init__(self, log, dev, recreate):
        self.log = log
        self.dev = dev
        self.bs = dev.ioctl(5, 0)
        self.nblocks = dev.ioctl(4, 0)
        # Cursor blocks: 1/64 of the partition (8 of a 2 MiB one), at least 2. With the
        # uploader committing its cursor at most once a minute they outlive the data
        # blocks (docs/tslog.md: flash life).
        self.k = max(2, self.nblocks // 64)
        if self.nblocks < self.k + 3 or self.bs < 2 * _META_SIZE + _RANGE_SIZE:
            raise ValueError("partition too small for a log (%d blocks of %d bytes)"
                             % (self.nblocks, self.bs))
        self.nentries = (self.bs - _META_SIZE) // _ENTRY
        self._buf = bytearray(_META_SIZE)
        self._b8 = bytearray(_ENTRY)
        self._b32 = bytearray(32)
        self.blk = {}  # first seqn -> block
        self.serials = {}  # first seqn -> serial of its block (the frames' CRC seed)
        self.cursors = {}  # reader -> (generation, seqn)
        self.epoch = 0
        self.serial = 0  # of the newest data block
        self.cur = 0  # cursor block in use
        self.gen = 0
        self.wp = 0  # next free entry in it

    # -- low level
    def _read(self, block, off, n):
        buf = memoryview(self._buf)[:n]
        self.dev.readblocks(block, buf, off)
        return buf

    def _erased(self, block, off, end):
        """True if bytes ``off .. end`` of ``block`` are all 0xFF."""
        while off < end:
            k = min(32, end - off)
            buf = self._b32 if k == 32 else bytearray(k)
            self.dev.readblocks(block, buf, off)
            if buf != (_FF if k == 32 else _FF[:k]):
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
        if magic == _OLD_M_MAGIC and _sealed(b, _META_SIZE - 4):
            raise OldFormat("TSLog's first format on this partition")
        if magic != _M_MAGIC or not _sealed(b, _META_SIZE - 4):
            return None
        try:
            return gen, epoch, bytes(line).rstrip(b"\x00").decode()
        except UnicodeError:
            return None

    def _write_meta(self, block, gen, line):
        if len(line) > 48:
            raise ValueError("codec and format too long for a raw partition")
        buf = bytearray(_META_SIZE)
        struct.pack_into(_META_HDR, buf, 0, _M_MAGIC, gen, self.epoch, line.encode())
        _seal(buf, _META_SIZE - 4)
        self._erase(block)
        self._program(block, 0, buf)
        self.cur, self.gen, self.wp = block, gen, 0

    def _data_hdr(self, block):
        b = self._read(block, 0, _BLK_SIZE)
        magic, epoch, first, serial = struct.unpack_from(_BLK_HDR, b, 0)
        if magic != _B_MAGIC or not _sealed(b, 16):
            return None
        return epoch, first, serial

    def check_meta(self, want, recreate):
        heads = []
        for b in range(self.k):
            try:
                heads.append(self._meta_hdr(b))
            except OldFormat:
                if not recreate:
                    raise
                heads.append(None)
        datas = []
        for b in range(self.k, self.nblocks):
            h = self._data_hdr(b)
            if h:
                datas.append((b, h[0], h[1], h[2]))
        valid = [(h[0], b, h) for b, h in enumerate(heads) if h]
        valid.sort()
        line = want
        if recreate or not valid:
            top = max([h[1] for h in heads if h] + [d[1] for d in datas] + [0])
            self.epoch = top + 1  # blocks of older epochs are ignored
            gen = valid[-1][0] + 1 if valid else 1
            self._write_meta((valid[-1][1] + 1) % self.k if valid else 0, gen, want)
        else:
            gen, block, h = valid[-1]
            _check_line(h[2], want, "partition")
            self.epoch, self.cur, self.gen = h[1], block, gen
            self._load_entries(heads)
            line = h[2]
        # Two blocks may name the same first seqn (a block whose first frame was torn,
        # and the block started after it): the later serial wins.
        for b, epoch, first, serial in datas:
            if epoch == self.epoch:
                self.serial = max(self.serial, serial)
                if serial >= self.serials.get(first, -1):
                    self.serials[first] = serial
                    self.blk[first] = b
        firsts = list(self.blk)
        firsts.sort()
        self.firsts = firsts
        return _meta_fields(line)[1]

    def _entry_crc(self, buf, gen):
        return binascii.crc32(memoryview(buf)[:5], gen) & 0xFFFFFF

    def _load_entries(self, heads):
        buf = self._b8
        # The newest cursor of every reader is in the current block, or (a cut
        # while copying them there) in the previous one.
        for block in ((self.cur - 1) % self.k, self.cur):
            h = heads[block]
            if not h or h[1] != self.epoch:
                continue
            last = -1
            for i in range(self.nentries):
                self.dev.readblocks(block, buf, _META_SIZE + i * _ENTRY)
                if buf == _FF[:_ENTRY]:
                    continue
                last = i
                tag, seqn = struct.unpack_from("<BI", buf, 0)
                crc = buf[5] | buf[6] << 8 | buf[7] << 16
                if tag & 0xFC != _C_TAG or crc != self._entry_crc(buf, h[0]):
                    self.log.corrupt += 1  # a torn entry: the previous one stands
                    continue
                n = tag & 3
                # order: generation of the block, then position in it
                key = (h[0], i)
                if key > self.cursors.get(n, ((0, -1), 0))[0]:
                    self.cursors[n] = (key, seqn)
            if block == self.cur:
                self.wp = last + 1

    def load_cursor(self, n):
        key, seqn = self.cursors.get(n, ((0, -1), 0))
        if seqn > self.log.last_seqn:
            self.log.corrupt += 1
            seqn = self.log.last_seqn
        return key[0] * 65536 + key[1] + 1, seqn

    def save_cursor(self, n, gen, seqn):
        if self.wp >= self.nentries:
            # Next block of the ring: erase, header, then the newest cursor of every
            # other reader; the full block stays valid until the ring comes back to it.
            self._write_meta((self.cur + 1) % self.k, self.gen + 1, self.log._meta_line())
            for k in sorted(self.cursors):
                if k != n:
                    self._entry(k, self.cursors[k][1])
        self._entry(n, seqn)

    def _entry(self, n, seqn):
        buf = bytearray(_ENTRY)
        struct.pack_into("<BI", buf, 0, _C_TAG | n, seqn)
        crc = self._entry_crc(buf, self.gen)
        buf[5] = crc & 0xFF
        buf[6] = (crc >> 8) & 0xFF
        buf[7] = crc >> 16
        i = self.wp
        self.wp += 1
        self._program(self.cur, _META_SIZE + i * _ENTRY, buf)
        self.cursors[n] = ((self.gen, i), seqn)

    # -- buckets
    def buckets(self):
        return self.firsts

    def tag(self, first):
        return self.serials.get(first, 0)

    def open(self, first):
        return self.blk.get(first)

    def read(self, block, off, buf, n):
        n = min(n, self.bs - _RANGE_SIZE - off)
        if n <= 0:
            return 0
        self.dev.readblocks(block, memoryview(buf)[:n], off)
        return n

    def clean_after(self, block, off):
        return self._erased(block, off, self.bs - _RANGE_SIZE)

    def close(self, block):
        pass

    def append(self, first, off, buf, start, n):
        self._program(self.blk[first], off, memoryview(buf)[start:start + n])

    def room(self, used):
        return self.bs - _RANGE_SIZE - used

    def sync(self):
        pass  # every frame is programmed when written

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
        buf = bytearray(_BLK_SIZE)
        self.serial += 1
        struct.pack_into(_BLK_HDR, buf, 0, _B_MAGIC, self.epoch, first, self.serial)
        _seal(buf, 16)
        self._program(b, 0, buf)
        self.blk[first] = b
        self.serials[first] = self.serial

    def remove(self, first):
        self.blk.pop(first, None)  # erased when the ring comes back to it
        self.serials.pop(first, None)

    def free_bytes(self):
        return 1 << 30  # not a filesystem: see free_records()

    def used_bytes(self):
        """(flash bytes the held records take, with their share of every overhead; the
        partition): the partition over the records it holds when the ring is full (all
        data blocks but the one the ring keeps erased, at the data bytes each record took
        so far), times the records held."""
        log = self.log
        held = log.held()
        n = len(log._buckets)
        data = (n - 1) * (self.bs - self.start - _RANGE_SIZE) + log._used - self.start
        total = self.nblocks * self.bs
        if held <= 0 or data <= 0:
            return 0, total
        full = (self.nblocks - self.k - 1) * (self.bs - self.start - _RANGE_SIZE) * held / data
        return int(total * held / full), total

    def free_records(self):
        log = self.log
        low = log._min_committed_cursor()
        bks = log._buckets
        unread = 0
        for i in range(len(bks)):
            end = bks[i + 1] - 1 if i + 1 < len(bks) else log.last_seqn
            if end > low or i == len(bks) - 1:
                unread += 1
        per = (bks[-1] - bks[0]) / (len(bks) - 1) if len(bks) > 1 else 0  # closed blocks
        if per <= 0:  # nothing closed yet: what the open block holds so far, scaled
            used = log._used - self.start
            per = log._count * (self.bs - self.start - _RANGE_SIZE) / used if used > 0 else 0
        spare = self.nblocks - self.k - 1 - unread
        return int(max(0, spare) * per)

    def save_range(self, first, buf):
        block = self.blk[first]
        off = self.bs - _RANGE_SIZE
        if self._erased(block, off, self.bs):  # a torn trailer is never programmed over
            self._program(block, off, buf)

    def load_range(self, first):
        return bytearray(self._read(self.blk[first], self.bs - _RANGE_SIZE, _RANGE_SIZE))
