# run: micropython
"""TSLog flash wear and open time, against the seed firmware's approach.

Workload (the firmware's): one 24-byte sample every 2 s, commit every 16
stores, the sender reading and committing its cursor every 10 s (5 records).
Flash: the fake NOR flash with LittleFS at ESP32 geometry (4096-byte blocks,
2 MiB partition). Lifetime: 100,000 erase cycles per block, perfect wear
levelling, 0.5 Hz.

Seed approach: the whole queue kept as a JSON list, rewritten after every
sample, cleared after each successful post.
"""

import json
import os
import time

import vfs

import tslog
from flash import FlashBlockDevice

MNT = "/bench_flash"
FMT = "<Ifffffhh"  # utc s, 5 floats, 2 shorts: 28 bytes
HOURS = 1
RECORDS = HOURS * 1800
PER_YEAR = 365 * 24 * 1800
CYCLES = 100_000


def fresh():
    try:
        vfs.umount(MNT)
    except OSError:
        pass
    dev = FlashBlockDevice(block_size=4096, block_count=512)
    vfs.VfsLfs2.mkfs(dev)
    vfs.mount(vfs.VfsLfs2(dev), MNT)
    dev.bytes_programmed = dev.blocks_erased = 0
    return dev


def sample(i):
    return (i, 21.5, 55.0, 21.4, 101325.0, 120.0, 1000, 2000)


def online(i, outage):
    t = i * 2
    return not (outage and outage[0] <= t < outage[1])


def run_tslog(outage):
    dev = fresh()
    log = tslog.TSLog(MNT + "/log", format=FMT, bucket_size=1024, commit_delta=16)
    r = log.reader(0)
    for i in range(RECORDS):
        log.store(*sample(i))
        if i % 5 == 4 and online(i, outage):
            while r.next() is not None:
                pass
            r.commit()
    log.close()
    return dev


def run_seed(outage):
    dev = fresh()
    queue = []
    path = MNT + "/samples.json"
    keys = ("timestamp", "am2320_temp", "am2320_humidity", "bmp180_temp", "bmp180_pressure",
            "bmp180_altitude", "mem_used", "mem_free")
    for i in range(RECORDS):
        queue.append(dict(zip(keys, sample(i))))
        try:
            with open(path, "w") as f:
                json.dump(queue, f)
        except OSError as e:
            return dev, "filesystem full after %d samples (errno %d)" % (i, e.args[0])
        if i % 5 == 4 and online(i, outage):
            queue = []
    return dev, ""


def run_append(sync_every):
    dev = fresh()
    import struct
    with open(MNT + "/plain.bin", "ab") as f:
        for i in range(RECORDS):
            f.write(struct.pack(FMT, *sample(i)))
            if i % sync_every == sync_every - 1:
                f.flush()
    return dev


def row(name, dev, note=""):
    b = dev.bytes_programmed / RECORDS
    e = dev.blocks_erased / RECORDS
    years = (512 * CYCLES) / (e * PER_YEAR) if e else float("inf")
    print("%-34s %10.1f %10.4f %10.1f  %s" % (name, b, e, years, note))
    return b


def open_time(days):
    d = "/tmp/bench_tslog_open_%d" % days
    n = days * 43200
    log = tslog.TSLog(d, format=FMT, bucket_size=1024, commit_delta=1024, recreate=True)
    for i in range(n):
        log.store(*sample(i))
    log.close()
    t0 = time.ticks_us()
    log = tslog.TSLog(d, format=FMT, bucket_size=1024, commit_delta=1024)
    dt = time.ticks_diff(time.ticks_us(), t0)
    t0 = time.ticks_us()
    r = log.reader(0)
    k = 0
    while r.next() is not None:
        k += 1
    read_s = time.ticks_diff(time.ticks_us(), t0) / 1e6
    print("open with %d day(s) = %d records: %.2f ms; next() %.0f records/s" % (
        days, n, dt / 1000, k / read_s))
    for name in os.listdir(d):
        os.remove(d + "/" + name)
    os.rmdir(d)


def store_rate():
    d = "/tmp/bench_tslog_rate"
    log = tslog.TSLog(d, format=FMT, bucket_size=1024, commit_delta=16, recreate=True)
    t0 = time.ticks_us()
    for i in range(20000):
        log.store(*sample(i))
    dt = time.ticks_diff(time.ticks_us(), t0) / 1e6
    log.close()
    print("store(): %.0f records/s (unix port, posix dir, commit every 16)" % (20000 / dt))


def main():
    global RECORDS
    print("%d records (%d h at 0.5 Hz), LittleFS, 4096 B blocks, 2 MiB" % (RECORDS, HOURS))
    print("%-34s %10s %10s %10s" % ("approach", "B prog/rec", "erase/rec", "years"))
    out10 = (1200, 1800)  # a 10-minute outage
    out6h = (0, 6 * 3600)
    t = row("tslog online", run_tslog(None))
    row("tslog, 10 min outage", run_tslog(out10))
    s = row("seed JSON queue online", run_seed(None)[0])
    dev, note = run_seed(out10)
    row("seed JSON queue, 10 min outage", dev, note)
    row("plain append, sync every 16", run_append(16))
    row("plain append, sync every record", run_append(1))
    print("tslog vs seed online: %.0fx fewer bytes programmed" % (s / t))
    RECORDS = 6 * 1800 + 600
    print("-- first 6 h 20 min of a day with a 6-hour outage (%d records)" % RECORDS)
    t = row("tslog, 6 h outage", run_tslog(out6h))
    dev, note = run_seed(out6h)
    s = row("seed JSON queue, 6 h outage", dev, note)
    print("tslog vs seed with the outage: %.0fx fewer bytes programmed" % (s / t))
    store_rate()
    open_time(1)
    open_time(7)


main()
