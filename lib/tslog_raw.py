"""TSLog's raw-partition backend: buckets in the erase blocks of a partition, no filesystem.

Imported by ``tslog.TSLog`` only when it is given a partition (``esp32.Partition`` or any
object with ``readblocks``/``writeblocks``/``ioctl``), so a log in a folder never loads
this code (about 5 KB of heap on a board). The layout and recovery rules are in
lib/tslog.md.
"""

import struct

from micropython import const
from tslog import _check_line, _seal, _sealed  # tslog's own helpers, shared

# Raw partition layout (see lib/tslog.md).
_RANGE_SIZE = const(24)  # as tslog's: a time-range trailer (a const is not importable)
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
