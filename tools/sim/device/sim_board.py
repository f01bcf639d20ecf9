"""One boot of the simulated board: run under the MicroPython unix port by ``tools/sim``.

Usage (tools/sim does this): ``micropython -X heapsize=4M sim_board.py BOOT.json`` with
MICROPYPATH = tools/sim/mp : tools/sim/device : <firmware dir> : lib : host_tests/fakes.

It builds the world around the board from BOOT.json, then runs the firmware's ``boot.py``
and ``main.py`` (from the firmware dir) as the board would:

- the flash: ``FileFlash`` over ``<state-dir>/flash.img`` (write-through), LittleFS 2,
  mounted at /flash and made the current directory (firmware paths are relative);
  ``files`` from BOOT.json (config.json, the CA) are written into it first;
- the I2C bus 0: an AM2320 and a BMP180 following ``sim_weather.Weather`` (or absent);
- the Wi-Fi world (host_tests/fakes/network.py): the AP, scheduled outages, NTP failures;
- ``machine``: reset cause and RTC memory from the previous boot.

It prints status lines ``@@SIM {json}`` (never the firmware itself) that tools/sim reads:
``{"ev": "boot"}`` once, ``{"ev": "st", ...}`` every ``status_ms`` (real ms) and at the
end, and one of ``{"ev": "end"}`` (the run is over; exit 0), ``{"ev": "reset", "cause":
N}`` (the firmware called machine.reset() or similar; exit 3: start the next boot),
``{"ev": "wdt"}`` (the watchdog starved: tools/sim kills and restarts the board),
``{"ev": "crash"}`` (an uncaught exception: the board sits at its REPL, as a real one).
"""

import _thread
import gc
import json
import os
import sys
import time  # the virtual clock (tools/sim/mp/time.py)

import sim_heap  # first: --mp32 reserves the firmware's heap before the set-up fragments it
import vfs
from sim_flash import FileFlash
from sim_vfs import LockedVfs
from sim_weather import RampWeather, Weather, WeatherAM2320, WeatherBMP180

import machine
import network

MOUNT = "/flash"
EXIT_RESET = 3

with open(sys.argv[1]) as _f:
    CONF = json.load(_f)

_print_lock = _thread.allocate_lock()


def emit(obj):
    line = "@@SIM " + json.dumps(obj)
    with _print_lock:
        print(line)


# ---------------------------------------------------------------- flash
def mount_flash():
    dev = FileFlash(CONF["flash_img"], 4096, CONF.get("flash_blocks", 512))
    lock = _thread.allocate_lock()  # the GIL the ESP32 port holds in every LittleFS call
    try:
        vfs.mount(LockedVfs(vfs.VfsLfs2(dev), lock), MOUNT)
    except OSError:
        print("sim: formatting a blank LittleFS image (%d KiB)" % (
            dev.block_count * dev.block_size // 1024))
        vfs.VfsLfs2.mkfs(dev)
        vfs.mount(LockedVfs(vfs.VfsLfs2(dev), lock), MOUNT)
    os.chdir(MOUNT)
    for name, content in CONF.get("files", {}).items():
        mode = "w"
        if isinstance(content, dict):  # {"host": path}: copy a host file in
            with open(content["host"], "rb") as f:
                content = f.read()
            mode = "wb"
        with open(MOUNT + "/" + name, mode) as f:
            f.write(content)
    return dev


# ---------------------------------------------------------------- world
def setup_world():
    kind = RampWeather if CONF.get("weather") == "ramp" else Weather
    weather = kind(CONF.get("seed", 1))
    sensors = CONF.get("sensors", {})
    am = WeatherAM2320(weather)
    bmp = WeatherBMP180(weather)
    if sensors.get("am2320", "ok") == "ok":
        machine.attach_i2c(0, am)
    if sensors.get("bmp180", "ok") == "ok":
        machine.attach_i2c(0, bmp)
    machine.set_reset_cause(CONF.get("reset_cause", machine.PWRON_RESET))
    mem = CONF.get("rtc_memory")
    if mem:
        machine.rtc_memory[:] = bytes.fromhex(mem)
    if CONF.get("unique_id"):
        machine.set_unique_id(bytes.fromhex(CONF["unique_id"]))
    w = network.world
    # The world's lazy state machine is advanced from several threads (Wi-Fi monitor,
    # uploader via the socket gate, the watcher); without a GIL make each update atomic.
    lock = _thread.allocate_lock()
    update = network.World._update

    def _locked_update(self):
        with lock:
            return update(self)

    network.World._update = _locked_update
    w.reset()
    off_s = time.sim_elapsed_ms() / 1000  # world time 0 = now, in run seconds
    wifi = CONF.get("wifi", {})
    if wifi.get("ssid"):
        w.add_ap(wifi["ssid"], wifi.get("password", ""), rssi=wifi.get("rssi", -61))
    for s, e in CONF.get("outages", ()):
        if e > off_s:
            w.add_outage(max(0, s - off_s), e - off_s)
    w.ntp_ok = time.sim_elapsed_ms() >= CONF.get("ntp_fail_until_s", 0) * 1000
    return w


# ---------------------------------------------------------------- status
_fw = {}  # the firmware's globals (main.py's namespace)


def _app():
    """The firmware's App (lib/app.py keeps it in ``app.board``), or ``app`` in main.py's
    globals (a firmware without lib/app.py)."""
    m = sys.modules.get("app")
    a = getattr(m, "board", None) if m is not None else None
    return a if a is not None else _fw.get("app")


def stop_firmware():
    """Ask the firmware to end its loop (lib/app.py: ``stop()``, safe from a thread)."""
    a = _app()
    f = getattr(a, "stop", None) if a is not None else None
    if f is not None:
        f()
        return True
    return False


def _led():
    p = machine.pwms.get(CONF.get("led_pin", 2))
    if p is None:
        pin = machine.pins.get(CONF.get("led_pin", 2))
        return "on" if pin is not None and pin.value() else "off"
    d = p.duty_u16()
    if d == 0:
        return "off"
    if d >= 65535:
        return "on"
    return "%gHz" % p.freq()


def _wifi(w):
    if w.sta.connected and w.online():
        return "up"
    if w.ap.active:
        return "ap"
    return "down"


def status(w, ev="st"):
    s = {"ev": ev, "v": time.sim_elapsed_ms(), "led": _led(), "wifi": _wifi(w),
         "link": w.reachable(CONF.get("wifi", {}).get("ssid", ""))}
    a = _app()
    if a is not None:
        try:
            s.update(a.stats())
        except Exception as e:  # noqa: BLE001 - a status line must not kill the board
            s["stats_error"] = repr(e)
    return s


def watcher(w, dev):
    """Status lines, the NTP schedule, the watchdog and the power cut (a thread)."""
    period = CONF.get("status_ms", 250)
    ntp_at = CONF.get("ntp_fail_until_s", 0) * 1000
    cut_at = CONF.get("power_cut_ms")
    end_at = CONF["end_ms"]
    builtin = time._rt
    while True:
        if end_at is not None and time.sim_elapsed_ms() >= end_at:
            end_at = None
            if not stop_firmware():  # no stop hook: the next sleep raises SimEnd
                time.sim_end_ms[0] = CONF["end_ms"]
        nap = period if cut_at is None else min(period, 20)
        if end_at is not None:  # stop the firmware close to the end, not up to `period` late
            left = (end_at - time.sim_elapsed_ms()) / time.SPEED
            nap = int(max(5, min(nap, left)))
        builtin.sleep_ms(nap)
        if cut_at is not None and time.sim_elapsed_ms() >= cut_at:
            dev.powered = False  # from now on every flash access raises flash.PowerCut
            emit(status(w, "cut"))
            emit({"ev": "powercut", "v": time.sim_elapsed_ms()})
            builtin.sleep_ms(100000)  # tools/sim kills the process now
        if not w.ntp_ok and time.sim_elapsed_ms() >= ntp_at:
            w.ntp_ok = True
        wdt = machine.WDT.active
        if wdt is not None and wdt.expired() and time.sim_elapsed_ms() < CONF["end_ms"]:
            emit(status(w, "cut"))  # the hardware resets the chip now: nothing more runs
            emit({"ev": "wdt", "v": time.sim_elapsed_ms(),
                  "rtc_memory": bytes(machine.rtc_memory).hex(),
                  "wall_offset_ms": time.wall_offset_ms()})
            builtin.sleep_ms(100000)  # tools/sim kills the process now
        try:
            emit(status(w))
        except MemoryError:  # --mp32: no heap left by the firmware for this line; next one
            pass
        except Exception as e:  # noqa: BLE001
            emit({"ev": "st_error", "error": repr(e)})


# ---------------------------------------------------------------- the end
def pending_queue(cfg_dir):
    """Records still queued on flash: {"count", "first", "last", "last_seqn", "dead_seqs"}.

    Read with a fresh TSReader from reader 0's committed cursor (records the sender had
    read but not yet confirmed are still queued), over the firmware's own TSLog object
    when there is one (it knows the record layout), else a TSLog opened on ``cfg_dir``.
    """
    out = {"count": 0, "first": None, "last": None}
    try:
        import tslog

        a = _app()
        log = getattr(a, "queue", None) if a is not None else None
        if log is None:
            import record

            size = getattr(record, "QUEUE_RECORD_SIZE", None) or record.SIZE
            log = tslog.TSLog(cfg_dir, record_size=size,
                              bucket_size=CONF.get("bucket_size", 1024))
        r = tslog.TSReader(log, 0)
        while True:
            rec = r.next_record()
            if rec is None:
                break
            out["count"] += 1
            if out["first"] is None:
                out["first"] = r.seqn
            out["last"] = r.seqn
        out["last_seqn"] = log.stats()[0]
    except Exception as e:  # noqa: BLE001
        out["error"] = repr(e)
    out["dead_seqs"] = dead_seqs()
    return out


def dead_seqs(path="data/dead.log"):
    """Seqs in the sender's dead-letter log (both generations) as [[first, last], ...]."""
    seqs = []
    for p in (path + ".1", path):
        try:
            with open(p) as f:
                for line in f:
                    try:
                        seqs.append(int(line.split("\t", 1)[0]))
                    except ValueError:
                        pass
        except OSError:
            pass
    seqs.sort()
    out = []
    for q in seqs:
        if out and q <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], q)
        else:
            out.append([q, q])
    return out


def finish(w):
    a = _app()
    sim_heap.release()
    for name in ("sim_stop", "stop", "commit"):
        f = getattr(a, name, None) if a is not None else None
        if f is not None:
            try:
                f()
            except Exception as e:  # noqa: BLE001
                print("sim: app.%s(): %r" % (name, e))
            break
    st = status(w, "final")
    st["queue"] = pending_queue(CONF.get("tslog_dir", "data/q"))
    emit(st)
    emit({"ev": "end", "v": time.sim_elapsed_ms()})


def save_rtc(cause):
    emit({"ev": "reset", "cause": cause, "v": time.sim_elapsed_ms(),
          "rtc_memory": bytes(machine.rtc_memory).hex(), "wall_offset_ms": time.wall_offset_ms()})


def run_file(name, g):
    path = CONF["firmware_dir"] + "/" + name
    try:
        with open(path) as f:
            src = f.read()
    except OSError:
        print("sim: no %s" % path)
        return
    exec(compile(src, path, "exec"), g)


def main():
    dev = mount_flash()
    w = setup_world()
    # The run ends by app.stop() (from the watcher); SimEnd is the fallback for firmware
    # without that hook, or one that does not stop within 2 simulated minutes.
    time.sim_end_ms[0] = CONF["end_ms"] + 120000
    emit({"ev": "boot", "v": time.sim_elapsed_ms(), "reset_cause": machine.reset_cause()})
    sim_heap.hand_over()
    _thread.start_new_thread(watcher, (w, dev))
    g = _fw
    g["__name__"] = "__main__"
    try:
        run_file("boot.py", g)
        gc.collect()
        run_file("main.py", g)
        if time.sim_elapsed_ms() >= CONF["end_ms"]:  # stopped by stop_firmware()
            finish(w)
            return 0
        # main.py returned: a board would sit at the REPL.
        emit({"ev": "crash", "v": time.sim_elapsed_ms(), "error": "main.py returned"})
    except time.SimEnd:
        finish(w)
        return 0
    except machine.Reset as e:
        if time.sim_elapsed_ms() >= CONF["end_ms"]:
            finish(w)
            return 0
        sim_heap.release()
        emit(status(w, "final"))  # the figures as the reset left them (after app.shutdown)
        save_rtc(e.cause)
        return EXIT_RESET
    except Exception as e:  # noqa: BLE001 - what a board prints before its REPL prompt
        sys.print_exception(e)
        emit({"ev": "crash", "v": time.sim_elapsed_ms(), "error": repr(e)})
    # At the REPL: nothing runs; the watchdog (if armed) resets the board, else the run ends.
    try:
        while time.sim_elapsed_ms() < CONF["end_ms"]:
            time.sleep_ms(1000)
    except time.SimEnd:
        pass
    finish(w)
    return 0


sys.exit(main())
