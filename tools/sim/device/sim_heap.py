"""``--mp32``: give the firmware the GC heap a stock ESP32 gives it, in one piece, and charge
it with what a board would charge it, not with the simulator.

tools/sim/run.py sets ``SIM_FIRMWARE_HEAP`` (bytes) and a process heap that much larger.
sim_board.py imports this module first, so the firmware's share is reserved as one free
block before the simulator's own set-up (its modules' objects, the world, the fakes)
leaves holes all over the heap; ``hand_over()`` then fills every other free byte and
frees the reserve.  The firmware starts with exactly that much heap, unfragmented, as on
a board after boot.

The simulator's modules and the fakes are frozen into the 32-bit build
(tools/mp32_manifest.py), so their bytecode and names are outside the heap as a board's C
modules are: when boot.py starts no name is interned in RAM, as on a board (the console
says so).  What the simulator still allocates in the firmware's share: its status lines,
from a clock timer while every board thread waits, collected at once (``tidy()``); and
what the fakes allocate when the firmware calls them (docs/sim.md, "--mp32").
"""

import gc
import os

import micropython

_SIZE = int(os.getenv("SIM_FIRMWARE_HEAP") or 0)
_held = [bytearray(_SIZE) if _SIZE else None, None]  # the reserve, then the filler
# The fakes of modules a board has in C (sim_board imports machine, network and esp32
# itself): imported before the hand-over, as their objects take no heap on a board.  What
# a board has as frozen Python (ssl, ntptime, webrepl, asyncio) is imported by the
# firmware into its share, as on a board.
_ROM = ("socket",)
# Names the unix port interns at start-up under --mp32 (MICROPYPATH's entries, the module
# `-m` runs), frozen here so they are ROM names: else they would open the first RAM pool of
# names before the firmware's first one, which on a board finds the RAM pools empty.
_ROM_NAMES = (".frozen/sim/mp", ".frozen/sim/device", ".frozen/fakes", "sim_board")


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
    # Names interned so far: a board has none in RAM when boot.py starts (tools/sim's
    # names are frozen, tools/mp32_manifest.py), and the firmware's first ones open the
    # first RAM pool of names, the next pools doubling in size (py/qstr.c).
    print("sim: names in RAM before boot.py: ", end="")
    micropython.qstr_info()


def after_boot():
    """Say how much heap boot.py left the firmware and the names it interned (nothing
    without ``SIM_FIRMWARE_HEAP``)."""
    if _held[1] is not None:
        gc.collect()
        print("sim: after boot.py the firmware has %d B of heap free" % gc.mem_free())
        print("sim: names in RAM after boot.py: ", end="")  # all the firmware's, so far
        micropython.qstr_info()


def tidy():
    """Collect the simulator's garbage in the firmware's share now (a status line's), so
    that the firmware finds its heap as it left it; nothing without ``SIM_FIRMWARE_HEAP``.
    Call only while no board thread runs (a clock timer)."""
    if _held[1] is not None:
        gc.collect()


def release():
    """Give the simulator's share back once the firmware has stopped, so that the final
    status line does not fail for the heap the firmware left."""
    _held[1] = None
    gc.collect()
