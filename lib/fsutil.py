"""Small filesystem helpers MicroPython's ``os`` lacks (no ``os.path``, no ``makedirs``).

Paths may be relative (the firmware runs with cwd "/" on the board, a mounted image in
the simulator) or absolute.
"""

import os


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def makedirs(path):
    """Create ``path`` and the folders above it; failures are ignored (the folder exists,
    or the medium is gone: the next open of a file in it says so)."""
    cur = "/" if path.startswith("/") else ""
    for part in path.split("/"):
        if not part:
            continue
        cur = cur + part if cur in ("", "/") else cur + "/" + part
        try:
            os.mkdir(cur)
        except OSError:
            pass


def write_atomic(path, text):
    """Write ``text`` to ``path`` so that a power cut leaves the old or the new file
    (``path + ".tmp"`` first, then renamed over ``path``)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:  # closing commits it (LittleFS: copy-on-write metadata)
        f.write(text)
        f.flush()
    try:
        os.rename(tmp, path)  # LittleFS and POSIX replace the target atomically
    except OSError:
        # FAT: rename onto an existing file fails. A cut between remove and rename leaves
        # only the complete temp file, which the reader must recover (settings.load does).
        try:
            os.remove(path)
        except OSError:
            pass
        os.rename(tmp, path)
