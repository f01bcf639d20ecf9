"""Run by ``tools.pull --image`` under the MicroPython unix port (not on a board).

Loads a flash image (the simulator's ``<state-dir>/flash.img``, or a board's filesystem
partition read with esptool) into ``host_tests/fakes/flash.py``'s ``FlashBlockDevice``,
mounts it with ``vfs.VfsLfs2`` and runs the board's own ``console.dump()`` over
it, exactly as on the board after a soft reset (paths relative to the filesystem root).

Usage: micropython image_dump.py IMAGE OUT BLOCK_SIZE [SINCE [UNTIL]]
(OUT ``-`` = stdout; SINCE/UNTIL: ISO UTC text or epoch seconds, ``""`` = open end).
The image file is never written (the device is a copy of it in RAM).
"""

import os
import sys

import vfs

from flash import FlashBlockDevice


def _time(s):
    if not s:
        return None
    try:
        return int(s)
    except ValueError:
        pass
    try:
        return float(s)
    except ValueError:
        return s


def main(argv):
    img, out, bs = argv[1], argv[2], int(argv[3])
    since = _time(argv[4]) if len(argv) > 4 else None
    until = _time(argv[5]) if len(argv) > 5 else None
    size = os.stat(img)[6]
    if size % bs or not size:
        raise SystemExit("%s: %d bytes is not a whole number of %d-byte blocks" % (
            img, size, bs))
    dev = FlashBlockDevice(block_size=bs, block_count=size // bs).load(img)
    vfs.mount(vfs.VfsLfs2(dev), "/flash")  # writes (TSLog may rewrite meta) stay in RAM
    os.chdir("/flash")
    import console

    f = sys.stdout if out == "-" else open(out, "w")

    def writer(line):
        f.write(line)
        f.write("\n")

    n = console.dump(writer=writer, since=since, until=until)
    if f is not sys.stdout:
        f.close()
    sys.stderr.write("image_dump: %d records\n" % n)


main(sys.argv)
