"""The uploader thread: every ``send_interval_s`` (at once again while a backlog drains)::

    clock.step(online)      NTP (re)sync when due: one attempt, DNS + up to 1 s
    sender.step()           at most one HTTP exchange (only while Wi-Fi is up)
    health.step()           a health record every ``health_interval_s``
    mqtt.step()             with ``mqtt_host``: at most one MQTT publish (reader 2) and its
                            health record (lib/mqtt_uplink.py, docs/fleet.md)
    archive.step()          with ``sd_mount``: records onto the SD card (reader 1)

``clock.step`` runs here, not on the sampling loop, because an NTP attempt blocks for a
DNS lookup plus ``ntptime.timeout`` (1 s), half a 2 s slot; ``clock.on_set`` then fires
on this thread, which owns the sender, so the boot epoch needs no hand-over.

Why a thread, against strict time budgets around ``sender.step()``: one HTTP exchange
blocks for up to ``timeout_s`` (10 s) per socket operation, and a TLS handshake with a
stalled server takes several of them, far longer than the 2 s sample interval; no budget
can bound a blocking ``recv`` short of making the timeouts smaller than a sample
interval, which breaks uploads over a slow link.  In its own ``_thread`` the uploader can
stall for as long as the network likes: the ESP32 port releases the GIL in blocking
socket calls, so the main loop keeps its schedule (the CPU-bound part of a handshake can
still hold the GIL for a few hundred ms: a late slot, never a missed one at 2 s).
``host_tests/test_app.py`` measures it against a server that accepts and never answers,
and ``threaded=False`` (``step()`` inline after each sample) shows the alternative
missing slots.

Shared with the main loop: the TSLog (every call on either side holds the lock:
``LockedReader`` wraps the uplinks' readers), and plain int counters written by one
thread and read by the other.  ``beat`` (ticks_ms when the thread last came back) tells
the main loop's watchdog whether the thread is stuck.
"""

import _thread
import sys
import time

from micropython import const

_SLICE_MS = const(500)  # longest sleep: the stop flag is checked this often
_STACK = const(16384)  # mbedTLS handshake needs more than the default thread stack (5 KB)


class LockedReader:
    """A TSReader whose calls hold ``lock`` (the sampler writes the same TSLog).

    ``followers``: readers of uplinks that are not configured (the MQTT uplink's reader 2
    exists, so readers 0 and 1 do too): each commit reads them up to this reader, so they
    never hold records on flash that every configured uplink has sent."""

    def __init__(self, reader, lock, followers=()):
        self._r = reader
        self._lock = lock
        self._followers = followers

    @property
    def seqn(self):
        return self._r.seqn

    def next_record(self):
        with self._lock:
            return self._r.next_record()

    def seek(self, seqn):
        with self._lock:
            self._r.seek(seqn)

    def commit(self):
        with self._lock:
            self._r.commit()
            for f in self._followers:
                while f.seqn < self._r.seqn and f.next_record() is not None:
                    pass
                f.commit()


def _offline():
    return False


class Uploader:
    """Steps the clock and the configured uplinks (``sender``, ``health``, ``mqtt``,
    ``archive``: each None when not configured) every ``interval_ms``; ``online()`` says
    whether Wi-Fi is up; ``boot16``: this boot's counter, for the boot epoch."""

    def __init__(self, clock, interval_ms, boot16, online=_offline, sender=None, health=None,
                 mqtt=None, archive=None, log=print):
        self.clock = clock
        self.online = online
        self.interval_ms = interval_ms
        self.boot16 = boot16
        self.sender = sender
        self.health = health
        self.mqtt = mqtt
        self.archive = archive
        self._log = log
        self.running = False
        self.stopping = False
        self.beat = time.ticks_ms()  # ticks_ms when the thread last came back
        self.steps = 0
        self.restarts = 0
        self.error = None
        self._epoch = None  # from clock.on_set, applied before the next step
        self._tell = True  # the uplinks are told the boots' epochs at the first step
        clock.on_set = self.on_clock_set

    def on_clock_set(self, boot_epoch_ms):
        self._epoch = boot_epoch_ms
        self._tell = True

    def _apply_epoch(self):
        """Tell the uplinks every boot epoch known (``clock.epochs``: kept across boots,
        with the estimates for boots that never learned the time), this boot's last: an
        uplink holds the records without a time until this boot's epoch is known."""
        if not self._tell:
            return
        self._tell = False
        ep, self._epoch = self._epoch, None
        book = self.clock.epochs
        if book is not None:
            if ep is not None:
                book.learned(self.boot16, ep)
            known, estimated = book.epochs, book.estimated
        else:
            known, estimated = ({self.boot16: ep} if ep is not None else {}), ()
        boots = sorted(known, key=lambda b: b == self.boot16)
        for up in (self.sender, self.archive, self.mqtt):
            if up is not None:
                for b in boots:
                    up.set_boot_epoch(b, known[b], b in estimated)

    def step(self):
        """One pass: the clock, then each uplink once; True if there is more to send."""
        online = self.online()
        try:
            self.clock.step(online)
        except Exception as e:  # noqa: BLE001 - NTP trouble must not stop the uploads
            self._log("uploader: clock step failed: %s" % e)
        self._apply_epoch()
        busy = False
        snd = self.sender
        if online and snd is not None:
            busy = snd.step() > 0 or snd.state == "sending"
        self.steps += 1
        self.beat = time.ticks_ms()
        if online and self.health is not None:
            self.health.step(True)
            self.beat = time.ticks_ms()
        if online and self.mqtt is not None:  # the fleet uplink, its own reader and link
            busy = self.mqtt.step() > 0 or busy
            self.beat = time.ticks_ms()
        if self.archive is not None:  # here: a slow card never delays a sample
            try:
                busy = self.archive.step() > 0 or busy
            except Exception as e:  # noqa: BLE001 - the archive retries by itself
                self._log("uploader: archive step failed: %s" % e)
            self.beat = time.ticks_ms()
        return busy

    def _wait(self, ms):
        """Sleep ``ms`` in slices, returning early when stopping."""
        while ms > 0 and not self.stopping:
            d = ms if ms < _SLICE_MS else _SLICE_MS
            time.sleep_ms(d)
            ms -= d
            self.beat = time.ticks_ms()  # waiting is not stalling

    def _run(self):
        try:
            while not self.stopping:
                if not self.step():
                    self._wait(self.interval_ms)
        except Exception as e:  # noqa: BLE001 - the main loop starts the thread again
            self.error = repr(e)[:120]
            self._log("uploader: thread failed: %s" % self.error)
        finally:
            self.running = False

    def start(self):
        """Start the thread (again, after it failed)."""
        self.running = True
        self.stopping = False
        self.beat = time.ticks_ms()
        old = None
        if sys.platform == "esp32":  # the default thread stack (5 KB) is too small for TLS
            old = _thread.stack_size(_STACK)
        try:
            _thread.start_new_thread(self._run, ())
        finally:
            if old is not None:
                _thread.stack_size(old)

    def stop(self, wait_ms):
        """Ask the thread to stop and wait up to ``wait_ms`` for it; then commit the
        sender's cursor (what was uploaded is not sent again after a reset)."""
        self.stopping = True
        t0 = time.ticks_ms()
        while self.running and time.ticks_diff(time.ticks_ms(), t0) < wait_ms:
            time.sleep_ms(10)
        self.flush()

    def flush(self):
        if self.sender is not None:
            try:
                self.sender.flush()
            except OSError as e:
                self._log("uploader: cursor commit failed: %s" % e)
