"""``python -m tools.pull --port /dev/ttyUSB0 [--since T] --out data.csv`` (docs/console.md)."""

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_TIME = re.compile(r"^(\d+(\.\d+)?|\d{4}-\d\d-\d\d([T ]\d\d(:\d\d(:\d\d(\.\d+)?)?)?)?Z?)$")


def _tool(name, given):
    """``given``, else ``name`` next to this Python (the venv), else on PATH."""
    if given:
        return given
    cand = Path(sys.executable).parent / name
    if cand.exists():
        return str(cand)
    return shutil.which(name) or name


def _arg(t):
    """A time argument as Python source for the board: a number stays a number."""
    if t is None:
        return "None"
    if re.match(r"^\d+(\.\d+)?$", t):
        return t
    return repr(t)


def serial_command(a):
    code = "import console; console.dump(since=%s, until=%s)" % (_arg(a.since), _arg(a.until))
    cmd = [_tool("mpremote", a.mpremote), "connect", a.port, "exec", code]
    if not a.no_reset:
        cmd += ["+", "reset"]
    return cmd


def image_command(a, out):
    size = os.path.getsize(a.image)
    heap_mb = 2 * size // (1 << 20) + 8  # the image is held in RAM
    script = str(ROOT / "tools" / "pull" / "image_dump.py")
    return [_tool("micropython", a.micropython), "-X", "heapsize=%dm" % heap_mb, script,
            os.path.abspath(a.image), out, str(a.block_size), a.since or "", a.until or ""]


def _env():
    env = dict(os.environ)
    env["MICROPYPATH"] = ":".join([str(ROOT / "host_tests" / "fakes"), str(ROOT / "lib")])
    return env


def _check_header(path):
    with open(path) as f:
        head = f.readline()
    if not head.startswith("seq,"):
        raise SystemExit("pull: the board did not answer with CSV: %r" % head[:200])


def pull_serial(a, tmp):
    """Stream mpremote's output into ``tmp`` line by line (a day is ~5 MB: never in RAM)."""
    cmd = serial_command(a)
    n = -1
    first = None
    with open(tmp, "w") as f:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, errors="replace")
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\r\n")
            if first is None:
                first = line
                if not line.startswith("seq,"):
                    f.close()
                    rest = proc.stdout.read(2000)
                    proc.wait()
                    raise SystemExit("pull: the board did not answer with CSV:\n%s\n%s" % (
                        line, rest))
            f.write(line + "\n")
            n += 1
        rc = proc.wait()
    if rc != 0 or first is None:
        raise SystemExit("pull: mpremote failed (exit %d)" % rc)
    return n


def pull_image(a, tmp):
    cmd = image_command(a, tmp)
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit("pull: reading %s failed:\n%s%s" % (a.image, proc.stdout[-2000:],
                                                            proc.stderr[-2000:]))
    _check_header(tmp)
    m = re.search(r"image_dump: (\d+) records", proc.stderr)
    return int(m.group(1)) if m else -1


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tools.pull",
                                description="Save the records logged on a board as CSV.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--port", help="serial port of the board, e.g. /dev/ttyUSB0")
    src.add_argument("--image", help="a LittleFS flash image file, e.g. the simulator's "
                     "<state-dir>/flash.img")
    p.add_argument("--since", help="only records at or after this UTC time "
                   "(YYYY-MM-DDTHH:MM:SSZ or epoch seconds)")
    p.add_argument("--until", help="only records before this UTC time")
    p.add_argument("--out", help="CSV file to write (required unless --dry-run)")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--no-reset", action="store_true",
                   help="leave the board at the REPL afterwards (default: reset it, which "
                   "restarts the firmware)")
    p.add_argument("--block-size", type=int, default=4096, help="image block size (4096)")
    p.add_argument("--mpremote", help="mpremote command (default: the venv's)")
    p.add_argument("--micropython", help="unix-port binary for --image (default: the venv's)")
    a = p.parse_args(argv)
    for t in (a.since, a.until):
        if t is not None and not _TIME.match(t):
            p.error("time %r: use YYYY-MM-DDTHH:MM:SSZ (UTC) or epoch seconds" % t)
    if a.dry_run:
        out = a.out or "data.csv"
        cmd = serial_command(a) if a.port else image_command(a, out + ".part")
        print(shlex.join(cmd) + (" > " + shlex.quote(out + ".part") if a.port else ""))
        print("mv %s %s" % (shlex.quote(out + ".part"), shlex.quote(out)))
        return 0
    if not a.out:
        p.error("--out is required")
    tmp = a.out + ".part"
    try:
        n = pull_serial(a, tmp) if a.port else pull_image(a, tmp)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    os.replace(tmp, a.out)
    print("pull: %d records -> %s" % (n, a.out), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
