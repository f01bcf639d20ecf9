"""Emulated ESP32 SPI NOR flash as a MicroPython block device.

``FlashBlockDevice`` speaks MicroPython's extended block protocol
(``readblocks(n, buf, off)``, ``writeblocks(n, buf, off)``, ``ioctl(op, arg)``,
as ``vfs.VfsLfs2`` and ``vfs.VfsFat`` call it on the board), with NOR
semantics: erase sets a block to 0xFF, a program can only clear bits
(programming a 1 over a 0 raises, as it would silently corrupt on a chip).
It counts bytes programmed and erases per block, and can lose power:
``cut_after(n, torn=False)`` makes the n-th program/erase from now raise
``PowerCut`` from inside the write, optionally after doing half of it;
until ``restore()`` every further write raises too.
"""

_ERASED = 0xFF


class PowerCut(BaseException):
    """Power was lost during a flash write (a BaseException: nothing may swallow it)."""


# Raised by a dead chip: preallocated, because finalizers of file handles abandoned at
# a cut may write while MicroPython's heap is locked (no new exception can be made).
_DEAD = PowerCut()


class FlashBlockDevice:
    def __init__(self, block_size=4096, block_count=512, nor=True):
        self.block_size = block_size
        self.block_count = block_count
        self.nor = nor
        self.data = bytearray(block_size * block_count)
        blank = b"\xff" * block_size
        for b in range(block_count):  # one block at a time: no second full-size copy
            self.data[b * block_size:(b + 1) * block_size] = blank
        self.erase_counts = [0] * block_count
        self.bytes_programmed = 0
        self.blocks_erased = 0
        self.writes = 0  # programs + erases, what cut_after counts
        self._cut_at = None
        self._torn = False
        self.powered = True

    # -- power
    def cut_after(self, n, torn=False):
        self._cut_at = self.writes + n
        self._torn = torn

    def restore(self):
        self._cut_at = None
        self.powered = True

    def reboot(self):
        """The board after a power cut: a new device object over the same chip.

        This object stays dead, so file handles abandoned at the cut (whose
        finalizers MicroPython may run later) can never write to the chip again.
        """
        new = FlashBlockDevice(self.block_size, 0, self.nor)
        new.block_count = self.block_count
        new.data = self.data
        new.erase_counts = self.erase_counts
        new.bytes_programmed = self.bytes_programmed
        new.blocks_erased = self.blocks_erased
        new.writes = self.writes
        self.powered = False
        self._cut_at = None
        return new

    def _dead(self):
        try:
            return PowerCut()
        except MemoryError:
            return _DEAD

    def _tick(self):
        if not self.powered:
            raise self._dead()
        self.writes += 1
        if self._cut_at is not None and self.writes >= self._cut_at:
            self.powered = False
            return True
        return False

    # -- raw operations
    def erase(self, block):
        cut = self._tick()
        start = block * self.block_size
        n = self.block_size // 2 if cut and self._torn else self.block_size
        if not cut or self._torn:
            self.data[start:start + n] = b"\xff" * n
            self.erase_counts[block] += 1
            self.blocks_erased += 1
        if cut:
            raise PowerCut()

    def program(self, addr, buf):
        cut = self._tick()
        n = len(buf)
        if cut:
            if not self._torn:
                raise PowerCut()
            n //= 2
        try:  # fast path: whole-buffer bit operations on big ints
            old = int.from_bytes(bytes(self.data[addr:addr + n]), "little")
            new = int.from_bytes(bytes(buf[:n]), "little")
            if self.nor and new & (old ^ ((1 << (8 * n)) - 1)):
                self._program_bytes(addr, buf, n)  # finds and reports the bad byte
            self.data[addr:addr + n] = (old & new).to_bytes(n, "little")
        except MemoryError:  # heap locked (a finalizer): no allocation
            self._program_bytes(addr, buf, n)
        self.bytes_programmed += n
        if cut:
            raise PowerCut()

    def _program_bytes(self, addr, buf, n):
        for i in range(n):
            old = self.data[addr + i]
            new = buf[i]
            if self.nor and (new & ~old) & 0xFF:
                raise OSError(5, "NOR program over unerased bits at 0x%x" % (addr + i))
            self.data[addr + i] = old & new

    # -- MicroPython block protocol
    def readblocks(self, block_num, buf, offset=0):
        if not self.powered:
            raise self._dead()
        start = block_num * self.block_size + offset
        data = self.data
        n = len(buf)
        try:
            buf[:n] = data[start:start + n]
        except MemoryError:  # heap locked (a finalizer): no allocation
            for i in range(n):
                buf[i] = data[start + i]

    def writeblocks(self, block_num, buf, offset=None):
        if offset is None:
            # Simple protocol (FAT): erase the whole blocks, then program.
            for i in range(len(buf) // self.block_size):
                self.erase(block_num + i)
            offset = 0
        self.program(block_num * self.block_size + offset, buf)

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.block_count
        if op == 5:  # block size
            return self.block_size
        if op == 6:  # erase block
            self.erase(arg)
            return 0
        return 0  # 1 init, 2 deinit, 3 sync

    # -- images
    def save(self, path):
        with open(path, "wb") as f:
            f.write(self.data)

    def load(self, path):
        with open(path, "rb") as f:
            f.readinto(self.data)
        return self
