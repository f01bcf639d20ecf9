# cpython-only: tools/pull is a host program (it runs the unix port and mpremote itself)
"""tools/pull against a LittleFS flash image built here the way the simulator lays out its
``flash.img`` (4096-byte blocks, firmware paths relative to the filesystem root), and
against a stand-in ``mpremote`` for the serial path."""

import os
import shlex
import subprocess
import sys
import textwrap

import support

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
T0 = 1763942400000  # 2025-11-24T00:00:00Z
N = 600

_BUILD = textwrap.dedent('''
    import os, sys, vfs
    import record, tslog
    from flash import FlashBlockDevice
    img, folder, n, t0 = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    dev = FlashBlockDevice(block_size=4096, block_count=128)
    vfs.VfsLfs2.mkfs(dev)
    vfs.mount(vfs.VfsLfs2(dev), "/flash")
    os.chdir("/flash")
    if folder != "data/q":
        with open("config.json", "w") as f:
            f.write('{"tslog_dir": "%s"}' % folder)
    log = record.open_queue(folder, bucket_size=128, nreaders=2)
    for i in range(n):
        log.store_record(record.encode(t0 + i * 2000, (200 + i % 7, 555, 210, 101325 + i,
                                                       1000, 3000), 1, record.FLAG_UTC))
    log.close()
    os.chdir("/")
    vfs.umount("/flash")
    dev.save(img)
''')


def _micropython():
    return os.path.join(os.path.dirname(sys.executable), "micropython")


def _image(folder="data/q", n=N):
    d = support.tmpdir("pull")
    script = d + "/build.py"
    with open(script, "w") as f:
        f.write(_BUILD)
    img = d + "/flash.img"
    env = dict(os.environ, MICROPYPATH=":".join([ROOT + "/host_tests/fakes", ROOT + "/lib"]))
    subprocess.run([_micropython(), "-X", "heapsize=8m", script, img, folder, str(n),
                    str(T0)], check=True, env=env, cwd=ROOT)
    return d, img


def _pull(*args):
    return subprocess.run([sys.executable, "-m", "tools.pull"] + list(args), cwd=ROOT,
                          capture_output=True, text=True)


def _rows(path):
    with open(path) as f:
        lines = f.read().split("\n")
    assert lines[-1] == ""
    return lines[0].split(","), [ln.split(",") for ln in lines[1:-1]]


def test_image_full_dump():
    d, img = _image()
    before = open(img, "rb").read()
    out = d + "/data.csv"
    p = _pull("--image", img, "--out", out)
    assert p.returncode == 0, p.stderr
    assert "%d records" % N in p.stderr
    head, rows = _rows(out)
    assert head[:6] == ["seq", "utc", "time_ms", "boot", "flags", "layout"]
    assert [int(r[0]) for r in rows] == list(range(1, N + 1))
    assert rows[0][1] == "2025-11-24T00:00:00.000Z" and float(rows[9][9]) == 101334.0
    assert open(img, "rb").read() == before  # the image is only read
    assert not os.path.exists(out + ".part")


def test_image_since_until_and_custom_folder():
    d, img = _image(folder="logs/queue")
    out = d + "/part.csv"
    p = _pull("--image", img, "--since", "2025-11-24T00:10:00Z", "--until",
              str(T0 // 1000 + 660), "--out", out)
    assert p.returncode == 0, p.stderr
    _, rows = _rows(out)
    assert [int(r[0]) for r in rows] == list(range(301, 331))


def test_image_errors_keep_the_old_file():
    d = support.tmpdir("pull")
    bad = d + "/bad.img"
    with open(bad, "wb") as f:
        f.write(b"\xff" * 4096 * 4)  # no filesystem
    out = d + "/data.csv"
    with open(out, "w") as f:
        f.write("old\n")
    p = _pull("--image", bad, "--out", out)
    assert p.returncode != 0
    assert open(out).read() == "old\n" and not os.path.exists(out + ".part")
    p = _pull("--image", bad, "--since", "last tuesday", "--out", out)
    assert p.returncode == 2 and "YYYY-MM-DD" in p.stderr


def test_dry_run_prints_the_commands():
    p = _pull("--port", "/dev/ttyUSB0", "--since", "2025-11-24T12:00:00Z", "--out", "x.csv",
              "--dry-run")
    assert p.returncode == 0, p.stderr
    first = p.stdout.splitlines()[0]
    assert "mpremote connect /dev/ttyUSB0 exec" in first
    assert shlex.split(first)[4] == (
        "import console; console.dump(since='2025-11-24T12:00:00Z', until=None)")
    assert first.endswith("+ reset > x.csv.part")
    assert p.stdout.splitlines()[1] == "mv x.csv.part x.csv"
    p = _pull("--port", "/dev/ttyACM0", "--since", "1763942400", "--no-reset", "--dry-run")
    assert "since=1763942400," in p.stdout and "reset" not in p.stdout
    assert not os.path.exists(os.path.join(ROOT, "x.csv"))
    p = _pull("--image", "nothing.img", "--dry-run")
    assert p.returncode != 0  # the image must exist to size the heap


_FAKE_MPREMOTE = textwrap.dedent('''
    import sys
    args = sys.argv[1:]
    with open(sys.argv[0] + ".args", "w") as f:
        f.write("\\n".join(args))
    if "/dev/bad" in args:
        sys.stdout.write("Traceback (most recent call last):\\r\\nOSError: 2\\r\\n")
        sys.exit(1)
    sys.stdout.write("seq,utc,time_ms\\r\\n")
    for i in range(1, 2001):
        sys.stdout.write("%d,x,%d\\r\\n" % (i, i * 2000))
''')


def test_serial_pull_streams_mpremote_output():
    d = support.tmpdir("pull")
    fake = d + "/mpremote"
    with open(fake, "w") as f:
        f.write("#!%s\n%s" % (sys.executable, _FAKE_MPREMOTE))
    os.chmod(fake, 0o755)
    out = d + "/serial.csv"
    p = _pull("--port", "/dev/ttyUSB0", "--mpremote", fake, "--out", out)
    assert p.returncode == 0, p.stderr
    with open(out) as f:
        text = f.read()
    assert "\r" not in text and text.startswith("seq,utc,time_ms\n1,x,2000\n")
    assert text.count("\n") == 2001 and "2000 records" in p.stderr
    args = open(fake + ".args").read().split("\n")
    assert args[:3] == ["connect", "/dev/ttyUSB0", "exec"] and args[-2:] == ["+", "reset"]
    p = _pull("--port", "/dev/bad", "--mpremote", fake, "--out", out)
    assert p.returncode != 0 and "did not answer with CSV" in p.stderr
    assert open(out).read() == text  # the old file stays


def test_simulator_flash_image():
    """The real simulator's image (tools/sim, its own helper's work): every stored sample
    comes out once, in order.  Skipped when the simulator is not there or cannot run."""
    import pytest

    if not os.path.exists(os.path.join(ROOT, "tools", "sim", "__main__.py")):
        pytest.skip("tools/sim not present")
    d = support.tmpdir("pull-sim")
    sim = subprocess.run([sys.executable, "-m", "tools.sim", "--duration", "120", "--speed",
                          "60", "--wifi-drops", "0", "--queue-kib", "0",  # queue in flash.img
                          "--state-dir", d + "/state", "-q"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    if sim.returncode != 0 or not os.path.exists(d + "/state/flash.img"):
        pytest.skip("tools.sim did not run: %s" % (sim.stdout + sim.stderr)[-300:])
    stored = sum(int(w) for w in __import__("re").findall(r"stored (\d+)  ended", sim.stdout))
    out = d + "/sim.csv"
    p = _pull("--image", d + "/state/flash.img", "--out", out)
    assert p.returncode == 0, p.stderr
    _, rows = _rows(out)
    assert stored > 0 and [int(r[0]) for r in rows] == list(range(1, stored + 1)), (
        stored, len(rows))
    for r in rows:  # samples taken before NTP have no UTC time in an image (no flag 1)
        assert r[5] == "2" and (r[1].endswith("Z") if int(r[4]) & 1 else r[1] == ""), r
    assert rows[-1][1].endswith("Z")
