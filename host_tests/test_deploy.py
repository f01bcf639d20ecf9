# cpython-only: host tool (make, mpremote, esptool run on the desktop)
"""tools/deploy.py and `make deploy|flash|repl`: dry runs list exactly what would run, bad
arguments fail clearly, a real run executes the printed commands in order."""

import json
import os
import pty
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import support

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tools import partitions  # noqa: E402

PY = sys.executable


def _env():
    env = dict(os.environ)
    for k in ("PORT", "FIRMWARE", "CONFIG", "CA", "DRY_RUN", "ERASE", "MAKEFLAGS", "MFLAGS"):
        env.pop(k, None)
    return env


def _make(*args):
    return subprocess.run(["make", "--no-print-directory", "-C", str(ROOT)] + list(args),
                          env=_env(), capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)  # not a terminal: flash would not ask


def _tool(*args, root=None):
    cmd = [PY, "-m", "tools.deploy"] + list(args)
    if root is not None:
        cmd += ["--root", str(root)]
    return subprocess.run(cmd, cwd=str(ROOT), env=_env(), capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


def _commands(out):
    """The command lines of a dry run (not the comments nor the file list)."""
    lines = []
    for line in out.splitlines():
        if line.startswith("# files"):
            break
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def _files(out):
    return out.split("# files", 1)[1].splitlines()[1:]


def _tree(name):
    """A copy of the project's lib/ and firmware/ sources in a temp dir."""
    root = Path(support.tmpdir(name))
    for sub in ("lib", "firmware"):
        (root / sub).mkdir()
        for p in (ROOT / sub).glob("*.py"):
            shutil.copy(p, root / sub / p.name)
    return root


def test_make_deploy_dry_run_lists_every_module_and_firmware_file():
    r = _make("deploy", "PORT=/dev/ttyUSB0", "DRY_RUN=1")
    assert r.returncode == 0, r.stdout + r.stderr
    cmds = _commands(r.stdout)
    files = _files(r.stdout)
    mods = sorted(p.stem for p in (ROOT / "lib").glob("*.py"))
    fw = sorted(p.name for p in (ROOT / "firmware").glob("*.py"))
    assert {"boot.py", "main.py"} <= set(fw)
    assert files == (["build/lib/%s.mpy -> :lib/%s.mpy" % (m, m) for m in mods]
                     + ["firmware/%s -> :%s" % (f, f) for f in fw])
    mp = ".venv/bin/mpremote connect /dev/ttyUSB0 "
    again = mp + "resume "  # one soft reset per deploy (the first connection)
    assert cmds[0] == "make build"
    assert cmds[1].startswith(mp + "exec ")
    assert cmds[2] == again + "fs cp " + " ".join("build/lib/%s.mpy" % m for m in mods) + \
        " :lib/"
    assert cmds[3] == again + "fs cp " + " ".join("firmware/" + f for f in fw) + " :"
    assert cmds[4] == again + "reset" and len(cmds) == 5
    assert "(dry run: nothing is run)" in r.stdout.splitlines()[0]


def test_missing_port_or_firmware_fails_clearly():
    for args, word in ((["deploy", "DRY_RUN=1"], "PORT is required"),
                       (["deploy"], "PORT is required"),
                       (["flash", "FIRMWARE=x.bin"], "PORT is required"),
                       (["flash", "PORT=/dev/ttyUSB0"], "FIRMWARE is required"),
                       (["flash", "PORT=/dev/ttyUSB0", "DRY_RUN=1"], "FIRMWARE is required"),
                       (["repl"], "PORT is required")):
        r = _make(*args)
        assert r.returncode != 0, (args, r.stdout)
        assert word in r.stderr and "make %s PORT=" % args[0] in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr
        assert not _commands(r.stdout), r.stdout  # nothing printed as if it would run


# The first bytes of MicroPython's ESP32_GENERIC image: magic, 3 segments, DIO, 4 MB / 40 MHz.
_IMAGE_HEAD = b"\xe9\x03\x02\x20"


def test_flash_and_repl_dry_run_commands():
    d = Path(support.tmpdir("deploy"))
    image = d / "ESP32_GENERIC-v1.24.1.bin"
    image.write_bytes(_IMAGE_HEAD + bytes(60))
    r = _make("flash", "PORT=/dev/ttyUSB1", "FIRMWARE=%s" % image, "DRY_RUN=1")
    assert r.returncode == 0, r.stderr
    esptool = ".venv/bin/esptool --chip esp32 --port /dev/ttyUSB1 "
    assert _commands(r.stdout) == [
        ".venv/bin/python tools/partitions.py --out build/partitions.bin",
        esptool + "erase-flash",
        esptool + "write-flash -z 0x1000 %s" % image,
        esptool + "write-flash -z 0x8000 build/partitions.bin",
    ]
    # The table, readable, as comments (the rest of the output stays a shell script).
    lines = r.stdout.splitlines()
    at = lines.index("# partition table written at 0x8000 (build/partitions.bin):")
    assert [line.split()[1:6] for line in lines[at + 2:at + 7]] == [
        ["nvs", "data", "nvs", "0x9000", "0x6000"],
        ["phy_init", "data", "phy", "0xf000", "0x1000"],
        ["factory", "app", "factory", "0x10000", "0x1f0000"],
        ["vfs", "data", "fat", "0x200000", "0x80000"],
        ["tslog", "data", "undefined", "0x280000", "0x180000"]], r.stdout
    # What erasing loses and how to keep it, even in a dry run (which asks nothing).
    assert "erases the whole flash of the board on /dev/ttyUSB1" in r.stderr
    assert ".venv/bin/python -m tools.pull --port /dev/ttyUSB1 --out data.csv" in r.stderr
    assert ".venv/bin/mpremote connect /dev/ttyUSB1 fs cp :config.json config.json" in r.stderr
    # The printed table command makes the table the listing shows.
    out = d / "partitions.bin"
    table = subprocess.run([str(ROOT / ".venv/bin/python"), "tools/partitions.py", "--out",
                            str(out)], cwd=str(ROOT), capture_output=True, text=True, timeout=60)
    assert table.returncode == 0 and ["#   " + x for x in table.stdout.splitlines()] == \
        lines[at + 1:at + 7], table.stdout + table.stderr
    assert out.stat().st_size == 0xC00
    r = _make("repl", "PORT=/dev/ttyUSB1", "DRY_RUN=1")
    assert r.returncode == 0 and _commands(r.stdout) == [
        ".venv/bin/mpremote connect /dev/ttyUSB1 repl"], r.stdout + r.stderr
    # The esptool 5.x command names exist in the venv's esptool.
    help_text = subprocess.run([str(ROOT / ".venv/bin/esptool"), "--help"], capture_output=True,
                               text=True, timeout=60).stdout
    assert "erase-flash" in help_text and "write-flash" in help_text


def test_flash_rejects_missing_or_wrong_image():
    d = Path(support.tmpdir("deploy"))
    r = _tool("flash", "--port", "/dev/ttyUSB0", "--firmware", str(d / "nope.bin"), "--dry-run")
    assert r.returncode == 2 and "FIRMWARE file not found" in r.stderr
    page = d / "download.bin"
    page.write_text("<!DOCTYPE html><html>")
    r = _tool("flash", "--port", "/dev/ttyUSB0", "--firmware", str(page), "--dry-run")
    assert r.returncode == 2 and "not an ESP32 image" in r.stderr, r.stderr
    # An image whose header says 2 MB of flash (e.g. an old ESP32_GENERIC-D2WD): its
    # bootloader would refuse a table reaching to 4 MB.
    small = d / "ESP32_GENERIC-D2WD.bin"
    small.write_bytes(b"\xe9\x03\x02\x1f" + bytes(60))
    r = _tool("flash", "--port", "/dev/ttyUSB0", "--firmware", str(small), "--dry-run")
    assert r.returncode == 2 and "built for 2 MB of flash; the partition table needs 4 MB" \
        in r.stderr, r.stderr
    assert not _commands(r.stdout)


def test_deploy_checks_config_and_names_ca_as_configured():
    d = Path(support.tmpdir("deploy"))
    cfg = d / "config.json"
    cfg.write_text(json.dumps({"wifi_ssid": "roof", "wifi_password": "pw-123456",
                               "tb_host": "https://tb.example:8443", "tb_ca_file": "server.pem"}))
    ca = d / "my-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    r = _make("deploy", "PORT=/dev/ttyUSB0", "CONFIG=%s" % cfg, "CA=%s" % ca, "DRY_RUN=1")
    assert r.returncode == 0, r.stderr
    cmds = _commands(r.stdout)
    mp = ".venv/bin/mpremote connect /dev/ttyUSB0 resume "
    assert cmds[4] == mp + "fs cp %s :config.json" % cfg
    assert cmds[5] == mp + "fs cp %s :server.pem" % ca and cmds[6] == mp + "reset"
    assert _files(r.stdout)[-2:] == ["%s -> :config.json" % cfg, "%s -> :server.pem" % ca]
    assert "pw-123456" not in r.stdout + r.stderr
    r = _make("deploy", "PORT=/dev/ttyUSB0", "CONFIG=%s" % cfg, "DRY_RUN=1")
    assert r.returncode == 0 and "warning: no CA given: the board must already have " \
        "/server.pem" in r.stderr, r.stderr
    # Without tb_ca_file in the config the default name (the settings table's) is used.
    cfg.write_text("{}")
    r = _make("deploy", "PORT=/dev/ttyUSB0", "CONFIG=%s" % cfg, "CA=%s" % ca, "DRY_RUN=1")
    assert _commands(r.stdout)[5] == mp + "fs cp %s :ca.der" % ca, r.stdout
    # A config the board would partly ignore is refused, naming the key, secrets hidden.
    cfg.write_text(json.dumps({"sample_interval_s": 0, "ap_password": "shortpw",
                               "colour": "red"}))
    r = _make("deploy", "PORT=/dev/ttyUSB0", "CONFIG=%s" % cfg, "DRY_RUN=1")
    assert r.returncode != 0 and "sample_interval_s" in r.stderr and "colour" in r.stderr
    assert "ap_password" in r.stderr and "shortpw" not in r.stderr
    cfg.write_text("{\"sample_interval_s\": 5,}")
    r = _make("deploy", "PORT=/dev/ttyUSB0", "CONFIG=%s" % cfg, "DRY_RUN=1")
    assert r.returncode != 0 and "not valid JSON" in r.stderr
    r = _make("deploy", "PORT=/dev/ttyUSB0", "CONFIG=%s" % (d / "missing.json"), "DRY_RUN=1")
    assert r.returncode != 0 and "CONFIG file not found" in r.stderr
    r = _make("deploy", "PORT=/dev/ttyUSB0", "CA=%s" % (d / "missing.der"), "DRY_RUN=1")
    assert r.returncode != 0 and "CA file not found" in r.stderr


def test_deploy_warns_about_an_old_default_symbol_and_plain_http():
    d = Path(support.tmpdir("deploy-warn"))
    cfg = d / "config.json"

    def check(over):
        cfg.write_text(json.dumps(dict({"webrepl_password": "pw123"}, **over)))
        return _tool("deploy", "--port", "/dev/ttyUSB0", "--config", str(cfg), "--dry-run")

    # Boards of one vendor shared the old default: their records collide at the server.
    r = check({"symbol": "esp246f"})
    assert r.returncode == 0 and "warning: symbol 'esp246f' looks like the old default" \
        in r.stderr, r.stderr
    for symbol in ("esp246f28a1b2c3", "station-roof", "esp24", ""):
        r = check({"symbol": symbol})
        assert r.returncode == 0 and "symbol" not in r.stderr, (symbol, r.stderr)
    r = check({"tb_host": "http://10.0.0.2:8099", "tb_pass": "hunter2-Secret"})
    assert r.returncode == 2 and "tb_host is plain http://" in r.stderr, r.stderr
    assert "tb_insecure" in r.stderr and "hunter2" not in r.stdout + r.stderr
    r = check({"tb_host": "http://10.0.0.2:8099", "tb_insecure": True})
    assert r.returncode == 0 and "unencrypted" in r.stderr, r.stderr


_FAKE = """#!%s
import os, sys
with open(os.environ["DEPLOY_LOG"], "a") as f:
    f.write(repr([os.path.basename(sys.argv[0])] + sys.argv[1:]) + "\\n")
if sys.argv[1:] == ["build"]:
    os.makedirs("build/lib", exist_ok=True)
    for n in os.listdir("lib"):
        open("build/lib/" + n[:-3] + ".mpy", "w").close()
if os.environ.get("FAIL_ON") and os.environ["FAIL_ON"] in sys.argv:
    sys.exit(3)
"""


def _fakes(d):
    bin_dir = Path(d) / "bin"
    bin_dir.mkdir()
    for name in ("mpremote", "esptool", "make"):
        p = bin_dir / name
        p.write_text(_FAKE % PY)
        p.chmod(0o755)
    return bin_dir


def _run_tool(root, bin_dir, log, *args, fail_on="", stdin=subprocess.DEVNULL):
    env = dict(_env(), DEPLOY_LOG=str(log), FAIL_ON=fail_on)
    cmd = [PY, "-m", "tools.deploy"] + list(args) + [
        "--root", str(root), "--bin", str(bin_dir), "--make", str(bin_dir / "make")]
    return subprocess.run(cmd, cwd=str(ROOT), env=env, capture_output=True, text=True,
                          timeout=120, stdin=stdin)


def _logged(log):
    if not log.exists():
        return []
    return [eval(line) for line in log.read_text().splitlines()]  # noqa: S307 - our own repr


def test_dry_run_runs_nothing_and_real_run_runs_exactly_the_printed_commands():
    root = _tree("deploytree")
    bin_dir = _fakes(root)
    log = root / "calls.log"
    ca = root / "ca.der"
    ca.write_bytes(b"\x30\x82")
    r = _run_tool(root, bin_dir, log, "deploy", "--port", "/dev/ttyUSB0", "--ca", str(ca),
                  "--dry-run")
    assert r.returncode == 0, r.stderr
    assert _logged(log) == [] and not (root / "build").exists()
    printed = [shlex.split(c) for c in _commands(r.stdout)]
    r = _run_tool(root, bin_dir, log, "deploy", "--port", "/dev/ttyUSB0", "--ca", str(ca))
    assert r.returncode == 0, r.stdout + r.stderr
    calls = _logged(log)
    assert [c[1:] for c in calls] == [c[1:] for c in printed]
    assert [c[0] for c in calls] == [os.path.basename(c[0]) for c in printed]
    assert calls[0] == ["make", "build"] and calls[-1][-1] == "reset"
    # The first failing command stops the deploy: no reset after a failed copy.
    log.unlink()
    r = _run_tool(root, bin_dir, log, "deploy", "--port", "/dev/ttyUSB0", fail_on="cp")
    assert r.returncode == 2 and "command failed (exit status 3)" in r.stderr
    assert _logged(log)[-1][-1] == ":lib/" and len(_logged(log)) == 3
    # flash: the table, erase, MicroPython, the table; nothing after a failed erase.
    image = root / "fw.bin"
    image.write_bytes(_IMAGE_HEAD + bytes(12))
    log.unlink()
    flash = ("flash", "--port", "/dev/ttyUSB0", "--firmware", str(image))
    r = _run_tool(root, bin_dir, log, *flash, "--dry-run")
    assert r.returncode == 0 and not log.exists()
    assert not (root / "build/partitions.bin").exists()
    printed = [shlex.split(c) for c in _commands(r.stdout)]
    r = _run_tool(root, bin_dir, log, *flash, "--erase-ok")
    assert r.returncode == 0, r.stderr
    assert [c[1:] for c in _logged(log)] == [c[1:] for c in printed[1:]]
    assert [c[-1] for c in _logged(log)] == ["erase-flash", str(image), "build/partitions.bin"]
    assert (root / "build/partitions.bin").read_bytes() == partitions.to_binary(
        partitions.load(partitions.CSV))
    log.unlink()
    r = _run_tool(root, bin_dir, log, *flash, "--erase-ok", fail_on="erase-flash")
    assert r.returncode == 2 and len(_logged(log)) == 1
    # Not a terminal and no --erase-ok (ERASE=1): refused before anything runs.
    log.unlink()
    (root / "build/partitions.bin").unlink()
    r = _run_tool(root, bin_dir, log, *flash)
    assert r.returncode == 2 and "not erasing without a yes" in r.stderr and "ERASE=1" in \
        r.stderr, r.stderr
    assert not log.exists() and not (root / "build/partitions.bin").exists()
    assert not _commands(r.stdout)


def test_flash_asks_on_a_terminal_and_runs_only_after_a_yes():
    root = _tree("deploytree")
    bin_dir = _fakes(root)
    log = root / "calls.log"
    image = root / "fw.bin"
    image.write_bytes(_IMAGE_HEAD + bytes(12))
    for answer, runs in ((b"\n", False), (b"no\n", False), (b"y\n", True)):
        master, slave = pty.openpty()
        try:
            os.write(master, answer)
            r = _run_tool(root, bin_dir, log, "flash", "--port", "/dev/ttyUSB0", "--firmware",
                          str(image), stdin=slave)
        finally:
            os.close(slave)
            os.close(master)
        assert "Erase the board on /dev/ttyUSB0 and flash it? [y/N]" in r.stdout, r.stdout
        assert "erases the whole flash" in r.stderr
        if runs:
            assert r.returncode == 0, r.stderr
            assert [c[-1] for c in _logged(log)] == ["erase-flash", str(image),
                                                     "build/partitions.bin"]
        else:
            assert r.returncode == 2 and "nothing done: the answer was not y" in r.stderr
            assert not log.exists()


def test_deploy_needs_boot_and_main():
    root = _tree("deploytree")
    (root / "firmware" / "main.py").unlink()
    r = _tool("deploy", "--port", "/dev/ttyUSB0", "--dry-run", root=root)
    assert r.returncode == 2 and "firmware/main.py is missing" in r.stderr


def test_prep_command_removes_shadowing_files_on_the_board_filesystem():
    """The `exec` step under the MicroPython unix port, on LittleFS mounted at "/" as on the
    board: /lib is made, seed-era modules at the root, an earlier firmware's config.py and
    stale /lib/*.py go, the rest stays."""
    sys.path.insert(0, str(ROOT))
    from tools import deploy

    cmds, _ = deploy.deploy_plan("/dev/ttyUSB0")
    prep = cmds[1][-1]
    script = "\n".join([
        "import vfs, os",
        "from flash import FlashBlockDevice",
        "dev = FlashBlockDevice(block_size=4096, block_count=32)",
        "vfs.VfsLfs2.mkfs(dev)",
        "vfs.umount('/')",
        "vfs.mount(vfs.VfsLfs2(dev), '/')",
        "os.chdir('/')",
        "for n in ('am2320.py', 'bmp180.py', 'config.py', 'boot.py', 'notes.txt'):",
        "    open('/' + n, 'w').close()",
        "exec(%r)" % prep,
        "print('ROOT', sorted(os.listdir('/')), sorted(os.listdir('/lib')))",
        "for n in ('settings.py', 'settings.mpy', 'extra.py'):",
        "    open('/lib/' + n, 'w').close()",
        "exec(%r)" % prep,
        "print('ROOT', sorted(os.listdir('/')), sorted(os.listdir('/lib')))",
    ])
    env = dict(os.environ, MICROPYPATH=str(ROOT / "host_tests" / "fakes"))
    r = subprocess.run([str(ROOT / ".venv/bin/micropython"), "-c", script], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    roots = [line for line in r.stdout.splitlines() if line.startswith("ROOT")]
    assert roots == [
        "ROOT ['boot.py', 'lib', 'notes.txt'] []",
        "ROOT ['boot.py', 'lib', 'notes.txt'] ['extra.py', 'settings.mpy']",
    ], r.stdout
    assert "stale files removed: ['/am2320.py', '/bmp180.py', '/config.py']" in r.stdout
