"""Put the firmware on an ESP32 (host side, CPython): deploy, flash, repl.

    python -m tools.deploy deploy --port /dev/ttyUSB0 [--config config.json] [--ca ca.der]
    python -m tools.deploy flash --port /dev/ttyUSB0 --firmware ESP32_GENERIC-v1.24.1.bin
    python -m tools.deploy repl --port /dev/ttyUSB0

(``make deploy|flash|repl PORT=... [CONFIG=...] [CA=...] [FIRMWARE=...] [ERASE=1]
[DRY_RUN=1]``.) ``--dry-run`` prints the commands, one per line, and (deploy) every file
copied with its place on the board, (flash) the partition table, and runs nothing. Every
check runs in a dry run too, so a dry run that succeeds is what a real one would do.

deploy: ``make build`` (``mpy-cross -march=xtensawin`` of ``lib/*.py``), then with
``mpremote``: make ``/lib`` and remove stale files that would shadow the new modules
(``/<mod>.py`` left by the seed firmware, which comes first on ``sys.path``, and
``/lib/<mod>.py``, which MicroPython prefers over ``/lib/<mod>.mpy``; also the
``/config.py`` of earlier firmware, now ``/lib/config.mpy``); copy ``build/lib/*.mpy`` to
``/lib``; copy ``firmware/*.py`` (``boot.py``, ``main.py``) to ``/`` as source; copy
``config.json`` (checked here with ``lib/settings.py`` first; warnings for a ``symbol`` in
the old default's shape, which other boards share, and for ``tb_insecure``) and the CA
certificate (named as the config's ``tb_ca_file``);
then a hard reset (``mpremote reset``), because a soft reset from mpremote's raw REPL
runs boot.py but not main.py. ``mpremote fs cp`` skips files that are already identical.
Only the first mpremote connection soft-resets the board; the others ``resume``.

flash: write the partition table (``tools/partitions.py``: MicroPython's own plus the
queue's ``tslog`` partition) to ``build/partitions.bin``, then with ``esptool``: erase the
whole flash, write the MicroPython image at 0x1000 (bootloader, MicroPython's table, app),
then the table at 0x8000 over MicroPython's. Erasing loses the board's settings and every
sample not uploaded yet, so the tool says so and asks first: on a terminal it asks for a
``y``; elsewhere (scripts, CI) it refuses unless given ``--erase-ok`` (``ERASE=1``).
"""

import argparse
import re
import shlex
import subprocess
import sys
from pathlib import Path

from tools import partitions, settings_doc

ROOT = Path(__file__).resolve().parent.parent
ESP32_IMAGE_MAGIC = 0xE9  # first byte of an ESP32 app/bootloader image
FLASH_OFFSET = "0x1000"  # where the ESP32 (not S2/S3/C3) image with its bootloader goes
TABLE_FILE = "build/partitions.bin"  # the partition table flash writes, relative to root
# The default symbol before issue 17: "esp" + the first 4 hex digits of the MAC, which are
# the vendor's prefix, so every board of that vendor had the same one.
OLD_DEFAULT_SYMBOL = re.compile(r"esp[0-9a-f]{4}", re.IGNORECASE)


class DeployError(Exception):
    """A clear message for the user; the tool exits with status 2."""


def _rel(path, root):
    """``path`` relative to ``root`` when inside it (shorter commands to read)."""
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(path)


def _default_bin():
    return Path(sys.executable).parent


def _python(root):
    """This Python (the venv's), as a path to print: not resolved, a venv's is a symlink."""
    exe = Path(sys.executable)
    return str(Path(_rel(exe.parent, root)) / exe.name)


def _need_port(port, target):
    if not port:
        raise DeployError(
            "PORT is required: make %s PORT=/dev/ttyUSB0 (list the serial ports with "
            "'.venv/bin/mpremote devs'; on Linux you may need to be in the 'dialout' group)"
            % target)


def _check_config(path, settings):
    """The settings a board would have with the overrides in ``path``, checked with the
    board's lib/settings.py; DeployError if any override is bad."""
    errors = []
    cfg = settings.load(str(path), log=errors.append, nvs=False)
    if errors:
        raise DeployError("CONFIG %s has errors (the board would use the defaults for "
                          "these):\n  %s" % (path, "\n  ".join(errors)))
    return cfg


def _warn(cfg, ca, mqtt_ca):
    """Warnings (stderr) for a config the board accepts but its user may not mean."""
    ca_name, mqtt_ca_name = cfg["tb_ca_file"], cfg["mqtt_ca_file"]
    if cfg["mqtt_host"].startswith("mqtts://") and not cfg["mqtt_insecure"] and not mqtt_ca \
            and not (ca and mqtt_ca_name == ca_name):
        print("warning: no MQTT_CA given: the board must already have /%s for %s" % (
            mqtt_ca_name, cfg["mqtt_host"]), file=sys.stderr)
    if cfg["tb_host"].startswith("https://") and not cfg["tb_insecure"] and not ca:
        print("warning: no CA given: the board must already have /%s for %s" % (
            ca_name, cfg["tb_host"]), file=sys.stderr)
    symbol = cfg["symbol"]
    if OLD_DEFAULT_SYMBOL.fullmatch(symbol):
        print("warning: symbol %r looks like the old default (\"esp\" + the first 4 hex "
              "digits of the MAC, which are the vendor's and the same on its other "
              "boards): the server cannot tell this board's records from theirs; give "
              "each board its own symbol, or remove the key to get the new default "
              "(\"esp\" + the whole MAC)" % symbol, file=sys.stderr)
    if cfg["tb_insecure"]:
        print("warning: tb_insecure is true: %s" % (
            "plain http://, the password and tokens cross the network unencrypted"
            if cfg["tb_host"].startswith("http://")
            else "the server's TLS certificate is not checked"), file=sys.stderr)
    if not cfg["webrepl_password"]:
        print("warning: no webrepl_password in CONFIG: WebREPL will not start, so the "
              "setup access point cannot be used to reconfigure the board",
              file=sys.stderr)


def deploy_plan(port, config=None, ca=None, root=ROOT, bin_dir=None, make="make",
                mqtt_ca=None):
    """(commands, files) of a deploy: each command an argv list; files as
    (local path, board path) pairs. Raises DeployError on a bad argument."""
    root = Path(root)
    _need_port(port, "deploy")
    mpremote = _rel(Path(bin_dir or _default_bin()) / "mpremote", root)
    mods = sorted(p.stem for p in (root / "lib").glob("*.py"))
    if not mods:
        raise DeployError("no modules in %s/lib" % root)
    fw = sorted((root / "firmware").glob("*.py"))
    for name in ("boot.py", "main.py"):
        if not (root / "firmware" / name).is_file():
            raise DeployError("firmware/%s is missing" % name)
    files = [("build/lib/%s.mpy" % m, ":lib/%s.mpy" % m) for m in mods]
    files += [("firmware/" + p.name, ":" + p.name) for p in fw]
    settings = settings_doc.board_settings(root)
    cfg = settings.complete()  # the defaults
    extra = []
    if config:
        if not Path(config).is_file():
            raise DeployError("CONFIG file not found: %s" % config)
        cfg = _check_config(config, settings)
        extra.append((str(config), ":config.json"))
        _warn(cfg, ca, mqtt_ca)
    ca_name, mqtt_ca_name = cfg["tb_ca_file"], cfg["mqtt_ca_file"]
    if ca:
        if not Path(ca).is_file():
            raise DeployError("CA file not found: %s" % ca)
        extra.append((str(ca), ":" + ca_name))
    if mqtt_ca:
        if not Path(mqtt_ca).is_file():
            raise DeployError("MQTT CA file not found: %s" % mqtt_ca)
        if ca and mqtt_ca_name == ca_name:
            raise DeployError("CA and MQTT_CA would both be /%s: set mqtt_ca_file in CONFIG"
                              % ca_name)
        extra.append((str(mqtt_ca), ":" + mqtt_ca_name))
    files += extra
    # One line of Python (double quotes only, so the shell quoting stays readable) that
    # makes /lib and removes the files that would shadow the new modules.
    prep = ("import os;M=%r;r=os.listdir('/');"
            "l=os.listdir('/lib') if 'lib' in r else os.mkdir('/lib') or [];"
            "x=['/'+n for n in r if n[-3:]=='.py' and n[:-3] in M or n[-4:]=='.mpy' and "
            "n[:-4] in M]+['/lib/'+n for n in l if n[-3:]=='.py' and n[:-3] in M];"
            "[os.remove(p) for p in x];print('stale files removed:',x)"
            % (tuple(mods),)).replace("'", '"')
    # The first connection interrupts main.py and soft-resets (mpremote's default), which
    # runs boot.py only; the next ones "resume" without another soft reset, so the boot
    # counter moves once per deploy and boot.py is not re-run for every step.
    conn = [mpremote, "connect", port]
    again = conn + ["resume"]
    cmds = [
        [make, "build"],
        conn + ["exec", prep],
        again + ["fs", "cp"] + [src for src, _ in files if src.startswith("build/lib/")]
        + [":lib/"],
        again + ["fs", "cp"] + ["firmware/" + p.name for p in fw] + [":"],
    ]
    for src, dst in extra:
        cmds.append(again + ["fs", "cp", src, dst])
    cmds.append(again + ["reset"])
    return cmds, files


def flash_plan(port, firmware, bin_dir=None, root=ROOT):
    """(commands, partitions) of a flash: make the table, erase, MicroPython, the table."""
    _need_port(port, "flash")
    if not firmware:
        raise DeployError(
            "FIRMWARE is required: make flash PORT=%s FIRMWARE=path/to/ESP32_GENERIC-*.bin "
            "(download it from https://micropython.org/download/ESP32_GENERIC/)" % port)
    path = Path(firmware)
    if not path.is_file():
        raise DeployError("FIRMWARE file not found: %s" % firmware)
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:1] != bytes([ESP32_IMAGE_MAGIC]) or len(head) < 4:
        raise DeployError("FIRMWARE %s is not an ESP32 image (first byte %s, expected 0xE9): "
                          "use the .bin from micropython.org, not a .uf2/.hex/.elf or an "
                          "HTML page" % (firmware, head[:1].hex() or "none"))
    # The bootloader refuses a table reaching past the flash size in the image header
    # (byte 3, high nibble: 1 MB << n).
    flash_mb = 1 << (head[3] >> 4)
    if flash_mb << 20 < partitions.FLASH_SIZE:
        raise DeployError("FIRMWARE %s is built for %d MB of flash; the partition table needs "
                          "4 MB: use the ESP32_GENERIC .bin" % (firmware, flash_mb))
    try:
        parts = partitions.load(partitions.CSV)
    except (OSError, partitions.TableError) as e:
        raise DeployError("partition table %s: %s" % (partitions.CSV, e))
    make_table = [_python(root), _rel(partitions.__file__, root), "--out", TABLE_FILE]
    esptool = _rel(Path(bin_dir or _default_bin()) / "esptool", root)
    base = [esptool, "--chip", "esp32", "--port", port]
    return [make_table, base + ["erase-flash"],
            base + ["write-flash", "-z", FLASH_OFFSET, str(firmware)],
            base + ["write-flash", "-z", "0x%x" % partitions.TABLE_OFFSET, TABLE_FILE]], parts


def confirm_erase(port, erase_ok, dry_run):
    """Say what erasing loses and how to keep it; unless ``erase_ok`` or ``dry_run``, ask
    on a terminal, refuse elsewhere."""
    print("warning: this erases the whole flash of the board on %s: its files (config.json, "
          "the CA certificate) and every sample it has not uploaded yet are lost.\n"
          "  keep the samples: let it upload them first (status() at its prompt shows "
          "reader_lag [0]), or pull them: %s -m tools.pull --port %s --out data.csv\n"
          "  keep the settings: %s connect %s fs cp :config.json config.json, then make "
          "deploy ... CONFIG=config.json" % (
              port, _python(ROOT), port, _rel(_default_bin() / "mpremote", ROOT), port),
          file=sys.stderr, flush=True)
    if erase_ok or dry_run:
        return
    if not sys.stdin.isatty():
        raise DeployError("not erasing without a yes: run make flash in a terminal to be "
                          "asked, or add ERASE=1 (python -m tools.deploy: --erase-ok)")
    try:
        answer = input("Erase the board on %s and flash it? [y/N] " % port)
    except EOFError:
        answer = ""
    if answer.strip().lower() not in ("y", "yes"):
        raise DeployError("nothing done: the answer was not y")


def repl_plan(port, bin_dir=None, root=ROOT):
    _need_port(port, "repl")
    return [[_rel(Path(bin_dir or _default_bin()) / "mpremote", root), "connect", port, "repl"]]


def run(cmds, dry_run, root=ROOT, check=None):
    """Print each command (``shlex`` quoted) and, unless ``dry_run``, run it in ``root``;
    stop at the first failure. ``check(cmd)`` runs after each command (e.g. after build)."""
    for cmd in cmds:
        print(shlex.join(cmd), flush=True)
        if dry_run:
            continue
        try:
            rc = subprocess.call(cmd, cwd=str(root))
        except OSError as e:
            raise DeployError("cannot run %s: %s" % (cmd[0], e))
        if rc != 0:
            raise DeployError("command failed (exit status %d): %s" % (rc, shlex.join(cmd)))
        if check is not None:
            check(cmd)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tools.deploy", description=__doc__.split(
        "\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=("deploy", "flash", "repl"))
    ap.add_argument("--port", default="", help="serial port of the board, e.g. /dev/ttyUSB0")
    ap.add_argument("--config", default="", help="deploy: config.json to copy (checked)")
    ap.add_argument("--ca", default="", help="deploy: server CA certificate (DER or PEM)")
    ap.add_argument("--mqtt-ca", default="", help="deploy: MQTT broker CA (DER or PEM), "
                                                  "copied as the config's mqtt_ca_file")
    ap.add_argument("--firmware", default="", help="flash: MicroPython ESP32 .bin image")
    ap.add_argument("--erase-ok", action="store_true",
                    help="flash: erase without asking (make flash ERASE=1)")
    ap.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    ap.add_argument("--root", default=str(ROOT), help=argparse.SUPPRESS)  # tests
    ap.add_argument("--bin", default="", help=argparse.SUPPRESS)  # tests: mpremote/esptool
    ap.add_argument("--make", default="make", help=argparse.SUPPRESS)  # tests
    a = ap.parse_args(argv)
    root = Path(a.root)
    bin_dir = a.bin or None
    try:
        if a.action == "deploy":
            cmds, files = deploy_plan(a.port, a.config, a.ca, root, bin_dir, a.make,
                                      a.mqtt_ca)
            print("# %s: %d commands, %d files%s" % (
                a.action, len(cmds), len(files), " (dry run: nothing is run)" if a.dry_run
                else ""), flush=True)

            def built(cmd):
                if cmd[-1] == "build":
                    missing = [s for s, _ in files if s.startswith("build/")
                               and not (root / s).is_file()]
                    if missing:
                        raise DeployError("make build did not produce: " + " ".join(missing))

            run(cmds, a.dry_run, root, built)
            print("# files (%d):" % len(files))
            for src, dst in files:
                print("%s -> %s" % (src, dst))
        else:
            parts = None
            if a.action == "flash":
                cmds, parts = flash_plan(a.port, a.firmware, bin_dir, root)
            else:
                cmds = repl_plan(a.port, bin_dir, root)
            if a.dry_run:
                print("# %s (dry run: nothing is run)" % a.action)
            if parts is not None:
                print("# partition table written at 0x%x (%s):" % (
                    partitions.TABLE_OFFSET, TABLE_FILE))
                for line in partitions.listing(parts).splitlines():
                    print("#   " + line)
                sys.stdout.flush()
                confirm_erase(a.port, a.erase_ok, a.dry_run)
            run(cmds, a.dry_run, root)
    except DeployError as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
