"""The board's parts, built once at boot from the settings (``build()``, via ``app.boot()``).

``app.boot()`` drops this module from ``sys.modules`` once the parts are built, so its
code gives its heap back before ``lib/uplinks.py`` loads the uplinks' code (the boot's
heap peak is then the firmware plus the smaller of the two).  Nothing built here may
keep a function or class of this module (a closure would hold all of it): callbacks
are methods of the parts.

Order (what boot.py needs first): settings, boot guard (boot counter, reset cause,
watchdog), I2C bus and Wi-Fi LED, clock, the queue (moving a queue of firmware 1.0 into
the current format), sampler (sensors probed now, so the console says at boot what is
missing), Wi-Fi monitor, the uploader (its uplinks come from ``lib/uplinks.py``).  A part
that fails is logged and left out (or a stand-in is used): nothing here stops the board
from sampling.
"""

import _thread
import os
import sys

import app
import bootguard
import fsutil
import machine
import record
import sampler
import tslog
import uploader


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
    finally:
        sys.modules.pop("config", None)


def default_symbol():
    """``"esp"`` + the whole MAC in hex (``machine.unique_id()``, 6 bytes on an ESP32), e.g.
    ``"esp246f28a1b2c3"``: unique per board.  The seed used its first 4 digits only, which
    are the vendor's prefix and the same on every board of that vendor."""
    import binascii
    return "esp" + binascii.hexlify(machine.unique_id()).decode()


def build(cfg=None, log=print, threaded=True, online=False, **parts):
    """The ``app.App`` of this board, its uplinks not yet set up (``uplinks.build()``).
    ``cfg``: the settings dict (None: loaded here).

    Parts can be given instead of built from ``cfg`` (tests, simulator): ``i2c``, ``led``,
    ``wifi`` (object with ``connected``, ``state``, ``rssi()``, ``drops``, ``stop()``;
    None: no Wi-Fi monitor, ``online`` decides), ``clock``, ``guard``, ``am``/``bmp``.
    ``threaded``: uploader in its own thread (default) or stepped after each sample.
    """
    if cfg is None:
        cfg = load_settings(log)
    guard = parts.get("guard") or bootguard.BootGuard(
        "data/boot.json", fail_reset=cfg["sensor_fail_reset"],
        wdt_timeout_ms=cfg["wdt_timeout_ms"], log=log).start()
    boot16 = guard.boot & 0xFFFF
    i2c = parts.get("i2c") or machine.I2C(
        cfg["i2c_id"], scl=machine.Pin(cfg["i2c_scl"]), sda=machine.Pin(cfg["i2c_sda"]),
        freq=cfg["i2c_freq"])
    led = parts.get("led")
    if led is None and "led" not in parts and cfg["led_pin"] >= 0:
        try:  # Wi-Fi LED: 1 Hz blink (disconnected) until the monitor says otherwise
            led = machine.PWM(machine.Pin(cfg["led_pin"]), freq=1, duty_u16=32768)
        except (OSError, ValueError) as e:
            log("app: no status LED: %s" % e)
    clock = parts.get("clock") or _clock(cfg, log)
    if getattr(clock, "epochs", 0) == 0:  # a stand-in clock (tests): no epochs kept
        clock.epochs = None
    lock = _thread.allocate_lock()
    nreaders = 3 if cfg["mqtt_host"] else 2 if cfg["sd_mount"] else 1
    queue, place = open_queue(cfg, log, nreaders)
    if clock.epochs is not None:
        _note_end(queue, clock.epochs, boot16)
    smp = sampler.Sampler(i2c, queue, clock, guard.boot, int(cfg["sample_interval_s"] * 1000),
                          lock=lock, log=log, am=parts.get("am"), bmp=parts.get("bmp"))
    smp.probe()  # now, so the console says at boot what is missing
    wifi = parts.get("wifi")
    if wifi is None and "wifi" not in parts:
        wifi = _wifi(cfg, led, log)
    symbol = cfg["symbol"] or default_symbol()
    up = uploader.Uploader(clock, int(cfg["send_interval_s"] * 1000), boot16, log=log)
    a = app.App(cfg, lock, guard, clock, queue, place, smp, wifi, up, symbol,
                threaded=threaded, online=bool(online), log=log)
    up.online = a.online
    guard.before_reset = a._commit  # a reset on purpose loses no stored sample
    return a


def _clock(cfg, log):
    try:
        import clock
        import ntptime
        ep = clock.Epochs("data/epochs.json", int(cfg["sample_interval_s"] * 1000), log=log)
        return clock.Clock(ntptime, host=cfg["ntp_host"],
                           resync_s=cfg["ntp_resync_s"], epochs=ep, log=log)
    except Exception as e:  # noqa: BLE001 - sampling must start anyway
        log("app: no NTP clock (%s): samples keep ms-since-boot" % e)
        return app.OfflineClock()


def _note_end(queue, epochs, boot16):
    """If the queue's newest record is an earlier boot's and has no wall-clock time, that
    boot ended without learning it: tell ``epochs`` (its records then get an estimated
    time once this boot learns it)."""
    if not queue.stats()[0]:
        return
    try:
        for _, data in queue.tail(1):
            rec = record.decode(data)
            if not rec[record.I_FLAGS] & record.FLAG_UTC and rec[record.I_BOOT] != boot16:
                epochs.ended(rec[record.I_BOOT], rec[record.I_TIME])
    except ValueError:  # an unknown layout: its boot gets no estimate
        pass
    sys.modules.pop("tslog_query", None)  # (the console's code: not kept)


def _wifi(cfg, led, log):
    try:
        import network
        import wifi
        w = wifi.WifiMonitor(network.WLAN(network.STA_IF), network.WLAN(network.AP_IF), led,
                             cfg, log=log)
        w.start()
        return w
    except Exception as e:  # noqa: BLE001 - the board still logs without Wi-Fi
        log("app: Wi-Fi monitor not started: %s" % e)
        return None


# ---------------------------------------------------------------------- the queue
def open_queue(cfg, log=print, nreaders=1):
    """(TSLog, where it is) of the queue: the raw data partition ``tslog_partition``
    ("tslog", which ``make flash`` creates) when the board has it, else the folder
    ``tslog_dir``.

    ``record.open_queue`` opens it: records up to ``record.QUEUE_RECORD_SIZE`` coded by
    ``record.CODEC`` (about 3 bytes a record): each carries its layout version, so a
    firmware update that adds a field keeps the queued records readable. ``time_of``
    keeps the time index for the console. Reader 1 is the SD archive's (``sd_mount``),
    reader 2 the MQTT uplink's. The raw partition wears the flash far less than LittleFS
    (docs/tslog.md). A queue of firmware 1.0 (TSLog's first format) is moved into the
    new one first: nothing queued is lost, nothing uploaded is sent again.
    """
    folder = cfg["tslog_dir"]
    where = folder
    label = cfg["tslog_partition"]
    if label:
        try:
            import esp32
            found = esp32.Partition.find(esp32.Partition.TYPE_DATA, label=label)
            if found:
                where = found[0]
        except Exception as e:  # noqa: BLE001 - the folder queue always works
            log("app: partition %r: %s" % (label, e))
    place = folder if isinstance(where, str) else "partition " + label
    log("app: queue on %s" % place)
    kw = {"bucket_size": cfg["bucket_size"],
          "commit_delta": cfg["commit_delta"], "nreaders": nreaders}
    _finish_move(folder)
    if not isinstance(where, str) and fsutil.exists(folder + ".new"):
        return _copy_back(where, folder + ".new", kw, log), place  # a cut during _move_old
    try:
        q = record.open_queue(where, **kw)
    except tslog.OldFormat:
        q = _move_old(where, folder, kw, log)
    except ValueError as e:  # another record size or codec: keep it aside, start anew
        if not isinstance(where, str):
            log("app: %s; queue recreated" % e)
            return record.open_queue(where, recreate=True, **kw), place
        log("app: %s; moved to %s.old" % (e, folder))
        after = _last_bucket(folder)
        _rmtree(folder + ".old")
        os.rename(folder, folder + ".old")
        q = record.open_queue(folder, **kw)
        if after:
            q.skip_to(after)  # a new queue's seqns never repeat the old one's
    if not isinstance(where, str) and _is_old(folder):  # updated, then given the table
        import oldqueue
        oldqueue.migrate(oldqueue.open_old(folder), q, log)
        _rmtree(folder)
    return q, place


def _move_old(where, folder, kw, log):
    """Move a queue of TSLog's first format at ``where`` into a new one (there). In a
    folder: the new queue is built beside it and renamed in (``_finish_move`` ends a
    move a power cut interrupted); on a partition: through a folder, then back."""
    import oldqueue
    old = oldqueue.open_old(where)
    tmp = folder + ".new"
    new = record.open_queue(tmp, recreate=True, **kw)
    oldqueue.migrate(old, new, log)
    new.close()
    if not isinstance(where, str):
        return _copy_back(where, tmp, kw, log)
    os.rename(where, folder + ".v1")
    os.rename(tmp, folder)
    _rmtree(folder + ".v1")
    return record.open_queue(folder, **kw)


def _copy_back(part, tmp, kw, log):
    """Recreate the queue on partition ``part`` from the complete queue in folder ``tmp``
    (same seqns and cursors), then remove the folder."""
    import oldqueue
    q = record.open_queue(part, recreate=True, **kw)
    oldqueue.copy(record.open_queue(tmp, **kw), q, log)
    _rmtree(tmp)
    return q


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
