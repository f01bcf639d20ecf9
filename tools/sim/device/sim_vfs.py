"""A filesystem wrapper that gives the unix port the ESP32's thread safety.

On the ESP32 port every call into LittleFS runs under the GIL, so the firmware's threads
(main loop, uploader, Wi-Fi monitor) never run two filesystem operations at once.  The
unix port's threads have no GIL (``sys.implementation._thread == "unsafe"``): two threads
in LittleFS at the same time corrupt its state.  ``LockedVfs`` wraps the mounted
``vfs.VfsLfs2`` (and each open file) so every call holds one lock, as on the board.
"""

import io


class LockedFile(io.IOBase):
    def __init__(self, f, lock):
        self._f = f
        self._l = lock

    def readinto(self, buf, n=-1):
        with self._l:
            return self._f.readinto(buf) if n < 0 else self._f.readinto(buf, n)

    def read(self, n=-1):
        with self._l:
            return self._f.read(n) if n >= 0 else self._f.read()

    def readline(self, *args):
        with self._l:
            return self._f.readline(*args)

    def readlines(self):
        with self._l:
            return self._f.readlines()

    def write(self, buf):
        with self._l:
            return self._f.write(buf)

    def seek(self, *args):
        with self._l:
            return self._f.seek(*args)

    def tell(self):
        with self._l:
            return self._f.tell()

    def flush(self):
        with self._l:
            return self._f.flush()

    def close(self):
        with self._l:
            return self._f.close()

    def ioctl(self, req, arg):
        if req == 4:  # MP_STREAM_CLOSE
            self.close()
        elif req == 1:  # MP_STREAM_FLUSH
            self.flush()
        return 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line


class LockedVfs:
    def __init__(self, fs, lock):
        self._fs = fs
        self._l = lock

    def mount(self, readonly, mkfs):
        with self._l:
            return self._fs.mount(readonly, mkfs)

    def umount(self):
        with self._l:
            return self._fs.umount()

    def open(self, path, mode):
        with self._l:
            return LockedFile(self._fs.open(path, mode), self._l)

    def ilistdir(self, path):
        """One entry at a time, each under the lock, as the board's iterator (other
        threads' calls may come between two entries there too)."""
        with self._l:
            it = self._fs.ilistdir(path)
        while True:
            with self._l:
                try:
                    entry = next(it)
                except StopIteration:
                    return
            yield entry

    def chdir(self, path):
        with self._l:
            return self._fs.chdir(path)

    def getcwd(self):
        with self._l:
            return self._fs.getcwd()

    def mkdir(self, path):
        with self._l:
            return self._fs.mkdir(path)

    def remove(self, path):
        with self._l:
            return self._fs.remove(path)

    def rmdir(self, path):
        with self._l:
            return self._fs.rmdir(path)

    def rename(self, old, new):
        with self._l:
            return self._fs.rename(old, new)

    def stat(self, path):
        with self._l:
            return self._fs.stat(path)

    def statvfs(self, path):
        with self._l:
            return self._fs.statvfs(path)
