"""The simulator's orchestrator (CPython): ingest server, board processes, status, summary.

One *run* (``python -m tools.sim``) is a sequence of *boots*: each boot is one
``micropython tools/sim/device/sim_board.py`` process running the firmware's ``boot.py``
and ``main.py`` against the same flash image.  A boot ends when the run is over, when the
firmware resets the board (``machine.reset()``: the next boot starts with that cause and
the RTC memory), when its watchdog starves, or at a ``--power-cut-at`` (the flash stops
taking writes, the process is killed, the next boot is a power-on).

The ledger (``Sim.ledger``): the run has ``duration / sample_interval`` sample slots.
Each is either in the ingest store exactly once (``uploaded``), still queued on flash,
or explained by a counted cause: the board was not running (booting, rebooting, power
off), the firmware's own counters (slots missed because the loop was blocked, slots in
which every sensor failed, flash write errors, records dead-lettered or dropped on a full
flash), or samples not yet committed to flash when the power went (at most
``commit_delta`` per cut), or slots a hung firmware let pass before its watchdog reset
it (``hung``).  What is left is ``lost``.

Time: the board runs on a lockstep virtual clock (tools/sim/mp/time.py): simulated time
stands still while a board thread runs and jumps when all of them wait, paced to at most
``--speed`` times real time (``--speed max``: no pacing).  The board process publishes the
clock in ``<state-dir>/clock``; this process reads it for the status line and for the
bundled server's token expiry; between boots it holds the clock itself.
"""

import argparse
import collections
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tools import mpy

ROOT = Path(__file__).resolve().parent.parent.parent
SIM = ROOT / "tools" / "sim"
FIRMWARE = ROOT / "firmware"
STATUS_PREFIX = "@@SIM "
EXIT_RESET = 3
WIFI_SSID = "sim-wifi"
WIFI_PASSWORD = "sim-wifi-pass"
UNIQUE_ID = "246f28a1b2c3"  # the fake machine.unique_id(): symbol "esp246f28a1b2c3"
RESET_NAMES = {1: "power-on", 2: "reset", 3: "watchdog", 4: "deepsleep", 5: "soft reset"}
POWER_BACK_MS = 2000  # a power cut: the power comes back this much later
VFS_KIB = 512  # the LittleFS partition beside the tslog one (tools/partitions.csv)
OLD_VFS_KIB = 2048  # a board flashed with MicroPython's own table: LittleFS only
STATE_FILES = {"flash.img", "tslog.img", "clock", "sim.json", "ingest", "console.log",
               "boot.json"}


# --mp32: the GC heap a stock ESP32 leaves the firmware with Wi-Fi up (docs/sim.md), and
# room beside it for the simulator's own modules and fakes in the board process.
MP32_FIRMWARE_HEAP = 110000  # bytes
MP32_SIM_HEAP = 256 * 1024


# --mp32: the board-side modules frozen into the 32-bit build by tools/mp32_manifest.py
# (every .py below these), as tools/build_mp32.sh lists them in FROZEN beside the binary.
FROZEN_SOURCES = ("tools/mp32_manifest.py", "tools/sim/mp", "tools/sim/device",
                  "host_tests/fakes")


def frozen_changes(binary):
    """Why the board-side modules frozen into the 32-bit build ``binary`` are not the ones
    in the tree (a text), or None when they are: it compares the ``FROZEN`` list beside
    the binary (sha256sum lines, written by tools/build_mp32.sh) with the files now."""
    try:
        with open(os.path.join(os.path.dirname(binary), "FROZEN")) as f:
            built = dict(reversed(line.split(None, 1)) for line in f.read().splitlines())
    except (OSError, ValueError):
        return "no FROZEN list beside it: built before they were frozen in"
    now = {}
    for d in FROZEN_SOURCES:
        for p in [ROOT / d] if d.endswith(".py") else (ROOT / d).rglob("*.py"):
            if "__pycache__" not in p.parts:
                now[p.relative_to(ROOT).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    changed = sorted(k for k in set(built) | set(now) if built.get(k) != now.get(k))
    if not changed:
        return None
    return "%s changed since it was built" % ", ".join(changed[:4] + ["..."][:len(changed) - 4])


def micropython_binary(mp32=False):
    """The unix-port binary that runs the board: with ``mp32`` the 32-bit build with the
    simulator's board side frozen in, else the venv's (or the one on PATH)."""
    if mp32:  # the 32-bit unix port `make mp32` builds (MICROPYTHON32 names another)
        path = os.environ.get("MICROPYTHON32") or str(ROOT / ".mp32" / "micropython")
        how = ("`make mp32 MP_SRC=<MicroPython source tarball or checkout>` (docs/bench.md, "
               "\"A 32-bit MicroPython\")")
        if not os.path.exists(path):
            raise SystemExit("sim: --mp32: no 32-bit MicroPython at %s: build it with %s"
                             % (path, how))
        why = frozen_changes(path)
        if why:
            raise SystemExit("sim: --mp32: %s does not have the simulator's board side and "
                             "the fakes of this tree frozen in (%s): bring it up to date with "
                             "%s, or `make mp32` when it was built here (a few seconds)"
                             % (path, why, how))
        return path
    cand = Path(sys.executable).parent / "micropython"
    if cand.exists():
        return str(cand)
    found = shutil.which("micropython")
    if found:
        return found
    raise SystemExit("sim: no micropython binary (run `make venv` first)")


def _speed(text):
    if text == "max":
        return None
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a number or max, got %r" % text)
    if v <= 0:
        raise argparse.ArgumentTypeError("--speed must be > 0")
    return v


def _bytes(size):
    """'112k' -> 114688, '110000' -> 110000 (MicroPython's -X heapsize syntax)."""
    size = size.strip().lower()
    scale = {"k": 1024, "m": 1024 * 1024}.get(size[-1:], 1)
    return int(size.rstrip("km")) * scale


def _span(text):
    try:
        a, b = text.split(":")
        a, b = float(a), float(b)
    except ValueError:
        raise argparse.ArgumentTypeError("expected START:END in seconds, got %r" % text)
    if b <= a or a < 0:
        raise argparse.ArgumentTypeError("need 0 <= START < END, got %r" % text)
    return (a, b)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m tools.sim",
        description="Run the weather logger firmware on a simulated board (MicroPython unix "
                    "port + fakes) against the bundled ingest server or an external one.")
    p.add_argument("--duration", type=float, default=1800,
                   help="simulated seconds to run (default 1800)")
    p.add_argument("--speed", type=_speed, default=30.0, metavar="N|max",
                   help="simulated seconds per real second at most (default 30); the clock "
                        "runs slower when the host cannot keep up; max: as fast as the host "
                        "allows (lockstep: simulated time jumps whenever the board waits)")
    p.add_argument("--queue-kib", type=int, default=1536, metavar="N",
                   help="the queue's raw data partition 'tslog' of N KiB beside a %d KiB "
                        "LittleFS vfs, as the project's partition table has it (default "
                        "1536); 0: a board with MicroPython's own table (%d KiB LittleFS, "
                        "the queue in a folder)" % (VFS_KIB, OLD_VFS_KIB))
    p.add_argument("--sample-interval", type=float, default=2,
                   help="sample_interval_s of the board (default 2)")
    p.add_argument("--send-interval", type=float, default=10,
                   help="send_interval_s of the board (default 10)")
    p.add_argument("--state-dir", default=".sim",
                   help="flash image, ingest data and logs; a rerun continues like a reboot "
                        "(default .sim)")
    p.add_argument("--ingest-url", help="upload to this TimeBase/compatible server "
                                        "(https://host:port) instead of the bundled one")
    p.add_argument("--ca-file", help="PEM or DER CA of --ingest-url")
    p.add_argument("--user", help="user for --ingest-url (bundled: admin)")
    p.add_argument("--password", help="password for --ingest-url (bundled: admin)")
    p.add_argument("--stream", default="weather-data", help="stream key (default weather-data)")
    p.add_argument("--wifi-outage", type=_span, action="append", default=[],
                   metavar="START:END", help="Wi-Fi down from START to END simulated seconds "
                                             "(repeatable)")
    p.add_argument("--wifi-drops", type=float, default=1200, metavar="S",
                   help="mean simulated seconds between random short Wi-Fi drops "
                        "(default 1200; 0 = none)")
    p.add_argument("--power-cut-at", type=float, action="append", default=[], metavar="S",
                   help="cut the power at S simulated seconds and boot again from the same "
                        "flash image (repeatable)")
    p.add_argument("--ntp-fail-until", type=float, default=0, metavar="S",
                   help="the NTP server does not answer before S simulated seconds")
    p.add_argument("--dead-sensor", action="append", default=[], choices=["am2320", "bmp180"],
                   help="this sensor is not on the bus (repeatable)")
    p.add_argument("--config-json", metavar="TEXT",
                   help="write exactly this text as config.json (e.g. a corrupt one) instead "
                        "of the one made from the options")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                   help="extra config.json key for the board, e.g. --set commit_delta=8")
    p.add_argument("--weather", choices=["curve", "ramp"], default="curve",
                   help="curve: diurnal weather; ramp: a test signal (pressure = 95000 Pa + "
                        "10 Pa per second of UTC mod 1000 s) that lets the summary check "
                        "every record's timestamp")
    p.add_argument("--firmware", default=None,
                   help="folder with boot.py and main.py (default: firmware/)")
    p.add_argument("--fresh", action="store_true",
                   help="erase the state dir first (a new board and a new server)")
    p.add_argument("--seed", type=int, default=None, help="random seed (Wi-Fi drops, weather)")
    p.add_argument("--heap", default=None,
                   help="MicroPython heap of the board process (default 2M: the unix port's "
                        "objects are twice an ESP32's, and the fakes live there too); with "
                        "--mp32, the heap left to the firmware (default %d B)"
                        % MP32_FIRMWARE_HEAP)
    p.add_argument("--mp32", action="store_true",
                   help="run the board on the 32-bit build (`make mp32`), the firmware with "
                        "a stock ESP32's %d B of GC heap" % MP32_FIRMWARE_HEAP)
    p.add_argument("-q", "--quiet", action="store_true", help="no live status line")
    p.add_argument("-v", "--verbose", action="store_true", help="echo the board's console")
    a = p.parse_args(argv)
    if a.ingest_url and not (a.ca_file or a.ingest_url.startswith("http://")):
        p.error("--ingest-url needs --ca-file (the CA of its TLS certificate)")
    if a.duration <= 0 or a.sample_interval <= 0:
        p.error("--duration and --sample-interval must be > 0")
    if a.queue_kib < 0 or a.queue_kib % 4 or a.queue_kib > 4096:
        p.error("--queue-kib: 0, or a multiple of 4 (KiB, flash blocks) up to 4096")
    return a


class Boot:
    """One board process and what it reported."""

    def __init__(self, n, cause, start_v):
        self.n = n
        self.cause = cause
        self.start_v = start_v  # run-virtual ms when the process was started
        self.end_v = None
        self.how = None  # end | reset | wdt | powercut | crash | died | killed
        self.first = None  # the first status line with firmware figures
        self.last = {}  # the latest status line
        self.final = None
        self.cut = None  # the status at the power cut
        self.transitions = []  # [(virtual s, wifi state, led)] on every change
        self.events = []
        self.proc = None
        self.crashed = False  # the firmware stopped (uncaught exception): REPL
        self.seen_real = time.time()  # real time of the latest event
        self.pace = []  # [(real s, virtual ms)] of recent status lines: the speed held


class Sim:
    def __init__(self, opts, out=None):
        self.o = opts
        self.out = out or sys.stdout
        self.state = Path(opts.state_dir).resolve()
        self.speed = opts.speed  # None: --speed max
        self.boots = []
        self.server = None
        self.rng = random.Random(opts.seed)
        self._tty = hasattr(self.out, "isatty") and self.out.isatty() and not opts.quiet
        self._last_print = 0.0
        self.console = None
        self.first_arrival = None  # real s from the start to the first record stored
        self._arrival_check = 0.0
        self._written0 = 0
        self.v = 0  # virtual ms since the run started, as far as this process knows
        self._clock_fd = None
        self.slowest = None  # the lowest speed held over a few seconds (x), when paced

    # ------------------------------------------------------------------ time
    def now_v(self):
        """Virtual ms since the run started: the board's clock while one runs."""
        v = self.v
        if self._clock_fd is not None:
            try:
                raw = os.pread(self._clock_fd, 8, 0)
            except OSError:
                raw = b""
            if len(raw) == 8:
                v = max(v, int.from_bytes(raw, "little", signed=True))
        return v

    def _server_clock(self):
        """The bundled server's token clock: the simulated true UTC, in s."""
        return (self.utc0 + self.now_v()) / 1000.0

    def _speed_text(self):
        return "max" if self.speed is None else "%gx" % self.speed

    # ------------------------------------------------------------------ set-up
    def setup(self):
        o = self.o
        if o.fresh and self.state.exists():
            names = {p.name for p in self.state.iterdir()}
            if names - STATE_FILES:
                raise SystemExit("sim: --fresh: %s holds files the simulator did not make; "
                                 "not erasing it" % self.state)
            shutil.rmtree(self.state)
        self.state.mkdir(parents=True, exist_ok=True)
        self.meta_path = self.state / "sim.json"
        try:
            self.meta = json.loads(self.meta_path.read_text())
        except (OSError, ValueError):
            self.meta = {}
        self.meta["runs"] = int(self.meta.get("runs", 0)) + 1
        self.firmware = (Path(o.firmware) if o.firmware else FIRMWARE).resolve()
        if not (self.firmware / "main.py").exists():
            raise SystemExit("sim: no main.py in %s" % self.firmware)
        self.lib = self._board_lib()
        self.console = open(self.state / "console.log", "a")
        clock = self.state / "clock"
        clock.write_bytes(b"\0" * 8)
        self._clock_fd = os.open(clock, os.O_RDONLY)
        self.real0 = self.start_ns = time.time_ns()  # start_ns: rows stored from now on
        # True UTC at virtual 0: now, or just after the previous run's end (a rerun
        # continues the same board's timeline, it never goes back in time).
        utc_now = self.real0 // 1_000_000
        self.utc0 = max(utc_now, int(self.meta.get("utc_end_ms", 0)) + 1000)
        self._start_server()
        self.real0 = time.time_ns()  # the board is powered on now
        self.outages = sorted(o.wifi_outage + self._random_drops())

    def _firmware_heap(self):
        """--mp32: bytes of GC heap the firmware gets (--heap, else a stock ESP32's)."""
        return _bytes(self.o.heap) if self.o.heap else MP32_FIRMWARE_HEAP

    def _board_lib(self):
        """The board's /lib: lib/ itself, or with --mp32 its modules as .mpy, as `make
        deploy` puts them on a board (bytecode only, so the unix port loads them): compiling
        them at import would take heap a board never spends."""
        if not self.o.mp32:
            return ROOT / "lib"
        micropython_binary(mp32=True)  # no 32-bit build: say so before anything starts
        self._lib_tmp = tempfile.TemporaryDirectory(prefix="sim-lib-")
        mpy.compile_all(sorted((ROOT / "lib").glob("*.py")), self._lib_tmp.name)
        return Path(self._lib_tmp.name)

    def _random_drops(self):
        o = self.o
        if not o.wifi_drops:
            return []
        drops, t = [], 0.0
        while True:
            t += self.rng.expovariate(1.0 / o.wifi_drops)
            if t >= o.duration:
                return drops
            drops.append((round(t, 1), round(t + self.rng.uniform(15, 45), 1)))

    def _start_server(self):
        o = self.o
        if o.ingest_url:
            self.url = o.ingest_url.rstrip("/")
            self.ca_file = o.ca_file
            self.user, self.password = o.user or "", o.password or ""
            self.store = None
            return
        from tools.ingest import IngestServer
        from tools.ingest.config import HEALTH_RECORD, WEATHER_RECORD
        from tools.ingest.tokens import TokenService

        types = {"weather_record": dict(WEATHER_RECORD), "health_record": dict(HEALTH_RECORD)}
        cfg = {
            "access_token_lifetime_s": 300,
            "refresh_token_lifetime_s": 86400,
            "streams": {o.stream: {"types": types}},
        }
        self.server = IngestServer(str(self.state / "ingest"), cfg, port=0,
                                   out=open(os.devnull, "w"))
        # Tokens expire in simulated time: the server judges them by the board's clock.
        self.server.tokens = TokenService(self.server.cfg, clock=self._server_clock,
                                          faults=self.server.faults)
        self.server.start()
        self.url = "https://localhost:%d" % self.server.port
        self.ca_file = self.server.ca_der
        self.user, self.password = o.user or "admin", o.password or "admin"
        self.store = self.server.store

    def board_config(self):
        """config.json for the board, from the options."""
        o = self.o
        cfg = {
            "wifi_ssid": WIFI_SSID, "wifi_password": WIFI_PASSWORD,
            "sample_interval_s": int(o.sample_interval) if float(o.sample_interval).is_integer()
            else o.sample_interval,
            "send_interval_s": int(o.send_interval) if float(o.send_interval).is_integer()
            else o.send_interval,
            "tb_host": self.url, "tb_user": self.user, "tb_pass": self.password,
            "tb_stream": o.stream,
            # The queue's data partition (the firmware's default will be the same); on a
            # board without it (--queue-kib 0) the firmware says so and uses tslog_dir.
            "tslog_partition": "tslog",
        }
        if self.ca_file:
            cfg["tb_ca_file"] = "ca.pem" if str(self.ca_file).endswith(".pem") else "ca.der"
        for item in o.set:
            k, _, v = item.partition("=")
            try:
                cfg[k] = json.loads(v)
            except ValueError:
                cfg[k] = v
        return cfg

    def _board_settings(self, text):
        """The settings the board will have with ``text`` as its config.json: what its own
        ``settings.load()`` makes of it (every key; a bad value is the default, as there).
        What the board will ignore is said here too, not only in its console log."""
        from tools.settings_doc import board_settings

        with tempfile.TemporaryDirectory(prefix="sim-config-") as d:
            path = os.path.join(d, "config.json")
            with open(path, "w") as f:
                f.write(text)
            problems = []
            cfg = board_settings().load(path, log=problems.append, nvs=False)
        for p in problems:
            self._say("sim: the board will log: %s" % p.replace(path, "config.json"))
        return cfg

    def _flash_layout(self):
        """Warn when the partition table differs from the previous run's (a reflash)."""
        o = self.o
        before = self.meta.get("queue_kib")
        self.meta["queue_kib"] = o.queue_kib
        if before is None or before == o.queue_kib:
            return
        gone = []
        if (before == 0) != (o.queue_kib == 0):
            gone.append("the LittleFS vfs (boot counter, config, a folder queue)")
        if o.queue_kib and before:
            gone.append("the tslog partition")
        self._say("sim: --queue-kib %d after %d: as if the board were flashed with another "
                  "partition table; %s start%s blank, the queue of earlier runs is %s" % (
                      o.queue_kib, before, " and ".join(gone) or "nothing",
                      "s" if len(gone) == 1 else "",
                      "gone" if gone or not o.queue_kib else "left in tslog.img, unused"))

    # ------------------------------------------------------------------ boots
    def _boot_conf(self, boot, first, rtc):
        o = self.o
        files = {}
        if first:  # a run (re)writes the firmware, config.json and the CA once, like
            # `make deploy`: boot.py, main.py and config.py into the flash's root as source
            for src in sorted(self.firmware.glob("*.py")):
                files[src.name] = {"host": str(src)}
            text = o.config_json if o.config_json is not None else json.dumps(
                self.board_config())
            files["config.json"] = text
            self.config = self._board_settings(text)
            if self.ca_file:
                files[self.config["tb_ca_file"]] = {"host": str(Path(self.ca_file).resolve())}
        cuts = [int(round(c * 1000)) for c in o.power_cut_at
                if boot.start_v < c * 1000 < o.duration * 1000]
        return {
            "flash_img": str(self.state / "flash.img"),
            "vfs_kib": VFS_KIB if o.queue_kib else OLD_VFS_KIB,
            "tslog_img": str(self.state / "tslog.img"),
            "tslog_kib": o.queue_kib,
            "lib_dir": str(self.lib),
            "files": files,
            "seed": o.seed if o.seed is not None else 1,
            "weather": o.weather,
            "sensors": {s: "dead" for s in o.dead_sensor},
            "wifi": {"ssid": WIFI_SSID, "password": WIFI_PASSWORD},
            "outages": self.outages,
            "ntp_fail_until_s": o.ntp_fail_until,
            "end_ms": int(o.duration * 1000),
            "power_cut_ms": min(cuts) if cuts else None,
            "reset_cause": boot.cause,
            "rtc_memory": rtc.get("rtc_memory", ""),
            "unique_id": UNIQUE_ID,
            "tslog_dir": self.config["tslog_dir"],
            "bucket_size": self.config["bucket_size"],
            "led_pin": self.config["led_pin"],
            "status_ms": 200,
        }

    def _env(self, boot, rtc):
        env = dict(os.environ)
        # The board's own /lib and flash root come later (sim_board.py mounts them).
        path = [str(SIM / "mp"), str(SIM / "device"), str(ROOT / "host_tests" / "fakes")]
        if self.o.mp32:  # the same modules, frozen into the build (tools/mp32_manifest.py)
            path = [".frozen/sim/mp", ".frozen/sim/device", ".frozen/fakes"]
        env["MICROPYPATH"] = ":".join(path + [".frozen"])
        env["SIM_BOOT_JSON"] = str(self.state / "boot.json")
        env["SIM_SPEED"] = "max" if self.speed is None else repr(self.speed)
        env["SIM_V0_MS"] = str(int(boot.start_v))
        env["SIM_CLOCK_FILE"] = str(self.state / "clock")
        env["SIM_UTC0_MS"] = str(self.utc0)
        env["SIM_EPOCH"] = "2000"
        if self.o.mp32:  # tools/sim/device/sim_heap.py
            env["SIM_FIRMWARE_HEAP"] = str(self._firmware_heap())
        if rtc.get("wall_offset_ms") is not None:
            env["SIM_WALL_OFFSET_MS"] = str(rtc["wall_offset_ms"])
        else:
            env.pop("SIM_WALL_OFFSET_MS", None)
        return env

    def _start_boot(self, cause, rtc):
        boot = Boot(len(self.boots) + 1, cause, self.v)
        self.boots.append(boot)
        conf = self._boot_conf(boot, boot.n == 1, rtc)
        path = self.state / "boot.json"
        path.write_text(json.dumps(conf))
        heap = self.o.heap or "2M"
        board = [str(SIM / "device" / "sim_board.py")]
        if self.o.mp32:  # the firmware's share (sim_heap.py) and the simulator's
            heap = str(self._firmware_heap() + MP32_SIM_HEAP)
            board = ["-m", "sim_board"]  # frozen in
        boot.proc = subprocess.Popen(
            [micropython_binary(self.o.mp32), "-X", "heapsize=" + heap] + board,
            cwd=str(ROOT), env=self._env(boot, rtc), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, bufsize=1)
        return boot

    def _console_header(self, boot, st):
        """The console's line before a boot's output, numbered as the firmware numbers
        its boots (``st``: the first status line with its figures, or None)."""
        fw = "boot %s" % st["boot"] if st and st.get("boot") is not None else "a boot"
        cause = (st or {}).get("reset_cause") or RESET_NAMES.get(boot.cause, boot.cause)
        return "\n===== %s (%s) at %.1f s simulated (run %d, process %d) =====\n" % (
            fw, cause, boot.start_v / 1000, self.meta["runs"], boot.n)

    def _reader(self, boot, q):
        """The board's output: status lines to ``q``, the rest to console.log (held back
        until the firmware has said its boot number, which heads the boot's part)."""
        dec = json.JSONDecoder()
        held = []  # console lines before the header
        con = self.console
        for line in boot.proc.stdout:
            i = line.find(STATUS_PREFIX)
            if i >= 0:
                try:
                    obj, end = dec.raw_decode(line, i + len(STATUS_PREFIX))
                except ValueError:
                    pass
                else:
                    q.append(obj)
                    boot.seen_real = time.time()
                    line = line[:i] + line[end:]
                    ev = obj.get("ev")
                    if held is not None and (obj.get("boot") is not None or
                                             ev in ("powercut", "wdt", "end", "crash")):
                        con.write(self._console_header(boot, obj if "boot" in obj else None))
                        con.writelines(held)
                        held = None
                    if ev == "powercut":
                        con.write("===== power cut at %.1f s simulated: the board stops "
                                  "here; the flash keeps what was written =====\n" % (
                                      obj.get("v", 0) / 1000))
                    elif ev == "wdt":
                        con.write("===== watchdog reset at %.1f s simulated (not fed for "
                                  "wdt_timeout_ms) =====\n" % (obj.get("v", 0) / 1000))
                    if not line.strip():
                        continue
            if held is not None:
                held.append(line)
            else:
                con.write(line)
            if self.o.verbose:
                self._clear()
                self.out.write("board: " + line)
        if held is not None:
            con.write(self._console_header(boot, None))
            con.writelines(held)
        con.flush()

    def _run_boot(self, cause, rtc):
        """Run one boot to its end; returns (next cause, rtc state) or None when the run
        is over."""
        boot = self._start_boot(cause, rtc)
        q = collections.deque()
        t = threading.Thread(target=self._reader, args=(boot, q), daemon=True)
        t.start()
        end_v = self.o.duration * 1000
        past_end = None  # real time when the board's clock passed the end by 150 s
        nxt = None
        while True:
            while q:
                ev = q.popleft()
                nxt = self._event(boot, ev) or nxt
            if boot.how in ("wdt", "powercut"):
                self._kill(boot)
                break
            if boot.proc.poll() is not None:
                t.join(2)
                while q:
                    ev = q.popleft()
                    nxt = self._event(boot, ev) or nxt
                break
            # The board ends by itself (firmware shutdown: up to 4 network timeouts, then the
            # SimEnd fallback 2 simulated minutes after the end); if not, pull the plug.
            if past_end is None and self.now_v() > end_v + 150_000:
                past_end = time.time()
            if (past_end is not None and time.time() > past_end + 10) or \
                    time.time() > boot.seen_real + 120:
                boot.how = boot.how or "killed"
                self._say("sim: boot %d did not %s: killed" % (
                    boot.n, "end" if past_end else "report for 120 s (real)"))
                self._kill(boot)
                break
            self._status(boot)
            self._watch_arrivals()
            time.sleep(0.05)
        t.join(2)
        self._status(boot, force=True)
        self.v = max(self.v, int(boot.last.get("v", boot.start_v)), self.now_v())
        boot.end_v = min(self.v, end_v)
        rc = boot.proc.returncode
        if boot.how is None:
            boot.how = "reset" if rc == EXIT_RESET else "died"
            if rc not in (0, EXIT_RESET):
                self._say("sim: the board process exited %s without a reason: the simulator "
                          "stops here (see %s)" % (rc, self.state / "console.log"))
        if self.v >= end_v or boot.how in ("end", "killed", "died"):
            return None
        if boot.how == "reset" and nxt:
            return nxt
        if boot.how == "wdt":
            return (3, {"rtc_memory": boot.last.get("rtc_memory", ""),
                        "wall_offset_ms": boot.last.get("wall_offset_ms")})
        if boot.how == "powercut":
            self.v += POWER_BACK_MS
        return (1, {})  # power-on: RTC and its memory cleared

    def _kill(self, boot):
        if boot.proc.poll() is None:
            boot.proc.send_signal(signal.SIGKILL)
            boot.proc.wait()

    def _event(self, boot, ev):
        kind = ev.get("ev")
        if "v" in ev:
            self.v = max(self.v, int(ev["v"]))
        if kind in ("st", "final", "cut"):
            self._pace(boot, ev)
            tr = (ev.get("wifi"), ev.get("led"))
            if not boot.transitions or boot.transitions[-1][1:] != tr:
                boot.transitions.append((round(ev.get("v", 0) / 1000, 1),) + tr)
            if "samples" in ev or "taken" in ev:
                if boot.first is None and _get(ev, "samples", "taken") + _get(ev, "missed"):
                    boot.first = ev  # the first line after the first slot: dates slot 0
                boot.last = ev
            else:
                boot.last.update({k: ev[k] for k in ("led", "wifi", "v", "link")})
            if kind == "final":
                boot.final = ev
            if kind == "cut":
                boot.cut = ev
            return None
        if kind == "alive":  # the board process is there (tools/sim/device/sim_board.py)
            return None
        boot.events.append(ev)
        if kind == "end":
            boot.how = "end"
        elif kind == "reset":
            boot.how = "reset"
            return (ev.get("cause", 2), ev)
        elif kind == "wdt":
            boot.how = "wdt"
            boot.last["rtc_memory"] = ev.get("rtc_memory", "")
            boot.last["wall_offset_ms"] = ev.get("wall_offset_ms")
        elif kind == "powercut":
            boot.how = "powercut"
        elif kind == "crash":
            boot.crashed = True
            self._say("sim: boot %d: the firmware stopped (%s); the board sits at its REPL" % (
                boot.n, ev.get("error")))
        return None

    def _pace(self, boot, ev):
        """Keep the last ~3 s (real) of (real, virtual) points: the speed held."""
        now = time.time()
        boot.pace.append((now, ev.get("v", 0)))
        while len(boot.pace) > 2 and now - boot.pace[1][0] >= 3:
            boot.pace.pop(0)
        held = self._held(boot)
        if held is not None and self.speed is not None and held < 0.9 * self.speed:
            self.slowest = held if self.slowest is None else min(self.slowest, held)

    def _held(self, boot):
        """Simulated s per real s over the last ~3 s, or None if too short to tell."""
        p = boot.pace
        if len(p) < 2 or p[-1][0] - p[0][0] < 2:
            return None
        return (p[-1][1] - p[0][1]) / 1000 / (p[-1][0] - p[0][0])

    # ------------------------------------------------------------------ status
    def _watch_arrivals(self):
        """Note (once) when the first records reach the bundled server."""
        if self.server is None or self.first_arrival is not None:
            return
        now = time.time()
        if now - self._arrival_check < 0.5:
            return
        self._arrival_check = now
        if self.server.stats_snapshot().get("written", 0) > self._written0:
            self.first_arrival = now - self.real0 / 1e9
            self._say("sim: first records in the ingest store after %.1f s (real)" % (
                self.first_arrival))

    def _totals(self):
        t = {"samples": 0, "stored": 0, "uploaded": 0}
        for b in self.boots:
            s = b.last
            t["samples"] += _get(s, "samples", "taken")
            t["stored"] += _get(s, "stored")
            t["uploaded"] += _get(s, "sent", "uploaded")
        return t

    def _speed_note(self, boot):
        held = self._held(boot)
        if held is None:
            return self._speed_text()
        if self.speed is None:
            return "max %.0fx" % held
        if held < 0.9 * self.speed:  # the clock waits for the board: say so
            return "%.0fx (%gx requested: host too slow, clock slowed)" % (held, self.speed)
        return self._speed_text()

    def _status_line(self, boot):
        s = boot.last
        t = self._totals()
        v = self.now_v() / 1000
        return ("sim %s / %s  %s  boot %s  samples %d  queued %s  uploaded %d  wifi %s  "
                "led %s" % (
                    _hms(min(v, self.o.duration)), _hms(self.o.duration),
                    self._speed_note(boot), s.get("boot", "?"), t["samples"],
                    _get(s, "queue_lag", "queued"), t["uploaded"], s.get("wifi", "?"),
                    s.get("led", "?")))

    def _status(self, boot, force=False):
        if self.o.quiet:
            return
        now = time.time()
        if self._tty:
            if now - self._last_print >= 0.2 or force:
                self.out.write("\r" + self._status_line(boot).ljust(100)[:150])
                self.out.flush()
                self._last_print = now
        elif now - self._last_print >= 10 or force:
            self.out.write(self._status_line(boot) + "\n")
            self.out.flush()
            self._last_print = now

    def _clear(self):
        if self._tty:
            self.out.write("\r" + " " * 150 + "\r")

    def _say(self, text):
        self._clear()
        self.out.write(text + "\n")
        self.out.flush()

    # ------------------------------------------------------------------ the run
    def run(self):
        self.setup()
        o = self.o
        self._say("sim: %s simulated at %s%s; firmware %s; uploading to %s%s" % (
            _hms(o.duration), self._speed_text(),
            " (%s real or more)" % _hms(o.duration / self.speed) if self.speed else
            " (lockstep, as fast as the host allows)",
            os.path.relpath(self.firmware, ROOT) + "/", self.url,
            " (bundled ingest server)" if self.server else ""))
        self._say("sim: flash: %s" % (
            "LittleFS vfs %d KiB + tslog data partition %d KiB (the queue)" % (
                VFS_KIB, o.queue_kib) if o.queue_kib else
            "LittleFS vfs %d KiB, no tslog partition (the queue in a folder)" % OLD_VFS_KIB))
        self._flash_layout()
        if self.outages:
            self._say("sim: Wi-Fi outages (simulated s): " + ", ".join(
                "%g-%g" % span for span in self.outages))
        nxt = (1, {})
        try:
            while nxt is not None and self.v < o.duration * 1000:
                nxt = self._run_boot(*nxt)
        except KeyboardInterrupt:
            self._say("sim: interrupted")
            for b in self.boots:
                if b.proc and b.proc.poll() is None:
                    self._kill(b)
        finally:
            self._clear()
        self.real_s = (time.time_ns() - self.real0) / 1e9
        self.meta["utc_end_ms"] = self.utc0 + int(self.now_v())
        result = self.ledger()
        self.meta_path.write_text(json.dumps(self.meta))
        self.summary(result)
        if self.server:
            self.server.stop()
        if self.console:
            self.console.close()
        if self._clock_fd is not None:
            os.close(self._clock_fd)
            self._clock_fd = None
        return result

    # ------------------------------------------------------------------ ledger
    def _server_rows(self, symbol):
        if self.store is None:
            return None
        return list(self.store.query(self.o.stream, symbol=symbol, types=["weather_record"]))

    def ledger(self):
        o = self.o
        interval_ms = o.sample_interval * 1000
        slots = int(o.duration * 1000 // interval_ms)
        boots = [b for b in self.boots if b.last]
        sums = {}
        names = {"taken": ("samples", "taken"), "failed": ("sensor_failed", "failed")}  # seed's
        for k in ("taken", "stored", "missed", "failed", "store_errors", "dead", "dropped"):
            sums[k] = sum(_get(b.cut or b.final or b.last, *names.get(k, (k,))) for b in boots)
        # Seqn ranges that survived: boot i stored [first_i, last_i]; after a power cut the
        # log resumed after its last committed record, which the next boot's first seqn
        # (or the log's last seqn at the end) tells.
        ranges, cut_inflight, cut_uncommitted, lost_cut = [], 0, 0, 0
        final = self.boots[-1].final if self.boots else None
        queue = (final or {}).get("queue") or {}
        inflight_lost = 0
        reused = []  # (first, last, UTC ms of the cut): seqns the log handed out again
        for i, b in enumerate(boots):
            s = b.cut or b.final or b.last
            stored, last = _get(s, "stored"), s.get("last_seqn")
            # A slot taken but neither stored nor failed: a sample in progress when the
            # power went (or, for a boot that ended cleanly, a sample gone missing).
            inflight = max(0, _get(s, "samples", "taken") - stored -
                           _get(s, "sensor_failed", "failed") - _get(s, "store_errors"))
            if b.how in ("powercut", "wdt", "died", "killed"):
                cut_inflight += inflight
            else:
                inflight_lost += inflight
            if not stored or last is None:
                continue
            first = last - stored + 1
            if b.how in ("powercut", "wdt", "died", "killed"):
                resume = None
                for later in boots[i + 1:]:
                    ls = later.cut or later.final or later.last
                    if _get(ls, "stored") and ls.get("last_seqn") is not None:
                        resume = ls["last_seqn"] - _get(ls, "stored") + 1
                        break
                if resume is None and queue.get("last_seqn") is not None:
                    resume = queue["last_seqn"] + 1
                if resume is not None and resume <= last:
                    gone = last - resume + 1
                    cut_ms = self.utc0 + int((b.cut or {}).get("v", b.end_v or 0))
                    reused.append((resume, last, cut_ms))
                    allowed = self.config["commit_delta"]
                    cut_uncommitted += min(gone, allowed)
                    lost_cut += max(0, gone - allowed)
                    last = resume - 1
            if last >= first:
                ranges.append((first, last))
        run_seqs = set()
        for a, z in ranges:
            run_seqs.update(range(a, z + 1))
        symbol = (boots[-1].last.get("symbol") if boots else None) or "esp" + UNIQUE_ID
        rows = self._server_rows(symbol)
        dup_ts = 0
        earlier_uploaded = None
        estimated = None
        if rows is None:  # an external server: trust the board's counter
            uploaded = sum(_get(b.final or b.last, "sent", "uploaded") for b in boots)
            in_store = set()
            all_seqs = set()
        else:
            all_seqs = {r["seq"] for r in rows}
            in_store = all_seqs & run_seqs
            ts = [r["capture_ns"] for r in rows if r["seq"] in run_seqs]
            dup_ts = len(ts) - len(set(ts))
            uploaded = len(in_store)
            estimated = sum(1 for r in rows if r["seq"] in run_seqs and r.get("time_estimated"))
            # Records of earlier runs this run delivered: stored by the server since the
            # run started (the server dates each row's arrival) with a seq of no boot here.
            earlier_uploaded = sum(1 for r in rows if r["seq"] not in run_seqs and
                                   r["acquisition_ns"] >= self.start_ns)
        ts_errors = self._check_timestamps(rows, run_seqs)
        # A seqn lost with the power is handed out again by the next boot.  If the store
        # holds that seqn with a time before the cut, the record had been uploaded, so it
        # was committed: the log reused a committed seqn and the server dropped the new
        # record as a duplicate.  Each such record is lost.
        seq_reused = 0
        for r in rows or ():
            for a, z, cut_ms in reused:
                if a <= r["seq"] <= z and r["capture_ns"] // 1_000_000 <= cut_ms:
                    seq_reused += 1
        queued = earlier_queued = 0
        if queue.get("first") is not None:
            pending = set(range(queue["first"], queue["last"] + 1)) - in_store
            queued = len(pending & run_seqs)
            earlier_queued = len(pending - run_seqs - all_seqs)
        dead, dropped = sums["dead"], sums["dropped"]
        dead_earlier = 0
        if queue.get("dead_seqs") is not None:  # the dead-letter log itself, by seq
            dead_set = set()
            for a, z in queue["dead_seqs"]:
                dead_set.update(range(a, z + 1))
            dead = len(dead_set & run_seqs)
            dead_earlier = len(dead_set - run_seqs) - int(self.meta.get("dead_before", 0))
            self.meta["dead_before"] = len(dead_set - run_seqs)
        uncommitted = cut_inflight + cut_uncommitted
        accounted_stored = uploaded + queued + dead + dropped + cut_uncommitted
        lost_stored = max(0, sums["stored"] - accounted_stored - lost_cut) + lost_cut
        covered = sum(_get(b.cut or b.final or b.last, "samples", "taken") +
                      _get(b.cut or b.final or b.last, "missed") for b in boots)
        down_ms = self._down_ms(interval_ms)
        down_slots = max(0, slots - covered)
        hung = min(down_slots, sum(self._hung_slots(b, interval_ms) for b in boots))
        # Slots nobody sampled must match the time no firmware was sampling (one slot of
        # slack per boot for the partial slots at its edges), or a hung firmware's.
        lost_down = max(0, down_slots - hung - int(down_ms // interval_ms) - len(self.boots))
        slots = max(slots, covered)  # a boot may take the slot at the very end
        lost = lost_stored + lost_down + inflight_lost + seq_reused
        return {
            "slots": slots, "samples": sums["taken"], "stored": sums["stored"],
            "uploaded": uploaded, "estimated": estimated, "queued": queued, "dead": dead,
            "dropped": dropped,
            "dead_earlier": dead_earlier, "queue_error": queue.get("error"),
            "earlier_uploaded": earlier_uploaded, "earlier_queued": earlier_queued,
            "missed": sums["missed"], "sensor_failed": sums["failed"],
            "store_errors": sums["store_errors"], "power_cut_uncommitted": uncommitted,
            "cut_uncommitted": cut_uncommitted, "lost_stored": lost_stored,
            "cut_inflight": cut_inflight, "inflight_lost": inflight_lost,
            "board_down": down_slots - hung - lost_down, "board_down_ms": int(down_ms),
            "hung": hung, "lost": lost,
            "duplicates": dup_ts, "timestamp_errors": ts_errors, "seq_reused": seq_reused,
            "bad_rows": self.bad_rows[:20], "boots": [
                {"n": b.n, "cause": RESET_NAMES.get(b.cause, b.cause),
                 "how": b.how + " (crashed)" if b.crashed else b.how,
                 "start_s": round(b.start_v / 1000, 1),
                 "end_s": round((b.end_v or 0) / 1000, 1),
                 "fw_boot": (b.final or b.last).get("boot"),
                 "taken": _get(b.cut or b.final or b.last, "samples", "taken"),
                 "stored": _get(b.cut or b.final or b.last, "stored"),
                 "missed": _get(b.cut or b.final or b.last, "missed"),
                 "cut_s": (b.cut or {}).get("v", 0) / 1000 if b.cut else None,
                 "transitions": b.transitions} for b in self.boots],
            "symbol": symbol, "url": self.url, "rows": rows,
            "first_arrival_s": self.first_arrival, "real_s": getattr(self, "real_s", None),
            "slowest": self.slowest, "usage": queue.get("usage"),
            "sent_total": self._totals()["uploaded"],  # what the status line says
            "clock": (final or {}).get("clock"),
            "outages": self.outages, "state_dir": str(self.state),
        }

    def _hung_slots(self, b, interval_ms):
        """Slots between the last one a boot took and its watchdog reset: the firmware hung
        (a real board would not sample them either)."""
        if b.how != "wdt" or b.cut is None or b.first is None:
            return 0
        f = b.first
        n_first = _get(f, "samples", "taken") + _get(f, "missed")
        first_slot = f.get("v", b.start_v) - max(0, n_first - 1) * interval_ms
        due = int((b.cut.get("v", 0) - first_slot) // interval_ms) + 1  # slots due by then
        return max(0, due - _get(b.cut, "samples", "taken") - _get(b.cut, "missed"))

    def _check_timestamps(self, rows, run_seqs):
        """Records of this run whose timestamp is outside the run, or (``--weather ramp``)
        further than 6 s from the true time the pressure ramp says it was sampled (NTP
        sets the clock in whole seconds, and a sample taken before NTP gets its time from
        the boot's epoch)."""
        self.bad_rows = []
        if not rows:
            return 0
        lo = self.utc0 - 1000
        # The firmware stops within a loop slice of the end: it may take one more slot.
        hi = self.utc0 + int(self.o.duration * 1000) + 2000 + int(self.o.sample_interval * 1000)
        # An estimated time (a boot that never learned it: clock.Epochs) is late by at most
        # the time from that boot's last committed record to the next boot's start: the
        # records a cut took (< commit_delta) plus the time the board was off.
        late_max = self._gap_ms() + int(self.config.get("commit_delta", 16)) * int(
            self.o.sample_interval * 1000) + 6000
        bad = 0
        for r in rows:
            if r["seq"] not in run_seqs:
                continue
            t = r["capture_ns"] // 1_000_000
            if not lo - (late_max if r.get("time_estimated") else 0) <= t <= hi:
                bad += 1
                self.bad_rows.append((r["seq"], r["timestamp"], "outside the run"))
                continue
            p = r.get("bmp180_pressure")
            if self.o.weather == "ramp" and p is not None:
                expect = 95000.0 + (t % 1_000_000) / 100.0
                d = (expect - p) % 10000.0  # Pa; the stamp is late by 100 ms a Pa
                late = d * 100 if d < 5000 else (d - 10000.0) * 100
                if not -6000 <= late <= (late_max if r.get("time_estimated") else 6000):
                    bad += 1
                    self.bad_rows.append((r["seq"], r["timestamp"], p, expect))
        return bad

    def _gap_ms(self):
        """The longest time (virtual ms) between a boot's end and the next one's start."""
        gap = 0
        for a, b in zip(self.boots, self.boots[1:]):
            end = a.cut.get("v") if a.cut else a.end_v
            if end is not None:
                gap = max(gap, b.start_v - end)
        return int(gap)

    def _down_ms(self, interval_ms):
        """Virtual ms of the run during which the board was legitimately not sampling:
        before each boot's first slot (power-on, boot.py), between boots (a reset, a
        power cut) and after the last slot.  A boot whose firmware never sampled counts
        as down only if it ended in a reset (the firmware rebooted itself); one that
        crashed to the REPL or died is not down, so its slots come out as lost."""
        down = 0.0
        prev_end = 0.0
        for b in self.boots:
            end = b.cut.get("v") if b.cut else (b.end_v or b.start_v)
            down += max(0.0, b.start_v - prev_end)  # between boots
            f = b.first
            if f is not None:
                n_first = _get(f, "samples", "taken") + _get(f, "missed")
                first_slot = f.get("v", b.start_v) - max(0, n_first - 1) * interval_ms
                down += max(0.0, first_slot - b.start_v)
            elif b.how == "reset":
                down += max(0.0, end - b.start_v)
            prev_end = b.end_v or end
        if not self.boots or self.boots[-1].how != "died":  # else: the run was cut short
            down += max(0.0, self.o.duration * 1000 - prev_end)
        return down

    def _queue_figures(self, r):
        """(flash bytes per record, days of the sample interval the queue holds), as text;
        '?' when the queue has no ``usage()``."""
        u = r.get("usage")
        if not u or not u[0] or not u[1]:
            return "?", "?"
        held, used, total = u[0], u[1], u[2]
        per = used / held
        days = total / per * self.o.sample_interval / 86400
        return "%.1f" % per, "%.1f" % days

    def summary(self, r):
        w = self.out.write
        o = self.o
        w("\nsim: %d boot(s):\n" % len(r["boots"]))
        for b in r["boots"]:
            w("  boot %d  %-9s %7.1f-%7.1f s  firmware boot %s  samples %d  stored %d  "
              "ended: %s\n" % (b["n"], b["cause"], b["start_s"], b["end_s"], b["fw_boot"],
                               b["taken"], b["stored"], b["how"]))
        w("sim: slots %d = uploaded %d + queued %d + dead-lettered %d + dropped %d + "
          "power-cut uncommitted %d + missed %d + sensor-failed %d + store errors %d + "
          "board down %d + hung until the watchdog %d + lost %d\n" % (
              r["slots"], r["uploaded"], r["queued"], r["dead"], r["dropped"],
              r["power_cut_uncommitted"], r["missed"], r["sensor_failed"],
              r["store_errors"], r["board_down"], r["hung"], r["lost"]))
        if r.get("real_s"):
            sim_s = min(self.v, o.duration * 1000) / 1000
            held = sim_s / r["real_s"] if r["real_s"] > 0 else 0
            note = ""
            if self.speed is not None and r.get("slowest") is not None:
                note = "; the host could not hold %gx (down to %.0fx at times): the clock " \
                       "waited for the board, no slot was missed for it" % (
                           self.speed, r["slowest"])
            w("sim: %s simulated in %s real (%.0fx, %s requested)%s\n" % (
                _hms(sim_s), _hms(r["real_s"]), held, self._speed_text(), note))
        if self.server:
            w("sim: ingest store: %s (python -m tools.ingest query --data-dir %s "
              "--stream %s)\n" % (self.state / "ingest", self.state / "ingest", o.stream))
        w("sim: board console: %s\n" % (self.state / "console.log"))
        if r.get("queue_error"):
            w("sim: could not read the queue on flash: %s\n" % r["queue_error"])
        per, days = self._queue_figures(r)
        u = r.get("usage")
        where = ("tslog partition %d KiB" % o.queue_kib) if o.queue_kib else \
            "folder %s on LittleFS" % self.config["tslog_dir"]
        if u:
            w("sim: queue (%s): %d record(s) in %d of %d flash bytes: %s bytes/record, "
              "holds %s days at %g s\n" % (where, u[0], u[1], u[2], per, days,
                                           o.sample_interval))
        else:
            w("sim: queue (%s): flash bytes/record and days held unknown (the queue has "
              "no usage())\n" % where)
        clk = r.get("clock") or {}
        if clk.get("forced"):
            w("sim: the lockstep clock was forced on %d time(s): board threads ran without "
              "sleeping (see the console)\n" % clk["forced"])
        if r["duplicates"] or r["timestamp_errors"] or r["seq_reused"]:
            w("sim: WRONG DATA: %d record(s) stored twice, %d seqn(s) reused after a power "
              "cut, %d with a wrong timestamp %s\n" % (
                  r["duplicates"], r["seq_reused"], r["timestamp_errors"], r["bad_rows"][:5]))
        w(last_line(r, per, days, o.sample_interval) + "\n")
        self.out.flush()


def last_line(r, per, days, interval):
    """The summary's last line: where this run's samples went and where its stored
    records went (both sums balance), earlier runs' records it delivered, the queue's
    figures, and what was lost in all."""
    taken = ["stored %d" % r["stored"]]
    for key, name in (("sensor_failed", "sensor-failed"), ("store_errors", "store errors"),
                      ("cut_inflight", "cut mid-sample"), ("inflight_lost", "missing")):
        if r.get(key):
            taken.append("%s %d" % (name, r[key]))
    stored = "uploaded %d + queued %d + dead-lettered %d + dropped %d + uncommitted at a " \
             "power cut %d" % (r["uploaded"], r["queued"], r["dead"], r["dropped"],
                               r["cut_uncommitted"])
    if r["lost_stored"]:
        stored += " + missing %d" % r["lost_stored"]
    earlier = ""
    if r.get("earlier_uploaded") or r.get("earlier_queued") or r.get("dead_earlier"):
        earlier = "; earlier runs' records: uploaded %d, dead-lettered %d, still queued %d" % (
            r.get("earlier_uploaded") or 0, r.get("dead_earlier") or 0,
            r.get("earlier_queued") or 0)
    if r.get("estimated"):  # boots that never learned the time (docs/firmware.md "Time")
        earlier += "; %d uploaded with an estimated time" % r["estimated"]
    return "sim: samples taken %d = %s; stored %d = %s%s; queue %s flash bytes/record, " \
           "holds %s days at %g s; lost %d" % (r["samples"], " + ".join(taken), r["stored"],
                                              stored, earlier, per, days, interval, r["lost"])


def _get(d, *keys):
    for k in keys:
        v = d.get(k) if d else None
        if v is not None:
            return v
    return 0


def _hms(s):
    s = int(s)
    return "%d:%02d:%02d" % (s // 3600, s // 60 % 60, s % 60) if s >= 3600 else \
        "%d:%02d" % (s // 60, s % 60)


def main(argv=None):
    opts = parse_args(argv)
    r = Sim(opts).run()
    return 1 if r["lost"] or r["hung"] or r["duplicates"] or r["timestamp_errors"] else 0
