# cpython-only: drives mpy-cross and a micropython subprocess from the host
"""`mpy-cross -march=xtensawin` compiles every board module, and the unix port runs them.

The .mpy files for the ESP32 carry xtensawin in their header, but plain bytecode
(no @native/@viper code) loads on any port with the same .mpy version, so the
unix port can import what goes onto the board.
"""

import os
import subprocess
import sys
from pathlib import Path

import support

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def compile_all(out):
    from tools import mpy

    srcs = sorted((ROOT / "lib").glob("*.py")) + sorted((ROOT / "firmware").glob("*.py"))
    mpy.compile_all(srcs, out, march="xtensawin")  # what `make build` runs
    return srcs


def test_every_board_module_compiles_for_xtensawin():
    out = support.tmpdir("mpy")
    srcs = compile_all(out)
    for src in srcs:
        data = (Path(out) / (src.stem + ".mpy")).read_bytes()
        assert data[0:1] == b"M" and data[1] == 6, src  # .mpy v6
    assert len(srcs) == len(list(Path(out).glob("*.mpy")))


def test_unix_port_runs_compiled_modules():
    out = support.tmpdir("mpyrun")
    compile_all(out)
    mods = sorted(p.stem for p in (ROOT / "lib").glob("*.py"))
    script = ("for m in %r:\n"
              "    mod = __import__(m)\n"
              "    assert mod.__file__.endswith('.mpy'), mod.__file__\n"
              "print('ok', %d)\n") % (mods, len(mods))
    fakes = str(ROOT / "host_tests" / "fakes")
    env = dict(os.environ, MICROPYPATH=":".join([out, fakes, ".frozen"]))
    proc = subprocess.run([str(BIN / "micropython"), "-c", script], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "ok %d" % len(mods)


def test_board_code_drops_asserts_but_umqtt_keeps_its_protocol_checks():
    """``tools/mpy.py``: board code is built with -O3 (no line numbers, no asserts: heap),
    except the modules whose asserts check a protocol (the vendored umqtt_simple)."""
    from tools import mpy

    out = support.tmpdir("mpyopt")
    code = "def check():\n    assert False, 'kept'\n    return 'dropped'\n"
    (Path(out) / "lib").mkdir()  # board code, as mpy.compile tells it by its folder
    for name in ("plain", "umqtt_simple"):
        src = Path(out) / "lib" / (name + ".py")
        src.write_text(code)
        mpy.compile(src, out)
    script = ("import plain, umqtt_simple\nprint(plain.check())\n"
              "try:\n    umqtt_simple.check()\nexcept AssertionError as e:\n    print(e)\n")
    proc = subprocess.run([str(BIN / "micropython"), "-c", script], capture_output=True,
                          text=True, timeout=60, env=dict(os.environ, MICROPYPATH=out))
    assert proc.stdout.split() == ["dropped", "kept"], proc.stdout + proc.stderr
