"""lib/archive.py: daily CSV files on a card, exactly once across removals and power cuts.

Both interpreters: a temporary folder stands in for the card and failures are injected by
wrapping the files the archive opens (a write that stops part-way, then every card
access fails until "re-insertion").  MicroPython only (vfs.VfsFat exists only there): a
real FAT image on the fake flash mounted at /sd, removed by making its block device fail
at every single block write in turn, then re-inserted and re-mounted.
"""

import gc
import os
import time

import archive
import record
import recordcsv
import support
import test_schema
import utc

T0 = 1763942400000  # 2025-11-24T00:00:00Z
HOUR = 3600000


def _vals(i):  # layout v2: 0.1 degC, 0.1 %RH, 0.1 degC, Pa, mem_used, heap
    return (200 + i % 10, 505, 212, 101325 + i, 1000 + i, 91000)


def _log(folder, n=0, step=HOUR, start=1):
    """A queue of ``n`` UTC records ``step`` ms apart; also makes the card folder next to it
    (the mount point of the stand-in card)."""
    support.makedirs(folder[:folder.rfind("/")] + "/sd")
    log = record.open_queue(folder, bucket_size=16, commit_delta=16, nreaders=2)
    for i in range(start - 1, start - 1 + n):
        log.store_record(record.encode(T0 + i * step, _vals(i), 1, record.FLAG_UTC))
    log.commit()
    return log


def _quiet(msg):
    pass


def _csv_files(base):
    out = []
    for name in sorted(os.listdir(base)):
        p = base + "/" + name
        if os.stat(p)[0] & 0x4000:
            out.extend(_csv_files(p))
        elif name.endswith(".csv"):
            out.append(p)
    return out


def _check(base, n, header=None):
    """Every seqn 1..n exactly once, on a whole line of its UTC day's file."""
    header = header or ",".join(recordcsv.csv_columns())
    seen = []
    for p in _csv_files(base):
        with open(p) as f:
            text = f.read()
        assert text.endswith("\n"), (p, text[-40:])
        lines = text.split("\n")[:-1]
        assert lines[0] == header, (p, lines[0])
        for line in lines[1:]:
            cells = line.split(",")
            assert len(cells) == len(header.split(",")), (p, line)
            seq = int(cells[0])
            day = cells[1][:10]
            assert p.endswith("%s/%s/%s.csv" % (day[:4], day[5:7], day[8:10])), (p, line)
            assert float(cells[9]) == 101325.0 + seq - 1
            seen.append(seq)
    dup = len(seen) - len(set(seen))
    assert dup == 0 and sorted(seen) == list(range(1, n + 1)), (dup, len(seen), n)


def _archive(*args, **kw):
    kw.setdefault("interval_ms", 0)
    return archive.Archive(*args, **kw)


def _drain(arc, limit=200):
    total = 0
    for _ in range(limit):
        got = arc.step()
        total += got
        if not got and arc.state == "idle":
            return total
    raise AssertionError("archive did not drain: %r" % (arc.stats(),))


def test_daily_files_header_and_cursor():
    d = support.tmpdir("archive")
    log = _log(d + "/q", n=60)  # 60 hours: 3 days
    arc = _archive(log.reader(1), d + "/sd", batch=16, log=_quiet)
    assert _drain(arc) == 60 and arc.written == 60 and arc.skipped == 0
    files = _csv_files(d + "/sd")
    assert [p[len(d) + 4:] for p in files] == ["2025/11/24.csv", "2025/11/25.csv",
                                                "2025/11/26.csv"]
    _check(d + "/sd", 60)
    assert log.stats()[2] == 60  # reader 0 (uploader) has read nothing
    assert log.reader(1).seqn == 60
    log.close()
    log = _log(d + "/q")
    assert log.reader(1).seqn == 60  # committed
    log.store_record(record.encode(T0 + 60 * HOUR, _vals(60), 1, record.FLAG_UTC))
    log.commit()
    arc = _archive(log.reader(1), d + "/sd", log=_quiet)
    assert _drain(arc) == 1 and arc.skipped == 0
    _check(d + "/sd", 61)
    log.close()


class _Cut(BaseException):
    pass


class _CutReader:
    """A reader whose next commit() loses the power: after the flush, before the cursor."""

    def __init__(self, r):
        self.r = r

    def __getattr__(self, name):
        return getattr(self.r, name)

    @property
    def seqn(self):
        return self.r.seqn

    @seqn.setter
    def seqn(self, v):
        self.r.seqn = v

    def commit(self):
        raise _Cut()


def test_cut_between_flush_and_commit_writes_no_duplicate():
    d = support.tmpdir("archive")
    log = _log(d + "/q", n=40)
    arc = _archive(log.reader(1), d + "/sd", batch=16, log=_quiet)
    arc.step()
    arc = _archive(_CutReader(log.reader(1)), d + "/sd", batch=16, log=_quiet)
    support.raises(_Cut, arc.step)  # lines 17..32 are on the card, the cursor says 16
    log.close()
    log = _log(d + "/q")  # reboot
    assert log.reader(1).seqn == 16
    arc = _archive(log.reader(1), d + "/sd", batch=16, log=_quiet)
    _drain(arc)
    assert arc.skipped == 16 and arc.written == 8
    _check(d + "/sd", 40)
    log.close()


class _Card:
    """Failure injection for files under a folder: after ``budget`` bytes written the
    write stops part-way (what reached the card stays) and the card is gone."""

    def __init__(self):
        self.budget = None
        self.present = True
        self.removals = 0

    def open(self, path, mode="r"):
        if not self.present:
            raise OSError(5, "EIO")
        return _File(self, open(path, mode))

    def stat(self, path):
        if not self.present:
            raise OSError(5, "EIO")
        return os.stat(path)


class _File:
    def __init__(self, card, f):
        self.card = card
        self.f = f

    def write(self, data):
        c = self.card
        if not c.present:
            raise OSError(5, "EIO")
        if c.budget is not None and len(data) > c.budget:
            self.f.write(data[:c.budget])  # the torn part reaches the card
            self.f.flush()
            c.present = False
            c.removals += 1
            raise OSError(5, "EIO")
        if c.budget is not None:
            c.budget -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        if not self.card.present:
            raise OSError(5, "EIO")
        return getattr(self.f, name)

    def close(self):
        self.f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()
        return False


def test_removal_mid_write_sweep_no_duplicate_or_missing_line():
    n = 30
    header = ",".join(recordcsv.csv_columns())
    line = len(recordcsv.csv_line(10, record.decode(record.encode(
        T0, _vals(10), 1, record.FLAG_UTC)), recordcsv.csv_columns())) + 1
    total = 3 * (len(header) + 1) + n * line  # about the bytes the archive writes
    repaired = skipped = 0
    for budget in range(0, total, 37):
        d = support.tmpdir("archive-rm")
        log = _log(d + "/q", n=n, step=HOUR * 2)
        card = _Card()
        archive.open = card.open  # the archive module's files go through the card
        try:
            card.budget = budget
            arc = _archive(log.reader(1), d + "/sd", batch=7, retry_ms=0, log=_quiet)
            for _ in range(40):
                arc.step()
                if arc.state == "no_card" and not card.present:
                    card.present = True  # re-inserted
                    card.budget = None
            _drain(arc)
        finally:
            del archive.open
        assert card.removals <= 1
        _check(d + "/sd", n)
        if card.removals:
            assert arc.card_errors == 1
        repaired += arc.repaired
        skipped += arc.skipped
        log.close()
    assert repaired > 10 and skipped > 0, (repaired, skipped)  # both paths were taken


def test_layout_update_starts_a_new_file_for_the_day():
    d = support.tmpdir("archive")
    log = _log(d + "/q", n=3)
    arc = _archive(log.reader(1), d + "/sd", log=_quiet)
    _drain(arc)
    try:
        record.register(test_schema._v3(), current=True)
        log.store_record(record.encode(T0 + 4 * HOUR, _vals(3) + (75, 3700), 1,
                                       record.FLAG_UTC))
        log.commit()
        _drain(arc)
        files = [p[len(d) + 4:] for p in _csv_files(d + "/sd")]
        assert files == ["2025/11/24-1.csv", "2025/11/24.csv"], files
        with open(d + "/sd/2025/11/24-1.csv") as f:
            lines = f.read().split("\n")
        assert lines[0].endswith(",dew_point,battery_mv") and lines[1].startswith("4,")
        assert lines[1].endswith(",7.5,3700")
    finally:
        record.LAYOUTS.pop(3, None)
        record.CURRENT = 2
    log.close()


def test_untimed_records_wait_for_this_boot_clock():
    d = support.tmpdir("archive")
    log = _log(d + "/q", n=2)
    log.store_record(record.encode(5000, _vals(2), 1, 0))  # older boot 1, epoch unknown
    log.store_record(record.encode(7000, _vals(3), 2, 0))  # this boot (2), before NTP
    log.store_record(record.encode(9000, _vals(4), 2, 0))
    log.commit()
    arc = _archive(log.reader(1), d + "/sd", boot=2, log=_quiet)
    arc.step()  # boot 1's record waits too: this boot may yet estimate its epoch
    assert arc.state == "waiting_clock" and arc.written == 2 and log.reader(1).seqn == 2
    arc.step()
    assert arc.written == 2
    arc.set_boot_epoch(2, T0 + 10 * HOUR)
    _drain(arc)
    assert arc.written == 5
    with open(d + "/sd/untimed.csv") as f:
        assert [ln.split(",")[0] for ln in f.read().split("\n")[1:-1]] == ["3"]
    with open(d + "/sd/2025/11/24.csv") as f:
        rows = f.read().split("\n")[1:-1]
    assert [r.split(",")[0] for r in rows] == ["1", "2", "4", "5"]
    assert rows[2].split(",")[1] == utc.iso(T0 + 10 * HOUR + 7000)
    log.close()


def test_steps_wait_for_the_interval_once_caught_up():
    d = support.tmpdir("archive")
    log = _log(d + "/q", n=20)
    arc = archive.Archive(log.reader(1), d + "/sd", batch=8, interval_ms=60000, log=_quiet)
    assert arc.step() == 8 and arc.step() == 8  # a backlog: no pause between batches
    assert arc.step() == 4  # caught up: the next step waits a minute
    log.store_record(record.encode(T0 + 20 * HOUR, _vals(20), 1, record.FLAG_UTC))
    log.commit()
    assert arc.step() == 0 and arc.written == 20
    arc._due_ms = time.ticks_ms()  # a minute later
    assert arc.step() == 1
    _check(d + "/sd", 21)
    log.close()


def test_no_card_until_the_card_is_there():
    d = support.tmpdir("archive")
    log = _log(d + "/q", n=5)
    support.rmtree(d + "/sd")  # no card: the mount point is missing
    arc = _archive(log.reader(1), d + "/sd", retry_ms=0, log=_quiet)
    assert arc.step() == 0 and arc.state == "no_card"
    assert arc.step() == 0
    support.makedirs(d + "/sd")
    assert arc.step() == 5 and arc.state == "idle"
    assert arc.card_errors == 0  # never mounted before: not a card error
    _check(d + "/sd", 5)
    log.close()


# ------------------------------------------------------------- FAT on the fake flash
class _BlockCard:
    """A block device that can be pulled out: every access raises EIO while absent;
    ``fail_at``: the n-th block write from now removes it (the write does not happen)."""

    def __init__(self, dev):
        self.dev = dev
        self.present = True
        self.fail_at = None
        self.writes = 0

    def readblocks(self, n, buf, off=0):
        if not self.present:
            raise OSError(5)
        return self.dev.readblocks(n, buf, off)

    def writeblocks(self, n, buf, off=None):
        if not self.present:
            raise OSError(5)
        self.writes += 1
        if self.fail_at is not None and self.writes >= self.fail_at:
            self.present = False
            self.fail_at = None
            raise OSError(5)
        return self.dev.writeblocks(n, buf, off)

    def ioctl(self, op, arg):
        if op in (1, 3) and not self.present:
            return -5
        return self.dev.ioctl(op, arg)


def _fat_card(block_size):
    import vfs

    from flash import FlashBlockDevice

    gc.collect()  # a 256 KB card per sweep step: keep the unix port's heap unfragmented
    dev = FlashBlockDevice(block_size=block_size, block_count=(256 << 10) // block_size,
                           nor=False)
    vfs.VfsFat.mkfs(dev)
    return _BlockCard(dev)


def _inserted(card):
    """The ``card`` callable of the archive: the block device while it is in the slot."""
    def dev():
        if not card.present:
            raise OSError(19, "ENODEV")
        return card
    return dev


def _unmount(base):
    import vfs

    try:
        vfs.umount(base)
    except OSError:
        pass


@support.micropython_only("vfs.VfsFat over a block device exists only in MicroPython")
def test_fat_card_removed_at_every_block_write():
    n = 24
    base = "/sd"
    d = support.tmpdir("archive-fat")
    # a clean run to count the block writes the archive makes
    card = _fat_card(512)
    log = _log(d + "/q0", n=n, step=HOUR * 3)
    arc = _archive(log.reader(1), base, card=_inserted(card), batch=5, retry_ms=0,
                          log=_quiet)
    _drain(arc)
    _check(base, n)
    total = card.writes
    _unmount(base)
    log.close()
    assert total > 10, total
    skipped = 0
    for k in range(1, total + 1):
        card = _fat_card(512)
        log = _log("%s/q%d" % (d, k), n=n, step=HOUR * 3)
        arc = _archive(log.reader(1), base, card=_inserted(card), batch=5,
                              retry_ms=0, log=_quiet)
        card.fail_at = card.writes + k
        for _ in range(30):
            arc.step()
            if not card.present:
                card.present = True  # re-inserted: the next step re-mounts it
        _drain(arc)
        _check(base, n)
        assert arc.card_errors == 1, (k, arc.stats())
        skipped += arc.skipped
        _unmount(base)
        log.close()
    assert skipped > 0  # some removals came between the flush and the cursor commit


@support.micropython_only("vfs.VfsFat over a block device exists only in MicroPython")
def test_fat_with_4096_byte_sectors():
    card = _fat_card(4096)  # FatFs here accepts 4096-byte sectors (ioctl 5), like the ESP32
    d = support.tmpdir("archive-fat4k")
    log = _log(d + "/q", n=50)
    arc = _archive(log.reader(1), "/sd", card=_inserted(card), batch=16, log=_quiet)
    _drain(arc)
    _check("/sd", 50)
    _unmount("/sd")
    log.close()
