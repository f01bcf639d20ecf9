"""What fits in the board's 512 KiB ``vfs`` partition (tools/partitions.csv), and what is left.

The deployed files (``lib/*.py`` as ``mpy-cross -march=xtensawin`` makes them for
``make deploy``, ``firmware/*.py``, a ``config.json``, a CA certificate) are copied onto
LittleFS formatted as MicroPython's ESP32 port formats ``vfs`` (``vfs.VfsLfs2.mkfs`` with
its defaults: 4 KiB blocks, 32-byte reads and programs) on the fake NOR flash, sized as the
table's ``vfs``. Then the firmware's fallback queue (the ``tslog_dir`` folder, used when no
``tslog`` partition is found) is filled with the firmware's settings (48-byte records,
buckets of 1,024, a commit every 16) and a stalled reader until its first dropped record:
the records it holds, with the dead-letter log empty and at its largest (``data/dead.log``
and its one old generation, 64 KiB each).

Run: ``.venv/bin/python bench/bench_vfs.py`` (a few seconds; part of ``make bench``).
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))
from tools import partitions  # noqa: E402

# The README's example settings, and a CA certificate's size (the bundled server's CA in
# DER is ~0.4 KB, a commercial one ~1.5 KB: one 4 KiB block either way).
CONFIG = {"wifi_ssid": "my-network", "wifi_password": "my-password",
          "tb_host": "https://192.168.1.5:8099", "tb_user": "admin",
          "tb_pass": "admin-password", "webrepl_password": "roof1234"}
CA_BYTES = 1500
SAMPLE_S = 2  # the default sample_interval_s

JOB = r"""
import json, os, vfs
from flash import FlashBlockDevice
import tslog

job = json.loads(open(%(job)r).read())
dev = FlashBlockDevice(block_size=4096, block_count=job["blocks"])
vfs.VfsLfs2.mkfs(dev)  # as ports/esp32/modules/inisetup.py
vfs.mount(vfs.VfsLfs2(dev), "/fs")


def used():
    st = os.statvfs("/fs")
    return (st[2] - st[3]) * st[0]


out = {"total": os.statvfs("/fs")[2] * 4096, "empty": used()}
os.mkdir("/fs/lib")
for group in ("code", "settings"):
    for src, dst in job[group]:
        with open(src, "rb") as f:
            data = f.read()
        with open("/fs/" + dst, "wb") as f:
            f.write(data)
    out[group] = used()
os.chdir("/fs")
os.mkdir("data")
dead = job["dead_full"]
if dead:
    for name in ("data/dead.log", "data/dead.log.1"):
        with open(name, "w") as f:
            f.write("x" * dead)
out["before_queue"] = used()
log = tslog.TSLog("data/q", record_size=48, bucket_size=1024, commit_delta=16)
rec = bytes(48)
n = 0
while not log.dropped:
    log.store_record(rec)
    n += 1
log.commit()
out["held"] = n - log.dropped
out["queue_used"] = used() - out["before_queue"]
print("@@VFS " + json.dumps(out))
"""


def compile_lib(out):
    for src in sorted((ROOT / "lib").glob("*.py")):
        dst = Path(out) / (src.stem + ".mpy")
        subprocess.run([str(BIN / "mpy-cross"), "-march=xtensawin", "-o", str(dst), str(src)],
                       check=True)
        yield str(dst), "lib/" + dst.name


def run(work, code, settings, blocks, dead_full):
    job = Path(work) / ("job-%d.json" % dead_full)
    job.write_text(json.dumps({"blocks": blocks, "code": code, "settings": settings,
                               "dead_full": dead_full}))
    script = Path(work) / "job.py"
    script.write_text(JOB % {"job": str(job)})
    env = dict(os.environ, MICROPYPATH=":".join([str(ROOT / "host_tests" / "fakes"),
                                                   str(ROOT / "lib")]))
    p = subprocess.run([str(BIN / "micropython"), "-X", "heapsize=16M", str(script)], env=env,
                       capture_output=True, text=True, timeout=600)
    for line in p.stdout.splitlines():
        if line.startswith("@@VFS "):
            return json.loads(line[6:])
    raise RuntimeError((p.stderr or p.stdout)[-600:])


def kib(n):
    return "%d KiB" % (n // 1024)


def main():
    vfs = [p for p in partitions.load(partitions.CSV) if p.name == "vfs"][0]
    blocks = vfs.size // 4096
    with tempfile.TemporaryDirectory() as work:
        code = list(compile_lib(work))
        code += [(str(p), p.name) for p in sorted((ROOT / "firmware").glob("*.py"))]
        cfg = Path(work) / "config.json"
        cfg.write_text(json.dumps(CONFIG))
        ca = Path(work) / "ca.der"
        ca.write_bytes(os.urandom(CA_BYTES))
        settings = [(str(cfg), "config.json"), (str(ca), "ca.der")]
        empty = run(work, code, settings, blocks, 0)
        full = run(work, code, settings, blocks, 65536)
        size = sum(os.path.getsize(src) for src, _ in code)
    print("vfs partition: %s at 0x%x (LittleFS, %d blocks of 4 KiB)" % (
        kib(vfs.size), vfs.offset, blocks))
    print("  filesystem's own blocks (superblock, root)  %8s" % kib(empty["empty"]))
    print("  code: %d files, %s (/lib/*.mpy, boot.py, main.py)        %8s" % (
        len(code), "%.1f KiB" % (size / 1024), kib(empty["code"] - empty["empty"])))
    print("  config.json + CA certificate                %8s" % kib(
        empty["settings"] - empty["code"]))
    print("  free for data                               %8s" % kib(
        empty["total"] - empty["settings"]))
    for label, r in (("dead-letter log empty", empty), ("dead-letter log full, 2 x 64 KiB",
                                                      full)):
        print("  fallback queue (%s): %d records = %.1f h at one per %d s, %s of flash" % (
            label, r["held"], r["held"] * SAMPLE_S / 3600, SAMPLE_S, kib(r["queue_used"])))


if __name__ == "__main__":
    main()
