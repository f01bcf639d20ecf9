"""Board clock: a non-wrapping monotonic count since boot, and UTC from NTP.

``mono_ms()`` is milliseconds since this boot as a plain int.  It accumulates
``ticks_diff`` so the wrap of ``ticks_ms`` (every ~12.4 days on the ESP32) does
not show; it must be called at least every few days (``ticks_diff`` is exact for
gaps under 2**29 ms, ~6 days): the main loop calls it every sample.

``step(online)`` does at most one ``ntptime.settime()`` per call, when a sync is
due and the link is up:

* not set yet: retry with capped exponential backoff (``retry_min_s`` doubling to
  ``retry_max_s``) with "equal jitter" (a random delay between half and all of the
  backoff, so a fleet rebooted by one power cut does not hit the server in step);
  when the link comes back after an outage, the next attempt is made at once;
* set: resync every ``resync_s`` (drift correction), same backoff on failure.

A sync blocks for up to ``ntptime.timeout`` (1 s) plus a DNS lookup, so call
``step()`` from the Wi-Fi thread or where that is acceptable.

UTC: ``utc_ms()`` is ``utc.now_ms()`` (UTC ms since 1970 on both the ESP32's
2000 epoch and the unix port's 1970 one) once this boot has synced, else None:
the RTC may hold anything before that (year 2000 after a power-up).
``boot_epoch_ms`` is the UTC ms at which ``mono_ms()`` was 0, fixed at the first
sync of the boot (later resyncs only log the correction), so records stamped
with ``mono_ms()`` before the sync map to UTC as ``boot_epoch_ms + time_ms``.
``on_set(boot_epoch_ms)`` is called once, at that first sync.
"""

import random
import time

import utc
from micropython import const

_REBASE_MS = const(60_000)  # re-anchor the ticks reference this often (bounds allocation)


class Clock:
    def __init__(self, ntp, host="pool.ntp.org", resync_s=3600, retry_min_s=5,
                 retry_max_s=600, epochs=None, log=print):
        self.ntp = ntp
        self.host = host
        self.log = log
        self.resync_ms = int(resync_s) * 1000
        self.retry_min_ms = max(1, int(retry_min_s)) * 1000
        self.retry_max_ms = max(self.retry_min_ms, int(retry_max_s) * 1000)
        # (ticks at anchor, mono ms at anchor): replaced as one tuple, so a reader in
        # another thread always sees a consistent pair.
        self._anchor = (time.ticks_ms(), 0)
        self.is_set = False
        self.boot_epoch_ms = None
        self.on_set = None
        self.epochs = epochs  # the boots' epochs (``Epochs``), when the firmware keeps them
        self.syncs = 0  # successful syncs this boot
        self.attempts = 0
        self.failures = 0  # consecutive failures (0 after a success)
        self.last_error = None
        self._next_ms = 0  # mono ms when the next attempt is due
        self._was_online = False

    # -- time
    def mono_ms(self):
        """Milliseconds since this boot (non-wrapping int)."""
        t0, m0 = self._anchor
        now = time.ticks_ms()
        d = time.ticks_diff(now, t0)
        if d < 0:  # another thread re-anchored after we read ticks: never go back
            d = 0
        m = m0 + d
        if d >= _REBASE_MS:
            self._anchor = (now, m)
        return m

    def utc_ms(self):
        """UTC ms since 1970, or None until this boot's first NTP sync."""
        return utc.now_ms() if self.is_set else None

    # -- NTP
    def _backoff_ms(self):
        n = min(self.failures - 1, 20)
        full = min(self.retry_max_ms, self.retry_min_ms << n)
        half = full // 2
        return half + (random.getrandbits(16) * (full - half)) // 0xFFFF

    def step(self, online):
        """At most one NTP attempt if ``online`` and due; True when a sync succeeded."""
        if not online:
            self._was_online = False
            return False
        now = self.mono_ms()
        if not self._was_online:
            self._was_online = True
            if not self.is_set:
                self._next_ms = now  # link (back): try at once, keep the failure count
        if now - self._next_ms < 0:
            return False
        self.attempts += 1
        try:
            self.ntp.host = self.host
            self.ntp.settime()
        except Exception as e:  # noqa: BLE001 - OSError mostly; a bad reply raises others
            self.failures += 1
            self.last_error = e
            delay = self._backoff_ms()
            self._next_ms = self.mono_ms() + delay
            self.log("clock: NTP %s failed (%s: %s), retry in %d s" % (
                self.host, type(e).__name__, e, delay // 1000))
            return False
        m = self.mono_ms()
        t = utc.now_ms()
        self.failures = 0
        self.last_error = None
        self.syncs += 1
        self._next_ms = m + self.resync_ms
        epoch = self.boot_epoch_ms
        if epoch is None:
            self.boot_epoch_ms = t - m
            self.is_set = True
            self.log("clock: set by NTP %s: %s (boot epoch %d)" % (
                self.host, utc.iso(t), self.boot_epoch_ms))
            if self.on_set is not None:
                self.on_set(self.boot_epoch_ms)
        else:
            self.log("clock: resync, UTC vs monotonic %+d ms" % (t - (epoch + m)))
        return True


class Epochs:
    """Boot epochs kept across boots: the UTC ms at which each recent boot's monotonic clock
    read 0, so that a record stamped with ms-since-boot (taken before NTP) still gets its
    time after a reset (a JSON file, ``data/epochs.json``; the last ``keep`` boots).

    ``learned(boot, epoch)``: this boot's clock was set. A boot that never learned the time
    gets an *estimated* epoch from the boot after it: its last record (``ended(boot,
    mono_ms)``, told at the next boot from the queue's tail) is put one ``interval_ms``
    before the next boot's monotonic 0, so records keep their order and the estimate is
    late by the time the board was off minus one interval (seconds after a reset; after a
    power cut, as long as the power was gone: docs/firmware.md). ``epochs``: ``{boot: ms}``;
    ``estimated``: the boots whose epoch is an estimate.
    """

    def __init__(self, path="data/epochs.json", interval_ms=2000, keep=16, log=print):
        self.path = path
        self.interval_ms = interval_ms
        self.keep = keep
        self.log = log
        self.epochs = {}
        self.estimated = set()
        self.ends = {}  # boot -> mono ms of its last record without a wall-clock time
        try:
            import json

            with open(path) as f:
                d = json.load(f)
            for k, v in d.get("epochs", {}).items():
                self.epochs[int(k)] = int(v[0])
                if v[1]:
                    self.estimated.add(int(k))
            for k, v in d.get("ends", {}).items():
                self.ends[int(k)] = int(v)
        except (OSError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
            if not isinstance(e, OSError):  # a damaged file: estimates start again
                self.log("clock: %s unreadable (%s): boot epochs start afresh" % (path, e))

    def _save(self):
        import fsutil

        boots = sorted(set(self.epochs) | set(self.ends))[-self.keep:]
        d = {"epochs": {}, "ends": {}}
        for b in boots:
            if b in self.epochs:
                d["epochs"][str(b)] = [self.epochs[b], b in self.estimated]
            if b in self.ends:
                d["ends"][str(b)] = self.ends[b]
        try:
            import json

            fsutil.write_atomic(self.path, json.dumps(d))
        except OSError as e:
            self.log("clock: cannot save %s: %s" % (self.path, e))

    def ended(self, boot, mono_ms):
        """Boot ``boot``'s last record was stamped ``mono_ms`` (no wall-clock time)."""
        if self.ends.get(boot) != mono_ms and boot not in self.epochs:
            self.ends[boot] = mono_ms
            self._save()

    def learned(self, boot, epoch_ms):
        """Boot ``boot`` learned its epoch; returns the boots whose epoch is now known
        (itself, then the earlier boots estimated from it, newest first).  The boots that
        stored nothing do not break the chain: each boot that ``ended`` without a time
        is put just before the next one that has an epoch."""
        self.epochs[boot] = epoch_ms
        self.estimated.discard(boot)
        new = [boot]
        # Boots before this one (16-bit counter: by distance back) that never learned it.
        older = [b for b in self.ends if b not in self.epochs and 0 < (boot - b) & 0xFFFF < 0x8000]
        older.sort(key=lambda b: (boot - b) & 0xFFFF)
        nxt = epoch_ms
        for b in older:
            nxt = self.epochs[b] = nxt - self.ends[b] - self.interval_ms
            self.estimated.add(b)
            new.append(b)
        self._save()
        return new
