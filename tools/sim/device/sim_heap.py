"""``--mp32``: give the firmware the GC heap a stock ESP32 gives it, in one piece.

tools/sim/run.py sets ``SIM_FIRMWARE_HEAP`` (bytes) and a process heap that much larger.
sim_board.py imports this module first, so the firmware's share is reserved as one free
block before the simulator's own set-up (compiling its modules, building the world)
leaves holes all over the heap; ``hand_over()`` then fills every other free byte and
frees the reserve.  The firmware starts with exactly that much heap, unfragmented, as on
a board after boot; what the simulator allocates later (status lines, the fakes' I2C
and sockets) comes out of it, which only makes the board's life harder.
"""

import gc
import os

_SIZE = int(os.getenv("SIM_FIRMWARE_HEAP") or 0)
_held = [bytearray(_SIZE) if _SIZE else None, None]  # the reserve, then the filler
# The fakes of modules a board has in ROM (C or frozen): imported before the hand-over,
# so their code does not count as the firmware's.
_ROM = ("esp32", "ntptime", "webrepl", "socket", "ssl")


def hand_over():
    """Fill the heap outside the reserve, then free the reserve (nothing without
    ``SIM_FIRMWARE_HEAP``).  Call with no other thread running."""
    if _held[0] is None:
        return
    for name in _ROM:
        try:
            __import__(name)
        except ImportError:
            pass
    gc.collect()
    filler = [None] * 4096  # one slot per hole: allocated before the holes are filled
    n, size = 0, 1 << 15
    while n < len(filler):
        try:
            filler[n] = bytearray(size)  # size 0: the object alone, one 16-byte block
            n += 1
        except MemoryError:
            if not size:
                break  # not a block left
            size //= 2
    _held[1] = filler  # item assignments: nothing may allocate until the reserve is freed
    _held[0] = None
    gc.collect()
    print("sim: the firmware gets %d B of heap (32-bit build; %d B asked)" % (
        gc.mem_free(), _SIZE))


def release():
    """Give the simulator's share back once the firmware has stopped, so that the final
    status line does not fail for the heap the firmware left."""
    _held[1] = None
    gc.collect()
