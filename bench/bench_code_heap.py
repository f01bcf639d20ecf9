"""Heap taken by the firmware's code: which modules a board loads, and what they cost.

A board running stock MicroPython loads every module from ``/lib`` as ``.mpy`` into the
same heap its data needs (ESP32: ~110 KB with Wi-Fi up and room left for TLS), so the
code's size there decides whether the firmware fits. Each set of modules below is
imported as ``.mpy`` in a fresh interpreter; the figure is the live heap it adds (after
``gc.collect()``: bytecode, constant tables, function and class objects, interned names):

* the uplink drain's modules (the 64 KB drain of issue 6) and the console's (issue 8);
* what the firmware keeps loaded on a board (the queue on its raw partition, as
  ``make flash`` sets it up), without and with the uplink configured;
* what it does not keep loaded unless asked: ``builder``/``settings`` and its table
  ``config`` (boot only, dropped after; a line says what stays of them once dropped: the
  names they interned), ``console`` (REPL only), ``archive`` (SD card only), and
  ``tslog_dir`` in place of ``tslog_raw`` on a board without the partition.

The venv's unix port is 64-bit (8-byte pointers, 32-byte heap blocks): about 1.4x a
board's figures. A 32-bit unix build (the ESP32's object layout: 4-byte pointers, 16-byte
blocks) adds a column: the one ``make mp32`` built, or ``MICROPYTHON32=/path/to/micropython``;
README.md keeps the figures measured with it. (The webassembly port is
32-bit too but measured ~30 % above the 32-bit unix build: not a board's layout.)

Run: ``.venv/bin/python bench/bench_code_heap.py`` (a few seconds).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tools import mpy  # noqa: E402

BIN = Path(sys.executable).parent
JOB = ROOT / "bench" / "code_heap_job.py"
FAKES = ROOT / "host_tests" / "fakes"
PRE = ["machine", "network", "esp32", "ntptime", "webrepl", "socket", "ssl", "_thread"]
BOARD = ["fsutil", "record", "tslog", "tslog_raw", "am2320", "bmp180", "sampler", "bootguard",
         "clock", "wifi", "uploader", "app"]
UPLINK = ["https", "oauth", "sender", "health"]
WITH_UPLINK = "firmware on a board with the uplink"
SETS = [
    ("uplink drain: https oauth record sender tslog",
     ["https", "oauth", "record", "sender", "tslog"]),
    ("console: record tslog console", ["record", "tslog", "console"]),
    ("firmware on a board, no uplink", BOARD),
    (WITH_UPLINK, BOARD + UPLINK),
    ("  + builder, settings, config (boot only, dropped)",
     BOARD + UPLINK + ["builder", "settings", "config"]),
    ("  + builder, settings, config, left once dropped",
     BOARD + UPLINK + ["builder", "settings", "config", "-builder", "-settings", "-config"]),
    ("  + console (loaded when a person imports it)", BOARD + UPLINK + ["console"]),
    ("  + archive (only with sd_mount)", BOARD + UPLINK + ["archive"]),
    ("  tslog_dir for tslog_raw (a board without the partition)",
     [m if m != "tslog_raw" else "tslog_dir" for m in BOARD + UPLINK]),
    ("  + MQTT uplink (only with mqtt_host)", BOARD + UPLINK + ["mqtt_uplink", "umqtt_simple"]),
    ("firmware on a board, MQTT uplink only", BOARD + ["health", "mqtt_uplink",
                                                      "umqtt_simple"]),
]


def compile_mpy(out):
    mpy.compile_all((ROOT / "lib").glob("*.py"), out)


def measure(binary, mpy, work, mods):
    """Live heap (bytes) taken by importing ``mods``, and by each import."""
    with open(os.path.join(work, "job.json"), "w") as f:
        json.dump({"pre": PRE, "mods": mods}, f)
    env = dict(os.environ, MICROPYPATH=":".join([mpy, str(FAKES), ".frozen"]))
    p = subprocess.run([binary, str(JOB)], cwd=work, env=env, capture_output=True, text=True,
                       timeout=300)
    for line in p.stdout.splitlines():
        if line.startswith("@@HEAP "):
            return json.loads(line[7:])
    raise RuntimeError("%s: %s" % (binary, (p.stderr or p.stdout)[-400:]))


def kb(n):
    return "%.1f KB" % (n / 1024)


def main():
    binaries = [("64-bit unix", str(BIN / "micropython"))]
    b32 = os.environ.get("MICROPYTHON32") or ROOT / ".mp32" / "micropython"
    if os.path.exists(b32):
        binaries.insert(0, ("32-bit unix", os.path.abspath(b32)))  # run from a temp dir
    else:
        print("no 32-bit build (make mp32 MP_SRC=...): 64-bit figures only")
    work = tempfile.mkdtemp(prefix="bench_code_heap-")
    mpy = os.path.join(work, "mpy")
    os.mkdir(mpy)
    try:
        compile_mpy(mpy)
        print("heap taken by the code (.mpy imported, live after gc.collect())")
        print("%-48s" % "modules" + "".join("%14s" % name for name, _ in binaries))
        figs = {}
        for name, mods in SETS:
            figs[name] = [measure(b, mpy, work, mods)["total"] for _, b in binaries]
            if name.startswith("  "):
                cells = ["%+.1f KB" % ((n - base) / 1024)
                         for n, base in zip(figs[name], figs[WITH_UPLINK])]
            else:
                cells = [kb(n) for n in figs[name]]
            print("%-48s" % name + "".join("%14s" % c for c in cells))
        for label, b in binaries:
            each = measure(b, mpy, work, BOARD + UPLINK)["each"]
            print("%s, %s, by import (a module's imports count where they are first loaded; "
                  "the interned-name table grows in steps):" % (label, WITH_UPLINK))
            print("  " + ", ".join("%s %s" % (m, kb(n)) for m, n in each))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
