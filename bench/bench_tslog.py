# run: micropython
"""TSLog flash wear, open time and speed, against the seed firmware's approach.

Workload (the firmware's): one record of the firmware's format (lib/record.py,
39 bytes) every 2 s, commit every 16 stores, the sender reading and committing
its cursor every 10 s (5 records) while online. Flash: the fake NOR flash at
ESP32 geometry (4096-byte blocks, 2 MiB partition), either with LittleFS
(TSLog in a folder) or as a raw partition (TSLog on the partition). Lifetime:
100,000 erase cycles per block at 0.5 Hz; LittleFS is assumed to level wear
perfectly over the partition; the raw partition is two rings (data blocks,
cursor blocks), each levelled exactly, and its lifetime is the shorter ring's.

Seed approach: the whole queue kept as a JSON list, rewritten after every
sample, cleared after each successful post.

Open time, throughput and between(): a TSLog folder on the unix port's own
filesystem (records of 7 days do not fit in 2 MiB), and a 2 MiB raw partition.
"""

import json
import os
import struct
import time

import vfs

import tslog
from flash import FlashBlockDevice

MNT = "/bench_flash"
FMT = "<qfffffIIHB"  # lib/record.py FORMAT: time_ms, 5 floats, 2 u32, boot, flags
BLOCKS = 512
PER_YEAR = 365 * 24 * 1800
CYCLES = 100_000
HOUR = 1800  # records per hour at 0.5 Hz


def sample(i):
    return (1_700_000_000_000 + 2000 * i, 21.5, 55.0, 21.4, 101325.0, 120.0, 40000, 70000,
            1, 0)


def time_of(rec):
    return struct.unpack_from("<q", rec, 0)[0] // 1000  # UTC seconds


def online(i, outage):
    t = i * 2
    return not (outage and outage[0] <= t < outage[1])


def fresh(mount=True):
    try:
        vfs.umount(MNT)
    except OSError:
        pass
    dev = FlashBlockDevice(block_size=4096, block_count=BLOCKS)
    if mount:
        vfs.VfsLfs2.mkfs(dev)
        vfs.mount(vfs.VfsLfs2(dev), MNT)
    dev.bytes_programmed = dev.blocks_erased = 0
    dev.erase_counts = [0] * BLOCKS
    return dev


def run_tslog(raw, n, outage):
    dev = fresh(mount=not raw)
    log = tslog.TSLog(dev if raw else MNT + "/log", format=FMT, bucket_size=1024,
                      commit_delta=16, time_of=time_of)
    r = log.reader(0)
    for i in range(n):
        log.store(*sample(i))
        if i % 5 == 4 and online(i, outage):
            while r.next() is not None:
                pass
            r.commit()
    log.close()
    return dev, ""


SEED_KEYS = ("timestamp", "am2320_temp", "am2320_humidity", "bmp180_temp", "bmp180_pressure",
             "bmp180_altitude", "mem_used", "mem_free")
SEED_PATH = MNT + "/samples.json"


def seed_entry(i):
    return dict(zip(SEED_KEYS, sample(i)))


def run_seed(n, outage):
    dev = fresh()
    queue = []
    for i in range(n):
        queue.append(seed_entry(i))
        with open(SEED_PATH, "w") as f:
            json.dump(queue, f)
        if i % 5 == 4 and online(i, outage):
            queue = []
    return dev, ""


def seed_write(q):
    try:
        with open(SEED_PATH, "w") as f:
            json.dump([seed_entry(i) for i in range(q)], f)
        return True
    except OSError:
        return False


def run_seed_outage(n):
    """The seed approach offline: every sample rewrites a queue one entry longer.

    Rewriting the whole queue costs O(queue) per sample, O(n^2) in all, too slow
    to emulate byte by byte for hours: the first 600 samples are measured, the
    cost per sample is fitted as a + c * queue (it is linear), and the queue
    length at which LittleFS runs out of space is measured directly (bisection
    over single rewrites, each after writing the queue one shorter, as the seed
    does).
    """
    dev = fresh()
    marks = {}
    queue = []
    for i in range(600):
        queue.append(seed_entry(i))
        with open(SEED_PATH, "w") as f:
            json.dump(queue, f)
        if i + 1 in (300, 600):
            marks[i + 1] = (dev.bytes_programmed, dev.blocks_erased)
    queue = None
    fit = []
    for k in (0, 1):  # B(q) = a q + c q^2 / 2 through B(300) and B(600)
        b300, b600 = marks[300][k], marks[600][k]
        c = (b600 - 2 * b300) / 90000
        fit.append(((b300 - c * 45000) / 300, c))
    lo, hi = 600, 40000
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if seed_write(mid - 1) and seed_write(mid):
            lo = mid
        else:
            hi = mid
    full = min(lo, n)

    def total(k, q):
        a, c = fit[k]
        return a * q + c * q * q / 2

    dev.bytes_programmed = total(0, full)
    dev.blocks_erased = total(1, full)
    dev.erase_counts = None
    dev.records = full
    note = ""
    if lo < n:
        note = ("flash FULL at sample %d (%.1f h offline, JSON %d kB): ENOSPC; every later "
                "sample lost, the truncated file loses the queue" % (
                    lo + 1, lo / HOUR, len(json.dumps([seed_entry(0)])) * lo // 1000))
    return dev, note


def run_append(n, sync_every):
    dev = fresh()
    with open(MNT + "/plain.bin", "ab") as f:
        for i in range(n):
            f.write(struct.pack(FMT, *sample(i)))
            if i % sync_every == sync_every - 1:
                f.flush()
    return dev, ""


def years(dev, n, raw):
    if dev.erase_counts is None:
        return BLOCKS * CYCLES / (dev.blocks_erased / n * PER_YEAR)
    if raw:  # two rings, each levelled exactly: the faster-wearing one decides
        k = max(2, BLOCKS // 20)
        out = []
        for blocks, erased in ((k, sum(dev.erase_counts[:k])),
                               (BLOCKS - k, sum(dev.erase_counts[k:]))):
            if erased:
                out.append(blocks * CYCLES / (erased / n * PER_YEAR))
        return min(out) if out else float("inf")
    e = dev.blocks_erased / n
    return BLOCKS * CYCLES / (e * PER_YEAR) if e else float("inf")


def row(name, n, result, raw=False):
    dev, note = result
    n = getattr(dev, "records", n)
    b = dev.bytes_programmed / n
    print("%-38s %9.1f %9.4f %8.1f  %s" % (name, b, dev.blocks_erased / n, years(dev, n, raw),
                                          note))
    return b


def wear():
    n = HOUR
    print("== wear: 1 h at 0.5 Hz (%d records of %d B), 4096 B blocks, 2 MiB"
          % (n, struct.calcsize(FMT)))
    print("%-38s %9s %9s %8s" % ("approach", "B prog/rec", "erase/rec", "years"))
    out10 = (1200, 1800)  # a 10-minute outage
    t = row("tslog raw partition, online", n, run_tslog(True, n, None), raw=True)
    row("tslog raw partition, 10 min outage", n, run_tslog(True, n, out10), raw=True)
    tl = row("tslog LittleFS folder, online", n, run_tslog(False, n, None))
    row("tslog LittleFS folder, 10 min outage", n, run_tslog(False, n, out10))
    s = row("seed JSON queue, online", n, run_seed(n, None))
    row("seed JSON queue, 10 min outage", n, run_seed(n, out10))
    row("plain append file, sync every 16", n, run_append(n, 16))
    row("plain append file, sync every record", n, run_append(n, 1))
    print("online, bytes programmed: seed / tslog raw = %.0fx, seed / tslog LittleFS = %.0fx"
          % (s / t, s / tl))
    n = 24 * HOUR
    out6h = (0, 6 * 3600)
    print("== a day with a 6-hour outage (%d records, offline 0-6 h)" % n)
    t = row("tslog raw partition", n, run_tslog(True, n, out6h), raw=True)
    tl = row("tslog LittleFS folder", n, run_tslog(False, n, out6h))
    s = row("seed JSON queue (fitted, see note)", n, run_seed_outage(n))
    print("bytes programmed per record: seed / tslog raw = %.0fx, seed / tslog LittleFS = %.0fx"
          " (the seed's figure is only up to the moment it filled the flash)" % (s / t, s / tl))
    try:
        vfs.umount(MNT)
    except OSError:
        pass


def rmtree(d):
    try:
        names = os.listdir(d)
    except OSError:
        return
    for name in names:
        os.remove(d + "/" + name)
    os.rmdir(d)


def build(d, n):
    log = tslog.TSLog(d, format=FMT, bucket_size=1024, commit_delta=4096, recreate=True,
                      time_of=time_of)
    for i in range(n):
        log.store(*sample(i))
    log.close()


def ms(t0):
    return time.ticks_diff(time.ticks_us(), t0) / 1000


def folder_figures():
    print("== TSLog folder on the unix port's filesystem, bucket_size 1024")
    d = "/tmp/bench_tslog_rate"
    log = tslog.TSLog(d, format=FMT, bucket_size=1024, commit_delta=16, recreate=True)
    t0 = time.ticks_us()
    k = 20000
    for i in range(k):
        log.store(*sample(i))
    print("store(*values): %.0f records/s (commit every 16)" % (k / ms(t0) * 1000))
    raw = struct.pack(FMT, *sample(0))
    t0 = time.ticks_us()
    for _ in range(k):
        log.store_record(raw)
    print("store_record(): %.0f records/s (commit every 16)" % (k / ms(t0) * 1000))
    k *= 2
    log.commit()
    r = log.reader(0)
    t0 = time.ticks_us()
    while r.next() is not None:
        pass
    print("next(): %.0f records/s" % (k / ms(t0) * 1000))
    log.close()
    rmtree(d)
    for days in (1, 7):
        d = "/tmp/bench_tslog_open_%d" % days
        n = days * 43200
        t0 = time.ticks_us()
        build(d, n)
        built = ms(t0) / 1000
        t0 = time.ticks_us()
        log = tslog.TSLog(d, format=FMT, bucket_size=1024, commit_delta=16, time_of=time_of)
        dt = ms(t0)
        t0 = time.ticks_us()
        log.reader(0).next()
        print("open with %d day(s) = %d records in %d buckets: %.2f ms (+ first next() %.2f ms)"
              "; built in %.0f s" % (days, n, log.buckets(), dt, ms(t0), built))
        if days == 7:
            between(log, n)
        log.close()
        rmtree(d)


def between(log, n):
    t_start = time_of(struct.pack(FMT, *sample(0)))
    t0_ = t_start + 3 * 86400 + 3600 * 5  # one hour on the fourth day
    t0 = time.ticks_us()
    got = sum(1 for _ in log.between(t0_, t0_ + 3600))
    dt = ms(t0)
    t0 = time.ticks_us()
    k = 0
    for _, rec in log.tail(n):  # a full scan that checks every record's time
        t = time_of(rec)
        if t0_ <= t < t0_ + 3600:
            k += 1
    full = ms(t0)
    assert got == k == HOUR, (got, k)
    print("between() for 1 h of 7 days: %d records in %.1f ms; full scan %.0f ms (%.0fx)"
          % (got, dt, full, full / dt))


def raw_figures():
    print("== TSLog on a 2 MiB raw partition (fake flash)")
    tslog._log = lambda msg: None  # the wrapped ring below drops unread blocks: quiet
    dev = fresh(mount=False)
    log = tslog.TSLog(dev, format=FMT, commit_delta=16, time_of=time_of)
    cap = (BLOCKS - max(2, BLOCKS // 20)) * log.bucket_size
    t0 = time.ticks_us()
    for i in range(20000):
        log.store(*sample(i))
    print("store(): %.0f records/s (fake flash in Python)" % (20000 / ms(t0) * 1000))
    log.commit()
    r = log.reader(0)
    t0 = time.ticks_us()
    while r.next() is not None:
        pass
    print("next(): %.0f records/s" % (20000 / ms(t0) * 1000))
    r.commit()
    for n in (2000, cap + 5000):  # a nearly empty ring, a full one that wrapped
        dev = fresh(mount=False)
        log = tslog.TSLog(dev, format=FMT, commit_delta=4096, time_of=time_of)
        for i in range(n):
            log.store(*sample(i))
        log.close()
        t0 = time.ticks_us()
        log = tslog.TSLog(dev, format=FMT, commit_delta=16, time_of=time_of)
        print("open with %d records (%d blocks of %d; ring holds %d): %.1f ms"
              % (n, log.buckets(), log.bucket_size, cap, ms(t0)))


def main():
    t0 = time.ticks_ms()
    wear()
    folder_figures()
    raw_figures()
    print("bench_tslog: %.0f s" % (time.ticks_diff(time.ticks_ms(), t0) / 1000))


main()
