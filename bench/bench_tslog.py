# run: micropython
"""The queue's capacity, flash wear and speed: the firmware's queue beside firmware 1.0's,
a plain append file and the seed's JSON queue, on the same noisy weather (``make bench``).

Weather: the simulator's (tools/sim/device/sim_weather.py: ``Weather(seed=1)`` from
2026-01-01T00:00Z, with each sensor's ``Noise``: AM2320 sigma 0.05 degC / 0.1 %RH,
BMP180 0.05 degC / 3 Pa), one sample every 2 s, quantised as the sensors return it
(temperatures and humidity in tenths, pressure in whole Pa: the fakes' registers round
so). A record's time is its slot's (2000 ms apart, FLAG_UTC), boot 1, the heap constant
(``HEAP``); ``mem_used`` (``gc.mem_alloc()`` right after the slot's ``gc.collect()``)
follows ``MemModel``, which copies what the firmware shows in the simulator.

Approaches, each on its own fake NOR flash at ESP32 geometry (host_tests/fakes/flash.py,
4096-byte blocks; 2 MiB, or 1536 KiB: the ``tslog`` partition of tools/partitions.csv):

* the firmware's queue (``record.open_queue``: layout v2 records coded by
  ``record.CODEC``, bucket_size 1024, commit every 16 stores) on a raw partition (the
  firmware's default) and in a LittleFS folder (boards without the partition);
* firmware 1.0's TSLog (host_tests/tslog_fw10.py: v1 records, 39 bytes in 48-byte slots,
  commit every 16) in a LittleFS folder (what boards run today) and on a raw partition;
* a plain append file of the v2 records (29 bytes each) on LittleFS, synced every 16;
* the seed's approach: the whole queue as a JSON list, rewritten after every sample.

Capacity: the uploader is offline (its reader stalled) while the queue fills, wraps and
drops its oldest bucket eight times; "records held" is the fewest it held right after a
drop, "B/record" the queue's whole flash (every overhead: framing, CRCs, cursors, time
ranges, spare space, the filesystem's own blocks) over them, "days" what they cover at
0.5 Hz. The plain file and the seed's queue cannot drop: they hold what they had when the
filesystem filled (ENOSPC) and lose every sample after. The firmware's queue in a LittleFS
folder fills too slowly here for a full fill (~4 minutes): it is filled to 48 buckets and
extrapolated (see ``capacity``).

Wear: a day (43,200 records) with the uploader as the firmware runs it (lib/sender.py,
``send_interval_s`` 10, ``cursor_commit_s`` 60): every 10 s while online it reads every
committed record, and it commits its cursor at most once a minute. Two days: online
throughout, and offline for the first 6 hours. Life: years at 0.5 Hz until the most
worn block reaches 100,000 erase cycles. LittleFS is taken to level its wear over the
whole partition; a raw partition is two rings (cursor blocks, data blocks), each erased
block after block, so each wears evenly and the faster one limits. A ring's erases count
the block being filled as the fraction filled (a day erases only a few cursor blocks).
"""

import gc
import json
import os
import struct
import sys
import time

import vfs

import record
import tslog
import tslog_fw10
from flash import FlashBlockDevice

sys.path.append((__file__.rsplit("/", 1)[0] if "/" in __file__ else ".") + "/../tools/sim/device")
import sim_weather  # noqa: E402 (the simulator's weather, tools/sim/device)

BS = 4096
BLOCKS = 512  # 2 MiB
TSLOG_BLOCKS = 384  # 1536 KiB: the tslog partition
CYCLES = 100_000
PER_YEAR = 365 * 24 * 1800  # records a year at 0.5 Hz
DAY = 43200  # records a day at 0.5 Hz
WEEK = 7 * DAY
T0_MS = 1767225600000  # 2026-01-01T00:00:00Z
HEAP = 125952  # gc.mem_alloc() + gc.mem_free(): constant on a board
MEM_BASE = 72192  # the firmware's live heap on a 32-bit build (README, bench_firmware)
V1 = "<qfffffIIHB"  # firmware 1.0's record layout (39 bytes)
DROPS = 8  # drops to watch after the wrap
LFS_MARKS = (16, 48)  # LittleFS folder: buckets at which the fill is measured
LFS_FULL = bool(os.getenv("BENCH_TSLOG_FULL"))  # fill the LittleFS folder too (~4 min more)
SEED_KEYS = ("timestamp", "am2320_temp", "am2320_humidity", "bmp180_temp", "bmp180_pressure",
             "bmp180_altitude", "mem_used", "mem_free")

tslog._log = lambda msg: None  # "flash full: dropped ...": expected here, counted instead
tslog_fw10._log = tslog._log


# ------------------------------------------------------------------ the records
class _Weather(sim_weather.Weather):
    """The simulator's weather at the bench's clock ``t`` (UTC seconds); the temperature
    computed once a slot (the humidity follows it)."""

    t = 0.0
    tc = None

    def _t(self):
        return self.t

    def temperature_c(self):
        if self.tc is None:
            self.tc = sim_weather.Weather.temperature_c(self)
        return self.tc


# Steps of mem_used from one slot to the next, in GC blocks, per 1000 slots: 0, 1, .. 10
# blocks, then 11-31 blocks. Counted on the firmware's records in the simulator (make sim:
# the 64-bit unix port, 32-byte GC blocks; a 32-bit board's objects are about half the
# size, so the same objects take as many of its 16-byte blocks): offline, 36,000 slots of
# `--queue-kib 256 --duration 72000 --wifi-outage 0:72000`; online, 7,192 slots of the
# lockstep e2e run (host_tests/test_sim_e2e.py).
_OFFLINE = (788, 106, 54, 37, 7, 3, 1, 1, 1, 0, 0, 2)
_ONLINE = (139, 197, 192, 118, 122, 77, 55, 31, 21, 10, 8, 30)
_RISE = ((2, 105), (53, 2872))  # (per 1000 slots, blocks): offline, online


class MemModel:
    """``mem_used`` slot after slot, modelled on the firmware's in the simulator.

    A 32-bit board's live heap after ``gc.collect()``, in 16-byte GC blocks, starting at
    ``MEM_BASE``: each slot it steps by a number of blocks drawn from ``_OFFLINE`` or
    ``_ONLINE`` (the uploader's work keeps it moving), the sign drawn with a pull back
    towards ``MEM_BASE``; and a few slots see another thread's objects alive for that slot
    only (``_RISE``): offline 0.2 % of the slots, +105 blocks; online 5.3 %, +2,872 blocks
    (the simulator's ~92 KB rises while the uploader works; the unix port's mbedTLS
    allocates in the MicroPython heap, an ESP32's outside it, so a board's rise is likely
    smaller, but any rise past ~40 blocks costs the codec the same escape, whatever its
    size).
    """

    def __init__(self, seed=4):
        self.rng = sim_weather.Noise(seed)
        self.level = MEM_BASE

    def next(self, online):
        u = self.rng._uniform
        table = _ONLINE if online else _OFFLINE
        x = u() * 1000
        k = 0
        while k < 11 and x >= table[k]:
            x -= table[k]
            k += 1
        if k == 11:
            k = 11 + int(u() * 21)
        if k:
            up = u() < 0.5 - (self.level - MEM_BASE) / 16384
            self.level += 16 * k if up else -16 * k
        per, blocks = _RISE[1 if online else 0]
        if u() * 1000 < per:
            return self.level + 16 * blocks
        return self.level


class Feed:
    """The firmware's records, slot after slot: ``next(online)`` returns the v2 bytes the
    firmware stores (also kept in ``v2``); ``v1()`` and ``seed()`` give the same sample as
    firmware 1.0's record and as the seed's JSON entry."""

    def __init__(self):
        self.w = _Weather(1)
        self.am = sim_weather.Noise(2)
        self.bmp = sim_weather.Noise(3)
        self.mem = MemModel()
        self.i = 0
        self.t_ms = T0_MS
        self.vals = ()
        self.v2 = b""

    def next(self, online):
        i = self.i
        self.i = i + 1
        w = self.w
        w.t = T0_MS / 1000 + 2.0 * i  # a float: the weather runs ~5x faster than with an int
        w.tc = None
        tc = w.temperature_c()
        am, bmp = self.am, self.bmp
        a_t = int(round((tc + am.gauss(0.05)) * 10))
        a_h = int(round((w.humidity_rh() + am.gauss(0.1)) * 10))
        b_t = int(round((tc + 0.4 + bmp.gauss(0.05)) * 10))
        b_p = int(round(w.pressure() + bmp.gauss(3.0)))
        mem = self.mem.next(online)
        self.t_ms = T0_MS + 2000 * i
        self.vals = (a_t, a_h, b_t, b_p, mem)
        self.v2 = record.encode(self.t_ms, [a_t, a_h, b_t, b_p, mem, HEAP], 1, record.FLAG_UTC)
        return self.v2

    def v1(self):
        a_t, a_h, b_t, b_p, mem = self.vals
        return struct.pack(V1, self.t_ms, a_t / 10, a_h / 10, b_t / 10, b_p,
                           record.altitude_m(b_p), mem, HEAP - mem, 1, record.FLAG_UTC)

    def seed(self):
        a_t, a_h, b_t, b_p, mem = self.vals
        return dict(zip(SEED_KEYS, (self.t_ms, a_t / 10, a_h / 10, b_t / 10, float(b_p),
                                    record.altitude_m(b_p), mem, HEAP - mem)))


# ------------------------------------------------------------------ flash
_BLANK = b"\xff" * BS


def _pool(n):
    """``n`` fake 2 MiB flash chips, made first and at the top of the heap.

    First: a 2 MiB bytearray asked for later, in a heap strewn with small objects, may
    find no room in one piece. At the top: MicroPython's allocator looks for room from the
    lowest free block up, so every object of more than one GC block allocated while a hole
    is left below the chips would scan past their ~1M blocks (the bench ran ~10x slower)."""
    gc.collect()
    filler = bytearray(gc.mem_free() - (n * 2 + 2) * 1048576)
    chips = [FlashBlockDevice(BS, BLOCKS) for _ in range(n)]
    del filler
    gc.collect()
    return chips


_POOL = _pool(7)
_RECS = [None] * 20000  # the speed test's records (made now for the same reason)


def fresh(blocks):
    """A blank chip of ``blocks`` blocks from the pool, its counters at zero."""
    dev = _POOL.pop()
    for b in range(blocks):
        dev.data[b * BS:(b + 1) * BS] = _BLANK
    dev.block_count = blocks
    counts = dev.erase_counts  # reused: no allocation
    for b in range(len(counts)):
        counts[b] = 0
    dev.bytes_programmed = dev.blocks_erased = dev.writes = 0
    return dev


def release(dev, mnt=None):
    if mnt:
        vfs.umount(mnt)
    _POOL.append(dev)


def mount(dev, mnt):
    vfs.VfsLfs2.mkfs(dev)
    vfs.mount(vfs.VfsLfs2(dev), mnt)
    dev.bytes_programmed = dev.blocks_erased = dev.writes = 0
    counts = dev.erase_counts
    for b in range(len(counts)):
        counts[b] = 0


def kib(blocks):
    return blocks * BS // 1024


# ------------------------------------------------------------------ the approaches
class Uploader:
    """The firmware's uploader (lib/sender.py with the firmware's settings): every 10 s
    online it reads every committed record; it commits its cursor at most every 60 s."""

    def __init__(self, log):
        self.r = log.reader(0)
        self.at = 0
        self.dirty = False

    def step(self, now_s):
        r = self.r
        while r.next_record() is not None:
            self.dirty = True
        if self.dirty and now_s - self.at >= 60:
            r.commit()
            self.at = now_s
            self.dirty = False


class Queue:
    """The firmware's queue (``old`` False) or firmware 1.0's, on a raw partition of
    ``blocks`` blocks or in a folder of a LittleFS of that size mounted at ``mnt``."""

    def __init__(self, name, blocks, old=False, mnt=None):
        self.name = name
        self.blocks = blocks
        self.old = old
        self.mnt = mnt
        self.dev = fresh(blocks)
        if mnt:
            mount(self.dev, mnt)
        self.log = self.open()
        self.up = Uploader(self.log)
        self.n = 0
        self.drops = 0
        self.min_held = None

    def open(self):
        where = self.mnt + "/q" if self.mnt else self.dev
        if self.old:
            return tslog_fw10.TSLog(where, record_size=48, bucket_size=1024, commit_delta=16)
        return record.open_queue(where, bucket_size=1024, commit_delta=16)

    def held(self):
        log = self.log
        return log.last_seqn - log._buckets[0] + 1 if log._buckets else 0

    def store(self, feed):
        log = self.log
        d = log.dropped
        log.store_record(feed.v1() if self.old else feed.v2)
        self.n += 1
        if log.dropped != d:
            self.drops += 1
            h = self.held()
            if self.min_held is None or h < self.min_held:
                self.min_held = h

    def done(self):
        return self.drops >= DROPS

    def close(self):
        self.log.close()
        release(self.dev, self.mnt)


class Append:
    """A plain file of v2 records on LittleFS, synced every 16; ``held``: the records synced
    when the filesystem filled."""

    old = False
    up = None

    def __init__(self, blocks, mnt):
        self.name = "plain append file, LittleFS"
        self.blocks = blocks
        self.mnt = mnt
        self.dev = fresh(blocks)
        mount(self.dev, mnt)
        self.f = open(mnt + "/plain.bin", "ab")
        self.n = 0
        self.held = 0
        self.full = False

    def store(self, feed):
        if self.full:
            return
        try:
            self.f.write(feed.v2)
            self.n += 1
            if self.n % 16 == 0:
                self.f.flush()
                self.held = self.n
        except OSError as e:
            if e.args[0] != 28:  # ENOSPC
                raise
            self.full = True

    def done(self):
        return self.full

    def close(self):
        try:
            self.f.close()
        except OSError:
            pass
        release(self.dev, self.mnt)


def ring_years(t, n):
    """(life in years, the limiting part, data-ring flash bytes per record or None) of
    approach ``t`` after ``n`` records from blank."""
    dev = t.dev
    if getattr(t, "log", None) is None or t.mnt:  # LittleFS: levelled over the partition
        return years(dev.blocks_erased / n, t.blocks), "", None
    st = t.log._st
    k = st.k
    cur = (sum(dev.erase_counts[:k]) - 1 + st.wp / st.nentries) / n
    if t.old:
        fill = t.log._count / st.cap
    else:
        fill = (t.log._used - st.start) / (BS - st.start - 24)
    data = (sum(dev.erase_counts[k:]) - 1 + fill) / n
    yc, yd = years(cur, k), years(data, t.blocks - k)
    return (min(yc, yd), "data ring %s, cursor ring (%d blocks) %s" % (
        fmt_years(yd), k, fmt_years(yc)), data * BS)


def years(erases_per_record, blocks):
    if erases_per_record <= 0:
        return float("inf")
    return blocks * CYCLES / (erases_per_record * PER_YEAR)


def fmt_years(y):
    if y == float("inf"):
        return "inf"
    return "%.1f" % y if y < 10 else "{:,}".format(int(y + 0.5))


def ms_since(t0):
    return time.ticks_diff(time.ticks_us(), t0) / 1000


# ------------------------------------------------------------------ capacity
def between_figures(q):
    """At 7 days: reopen the queue (timed), then between() for one hour of the 4th day."""
    opened = reopen_ms(q)
    log = q.log
    st = log._st
    reads = []
    ranges = [0]
    open_, load_range = st.open, st.load_range

    def spy_open(first):
        if first not in reads:
            reads.append(first)
        return open_(first)

    def spy_range(first):
        ranges[0] += 1
        return load_range(first)

    st.open = spy_open
    st.load_range = spy_range
    t1 = T0_MS + (3 * 24 + 5) * 3600000
    t0 = time.ticks_us()
    got = sum(1 for _ in log.between(t1, t1 + 3600000))
    dt = ms_since(t0)
    del st.open, st.load_range
    return ("open with 7 days (%s records, %d buckets): %.1f ms; between() for 1 h of the 7 "
            "days: %d records in %.0f ms, %d bucket(s) read, %d time-range trailer(s)" % (
                "{:,}".format(log.last_seqn), log.buckets(), opened, got, dt, len(reads),
                ranges[0]), len(reads), got)


def reopen_ms(q):
    t0 = time.ticks_us()
    q.log.close()
    q.log = q.open()
    return ms_since(t0)


def capacity():
    """Fill every approach from one offline feed: ([(name, blocks, records held, note)],
    between() figures at 7 days, open times)."""
    feed = Feed()
    new2 = Queue("new queue, raw partition (firmware default)", BLOCKS)
    new15 = Queue("new queue, raw partition (make flash's tslog)", TSLOG_BLOCKS)
    old_lfs = Queue("fw 1.0 TSLog, LittleFS folder (today's)", BLOCKS, old=True, mnt="/c1")
    old2 = Queue("fw 1.0 TSLog, raw partition", BLOCKS, old=True)
    old15 = Queue("fw 1.0 TSLog, raw partition", TSLOG_BLOCKS, old=True)
    plain = Append(BLOCKS, "/c2")
    new_lfs = Queue("new queue, LittleFS folder (fallback)", BLOCKS, mnt="/c3")
    marks = []
    active = [new2, new15, old_lfs, old2, old15, plain, new_lfs]
    extra = None
    while active:
        feed.next(False)
        for q in active:
            q.store(feed)
        i = feed.i
        if i % 500 == 0:
            gc.collect()  # the unix port allocates ~8x slower in a heap full of garbage
        if i == WEEK:
            extra = between_figures(new2)
        if not LFS_FULL and new_lfs in active and \
                new_lfs.log.buckets() > LFS_MARKS[len(marks)]:
            st = os.statvfs(new_lfs.mnt)
            marks.append((new_lfs.held(), st[2] - st[3], st[2], st[3]))
            if len(marks) == len(LFS_MARKS):
                lfs_open = reopen_ms(new_lfs), new_lfs.log.buckets()
                new_lfs.close()
                active.remove(new_lfs)
        for q in active:
            if q.done():
                if q is new_lfs:
                    lfs_open = reopen_ms(new_lfs), new_lfs.log.buckets()
                q.close()
                active.remove(q)
                break
    t0 = time.ticks_us()
    new2.log = new2.open()
    wrapped_open = ms_since(t0)
    out = []
    for q in (new2, new15):
        out.append((q.name, q.blocks, q.min_held, ""))
    if LFS_FULL:
        out.append((new_lfs.name, BLOCKS, new_lfs.min_held, "filled (BENCH_TSLOG_FULL=1)"))
    else:
        # The blocks each record takes between the two marks (its marginal cost: bucket
        # files, their time ranges, the directory as it grows); the folder is full when the
        # free blocks reach TSLog's reserve (32 KiB), then drops a bucket (1024 records).
        (h0, u0, _, _), (h1, u1, total, free) = marks
        per = (u1 - u0) / (h1 - h0)
        full = h1 + (free - 32768 // BS) / per
        out.append((new_lfs.name, BLOCKS, int(full) - 1024,
                    "extrapolated from %s records held at %d buckets (%d of %d blocks used), "
                    "%.5f blocks a record from %d to %d buckets; BENCH_TSLOG_FULL=1 fills it "
                    "(~4 min)" % ("{:,}".format(h1), LFS_MARKS[1], u1, total, per,
                                  LFS_MARKS[0], LFS_MARKS[1])))
    for q in (old_lfs, old2, old15):
        out.append((q.name, q.blocks, q.min_held, ""))
    out.append(("plain append file (v2, sync every 16), LittleFS", BLOCKS, plain.held,
                "full (ENOSPC): every later sample lost"))
    speed = ("open after the wrap (2048 KiB full, %d buckets): %.1f ms; open a LittleFS "
             "folder of %d buckets: %.1f ms" % (new2.log.buckets(), wrapped_open,
                                                 lfs_open[1], lfs_open[0]))
    return out, extra, speed


# ------------------------------------------------------------------ wear
WEAR = (("new queue, raw", BLOCKS, False, False), ("new queue, raw", TSLOG_BLOCKS, False, False),
        ("new queue, LittleFS", BLOCKS, False, True),
        ("fw 1.0 TSLog, LittleFS", BLOCKS, True, True), ("fw 1.0 TSLog, raw", BLOCKS, True, False))


def wear_day(outage):
    """One day of each approach in ``WEAR``, and of the plain file; the day with an outage
    only on raw partitions (on LittleFS an outage spares only the cursor files' few writes,
    and a LittleFS day takes ~20 s here); [(name, (B programmed/rec, erases/rec, years,
    limiting part, data B/rec)) in ``WEAR``'s order]."""
    feed = Feed()
    qs = [Queue("%s %d KiB" % (name, kib(blocks)), blocks, old=old,
                mnt="/w%d" % i if lfs else None)
          for i, (name, blocks, old, lfs) in enumerate(WEAR) if not (lfs and outage)]
    if not outage:
        qs.append(Append(BLOCKS, "/w9"))
        qs[-1].name = "plain append file, LittleFS 2048 KiB"
    for i in range(DAY):
        now = 2 * i
        online = not (outage and now < 6 * 3600)
        feed.next(online)
        for q in qs:
            q.store(feed)
        if i % 500 == 0:
            gc.collect()
        if online and i % 5 == 4:
            for q in qs:
                if q.up:
                    q.up.step(now)
    out = []
    for q in qs:
        out.append((q.name, (q.dev.bytes_programmed / DAY, q.dev.blocks_erased / DAY) +
                    ring_years(q, DAY)))
        q.close()
    return out


# ------------------------------------------------------------------ the seed's approach
SEED_MNT = "/s"
SEED_PATH = SEED_MNT + "/samples.json"


def seed_online(entries):
    """An hour online: rewrite the JSON queue after every sample, clear it after each post."""
    dev = fresh(BLOCKS)
    mount(dev, SEED_MNT)
    queue = []
    for i in range(len(entries)):
        queue.append(entries[i])
        with open(SEED_PATH, "w") as f:
            json.dump(queue, f)
        if i % 5 == 4:
            queue = []
    n = len(entries)
    out = (dev.bytes_programmed / n, dev.blocks_erased / n,
           years(dev.blocks_erased / n, BLOCKS))
    release(dev, SEED_MNT)
    return out


def seed_write(entries, q):
    try:
        with open(SEED_PATH, "w") as f:
            json.dump([entries[i % len(entries)] for i in range(q)], f)
        return True
    except OSError:
        return False


def seed_outage(entries):
    """The seed's queue offline: every sample rewrites a queue one entry longer.

    O(queue) per sample, O(n^2) in all, too slow to run for hours: the first 600 samples
    are measured and the cost per sample fitted as a + c * queue (it is linear); the
    queue length at which LittleFS runs out of space is measured directly (bisection over
    single rewrites, each after writing the queue one shorter, as the seed does; entries
    past the hour of ``entries`` repeat its readings). Returns (records when full, bytes
    programmed and erases per record until then)."""
    dev = fresh(BLOCKS)
    mount(dev, SEED_MNT)
    marks = {}
    queue = []
    for i in range(600):
        queue.append(entries[i])
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
        if seed_write(entries, mid - 1) and seed_write(entries, mid):
            lo = mid
        else:
            hi = mid
    release(dev, SEED_MNT)

    def total(k, q):
        a, c = fit[k]
        return a * q + c * q * q / 2

    return lo, total(0, lo) / lo, total(1, lo) / lo


# ------------------------------------------------------------------ speed
def speed():
    """store_record() and next_record() on a blank 2 MiB raw partition and in a folder."""
    feed = Feed()
    for i in range(len(_RECS)):
        _RECS[i] = feed.next(False)
        if i % 500 == 0:
            gc.collect()
    out = []
    for name, mnt in (("raw partition", None), ("LittleFS folder", "/p")):
        dev = fresh(BLOCKS)
        if mnt:
            mount(dev, mnt)
        log = record.open_queue(mnt + "/q" if mnt else dev, bucket_size=1024, commit_delta=16)
        t0 = time.ticks_us()
        n = 0
        for rec in _RECS:
            log.store_record(rec)
            n += 1
            if n % 500 == 0:
                gc.collect()
        log.commit()
        st = ms_since(t0)
        r = log.reader(0)
        t0 = time.ticks_us()
        n = 0
        while r.next_record() is not None:
            n += 1
            if n % 500 == 0:
                gc.collect()
        nx = ms_since(t0)
        out.append("%s: store_record() %s records/s, next_record() %s records/s" % (
            name, "{:,}".format(int(len(_RECS) / st * 1000)), "{:,}".format(int(n / nx * 1000))))
        log.close()
        release(dev, mnt)
    return out


# ------------------------------------------------------------------ report
def days(held):
    return held * 2 / 86400


def main():
    t_all = time.ticks_ms()
    print("bench_tslog: the firmware's weather (sim Weather + sensor noise, quantised; "
          "mem_used: MemModel), 2 s a record, commit every 16; fake NOR flash, 4096 B blocks")

    t0 = time.ticks_ms()
    cap, week, opens = capacity()
    t_cap = time.ticks_diff(time.ticks_ms(), t0) / 1000
    t0 = time.ticks_ms()
    gc.collect()
    entries = []
    feed = Feed()
    for _ in range(1800):
        feed.next(True)
        entries.append(feed.seed())
    seed_full, seed_b, seed_e = seed_outage(entries)
    cap.append(("seed JSON queue, LittleFS", BLOCKS, seed_full,
                "full (ENOSPC) at %s samples: later samples lost, the file truncated" %
                "{:,}".format(seed_full)))
    print("\n== capacity: uploader offline, queue filled until it wrapped and dropped %d "
          "times (%.0f s; the seed's %.0f s)" % (DROPS, t_cap,
                                                time.ticks_diff(time.ticks_ms(), t0) / 1000))
    print("%-50s %9s %13s %9s %7s" % ("approach", "flash", "records held", "B/record",
                                       "days"))
    for name, blocks, held, note in cap:
        print("%-50s %5d KiB %13s %9.2f %7.2f  %s" % (
            name, kib(blocks), "{:,}".format(held), blocks * BS / held, days(held), note))

    t0 = time.ticks_ms()
    order = wear_day(False)
    online, outage = dict(order), dict(wear_day(True))
    seed_on = seed_online(entries)
    print("\n== wear: a day, 43,200 records, uploader reading every 10 s online, cursor "
          "commit at most every 60 s (%.0f s)" % (time.ticks_diff(time.ticks_ms(), t0) / 1000))
    print("%-38s %-13s %10s %10s %8s  %s" % ("approach", "day", "B prog/rec", "erases/rec",
                                             "years", "limiting"))
    rows = []
    for name, _ in order:
        for day, res in (("online", online), ("6-h outage", outage)):
            if name in res:
                b, e, y, limit, _ = res[name]
                rows.append((name, day, b, e, y, limit))
    rows.append(("seed JSON queue, LittleFS 2048 KiB", "online (1 h)") + seed_on + ("",))
    rows.append(("seed JSON queue, LittleFS 2048 KiB", "6-h outage", seed_b, seed_e,
                 years(seed_e, BLOCKS), "until full at %s samples (fitted: see seed_outage)"
                 % "{:,}".format(seed_full)))
    for name, day, b, e, y, limit in rows:
        print("%-38s %-13s %10.1f %10.5f %8s  %s" % (name, day, b, e, fmt_years(y), limit))
    raw = "new queue, raw 2048 KiB"
    per_on, per_off = online[raw][4], BLOCKS * BS / cap[0][2]
    print("data-ring flash per record on the online day: %.2f B, against %.2f B (whole "
          "partition) filled offline: the uploader's work makes mem_used costlier to code; "
          "2 MiB of online records would hold about %.1f days" % (
              per_on, per_off, (BLOCKS - BLOCKS // 64 - 1) * BS / per_on * 2 / 86400))

    t0 = time.ticks_ms()
    sp = speed()
    print("\n== the firmware's queue: open, store, next, between() (%.0f s)" % (
        time.ticks_diff(time.ticks_ms(), t0) / 1000))
    print(week[0])
    print(opens)
    for line in sp:
        print(line)

    print("\n== issue 12 targets (firmware default: raw partition)")
    held, held15 = cap[0][2], cap[1][2]
    bpr = BLOCKS * BS / held

    def life(name):
        return min(online[name][2], outage[name][2])

    life2, life15 = life("new queue, raw 2048 KiB"), life("new queue, raw 1536 KiB")
    checks = (
        ("flash bytes per record <= 6.9 (2 MiB, filled offline, after the wrap)",
         "%.2f" % bpr, bpr <= 6.9),
        ("days held in 2 MiB at 0.5 Hz >= 7 (stretch 14)", "%.1f (stretch %s); 1536 KiB: %.1f"
         % (days(held), "met" if days(held) >= 14 else "missed", days(held15)), days(held) >= 7),
        ("flash life >= 500 years (limiting ring, worse day)", "%s; 1536 KiB: %s" % (
            fmt_years(life2), fmt_years(life15)), life2 >= 500),
        ("between() for 1 h of a week reads <= 3 buckets", "%d" % week[1],
         week[1] <= 3 and week[2] == 1800),
    )
    for text, value, ok in checks:
        print("%-70s %-32s %s" % (text, value, "met" if ok else "MISSED"))
    print("bench_tslog: %.0f s" % (time.ticks_diff(time.ticks_ms(), t_all) / 1000))


main()
