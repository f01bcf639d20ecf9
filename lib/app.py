"""The firmware: board set-up (``boot()``, from boot.py) and the main loop (``run()``, main.py).

Set-up is ``lib/builder.py`` (the parts) and ``lib/uplinks.py`` (the uplinks): each is
dropped from the heap once it has done its work.  The uploader thread is
``lib/uploader.py``.  What
stays here is the loop and the watchdog, one slot per iteration::

    sleep until the slot is due (in slices of <= 0.5 s, feeding the watchdog)
    sampler.poll()          read both sensors, gc.collect(), store one record in TSLog
    bootguard.check_sensors every sensor failing N slots in a row -> reset with back-off
    watchdog feed           only when the loop made progress and the uploader is alive

Sampling runs on a drift-free schedule (``sampler``) from boot, before any network:
samples taken before NTP carry ms-since-boot and get their UTC timestamp from the boot
epoch once the clock is set (``clock.on_set``, see ``uploader``).

Watchdog (``bootguard``): fed by the main loop only, while it keeps its schedule and the
uploader thread has returned from a step within ``upload_stall_ms`` (a thread hung in
a socket call beyond every timeout then leads to a watchdog reset, recorded as
"uploader_stall").  Ctrl-C (REPL) stops the loop and relaxes the watchdog to 1 h.

Telemetry: ``App.stats()`` is the one dict of figures, under the names the health
records use (``lib/health.py``), read by health, the console and the simulator alike.

Hooks for the simulator and tests (see docs/firmware.md): ``boot(cfg)`` returns the
``App`` (also in ``app.board``), ``run(stop_after_s=None, on_iteration=None)``,
``stop()``, ``App.stats()``; module globals ``run_limit_s`` and ``on_iteration`` are
used by ``run()`` when its arguments are None (main.py calls ``run()`` bare).
"""

import gc
import sys
import time

from micropython import const

_SLICE_MS = const(500)  # longest sleep: stop flag, watchdog and deadline checks
_REPL_WDT_MS = 3600000  # watchdog after Ctrl-C, so the REPL can be used

VERSION = "1.0.0"
board = None  # the App built by boot() (lib/console.py shows its parts)
run_limit_s = None  # default stop_after_s of run() (simulator)
on_iteration = None  # default on_iteration of run() (simulator)


class OfflineClock:
    """Stand-in when lib/clock.py cannot be set up: never set, ms since boot."""

    is_set = False
    boot_epoch_ms = None
    on_set = None
    epochs = None

    def __init__(self):
        self._t0 = time.ticks_ms()
        self._acc = 0

    def mono_ms(self):
        now = time.ticks_ms()
        self._acc += time.ticks_diff(now, self._t0)
        self._t0 = now
        return self._acc

    def utc_ms(self):
        return None

    def step(self, online):
        pass


class App:
    """The running board: its parts, built by ``builder.build()`` (every one there;
    ``wifi`` None when the board runs without a Wi-Fi monitor), the loop and the figures.

    ``up``: the ``uploader.Uploader`` (its uplinks each None when not configured);
    ``threaded``: the uploader in its own thread (default) or stepped after each sample;
    ``online``: whether the uploader may run when there is no Wi-Fi monitor.
    """

    def __init__(self, cfg, lock, guard, clock, queue, queue_place, sampler, wifi, up,
                 symbol, threaded=True, online=False, log=print):
        self.cfg = cfg
        self.lock = lock
        self.guard = guard
        self.clock = clock
        self.queue = queue
        self.queue_place = queue_place
        self.sampler = sampler
        self.wifi = wifi
        self.up = up
        self.symbol = symbol
        self.threaded = threaded
        self.online_default = online
        self._log = log
        self.upload_stall_ms = cfg["upload_stall_ms"]
        self._stop = False
        self._stall_noted = False
        self.iterations = 0

    # The uplinks, for the console, tests and the simulator (each None when not configured).
    @property
    def sender(self):
        return self.up.sender

    @property
    def health(self):
        return self.up.health

    @property
    def mqtt(self):
        return self.up.mqtt

    @property
    def archive(self):
        return self.up.archive

    def online(self):
        w = self.wifi
        return bool(w.connected) if w is not None else self.online_default

    # ------------------------------------------------------------------ figures
    def stats(self):
        """Every figure in one dict (no secrets): the health record's fields
        (``health.FIELDS``, the same names) and the loop's, the queue's and the uplinks'."""
        s = self.sampler
        g = self.guard
        up = self.up
        d = s.stats()
        with self.lock:
            q = self.queue
            last, _, lag = q.stats()
            d["flash_free"] = q.free()
            d["dropped"] = q.dropped
            d["corrupt"] = q.corrupt
            held, used, total = q.usage()
        d["last_seqn"] = last
        d["queue_lag"] = lag
        d["queue"] = self.queue_place
        # Days the queue holds at this interval: its flash over the flash a record took so
        # far (0 until it holds a few hundred records).
        d["queue_days"] = int(total * held / used * s.interval_ms / 86400000) \
            if held >= 256 and used else 0
        w = self.wifi
        rssi = 0
        if w is not None and w.connected:
            try:
                rssi = w.rssi()
            except Exception:  # noqa: BLE001 - a figure, not worth a failure
                rssi = 0
        d["rssi"] = rssi
        d["wifi_drops"] = getattr(w, "drops", 0) if w is not None else 0
        d["wifi"] = w.state if w is not None else ("online" if self.online_default else "off")
        snd = up.sender or up.mqtt
        d["sent"] = snd.sent if snd else 0
        d["dead"] = snd.dead if snd else 0
        d["sender_state"] = up.sender.state if up.sender else "off"
        d["health_sent"] = up.health.sent if up.health else 0
        d["mqtt_sent"] = up.mqtt.sent if up.mqtt else 0
        d["mqtt_state"] = up.mqtt.state if up.mqtt else "off"
        d["clock_set"] = bool(self.clock.is_set)
        d["uptime_s"] = self.clock.mono_ms() // 1000
        d["boot"] = g.boot
        d["reset_cause"] = g.cause
        d["resets"] = ",".join("%d:%s" % (b, c) for b, c in g.history)
        d["wdt_feeds"] = g.feeds
        d["heap_free"] = gc.mem_free()
        d["heap_used"] = gc.mem_alloc()
        d["firmware"] = VERSION
        d["iterations"] = self.iterations
        d["uploader_steps"] = up.steps
        d["uploader_restarts"] = up.restarts
        return d

    def health_message(self):
        """The JSON text of a health record now, None while the clock is unknown (the
        MQTT uplink's ``health``)."""
        if not self.clock.is_set:
            return None
        import health
        return health.message(self.symbol, self.clock.utc_ms(), self.stats())

    # ------------------------------------------------------------------ loop
    def _feed(self):
        if self.threaded and time.ticks_diff(time.ticks_ms(), self.up.beat) > \
                self.upload_stall_ms:
            if not self._stall_noted:  # the watchdog will reset: tell the next boot why
                self._stall_noted = True
                self._log("app: uploader stuck for %d s: watchdog not fed" % (
                    self.upload_stall_ms // 1000))
                self.guard.save(pending="uploader_stall")
            return
        self.guard.feed()

    def iterate(self):
        """Process the due slot (if any) and the work after it; True if a slot was taken."""
        if not self.sampler.poll():  # (it collects the garbage once a slot)
            return False
        mono = self.clock.mono_ms()  # (also keeps the mono clock from wrapping)
        self.guard.check_sensors(self.sampler.all_failed, mono)
        up = self.up
        if not self.threaded:
            up.step()
        elif not up.running and not self._stop:
            up.restarts += 1
            up.start()
        self._feed()
        self.iterations += 1
        return True

    def run(self, stop_after_s=None, on_iteration=None):
        """The main loop; returns ``stats()`` after ``stop_after_s`` s or ``stop()``."""
        self._stop = False
        self.guard.wdt_start()
        self.sampler.start()
        if self.threaded:
            self.up.start()
        t0 = time.ticks_ms()
        limit = None if stop_after_s is None else int(stop_after_s * 1000)
        interrupted = False
        try:
            while not self._stop:
                wait = self.sampler.due_in_ms()
                if limit is not None:
                    left = limit - time.ticks_diff(time.ticks_ms(), t0)
                    if left <= 0:
                        break
                    if left < wait:
                        wait = left
                if wait > 0:
                    time.sleep_ms(wait if wait < _SLICE_MS else _SLICE_MS)
                    self._feed()
                    continue
                if self.iterate() and on_iteration is not None:
                    on_iteration(self)
        except KeyboardInterrupt:
            interrupted = True
            self.guard.wdt_relax(_REPL_WDT_MS)
            self._log("app: stopped (Ctrl-C); watchdog relaxed to %d min; "
                      "machine.reset() to restart" % (_REPL_WDT_MS // 60000))
        finally:
            # After Ctrl-C the Wi-Fi monitor keeps running: WebREPL needs the link or the AP.
            self.shutdown(stop_wifi=not interrupted)
        return self.stats()

    def stop(self):
        """Ask the loop (and the uploader) to stop; safe from another thread."""
        self._stop = True
        self.up.stopping = True

    def shutdown(self, wait_ms=None, stop_wifi=True):
        """Stop the threads and commit the queue (end of ``run()``, or a simulated reset)."""
        self._stop = True
        if wait_ms is None:
            wait_ms = 4 * int(self.cfg["timeout_s"]) * 1000
        self.up.stop(wait_ms)
        w = self.wifi
        if stop_wifi and w is not None and hasattr(w, "stop"):
            try:
                w.stop()
            except Exception:  # noqa: BLE001
                pass
        self._commit()

    def _commit(self):
        with self.lock:
            try:
                self.queue.commit()
            except OSError as e:
                self._log("app: commit failed: %s" % e)
        self.up.flush()  # what was uploaded is not sent again after the reset


def boot(cfg=None, log=print, **parts):
    """boot.py's work: settings, boot guard, I2C, sensors, LED, Wi-Fi (``builder.build``,
    see there for ``parts``), then the uplinks and WebREPL (``uplinks.build``).  Each of
    the two modules is dropped from the heap once it has done its work."""
    global board
    import builder
    try:
        board = builder.build(cfg, log, **parts)
    finally:
        del builder
        _drop("builder")
    import uplinks
    try:
        uplinks.build(board, log)
    finally:
        del uplinks
        _drop("uplinks")
    return board


def _drop(name):
    sys.modules.pop(name, None)
    gc.collect()


def run(stop_after_s=None, on_iteration=None):
    """main.py's work: the loop (set-up first if boot.py did not do it)."""
    b = board or boot()
    if stop_after_s is None:
        stop_after_s = run_limit_s
    if on_iteration is None:
        on_iteration = globals()["on_iteration"]
    return b.run(stop_after_s, on_iteration)


def stop():
    if board is not None:
        board.stop()
