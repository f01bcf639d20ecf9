"""SD archive: copy every logged record, exactly once, to daily CSV files on a memory card.

A second TSLog reader (the uploader has its own) walks the queue; each record becomes one
line of ``<base>/YYYY/MM/DD.csv`` (UTC date of the record), whose first line is the CSV
header of ``recordcsv.csv_columns()`` (the same columns as ``console.dump``).  Turned on by
the config key ``sd_mount`` (the card's mount point, e.g. ``"/sd"``; ``""`` = off).

Exactly once, across card removal, re-insertion and power cuts:

* The reader's cursor is committed only after the lines are written, the file flushed
  (``f_sync`` on FAT) and the filesystem synced: a record is never marked archived
  before it is on the card.
* The other way round, a cut or a removal after the flush but before the cursor commit
  would write the same lines again.  So before the first write to a day file (after
  start-up, a re-mount or any error) the archive reads that file's last complete line
  and skips records whose seqn is not above it (seqns only grow, and a file is appended
  in seqn order).
* A torn last line (the card pulled during a write) is cut off first: the file is copied
  up to its last newline and renamed over (FAT has no truncate).
* Any ``OSError`` while touching the card means "card gone": the reader is rewound to
  its committed cursor, the state becomes ``"no_card"``, and every ``retry_ms`` the
  card is mounted again (``card``: a callable giving its block device, e.g. ``sd_card``).

Records taken before NTP set the clock: those of this boot wait for
``set_boot_epoch`` (like the uploader); those of an older boot whose epoch is unknown go
to ``<base>/untimed.csv``.  After a firmware update adds a layout, the CSV columns
change: a day file with the old header is not appended to; that day continues in
``DD-1.csv`` (``-2``, ...) with the new header.

Call ``step()`` from the main loop (at most ``batch`` records a call).
"""

import os
import time

import record
import recordcsv
import utc
from fsutil import makedirs
from micropython import const

_CHUNK = const(512)  # bytes read from a file's end to find its last line (lines ~150 B)
_MAX_DAYS = const(4)  # day files remembered (records arrive in time order: 1-2 used)


def sd_card():
    """The ESP32's SD card as a block device (``machine.SDCard()``, default slot); pass
    ``card=archive.sd_card`` (or a lambda with the board's slot and pins)."""
    import machine

    return machine.SDCard()


class _Session:
    """The card's block device for one mount.  After ``kill()`` every access fails
    (returns -EIO, allocating nothing: finalizers run with the heap locked), so a file
    object left open by a removal can never flush stale sectors onto the re-inserted card
    (MicroPython's VfsFat keeps an unmounted filesystem usable by its open files)."""

    def __init__(self, dev):
        self._dev = dev

    def kill(self):
        self._dev = None

    def readblocks(self, n, buf):
        dev = self._dev
        return -5 if dev is None else dev.readblocks(n, buf)

    def writeblocks(self, n, buf):
        dev = self._dev
        return -5 if dev is None else dev.writeblocks(n, buf)

    def ioctl(self, op, arg):
        dev = self._dev
        return -5 if dev is None else dev.ioctl(op, arg)


def _size(path):
    try:
        return os.stat(path)[6]
    except OSError:
        return -1


def _sync(f):
    f.flush()
    fileno = getattr(f, "fileno", None)
    fsync = getattr(os, "fsync", None)
    if fileno and fsync:  # CPython: to the disk
        fsync(fileno())
    elif hasattr(os, "sync"):
        os.sync()  # type: ignore


class Archive:
    """Copies records from ``reader`` (a TSReader of its own; on the board an
    ``uploader.LockedReader``: the sampler writes the same TSLog) to CSV files under
    ``base``.

    ``card``: callable returning the card's block device (``sd_card``), called at every
    (re)mount: the archive mounts it with ``vfs.VfsFat`` at ``base``; None: something
    else mounts the card at ``base`` (then only its presence is checked); ``boot``: the
    current boot counter; ``batch``: records per ``step()``; ``retry_ms``: pause after the
    card failed; ``interval_ms``: pause after a step that caught up (fewer than ``batch``
    records), so the card sees one flush + sync a minute rather than one per sample.
    Figures: ``stats()``.
    """

    def __init__(self, reader, base="/sd", card=None, boot=None, batch=64,
                 retry_ms=10000, interval_ms=60000, log=print):
        self._reader = reader
        self.base = base.rstrip("/") or "/"
        self._card = card
        self._session = None
        self._boot = boot
        self._batch = batch
        self._retry_ms = retry_ms
        self._interval_ms = interval_ms
        self._due_ms = time.ticks_ms()
        self._log = log
        self._epochs = {}
        self._committed = reader.seqn
        self._last = {}  # file path -> last seqn in it, read from the file since (re)start
        self._paths = {}  # UTC day number -> file path chosen for it (for _header)
        self._header = None
        self._ready = False
        self._next_ms = time.ticks_ms()
        self.state = "idle"  # idle | no_card | waiting_clock
        self.written = 0  # lines written
        self.skipped = 0  # records found already on the card (after a cut)
        self.undecodable = 0  # records of a layout this firmware does not know
        self.repaired = 0  # torn last lines cut off
        self.card_errors = 0
        self.last_error = None

    def set_boot_epoch(self, boot, utc_ms_at_boot, estimated=False):
        """The UTC ms at which boot ``boot``'s monotonic clock read 0 (see ``record``;
        an ``estimated`` one is used as it is: the CSV has no column for it)."""
        self._epochs[boot] = utc_ms_at_boot

    def stats(self):
        return {"state": self.state, "written": self.written, "skipped": self.skipped,
                "undecodable": self.undecodable, "repaired": self.repaired,
                "card_errors": self.card_errors, "last_error": self.last_error,
                "cursor": self._committed}

    # ------------------------------------------------------------ card
    def _try_mount(self):
        try:
            if self._card is not None:
                import vfs

                self._release()
                sess = _Session(self._card())
                vfs.mount(vfs.VfsFat(sess), self.base)  # type: ignore  # a block device
                self._session = sess
            os.stat(self.base)
        except Exception as e:  # noqa: BLE001 - no card, unformatted, driver error
            self._card_lost(e, quiet=True)
            return False
        if self.state == "no_card":
            self._log("archive: card at %s is back" % self.base)
        self._ready = True
        self.state = "idle"
        return True

    def _card_lost(self, e, quiet=False):
        if self.state != "no_card" and not quiet:
            self._log("archive: card at %s failed (%s); retrying every %d s" % (
                self.base, e, self._retry_ms // 1000))
        if self._ready:
            self.card_errors += 1
        self.last_error = str(e)[:80]
        self.state = "no_card"
        self._ready = False
        self._release()
        self._last = {}
        self._paths = {}
        self._next_ms = time.ticks_add(time.ticks_ms(), self._retry_ms)

    def _release(self):
        """Cut off and unmount the card we mounted (see ``_Session``)."""
        if self._session is not None:
            self._session.kill()
            self._session = None
        if self._card is not None:
            try:
                import vfs

                vfs.umount(self.base)
            except Exception:  # noqa: BLE001 - not mounted
                pass

    # ------------------------------------------------------------ files
    def _day_path(self, ts, header):
        """The file for the UTC day of ``ts``: ``DD.csv``, or ``DD-n.csv`` when an older
        file of that day has another header."""
        day = ts // 86400000
        path = self._paths.get(day)
        if path is not None:
            return path
        iso = utc.iso(ts)
        folder = "%s/%s/%s" % ("" if self.base == "/" else self.base, iso[:4], iso[5:7])
        n = 0
        while True:
            path = "%s/%s%s.csv" % (folder, iso[8:10], "-%d" % n if n else "")
            have = self._header_of(path)
            if have is None or have == header:
                break
            n += 1
        if len(self._paths) >= _MAX_DAYS:
            self._paths = {}
        self._paths[day] = path
        return path

    def _header_of(self, path):
        """The header line of ``path``; None if the file is missing or has no whole line."""
        tmp = path + ".tmp"
        if _size(path) < 0 and _size(tmp) >= 0:
            os.rename(tmp, path)  # a repair cut between remove and rename
        try:
            with open(path, "rb") as f:
                line = f.readline(_CHUNK)
        except OSError as e:
            if _size(path) < 0:
                return None
            raise e
        if not line.endswith(b"\n"):
            return None
        return line[:-1].decode()

    def _last_seq(self, path):
        """Last seqn written to ``path`` (0: none), cutting off a torn last line."""
        size = _size(path)
        if size <= 0:
            return 0
        start = size - _CHUNK if size > _CHUNK else 0
        with open(path, "rb") as f:
            f.seek(start)
            tail = f.read()
        end = tail.rfind(b"\n") + 1  # bytes of tail up to and with the last newline
        if end < len(tail):
            if end == 0 and start == 0:
                return 0  # not even a whole header: rewritten by _open
            self._cut(path, start + end)
            tail = tail[:end]
        line = tail[tail.rfind(b"\n", 0, len(tail) - 1) + 1:-1]
        comma = line.find(b",")
        field = line[:comma] if comma > 0 else b""
        return int(field) if field.isdigit() else 0

    def _cut(self, path, keep):
        """Keep the first ``keep`` bytes of ``path`` (copy and rename: FAT cannot truncate)."""
        tmp = path + ".tmp"
        buf = bytearray(_CHUNK)
        mv = memoryview(buf)
        with open(path, "rb") as src, open(tmp, "wb") as dst:
            left = keep
            while left > 0:
                n = src.readinto(buf)
                if not n:
                    break
                n = n if n < left else left
                dst.write(mv[:n])
                left -= n
            _sync(dst)
        os.remove(path)  # FAT: rename does not replace
        os.rename(tmp, path)
        self.repaired += 1
        self._log("archive: %s: torn last line cut off" % path)

    def _open(self, path, header):
        if self._header_of(path) is None:
            makedirs(path[:path.rfind("/")])
            f = open(path, "w")
            f.write(header + "\n")
            return f
        return open(path, "a")

    # ------------------------------------------------------------ copying
    def step(self):
        """Copy up to ``batch`` records; returns how many were accounted for (written,
        found already on the card, or undecodable); 0 while the card is missing or
        before ``interval_ms`` has passed since a step that caught up."""
        now = time.ticks_ms()
        if time.ticks_diff(self._due_ms, now) > 0:
            return 0
        if not self._ready:
            if time.ticks_diff(self._next_ms, time.ticks_ms()) > 0 or not self._try_mount():
                return 0
        try:
            done = self._copy()
        except MemoryError:  # a fragmented heap: the same records again next time
            self._reader.seek(self._committed)
            raise
        except OSError as e:
            self._reader.seek(self._committed)  # re-read what was not made durable
            self._card_lost(e)
            return 0
        rd = self._reader
        if rd.seqn != self._committed:
            rd.commit()  # only now: the lines are flushed and synced
            self._committed = rd.seqn
        if done < self._batch:
            self._due_ms = time.ticks_add(now, self._interval_ms)
        return done

    def _copy(self):
        rd = self._reader
        cols = recordcsv.csv_columns()
        header = ",".join(cols)
        f = None
        fpath = None
        done = 0
        if self.state == "waiting_clock":
            self.state = "idle"
        if header != self._header:  # a layout was added: the day files are chosen again
            self._header = header
            self._paths = {}
        try:
            while done < self._batch:
                raw = rd.next_record()
                seqn = rd.seqn
                if raw is None:
                    break
                try:
                    rec = record.decode(raw)
                except ValueError as e:
                    self.undecodable += 1
                    self._log("archive: seqn %d skipped: %s" % (seqn, e))
                    done += 1
                    continue
                ts = record.timestamp_of(rec, self._epochs)
                if ts is not None:
                    path = self._day_path(ts, header)
                elif record.waits(rec, self._epochs, self._boot):
                    rd.seek(seqn - 1)  # it may get its time: wait, keep order
                    self.state = "waiting_clock"
                    break
                else:
                    path = ("" if self.base == "/" else self.base) + "/untimed.csv"
                if path != fpath:
                    if f is not None:
                        _sync(f)
                        f.close()
                        f = None
                    fpath = path
                    if path not in self._last:
                        if len(self._last) >= _MAX_DAYS:
                            self._last = {}
                        self._last[path] = self._last_seq(path)
                if seqn <= self._last[path]:
                    self.skipped += 1  # written before a cut that came before the commit
                    done += 1
                    continue
                if f is None:
                    f = self._open(path, header)
                f.write(recordcsv.csv_line(seqn, rec, cols, self._epochs))
                f.write("\n")
                self._last[path] = seqn
                self.written += 1
                done += 1
            if f is not None:
                _sync(f)
                f.close()
                f = None
        finally:
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass
        return done
