"""The simulated board's SPI NOR flash, kept in a file (write-through).

``FileFlash`` is ``host_tests/fakes/flash.FlashBlockDevice`` (same block protocol, NOR
rules: erase sets 0xFF, a program can only clear bits; same counters) with its contents in
``path`` instead of RAM: every erase and program goes straight to the file, so killing the
board process (a power cut) leaves the image exactly as the chip would be, and the next
run mounts it again like a reboot.  Runs under the MicroPython unix port (board.py).
"""

import flash


class FileFlash(flash.FlashBlockDevice):
    def __init__(self, path, block_size=4096, block_count=512):
        super().__init__(block_size, 0)  # no RAM copy of the chip
        self.block_count = block_count
        self.erase_counts = [0] * block_count
        self.data = None
        self.path = path
        size = block_size * block_count
        try:
            f = open(path, "r+b")
            f.seek(0, 2)
            if f.tell() != size:  # another geometry: start from a blank chip
                f.close()
                raise OSError(22)
        except OSError:
            f = open(path, "wb")
            blank = b"\xff" * block_size
            for _ in range(block_count):
                f.write(blank)
            f.close()
            f = open(path, "r+b")
            self.created = True
        else:
            self.created = False
        self._f = f
        # Preallocated: the chip's driver takes no heap, so neither may its model (--mp32
        # gives the firmware a board's heap, which these would eat into).
        self._buf = bytearray(block_size)
        self._new = bytearray(block_size)
        self._blank = b"\xff" * block_size

    def erase(self, block):
        cut = self._tick()
        bs = self.block_size
        if not cut or self._torn:
            n = bs // 2 if cut else bs
            self._f.seek(block * bs)
            self._f.write(memoryview(self._blank)[:n])
            self._f.flush()
            self.erase_counts[block] += 1
            self.blocks_erased += 1
        if cut:
            raise flash.PowerCut()

    def program(self, addr, buf):
        cut = self._tick()
        n = len(buf)
        if cut:
            if not self._torn:
                raise flash.PowerCut()
            n //= 2
        if n <= len(self._buf):
            old, new = memoryview(self._buf)[:n], memoryview(self._new)[:n]
        else:
            old, new = bytearray(n), bytearray(n)
        self._f.seek(addr)
        self._f.readinto(old)
        blank = memoryview(self._blank)[:n] if n <= len(self._blank) else b"\xff" * n
        if old == blank:  # the usual case: programming erased flash
            new = buf if n == len(buf) else memoryview(buf)[:n]
        else:
            for i in range(n):
                o = old[i]
                b = buf[i]
                if self.nor and (b & ~o) & 0xFF:
                    raise OSError(5, "NOR program over unerased bits at 0x%x" % (addr + i))
                new[i] = o & b
        self._f.seek(addr)
        self._f.write(new)
        self._f.flush()
        self.bytes_programmed += n
        if cut:
            raise flash.PowerCut()

    def readblocks(self, block_num, buf, offset=0):
        if not self.powered:
            raise flash.PowerCut()
        self._f.seek(block_num * self.block_size + offset)
        self._f.readinto(buf)

    def reboot(self):
        raise NotImplementedError("restart the board process instead")

    def save(self, path):
        raise NotImplementedError("the file is the image")

    def close(self):
        self._f.close()
