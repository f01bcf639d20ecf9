"""One boot of the simulated board: run under the MicroPython unix port by ``tools/sim``.

Usage (tools/sim does this): ``SIM_BOOT_JSON=BOOT.json micropython -X heapsize=2M
sim_board.py`` with MICROPYPATH = tools/sim/mp : tools/sim/device : host_tests/fakes :
.frozen, or with ``--mp32`` the same modules frozen into the 32-bit build: ``micropython
-X heapsize=N -m sim_board`` with MICROPYPATH = .frozen/sim/mp : .frozen/sim/device :
.frozen/fakes : .frozen (tools/mp32_manifest.py).

It builds the world around the board from BOOT.json, then runs the firmware's ``boot.py``
and ``main.py`` as the board would:

- the flash, as a board flashed with the project's partition table has it (``esp32``
  fake's ``Partition`` table): the ``vfs`` partition is ``FileFlash`` over
  ``<state-dir>/flash.img`` (write-through), LittleFS 2, mounted at /flash and made the
  current directory (firmware paths are relative); with ``tslog_kib`` the ``tslog`` raw
  data partition is ``FileFlash`` over ``<state-dir>/tslog.img`` (the firmware opens it
  with ``esp32.Partition.find``); ``files`` from BOOT.json (the firmware's ``boot.py``,
  ``main.py`` and ``config.py``, config.json, the CA) are written into the filesystem
  first, as ``make deploy`` puts them on a board;
- the board's ``/lib``: ``lib_dir`` (lib/, or its ``.mpy`` with ``--mp32``) mounted there
  and put on ``sys.path`` after the flash root, as on a board (``''`` first, ``/lib`` last);
- the I2C bus 0: an AM2320 and a BMP180 following ``sim_weather.Weather`` (or absent);
- the Wi-Fi world (host_tests/fakes/network.py): the AP, scheduled outages, NTP failures;
- ``machine``: reset cause and RTC memory from the previous boot;
- the lockstep clock (tools/sim/mp/time.py): ``_thread`` is replaced in ``sys.modules``
  so the firmware's threads are board threads; the run's end, the NTP schedule, the power
  cut and the watchdog are clock timers, so each happens at its simulated instant (the
  watchdog fires ``wdt_timeout_ms`` of simulated time after the last feed, as the chip's);
- ``print`` writes each line whole under one lock (the unix port's ``print`` writes a line
  in pieces, so two threads' lines could be spliced);
- with ``--mp32``, the firmware's share of the heap (sim_heap.py): what the simulator
  allocates while the firmware runs is kept out of it as far as it can be (docs/sim.md).

It prints status lines ``@@SIM {json}`` (never the firmware itself) that tools/sim reads:
``{"ev": "boot"}`` once, ``{"ev": "st", ...}`` at each Wi-Fi or LED change and every
``status_ms`` (real ms) from a clock timer, ``{"ev": "alive"}`` every 10 s (real) whatever
the clock does, and one of ``{"ev": "end"}`` (the run is over; exit 0), ``{"ev": "reset", "cause":
N}`` (the firmware called machine.reset() or similar; exit 3: start the next boot),
``{"ev": "wdt"}`` (the watchdog starved) or ``{"ev": "powercut"}`` (after which the board
is frozen: tools/sim kills the process and starts the next boot), ``{"ev": "crash"}`` (an
uncaught exception: the board sits at its REPL, as a real one).
"""

import _thread  # the port's own: the simulator's threads are not board threads
import builtins
import gc
import io
import json
import os
import sys
import time  # the virtual clock (tools/sim/mp/time.py)

import sim_heap  # first: --mp32 reserves the firmware's heap before the set-up fragments it
import vfs
from sim_flash import FileFlash
from sim_vfs import LockedVfs
from sim_weather import RampWeather, Weather, WeatherAM2320, WeatherBMP180

import esp32
import machine
import network

MOUNT = "/flash"
EXIT_RESET = 3
BOOT_MS = 1000  # reset or power-on to boot.py: ROM and second-stage bootloader, MicroPython
# The partition table of a board flashed by the project (tools/partitions.csv): vfs
# (LittleFS) at 0x200000 and, when the queue has its own partition, tslog after it.
_VFS_ADDR = 0x200000
_SUBTYPE_UNDEFINED = 0x06

with open(os.getenv("SIM_BOOT_JSON")) as _f:
    CONF = json.load(_f)

_print_lock = _thread.allocate_lock()
_halted = [False]  # the board stopped (power cut, watchdog): nothing more is printed
_builtin_print = builtins.print


def _write(text):
    with _print_lock:
        if not _halted[0]:
            sys.stdout.write(text)


def _print(*args, sep=" ", end="\n", file=None):
    """``print`` for the firmware: one write per call, so threads never splice lines."""
    if file is not None and file is not sys.stdout:
        return _builtin_print(*args, sep=sep, end=end, file=file)
    _write(sep.join([str(a) for a in args]) + end)


def _thread_error(fn, e):
    """An uncaught exception in a board thread, printed as the port prints it."""
    buf = io.StringIO()
    sys.print_exception(e, buf)
    _write("Unhandled exception in thread started by %r\n%s" % (fn, buf.getvalue()))


def emit(obj):
    _write("@@SIM " + json.dumps(obj) + "\n")


# ---------------------------------------------------------------- flash
def _partition(label, path, kib, addr):
    dev = FileFlash(path, 4096, kib * 1024 // 4096)
    t = esp32.Partition.table.get(label, (1, _SUBTYPE_UNDEFINED, addr, 0))
    esp32.Partition.table[label] = (t[0], t[1], addr, 0)
    esp32.Partition.attach(label, dev)
    return dev


def mount_flash():
    """The vfs partition mounted at /flash, and the tslog partition's device (or None)."""
    vfs_kib = CONF.get("vfs_kib", 2048)
    tslog_kib = CONF.get("tslog_kib", 0)
    dev = _partition("vfs", CONF["flash_img"], vfs_kib, _VFS_ADDR)
    part = None
    if tslog_kib:
        part = _partition("tslog", CONF["tslog_img"], tslog_kib, _VFS_ADDR + vfs_kib * 1024)
        if part.created:
            print("sim: a blank %d KiB tslog data partition" % tslog_kib)
    lock = _thread.allocate_lock()  # the GIL the ESP32 port holds in every LittleFS call
    try:
        vfs.mount(LockedVfs(vfs.VfsLfs2(dev), lock), MOUNT)
    except OSError:
        print("sim: formatting a blank LittleFS image (%d KiB)" % (
            dev.block_count * dev.block_size // 1024))
        vfs.VfsLfs2.mkfs(dev)
        vfs.mount(LockedVfs(vfs.VfsLfs2(dev), lock), MOUNT)
    os.chdir(MOUNT)
    # The board's sys.path: the flash root (here the current folder), the frozen modules
    # (here also the simulator's, from MICROPYPATH), then /lib.
    vfs.mount(vfs.VfsPosix(CONF["lib_dir"]), "/lib")
    if "" not in sys.path:
        sys.path.insert(0, "")
    sys.path.append("/lib")
    for name, content in CONF.get("files", {}).items():
        mode = "w"
        if isinstance(content, dict):  # {"host": path}: copy a host file in
            with open(content["host"], "rb") as f:
                content = f.read()
            mode = "wb"
        with open(MOUNT + "/" + name, mode) as f:
            f.write(content)
    return dev, part


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
    # The fakes' records for tests would grow in the firmware's heap: a board has none.
    machine.keep_history = False
    network.keep_events = False  # and ntptime's calls
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
    p = machine.pwms.get(CONF["led_pin"])
    if p is None:
        pin = machine.pins.get(CONF["led_pin"])
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
        s["symbol"] = getattr(a, "symbol", None)  # the ledger reads the store by it
        try:
            s.update(a.stats())
        except Exception as e:  # noqa: BLE001 - a status line must not kill the board
            s["stats_error"] = repr(e)
    return s


def watcher():
    """The lockstep stall check every ``status_ms`` of real time, and a line every 10 s
    (real) saying the process is alive, for when the clock stands (a thread of the
    simulator, not of the board: it allocates a few bytes at most, as it runs beside the
    board's threads; the status lines come from the ``Status`` timer)."""
    period = CONF.get("status_ms", 200)
    builtin = time._rt
    n = 0
    while not _halted[0]:
        builtin.sleep_ms(period)
        msg = time.stall_check()
        if msg:
            print(msg)
        n += 1
        if n * period >= 10000:
            n = 0
            _write('@@SIM {"ev": "alive"}\n')


class Once:
    """A clock timer that runs ``fn`` once at virtual ms ``at``."""

    def __init__(self, at, fn):
        self.at = at
        self.fn = fn

    def due(self):
        return self.at

    def fire(self):
        self.at = None
        self.fn()


class Status:
    """The status lines, as a clock timer every simulated second: one as soon as the
    Wi-Fi state or the LED changes (so the run's transitions are dated to the second at
    any speed), and one every ``status_ms`` of real time (the live status line).

    A timer runs while every board thread waits, so what a line allocates in the
    firmware's heap (``--mp32``) is garbage before the firmware runs again, and
    ``sim_heap.tidy()`` collects it at once: the firmware finds its heap as it left it.
    A line that finds no heap is skipped (the next second tries again)."""

    def __init__(self, w):
        self.w = w
        self.at = time.sim_elapsed_ms()
        self.seen = None
        self.period = CONF.get("status_ms", 200)
        self.last = time._rt.ticks_ms() - self.period

    def due(self):
        return self.at

    def fire(self):
        self.at += 1000
        rt = time._rt
        try:
            now = (_wifi(self.w), _led())
            if now == self.seen and rt.ticks_diff(rt.ticks_ms(), self.last) < self.period:
                return
            emit(status(self.w))
            self.seen = now
            self.last = rt.ticks_ms()
        except MemoryError:  # --mp32: the firmware left no heap for this line
            pass
        sim_heap.tidy()


class Watchdog:
    """The chip's watchdog as a clock timer: it fires ``timeout`` ms of simulated time
    after the last feed (``machine.WDT`` fake), before the run's end."""

    def __init__(self, w):
        self.w = w

    def due(self):
        wdt = machine.WDT.active
        if wdt is None:
            return None
        left = time.ticks_diff(time.ticks_add(wdt.last_feed, wdt.timeout + 1), time.ticks_ms())
        at = time.sim_elapsed_ms() + left
        return at if at < CONF["end_ms"] else None

    def fire(self):
        halt(self.w, {"ev": "wdt", "v": time.sim_elapsed_ms(),
                      "rtc_memory": bytes(machine.rtc_memory).hex(),
                      "wall_offset_ms": time.wall_offset_ms()})


def halt(w, ev, devs=()):
    """The board stops here (watchdog reset, power cut): its figures, then nothing more."""
    sim_heap.release()  # the firmware never runs again: its heap may go to this line
    st = status(w, "cut")
    for d in devs:
        if d is not None:
            d.powered = False  # from now on every flash access raises flash.PowerCut
    with _print_lock:
        _halted[0] = True
        sys.stdout.write("@@SIM " + json.dumps(st) + "\n@@SIM " + json.dumps(ev) + "\n")
    time.freeze()


def end_of_run():
    if not stop_firmware():  # no stop hook: the next sleep raises SimEnd
        time.sim_end_ms[0] = CONF["end_ms"]


def set_timers(w, devs):
    now = time.sim_elapsed_ms()
    time.add_timer(Once(CONF["end_ms"], end_of_run))
    ntp_at = CONF.get("ntp_fail_until_s", 0) * 1000
    if ntp_at > now:
        time.add_timer(Once(ntp_at, lambda: setattr(w, "ntp_ok", True)))
    cut_at = CONF.get("power_cut_ms")
    if cut_at is not None:
        time.add_timer(Once(cut_at, lambda: halt(
            w, {"ev": "powercut", "v": time.sim_elapsed_ms()}, devs)))
    time.add_timer(Watchdog(w))
    time.add_timer(Status(w))


# ---------------------------------------------------------------- the end
def pending_queue(cfg_dir, part):
    """Records still queued on flash: {"count", "first", "last", "last_seqn", "dead_seqs",
    "usage"}.

    Read with a fresh TSReader from reader 0's committed cursor (records the sender had
    read but not yet confirmed are still queued), over the firmware's own TSLog object
    when there is one (it knows the record layout), else a TSLog opened on the tslog
    partition ``part`` or the folder ``cfg_dir``.  ``usage``: the queue's ``usage()``
    (records held, flash bytes they use, flash bytes in all) when it has one, else None.
    """
    out = {"count": 0, "first": None, "last": None, "usage": None}
    try:
        import tslog

        a = _app()
        log = getattr(a, "queue", None) if a is not None else None
        if log is None:
            import record

            where = cfg_dir
            if part is not None:
                where = esp32.Partition.find(esp32.Partition.TYPE_DATA, label="tslog")[0]
            if hasattr(record, "open_queue"):  # the firmware's own queue set-up
                log = record.open_queue(where, bucket_size=CONF["bucket_size"])
            else:
                size = getattr(record, "QUEUE_RECORD_SIZE", None) or record.SIZE
                log = tslog.TSLog(where, record_size=size,
                                  bucket_size=CONF["bucket_size"])
        if hasattr(log, "usage"):
            out["usage"] = list(log.usage())
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


def finish(w, part):
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
    st["queue"] = pending_queue(CONF["tslog_dir"], part)
    st["clock"] = time.stats
    emit(st)
    emit({"ev": "end", "v": time.sim_elapsed_ms()})


def save_rtc(cause):
    emit({"ev": "reset", "cause": cause, "v": time.sim_elapsed_ms(),
          "rtc_memory": bytes(machine.rtc_memory).hex(), "wall_offset_ms": time.wall_offset_ms()})


def run_file(name, g):
    """Run ``name`` from the flash's root, as the board runs boot.py and main.py."""
    try:
        with open(name) as f:
            src = f.read()
    except OSError:
        print("sim: no %s" % name)
        return
    exec(compile(src, name, "exec"), g)


def main():
    dev, part = mount_flash()
    w = setup_world()
    builtins.print = _print
    time.on_thread_error = _thread_error
    sys.modules["_thread"] = time.thread_module()  # the firmware's threads: board threads
    # The run ends by app.stop() (the end timer); SimEnd is the fallback for firmware
    # without that hook, or one that does not stop within 2 simulated minutes.
    time.sim_end_ms[0] = CONF["end_ms"] + 120000
    emit({"ev": "boot", "v": time.sim_elapsed_ms(), "reset_cause": machine.reset_cause()})
    set_timers(w, (dev, part))
    sim_heap.hand_over()
    _thread.start_new_thread(watcher, ())
    g = _fw
    g["__name__"] = "__main__"
    try:
        time.sleep_ms(BOOT_MS)
        run_file("boot.py", g)
        gc.collect()
        sim_heap.after_boot()
        run_file("main.py", g)
        if time.sim_elapsed_ms() >= CONF["end_ms"]:  # stopped by stop_firmware()
            finish(w, part)
            return 0
        # main.py returned: a board would sit at the REPL.
        emit({"ev": "crash", "v": time.sim_elapsed_ms(), "error": "main.py returned"})
    except time.SimEnd:
        finish(w, part)
        return 0
    except machine.Reset as e:
        if time.sim_elapsed_ms() >= CONF["end_ms"]:
            finish(w, part)
            return 0
        sim_heap.release()
        emit(status(w, "final"))  # the figures as the reset left them (after app.shutdown)
        save_rtc(e.cause)
        return EXIT_RESET
    except Exception as e:  # noqa: BLE001 - what a board prints before its REPL prompt
        sim_heap.release()  # a MemoryError left no heap for the report below
        buf = io.StringIO()
        sys.print_exception(e, buf)
        _write(buf.getvalue())
        emit({"ev": "crash", "v": time.sim_elapsed_ms(), "error": repr(e)})
    # At the REPL: nothing runs; the watchdog (if armed) resets the board, else the run ends.
    try:
        while time.sim_elapsed_ms() < CONF["end_ms"]:
            time.sleep_ms(1000)
    except time.SimEnd:
        pass
    finish(w, part)
    return 0


sys.exit(main())
