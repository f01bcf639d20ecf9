"""The firmware: board set-up (``boot()``, from boot.py) and the main loop (``run()``, main.py).

Main loop (one iteration per sample slot)::

    sleep until the slot is due (in slices of <= 0.5 s, feeding the watchdog)
    sampler.poll()          read both sensors, gc.collect(), store one record in TSLog
    bootguard.check_sensors every sensor failing N slots in a row -> reset with back-off
    watchdog feed           only when the loop made progress and the uploader is alive

Uploader thread, every ``send_interval_s`` (at once again while a backlog drains)::

    clock.step(online)      NTP (re)sync when due: one attempt, DNS + up to 1 s
    sender.step()           at most one HTTP exchange (only while Wi-Fi is up)
    health.step()           a health record every ``health_interval_s``
    mqtt.step()             with ``mqtt_host``: at most one MQTT publish (reader 2) and its
                            health record (lib/mqtt_uplink.py, docs/fleet.md)

``clock.step`` runs on the uploader thread, not the sampling loop, because an NTP
attempt blocks for a DNS lookup plus ``ntptime.timeout`` (1 s), half a 2 s slot
(``clock.mono_ms`` is safe to call from both threads; ``on_set`` then fires on the
uploader thread, which owns the sender, so ``set_boot_epoch`` needs no hand-over).

Sampling runs on a drift-free schedule (``sampler``) from boot, before any network:
samples taken before NTP carry ms-since-boot and get their UTC timestamp from
``sender.set_boot_epoch`` once the clock is set (``clock.on_set``).

Uploader thread (the choice, against strict time budgets around ``sender.step()``):
one HTTP exchange blocks for up to ``timeout_s`` (10 s) per socket operation, and a
TLS handshake with a stalled server takes several of them, far longer than the 2 s
sample interval; no budget can bound a blocking ``recv`` short of making the
timeouts smaller than a sample interval, which breaks uploads over a slow link.  In
its own ``_thread`` the uploader can stall for as long as the network likes: the
ESP32 port releases the GIL in blocking socket calls, so the main loop keeps its
schedule (the CPU-bound part of a handshake can still hold the GIL for a few hundred
ms: a late slot, never a missed one at 2 s).  ``host_tests/test_app.py`` measures it
against a server that accepts and never answers, and ``threaded=False`` (inline
``step()`` after each sample) shows the alternative missing slots.

Shared state between the two threads:

* the TSLog object: the sampler stores/commits, the sender's reader reads and commits
  its cursor; every TSLog call on either side holds ``self.lock``
  (``_thread.allocate_lock()``): ``LockedReader`` wraps the reader for the sender;
* the ``https.Client`` is used by the uploader thread only (sender and health);
* the boot epoch learnt by ``clock.on_set`` is kept in one attribute and applied by
  the uploader thread before its next step (``sender`` is not thread-safe);
* counters are plain ints written by one thread and read by the other.

Watchdog (``bootguard``): fed by the main loop only, while it keeps its schedule and the
uploader thread has returned from a step within ``upload_stall_ms`` (a thread hung in
a socket call beyond every timeout then leads to a watchdog reset, recorded as
"uploader_stall").  Ctrl-C (REPL) stops the loop and relaxes the watchdog to 1 h.

Hooks for the simulator and tests (see docs/firmware.md): ``boot(cfg)`` returns the
``App`` (also in ``app.board``), ``run(stop_after_s=None, on_iteration=None)``,
``stop()``, ``App.stats()``; module globals ``run_limit_s`` and ``on_iteration`` are
used by ``run()`` when its arguments are None (main.py calls ``run()`` bare).
"""

import _thread
import gc
import os
import sys
import time

import bootguard
import fsutil
import machine
import record
import sampler
import tslog
from micropython import const

_SLICE_MS = const(500)  # longest sleep: stop flag, watchdog and deadline checks
_UPLOAD_STALL_MS = 300000  # uploader not back from a step for this long: stop feeding
_REPL_WDT_MS = 3600000  # watchdog after Ctrl-C, so the REPL can be used
_UPLOADER_STACK = const(16384)  # mbedTLS handshake needs more than the default thread stack

VERSION = "1.0.0"
board = None  # the App built by boot()
console_parts = None  # the live objects lib/console.py shows (set by App.setup)
run_limit_s = None  # default stop_after_s of run() (simulator)
on_iteration = None  # default on_iteration of run() (simulator)


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

    def commit(self):
        with self._lock:
            self._r.commit()
            for f in self._followers:
                while f.seqn < self._r.seqn and f.next_record() is not None:
                    pass
                f.commit()


class _OfflineClock:
    """Stand-in when lib/clock.py cannot be set up: never set, ms since boot."""

    is_set = False
    boot_epoch_ms = None
    on_set = None

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


def default_symbol():
    """``"esp"`` + the whole MAC in hex (``machine.unique_id()``, 6 bytes on an ESP32), e.g.
    ``"esp246f28a1b2c3"``: unique per board.  The seed used its first 4 digits only, which
    are the vendor's prefix and the same on every board of that vendor."""
    import binascii
    return "esp" + binascii.hexlify(machine.unique_id()).decode()


class App:
    """Everything the firmware runs; ``cfg`` is the settings dict (``lib/settings.py``).

    Parts can be given instead of built from ``cfg`` (tests, simulator): ``i2c``, ``led``,
    ``wifi`` (object with ``connected``, ``state``, ``rssi()``, ``drops``, ``stop()``;
    None: no Wi-Fi monitor, ``online`` decides), ``clock``, ``guard``, ``am``/``bmp``.
    ``threaded``: uploader in its own thread (default) or inline after each sample.
    """

    def __init__(self, cfg, log=print, threaded=True, **parts):
        self.cfg = cfg
        self._log = log
        self.threaded = threaded
        self._parts = parts
        self.lock = _thread.allocate_lock()
        self.online_default = bool(parts.get("online", False))
        self.i2c = self.led = self.wifi = self.clock = self.guard = None
        self.queue = self.sampler = self.sender = self.health = self.archive = None
        self.client = self.auth = self.mqtt = None
        self.symbol = cfg.get("symbol") or default_symbol()
        self.upload_stall_ms = cfg.get("upload_stall_ms", _UPLOAD_STALL_MS)
        self._stop = False
        self._running = False
        self._up_running = False
        self._epoch = None  # boot epoch from clock.on_set, applied before the next send
        self.up_beat = time.ticks_ms()  # ticks_ms when the uploader last came back
        self.up_steps = 0
        self.up_restarts = 0
        self.up_error = None
        self.iterations = 0
        self._stall_noted = False

    # ------------------------------------------------------------------ set-up
    def c(self, key, default=None):
        v = self.cfg.get(key)
        return default if v is None else v

    def setup(self):
        """Board set-up, in the order boot.py needs it; never raises for a missing part."""
        p = self._parts
        log = self._log
        self.guard = p.get("guard") or bootguard.BootGuard(
            "data/boot.json", fail_reset=self.c("sensor_fail_reset", 30),
            wdt_timeout_ms=self.c("wdt_timeout_ms", 60000), log=log).start()
        self.boot16 = self.guard.boot & 0xFFFF
        self.i2c = p.get("i2c") or machine.I2C(
            self.c("i2c_id", 0), scl=machine.Pin(self.c("i2c_scl", 22)),
            sda=machine.Pin(self.c("i2c_sda", 21)), freq=self.c("i2c_freq", 100000))
        self.led = p.get("led")
        if self.led is None and "led" not in p and self.c("led_pin", 2) >= 0:
            try:  # Wi-Fi LED: 1 Hz blink (disconnected) until the monitor says otherwise
                self.led = machine.PWM(machine.Pin(self.c("led_pin", 2)), freq=1,
                                       duty_u16=32768)
            except (OSError, ValueError) as e:
                log("app: no status LED: %s" % e)
        self.clock = p.get("clock") or self._make_clock()
        self.clock.on_set = self._on_clock_set  # type: ignore
        self.queue = self._open_log()
        self.guard.before_reset = self._commit  # a reset on purpose loses no stored sample
        self.sampler = sampler.Sampler(
            self.i2c, self.queue, self.clock, self.guard.boot,
            int(self.c("sample_interval_s", 2) * 1000), lock=self.lock, log=log,
            am=p.get("am"), bmp=p.get("bmp"))
        self.sampler.probe()  # now, so the console says at boot what is missing
        self.wifi = p.get("wifi")
        if self.wifi is None and "wifi" not in p:
            self.wifi = self._make_wifi()
        self._make_uplink()
        self._make_mqtt()
        self.archive = self._make_archive()
        # The REPL's helpers (console.status() etc.) see the live objects. Not imported
        # here: console picks these up when a person imports it, so its code (~9 KB of
        # heap) is loaded only then.
        global console_parts
        console_parts = dict(log=self.queue, place=self.queue_place, lock=self.lock,
                             sender=self.sender,
                             wifi=self.wifi, clock=self.clock, sampler=self.sampler,
                             guard=self.guard, version=VERSION, config=self.cfg,
                             dead_path="data/dead.log")
        mod = sys.modules.get("console")
        if mod is not None:  # imported before this set-up (a REPL session, tests)
            mod.attach(**console_parts)
        if self.c("webrepl_password"):
            try:
                import webrepl
                webrepl.start(password=self.c("webrepl_password"))
            except Exception as e:  # noqa: BLE001 - the loop runs without WebREPL
                log("app: WebREPL not started: %s" % e)
        return self

    def _make_clock(self):
        try:
            import clock
            import ntptime
            return clock.Clock(ntptime, host=self.c("ntp_host", "pool.ntp.org"),
                               resync_s=self.c("ntp_resync_s", 3600), log=self._log)
        except Exception as e:  # noqa: BLE001 - sampling must start anyway
            self._log("app: no NTP clock (%s): samples keep ms-since-boot" % e)
            return _OfflineClock()

    def _make_wifi(self):
        try:
            import network
            import wifi
            w = wifi.WifiMonitor(network.WLAN(network.STA_IF), network.WLAN(network.AP_IF),
                                 self.led, self.cfg, log=self._log)
            w.start()
            return w
        except Exception as e:  # noqa: BLE001 - the board still logs without Wi-Fi
            self._log("app: Wi-Fi monitor not started: %s" % e)
            return None

    def _open_log(self):
        """The queue: the raw data partition ``tslog_partition`` ("tslog", which
        ``make flash`` creates) when the board has it, else the folder ``tslog_dir``.

        ``record.open_queue`` opens it: records up to ``record.QUEUE_RECORD_SIZE`` coded by
        ``record.CODEC`` (about 3 bytes a record): each carries its layout version, so a
        firmware update that adds a field keeps the queued records readable. ``time_of``
        keeps the time index for the console. A second reader is the SD archive's
        (``sd_mount``). The raw partition wears the flash far less than LittleFS
        (docs/tslog.md). A queue of firmware 1.0 (TSLog's first format) is moved into the
        new one first: nothing queued is lost, nothing uploaded is sent again.
        """
        folder = self.c("tslog_dir", "data/q")
        where = folder
        label = self.c("tslog_partition", "tslog")
        if label:
            try:
                import esp32
                found = esp32.Partition.find(esp32.Partition.TYPE_DATA, label=label)
                if found:
                    where = found[0]
            except Exception as e:  # noqa: BLE001 - the folder queue always works
                self._log("app: partition %r: %s" % (label, e))
        self.queue_place = folder if isinstance(where, str) else "partition " + label
        self._log("app: queue on %s" % self.queue_place)
        kw = {"bucket_size": self.c("bucket_size", 1024),
              "commit_delta": self.c("commit_delta", 16),
              "nreaders": 3 if self.c("mqtt_host", "") else 2 if self.c("sd_mount", "") else 1}
        _finish_move(folder)
        if not isinstance(where, str) and fsutil.exists(folder + ".new"):
            return self._copy_back(where, folder + ".new", kw)  # a cut during _move_old
        try:
            q = record.open_queue(where, **kw)
        except tslog.OldFormat:
            q = self._move_old(where, folder, kw)
        except ValueError as e:  # another record size or codec: keep it aside, start anew
            if not isinstance(where, str):
                self._log("app: %s; queue recreated" % e)
                return record.open_queue(where, recreate=True, **kw)
            self._log("app: %s; moved to %s.old" % (e, folder))
            after = _last_bucket(folder)
            _rmtree(folder + ".old")
            os.rename(folder, folder + ".old")
            q = record.open_queue(folder, **kw)
            if after:
                q.skip_to(after)  # a new queue's seqns never repeat the old one's
        if not isinstance(where, str) and _is_old(folder):  # updated, then given the table
            import oldqueue
            oldqueue.migrate(oldqueue.open_old(folder), q, self._log)
            _rmtree(folder)
        return q

    def _move_old(self, where, folder, kw):
        """Move a queue of TSLog's first format at ``where`` into a new one (there). In a
        folder: the new queue is built beside it and renamed in (``_finish_move`` ends a
        move a power cut interrupted); on a partition: through a folder, then back."""
        import oldqueue
        old = oldqueue.open_old(where)
        tmp = folder + ".new"
        new = record.open_queue(tmp, recreate=True, **kw)
        oldqueue.migrate(old, new, self._log)
        new.close()
        if not isinstance(where, str):
            return self._copy_back(where, tmp, kw)
        os.rename(where, folder + ".v1")
        os.rename(tmp, folder)
        _rmtree(folder + ".v1")
        return record.open_queue(folder, **kw)

    def _copy_back(self, part, tmp, kw):
        """Recreate the queue on partition ``part`` from the complete queue in folder
        ``tmp`` (same seqns and cursors), then remove the folder."""
        import oldqueue
        q = record.open_queue(part, recreate=True, **kw)
        oldqueue.copy(record.open_queue(tmp, **kw), q, self._log)
        _rmtree(tmp)
        return q

    def _make_archive(self):
        mount = self.c("sd_mount", "")
        if not mount:
            return None
        try:
            import archive
            return archive.Archive(self.queue.reader(1), mount, card=archive.sd_card,  # type: ignore
                                   lock=self.lock, boot=self.boot16, log=self._log)
        except Exception as e:  # noqa: BLE001 - sampling and uploads go on without a card
            self._log("app: SD archive disabled: %s" % e)
            return None

    def _make_uplink(self):
        host = self.c("tb_host", "")
        if not host:
            self._log("app: tb_host not set: samples are kept on flash, nothing is uploaded")
            return
        try:
            import health
            import https
            import oauth
            import sender
            self.client = https.Client(host, ca_file=self.c("tb_ca_file") or None,
                                       insecure=bool(self.c("tb_insecure", False)),
                                       timeout_s=self.c("timeout_s", 10), log=self._log)
            self.auth = oauth.OAuth(self.client, self.c("tb_user") or None,
                                    self.c("tb_pass") or None,
                                    refresh_token=self.c("tb_refresh_token") or None,
                                    client_id=self.c("tb_client_id", "web"),
                                    client_secret=self.c("tb_client_secret", "secret"),
                                    log=self._log)
            stream = self.c("tb_stream", "weather-data")
            mode = self.c("write_mode", "APPEND")
            self.sender = sender.Sender(
                LockedReader(self.queue.reader(0), self.lock), self.client, self.auth,  # type: ignore
                stream, self.symbol, write_mode=mode, batch_max=self.c("batch_max", 50),
                batch_bytes=self.c("batch_bytes", 16384),
                dead_letter=sender.DeadLetterLog("data/dead.log"),
                backoff_min_ms=self.c("backoff_min_ms", 1000),
                backoff_max_ms=self.c("backoff_max_ms", 300000), boot=self.boot16,
                cursor_commit_ms=int(self.c("cursor_commit_s", 60) * 1000), log=self._log)
            self.health = health.Health(self.client, self.auth, stream, self.symbol,
                                        int(self.c("health_interval_s", 300) * 1000),
                                        self.snapshot, self.clock, write_mode=mode,
                                        log=self._log)
        except Exception as e:  # noqa: BLE001 - e.g. CA file missing: keep logging
            self.client = self.auth = self.sender = self.health = None
            for name in ("health", "sender", "oauth", "https"):  # their code: sampling's heap
                sys.modules.pop(name, None)
            gc.collect()
            self._log("app: uploader disabled: %s" % e)

    def _make_mqtt(self):
        """The fleet uplink (lib/mqtt_uplink.py, reader 2), loaded only when ``mqtt_host``
        is set; health records go out on it too."""
        url = self.c("mqtt_host", "")
        if not url:
            return
        try:
            import mqtt_uplink
            idle = [self.queue.reader(n) for n, key in ((0, "tb_host"), (1, "sd_mount"))  # type: ignore
                    if not self.c(key, "")]

            def health_message():
                if not self.clock.is_set:  # type: ignore
                    return None
                import health
                return health.message(self.symbol, self.clock.utc_ms(), self.snapshot())  # type: ignore

            self.mqtt = mqtt_uplink.MqttUplink(
                LockedReader(self.queue.reader(2), self.lock, idle), self.symbol, url,  # type: ignore
                ca_file=self.c("mqtt_ca_file") or None,
                insecure=bool(self.c("mqtt_insecure", False)), user=self.c("mqtt_user"),
                password=self.c("mqtt_pass"), topic=self.c("mqtt_topic", "weather/{symbol}"),
                batch_bytes=self.c("mqtt_batch_bytes", 4096), timeout_s=self.c("timeout_s", 10),
                backoff_min_ms=self.c("backoff_min_ms", 1000),
                backoff_max_ms=self.c("backoff_max_ms", 300000), boot=self.boot16,
                health_ms=int(self.c("health_interval_s", 300) * 1000), health=health_message,
                log=self._log)
        except Exception as e:  # noqa: BLE001 - e.g. CA file missing: keep logging
            self.mqtt = None
            self._log("app: MQTT uplink disabled: %s" % e)

    # ------------------------------------------------------------------ state
    def online(self):
        w = self.wifi
        return bool(w.connected) if w is not None else self.online_default

    def _on_clock_set(self, boot_epoch_ms):
        self._epoch = boot_epoch_ms  # applied by the thread that runs the sender

    def _apply_epoch(self):
        ep = self._epoch
        if ep is not None:
            self._epoch = None
            if self.sender is not None:
                self.sender.set_boot_epoch(self.boot16, ep)
            if self.archive is not None:
                self.archive.set_boot_epoch(self.boot16, ep)
            if self.mqtt is not None:
                self.mqtt.set_boot_epoch(self.boot16, ep)

    def snapshot(self):
        """The health record's fields (see ``health``)."""
        s = self.sampler
        g = self.guard
        with self.lock:
            flash_free = self.queue.free()  # type: ignore
            lag = self.queue.stats()[2]  # type: ignore
            dropped = self.queue.dropped  # type: ignore
        w = self.wifi
        rssi = None
        if w is not None and w.connected:
            try:
                rssi = w.rssi()
            except Exception:  # noqa: BLE001
                rssi = None
        snd = self.sender or self.mqtt
        return {"boot": g.boot, "reset_cause": g.cause,  # type: ignore
                "resets": ",".join("%d:%s" % (b, c) for b, c in g.history),  # type: ignore
                "uptime_s": self.clock.mono_ms() // 1000,  # type: ignore
                "heap_free": gc.mem_free(), "heap_used": gc.mem_alloc(),
                "flash_free": flash_free, "queue_lag": lag, "rssi": rssi or 0,
                "wifi_drops": getattr(w, "drops", 0) if w is not None else 0,
                "samples": s.taken, "stored": s.stored, "missed": s.missed,  # type: ignore
                "sensor_failed": s.failed,  # type: ignore
                "am2320_fails": s.fails["am2320"][1],  # type: ignore
                "bmp180_fails": s.fails["bmp180"][1],  # type: ignore
                "dropped": dropped, "dead": snd.dead if snd else 0,
                "sent": snd.sent if snd else 0, "firmware": VERSION, "queue": self.queue_place,
                "queue_days": self.queue_days()}

    def queue_days(self):
        """Days of samples the queue holds at this interval: its flash over the flash a
        record took so far (0 until it holds a few hundred records)."""
        with self.lock:
            held, used, total = self.queue.usage()  # type: ignore
        if held < 256 or not used:
            return 0
        return int(total * held / used * self.sampler.interval_ms / 86400000)  # type: ignore

    def stats(self):
        """One dict of figures for status lines, tests and the simulator (no secrets)."""
        d = {}
        d.update(self.sampler.stats())  # type: ignore
        with self.lock:
            last, _, lag = self.queue.stats()  # type: ignore
            d["dropped"] = self.queue.dropped  # type: ignore
            d["corrupt"] = self.queue.corrupt  # type: ignore
        d["last_seqn"] = last
        d["queued"] = lag
        snd = self.sender
        d["sent"] = snd.sent if snd else 0
        d["dead"] = snd.dead if snd else 0
        d["sender_state"] = snd.state if snd else "off"
        d["health_sent"] = self.health.sent if self.health else 0
        mq = self.mqtt
        d["mqtt_sent"] = mq.sent if mq else 0
        d["mqtt_state"] = mq.state if mq else "off"
        w = self.wifi
        d["wifi"] = w.state if w is not None else ("online" if self.online_default else "off")
        d["clock_set"] = bool(self.clock.is_set)  # type: ignore
        d["boot"] = self.guard.boot  # type: ignore
        d["reset_cause"] = self.guard.cause  # type: ignore
        d["iterations"] = self.iterations
        d["uploader_steps"] = self.up_steps
        d["uploader_restarts"] = self.up_restarts
        d["wdt_feeds"] = self.guard.feeds  # type: ignore
        return d

    # ------------------------------------------------------------------ uploader
    def _wait(self, ms):
        """Sleep ``ms`` in slices, returning early when stopping."""
        while ms > 0 and not self._stop:
            d = ms if ms < _SLICE_MS else _SLICE_MS
            time.sleep_ms(d)
            ms -= d
            self.up_beat = time.ticks_ms()  # waiting is not stalling

    def _upload_once(self):
        """One uploader pass: a sender step and a health record if due; True if busy."""
        online = self.online()
        try:
            self.clock.step(online)  # type: ignore
        except Exception as e:  # noqa: BLE001 - NTP trouble must not stop the uploader
            self._log("app: clock step failed: %s" % e)
        self._apply_epoch()
        busy = False
        snd = self.sender
        if online and snd is not None:
            n = snd.step()
            busy = n > 0 or snd.state == "sending"
        self.up_steps += 1
        self.up_beat = time.ticks_ms()
        if online and self.health is not None:
            self.health.step(True)
            self.up_beat = time.ticks_ms()
        if online and self.mqtt is not None:  # the fleet uplink, its own reader and link
            busy = self.mqtt.step() > 0 or busy
            self.up_beat = time.ticks_ms()
        if self.archive is not None:  # on this thread: a slow card never delays a sample
            try:
                busy = self.archive.step() > 0 or busy
            except Exception as e:  # noqa: BLE001 - the archive retries by itself
                self._log("app: archive step failed: %s" % e)
            self.up_beat = time.ticks_ms()
        return busy

    def _uploader(self):
        try:
            interval = int(self.c("send_interval_s", 10) * 1000)
            while not self._stop:
                if not self._upload_once():
                    self._wait(interval)
        except Exception as e:  # noqa: BLE001 - the main loop restarts the thread
            self.up_error = repr(e)[:120]
            self._log("app: uploader thread failed: %s" % self.up_error)
        finally:
            self._up_running = False

    def _start_uploader(self):
        self._up_running = True
        self.up_beat = time.ticks_ms()
        old = None
        if sys.platform == "esp32":  # the default thread stack (5 KB) is too small for TLS
            old = _thread.stack_size(_UPLOADER_STACK)
        try:
            _thread.start_new_thread(self._uploader, ())
        finally:
            if old is not None:
                _thread.stack_size(old)

    # ------------------------------------------------------------------ loop
    def _feed(self):
        if self.threaded and time.ticks_diff(time.ticks_ms(), self.up_beat) > \
                self.upload_stall_ms:
            if not self._stall_noted:  # the watchdog will reset: tell the next boot why
                self._stall_noted = True
                self._log("app: uploader stuck for %d s: watchdog not fed" % (
                    self.upload_stall_ms // 1000))
                self.guard.save(pending="uploader_stall")  # type: ignore
            return
        self.guard.feed()  # type: ignore

    def iterate(self):
        """Process the due slot (if any) and the work after it; True if a slot was taken."""
        if not self.sampler.poll():  # type: ignore  (it collects the garbage once a slot)
            return False
        mono = self.clock.mono_ms()  # type: ignore  (also keeps the mono clock from wrapping)
        self.guard.check_sensors(self.sampler.all_failed, mono)  # type: ignore
        if not self.threaded:
            self._upload_once()
        elif not self._up_running and not self._stop:
            self.up_restarts += 1
            self._start_uploader()
        self._feed()
        self.iterations += 1
        return True

    def run(self, stop_after_s=None, on_iteration=None):
        """The main loop; returns ``stats()`` after ``stop_after_s`` s or ``stop()``."""
        self._stop = False
        self._running = True
        self.guard.wdt_start()  # type: ignore
        self.sampler.start()  # type: ignore
        if self.threaded:
            self._start_uploader()
        t0 = time.ticks_ms()
        limit = None if stop_after_s is None else int(stop_after_s * 1000)
        interrupted = False
        try:
            while not self._stop:
                wait = self.sampler.due_in_ms()  # type: ignore
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
            self.guard.wdt_relax(_REPL_WDT_MS)  # type: ignore
            self._log("app: stopped (Ctrl-C); watchdog relaxed to %d min; "
                      "machine.reset() to restart" % (_REPL_WDT_MS // 60000))
        finally:
            # After Ctrl-C the Wi-Fi monitor keeps running: WebREPL needs the link or the AP.
            self.shutdown(stop_wifi=not interrupted)
        return self.stats()

    def stop(self):
        """Ask the loop (and the uploader) to stop; safe from another thread."""
        self._stop = True

    def shutdown(self, wait_ms=None, stop_wifi=True):
        """Stop the threads and commit the queue (end of ``run()``, or a simulated reset)."""
        self._stop = True
        if wait_ms is None:
            wait_ms = 4 * int(self.c("timeout_s", 10)) * 1000
        t0 = time.ticks_ms()
        while self._up_running and time.ticks_diff(time.ticks_ms(), t0) < wait_ms:
            time.sleep_ms(10)
        w = self.wifi
        if stop_wifi and w is not None and hasattr(w, "stop"):
            try:
                w.stop()
            except Exception:  # noqa: BLE001
                pass
        self._commit()
        self._running = False

    def _commit(self):
        if self.queue is not None:
            with self.lock:
                try:
                    self.queue.commit()
                except OSError as e:
                    self._log("app: commit failed: %s" % e)
        if self.sender is not None:
            try:
                self.sender.flush()  # what was uploaded is not sent again after the reset
            except OSError as e:
                self._log("app: cursor commit failed: %s" % e)


def _rmtree(path):
    """Remove a queue folder and its files (no subfolders); no error if it is not there."""
    try:
        names = os.listdir(path)
    except OSError:
        return
    for name in names:
        os.remove(path + "/" + name)
    os.rmdir(path)


def _is_old(folder):
    """True if ``folder`` holds a queue of TSLog's first format."""
    try:
        with open(folder + "/meta") as f:
            return f.read(7) == "tslog1 "
    except (OSError, ValueError):
        return False


def _finish_move(folder):
    """End a move to the current queue format that a power cut interrupted: the new queue
    (``.new``) is complete once the old one was renamed ``.v1``."""
    if fsutil.exists(folder + ".v1"):
        if not fsutil.exists(folder) and fsutil.exists(folder + ".new"):
            os.rename(folder + ".new", folder)
        _rmtree(folder + ".v1")


def _last_bucket(folder):
    """A seqn after every record of the queue in ``folder`` (its newest bucket's first
    seqn plus its bucket size), or 0."""
    try:
        with open(folder + "/meta") as f:
            size = int(f.read().split(" ")[2])
        firsts = [int(n[1:]) for n in os.listdir(folder) if n[0] == "b" and n[1:].isdigit()]
    except (OSError, ValueError, IndexError):
        return 0
    return max(firsts) + size if firsts else 0


def load_settings(log=print):
    """The settings dict (``settings.load()``), or config.DEFAULTS / {} if that fails.

    The settings and config modules are dropped again: needed only at boot (and at the
    REPL, which imports them anew), their code would hold ~12 KB of a 32-bit board's heap.
    """
    try:
        import settings
        return settings.load(log=log)
    except Exception as e:  # noqa: BLE001 - a broken settings module must not stop logging
        log("app: settings not loaded (%s): defaults used" % e)
    finally:
        for name in ("settings", "config"):
            sys.modules.pop(name, None)
    try:
        import config
        return dict(config.DEFAULTS)
    except Exception:  # noqa: BLE001
        return {}


def boot(cfg=None, log=print, **parts):
    """boot.py's work: settings, boot guard, I2C, sensors, LED, Wi-Fi, uplink, WebREPL."""
    global board
    if cfg is None:
        cfg = load_settings(log)
    board = App(cfg, log=log, **parts).setup()
    return board


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
