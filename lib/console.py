"""Field console: look at the logged data on the board from the REPL (USB serial or WebREPL).

    >>> import console
    >>> console.help()
    >>> console.status()
    >>> console.tail(5)
    >>> console.between("2026-11-24T12:00:00Z", "2026-11-24T13:00:00Z")
    >>> console.dump()                      # every record as CSV (tools/pull saves it)
    >>> console.erase(confirm="ERASE")

Every command prints human-readable lines and returns data for scripts (``status`` a
dict, ``tail`` a list of ``(seqn, record)``, the others a count).  Long outputs are
streamed one record at a time (``writer`` is called once per line), never collected in
RAM, so a week of records is listed within a 64 KB heap.

Live state comes from the running firmware, ``app.board`` (its queue, lock, sender,
Wi-Fi, clock, sampler and boot guard; importing ``app`` starts nothing). The firmware
never imports the console, so the console's code takes no heap until someone uses it.
``attach(log=..., lock=..., sender=..., wifi=..., clock=..., sampler=..., guard=...,
version=..., config=...)`` shows the parts given in place of the board's (tests, tools;
every part is optional).  Without a log (no firmware running, or ``tools/pull --image``)
the console opens the TSLog folder itself (``tslog_dir`` of ``config.json``, default
``data/q``) with the parameters written in its ``meta`` file, read-only in effect: it
never commits a reader cursor.  ``lock`` (the lock the sampler and uploader hold around
TSLog calls; the console's own without one) is taken around each single log access,
never across a printed line.

Times: ``between`` and ``dump(since=, until=)`` take UTC strings
``"YYYY-MM-DDTHH:MM:SSZ"`` (also ``"YYYY-MM-DD"``, ``"YYYY-MM-DDTHH:MM"``, fractions of a
second) or Unix epoch seconds (since 1970, also on the ESP32, whose ``time.time()`` counts
from 2000: use ``utc.now_ms() // 1000`` for "now").  The interval is half open
``[t0, t1)``.  Only records stamped with the wall clock have a time to select on:
records taken before NTP set the clock show in ``tail`` and ``dump`` but not in
``between``.  With the TSLog time index (``TSLog.between``) an interval reads only the
buckets that overlap it; otherwise the console scans the log.
"""

import _thread
import gc
import os
import time

import record
import recordcsv
import tslog
import utc

_parts = {}  # what was attached (see attach()), in place of the running board's parts
# part -> the running firmware's name for it (app.App's; the version is app's)
_BOARD = {"log": "queue", "place": "queue_place", "config": "cfg", "version": "VERSION"}
_own = {}  # the log the console opened itself (no log attached or running)
_own_lock = _thread.allocate_lock()  # around log calls when nothing shares the log
_NO_END = 1 << 62  # "no upper bound" in UTC ms
_DEFAULT_DIR = "data/q"
COMMANDS = (
    ("status()", "firmware, uptime, boot, clock, Wi-Fi, sensors, log, flash, heap, uploader"),
    ("tail(n=10)", "the last n records, decoded, with UTC timestamps"),
    ("between(t0, t1)", "records with t0 <= time < t1 (UTC 'YYYY-MM-DDTHH:MM:SSZ' or epoch s)"),
    ("dump(writer=print)", "every record as CSV with a header line (since=, until= optional)"),
    ("erase(confirm='ERASE')", "empty the log (sequence numbers continue); asks for the word"),
    ("help()", "this list"),
)


# ---------------------------------------------------------------- registry
def attach(**parts):
    """Show these live objects in place of the running board's: ``log`` (TSLog), ``lock``,
    ``sender``, ``wifi``, ``clock``, ``sampler``, ``guard`` (bootguard), ``version`` (str),
    ``dead_path`` (dead-letter file), ``config`` (settings dict).  Call again to add."""
    _parts.update(parts)


def _part(name):
    """Part ``name``: the attached one; with nothing attached, the running firmware's."""
    if _parts:
        return _parts.get(name)
    import app  # the firmware (it never imports the console; importing it starts nothing)

    if app.board is None:
        return None
    return getattr(app if name == "version" else app.board, _BOARD.get(name, name), None)


def detach():
    """Forget every attached part (tests; a log the console opened is closed)."""
    own = _own.pop("log", None)
    if own is not None:
        own.close()
    _parts.clear()


def _tslog_dir():
    """``tslog_dir`` of the attached config, else of ``config.json``, else the default."""
    cfg = _part("config")
    if cfg is None:
        try:
            import json

            with open("config.json") as f:
                cfg = json.load(f)
        except (OSError, ValueError):
            cfg = {}
    folder = cfg.get("tslog_dir") if isinstance(cfg, dict) else None
    return folder if isinstance(folder, str) and folder else _DEFAULT_DIR


def open_log(folder=None):
    """Open an existing TSLog folder with the parameters of its ``meta`` file (no
    format/record size guess); None if there is no log there."""
    if folder is None:
        folder = _tslog_dir()
    try:
        with open(folder + "/meta") as f:
            meta = f.read().strip().split(" ", 6)  # tslog2 size buckets readers frame codec
        if meta[0] != "tslog2":
            return None
        bucket_size, nreaders = int(meta[2]), int(meta[3])
        if meta[5] == record.CODEC.name:
            return record.open_queue(folder, bucket_size=bucket_size, nreaders=nreaders)
        return tslog.TSLog(folder, format=(meta[6:] or [""])[0], record_size=int(meta[1]),
                           bucket_size=bucket_size, nreaders=nreaders, time_of=record.time_of)
    except (OSError, ValueError, IndexError):  # no log there, or a meta file it cannot use
        return None


def _log():
    log = _part("log")
    if log is None:
        log = _own.get("log")
        if log is None:
            log = _own["log"] = open_log()
    return log


def _lock():
    return _part("lock") or _own_lock


# ---------------------------------------------------------------- time
def utc_ms_of(t):
    """UTC ms since 1970 of ``t``: epoch seconds (int/float) or an ISO-8601 UTC string;
    None stays None.  ValueError names what is wrong."""
    if t is None:
        return None
    if isinstance(t, (int, float)):
        return int(t * 1000)
    s = t.strip()
    if s[-1:] in "Zz":
        s = s[:-1]
    date, _, clock = s.replace(" ", "T").partition("T")
    try:
        y, mo, d = [int(x) for x in date.split("-")]
        hh = mm = 0
        sec = 0.0
        if clock:
            hms = clock.split(":")
            hh = int(hms[0])
            mm = int(hms[1]) if len(hms) > 1 else 0
            sec = float(hms[2]) if len(hms) > 2 else 0.0
            if len(hms) > 3:
                raise ValueError
    except (ValueError, IndexError):
        raise ValueError("time %r: use 'YYYY-MM-DDTHH:MM:SSZ' (UTC) or epoch seconds" % t)
    if not (1 <= mo <= 12 and 1 <= d <= 31 and 0 <= hh < 24 and 0 <= mm < 60
            and 0 <= sec < 61):
        raise ValueError("time %r is out of range" % t)
    return ((utc.days_from_civil(y, mo, d) * 24 + hh) * 60 + mm) * 60000 + int(sec * 1000 + 0.5)


def _epochs():
    """Boot epochs known on this board (to time records taken before NTP)."""
    out = {}
    clock = _part("clock")
    book = getattr(clock, "epochs", None)  # clock.Epochs: kept across boots, estimates too
    if book is not None:
        out.update(book.epochs)
    guard = _part("guard")
    base = getattr(clock, "boot_epoch_ms", None)
    if base is not None and guard is not None:
        out[guard.boot & 0xFFFF] = base
    return out


# ---------------------------------------------------------------- reading
def _scan(log, first_seqn):
    """(seqn, raw) of every committed record from ``first_seqn`` on (no reader's cursor
    moves)."""
    return _locked(log.records, max(first_seqn, 1))


def _locked(make, *args):
    """The generator ``make(*args)``, created and stepped under the lock (never held while
    the caller prints)."""
    with _lock():
        gen = make(*args)
    while True:
        with _lock():
            try:
                item = next(gen)
            except StopIteration:
                return
        yield item


def _raw_between(log, t0, t1):
    """(seqn, raw) of the records with ``t0 <= time < t1`` (UTC ms)."""
    if log.time_of is not None:
        yield from _locked(log.between, t0, t1)
        return
    for seqn, raw in _scan(log, 0):  # no time index: a full scan
        t = record.time_of(raw)
        if t is not None and t0 <= t < t1:
            yield seqn, raw


def _raw_tail(log, n):
    return _locked(log.tail, n)


def _source(log, t0, t1):
    """(seqn, raw) of every record, or of those with ``t0 <= time < t1`` (either bound
    may be None) through the time index."""
    if t0 is None and t1 is None:
        return _scan(log, 0)
    a = utc_ms_of(t0)
    b = utc_ms_of(t1)
    return _raw_between(log, 0 if a is None else a, _NO_END if b is None else b)


def records(t0=None, t1=None):
    """Generator of ``(seqn, decoded record)`` for scripts: every record, or those with
    ``t0 <= time < t1`` when a bound is given.  Undecodable records are skipped."""
    log = _log()
    if log is None:
        return
    for seqn, raw in _source(log, t0, t1):
        try:
            yield seqn, record.decode(raw)
        except ValueError:
            pass


# ---------------------------------------------------------------- formatting
def line_of(seqn, rec, epochs=None):
    """One human-readable line of a decoded record."""
    lay = record.layout_of(rec)
    ts = record.timestamp_of(rec, epochs)
    if ts is not None:
        when = utc.iso(ts)
    else:
        when = "boot %d +%d.%03ds (no clock)" % (rec[-2], rec[0] // 1000, rec[0] % 1000)
    parts = ["%7d  %s " % (seqn, when)]
    for name, text in lay.texts(rec):
        parts.append(" %s=%s" % (name, "-" if text is None else text))
    parts.append(" boot=%d" % rec[-2])
    if lay.version != 1:
        parts.append(" v%d" % lay.version)
    return "".join(parts)


def _nolog():
    print("console: no TSLog (nothing attached, no %s/meta)" % _tslog_dir())


# ---------------------------------------------------------------- commands
def tail(n=10):
    """Print the last ``n`` records; returns them as a list of ``(seqn, record)``."""
    log = _log()
    if log is None:
        _nolog()
        return []
    epochs = _epochs()
    out = []
    for seqn, raw in _raw_tail(log, n):
        try:
            rec = record.decode(raw)
        except ValueError as e:
            print("%7d  undecodable: %s" % (seqn, e))
            continue
        print(line_of(seqn, rec, epochs))
        out.append((seqn, rec))
    if not out:
        print("(the log is empty)")
    return out


def between(t0, t1, writer=print):
    """Print the records with ``t0 <= time < t1`` (UTC strings or epoch seconds; None =
    open end), one line each through ``writer``; returns how many."""
    a = utc_ms_of(t0)
    b = utc_ms_of(t1)
    log = _log()
    if log is None:
        _nolog()
        return 0
    epochs = _epochs()
    count = 0
    for seqn, raw in _raw_between(log, 0 if a is None else a, _NO_END if b is None else b):
        try:
            writer(line_of(seqn, record.decode(raw), epochs))
        except ValueError as e:
            writer("%7d  undecodable: %s" % (seqn, e))
        count += 1
    print("(%d record%s)" % (count, "" if count == 1 else "s"))
    return count


def dump(writer=print, since=None, until=None):
    """Every record as CSV: a header line, then one line per record through ``writer``
    (``since``/``until``: an optional time interval as for ``between``); returns the
    number of records written."""
    log = _log()
    if log is None:
        _nolog()
        return 0
    cols = recordcsv.csv_columns()
    writer(",".join(cols))
    epochs = _epochs()
    count = 0
    for seqn, raw in _source(log, since, until):
        try:
            writer(recordcsv.csv_line(seqn, record.decode(raw), cols, epochs))
        except ValueError:
            continue  # a layout this firmware does not know: not in the CSV
        count += 1
        if count & 1023 == 0:
            gc.collect()  # keeps the heap unfragmented while streaming
    return count


def erase(confirm=None):
    """Empty the log if ``confirm == "ERASE"``; otherwise explain and do nothing.

    Records not yet uploaded are lost.  Sequence numbers continue after the erase (the
    server deduplicates on them), and every reader's cursor moves to the end."""
    log = _log()
    if log is None:
        _nolog()
        return False
    if confirm != "ERASE":
        last, _, lag = log.stats()
        print("erase() deletes every record on flash, %d of them not uploaded yet." % lag)
        print("Sequence numbers continue after it. To do it: console.erase(confirm=\"ERASE\")")
        return False
    with _lock():
        log.erase()
    print("log erased; the next record gets seqn %d" % (log.last_seqn + 1))
    return True


def help():  # noqa: A001 - the REPL command the issue asks for
    """List the commands."""
    print("console commands (import console; console.<name>):")
    for sig, what in COMMANDS:
        print("  %-24s %s" % (sig, what))
    return [c[0] for c in COMMANDS]


# ---------------------------------------------------------------- status
def _g(obj, name, default=None):
    if obj is None:
        return default
    v = getattr(obj, name, default)
    if callable(v):
        return v()  # type: ignore
    return v


def _free_flash(log):
    try:
        st = os.statvfs(log.folder)
        return st[0] * st[3]
    except (OSError, AttributeError):
        return None


def _rate_per_day(log):
    """Records per day: from the sampler's interval, else from the log's last records."""
    smp = _part("sampler")
    iv = getattr(smp, "interval_ms", None)
    if iv:
        return 86400000 // iv
    t_old = t_last = s_old = s_last = 0
    for seqn, raw in _raw_tail(log, 101):
        t = record.time_of(raw)
        if t is not None:
            if not t_old:
                t_old, s_old = t, seqn
            t_last, s_last = t, seqn
    if t_last <= t_old:
        return None
    return (s_last - s_old) * 86400000 // (t_last - t_old)


def status():
    """Print the board's state; returns it as a dict."""
    st = {"version": _part("version")}
    clock = _part("clock")
    guard = _part("guard")
    up = _g(clock, "mono_ms")
    st["uptime_s"] = (up if up is not None else time.ticks_ms()) // 1000  # type: ignore
    st["boot"] = _g(guard, "boot")
    st["reset_cause"] = _g(guard, "cause")
    now = utc.now_ms()
    st["clock_set"] = bool(_g(clock, "is_set", now >= utc.MIN_VALID_MS))
    st["utc"] = utc.iso(now) if st["clock_set"] else None
    wifi = _part("wifi")
    st["wifi"] = _g(wifi, "state")
    st["rssi"] = _g(wifi, "rssi")
    smp = _part("sampler")
    st["sampler"] = _g(smp, "stats")
    log = _log()
    st["last_record"] = None
    if log is not None:
        with _lock():
            last, _, lag = log.stats()
            lags = []
            for n in range(log.nreaders):
                lags.append(last - log.reader(n).seqn)
            st["buckets"] = log.buckets()
            st["free_records"] = log.free()
            held, used, total = log.usage()
        st["queue"] = _part("place") or log.folder or "partition"
        st["bytes_per_record"] = used / held if held else None
        st["queue_bytes"] = total
        st["last_seqn"] = last
        st["reader_lag"] = lags
        st["corrupt"] = log.corrupt
        st["dropped"] = log.dropped
        for seqn, raw in _raw_tail(log, 1):
            try:
                st["last_record"] = (seqn, record.decode(raw))
            except ValueError:
                pass
        st["flash_free_bytes"] = _free_flash(log)
        rate = _rate_per_day(log)
        st["records_per_day"] = rate
        st["days_until_full"] = (st["free_records"] / rate) if rate else None
    gc.collect()
    st["heap_free"] = gc.mem_free()
    snd = _part("sender")
    st["uploader"] = _g(snd, "stats")
    dead = _part("dead_path") or "data/dead.log"
    try:
        st["dead_letter_bytes"] = os.stat(dead)[6]
    except OSError:
        st["dead_letter_bytes"] = 0
    _print_status(st)
    return st


def _print_status(st):
    p = print
    p("firmware   %s, up %d s, boot %s (reset cause: %s)" % (
        st["version"] or "?", st["uptime_s"], st["boot"], st["reset_cause"]))
    p("clock      %s" % (st["utc"] if st["clock_set"] else "not set (waiting for NTP)"))
    p("wifi       %s, RSSI %s dBm" % (st["wifi"], st["rssi"]))
    smp = st["sampler"]
    if smp:
        p("sampler    taken %d, stored %d, missed %d, all-failed %d; fails: am2320 %d, "
          "bmp180 %d" % (smp.get("samples", 0), smp.get("stored", 0), smp.get("missed", 0),
                         smp.get("sensor_failed", 0), smp.get("am2320_fails", 0),
                         smp.get("bmp180_fails", 0)))
    if st["last_record"]:
        p("last       " + line_of(st["last_record"][0], st["last_record"][1], _epochs()))
    if "last_seqn" in st:
        p("log        last seqn %d, %d bucket(s), reader lag %s, corrupt %d, dropped %d" % (
            st["last_seqn"], st["buckets"], st["reader_lag"], st["corrupt"], st["dropped"]))
        days = st["days_until_full"]
        bpr = st["bytes_per_record"]
        p("queue      %s, %d bytes%s" % (st["queue"], st["queue_bytes"], (
            ", %.1f bytes a record: %.1f days in all at %d records/day" % (
                bpr, st["queue_bytes"] / bpr / st["records_per_day"], st["records_per_day"])
            if bpr and st["records_per_day"] else "")))
        p("flash      %s bytes free = %d records%s" % (
            st["flash_free_bytes"], st["free_records"],
            ", %.1f days at %d records/day" % (days, st["records_per_day"])
            if days is not None else ""))
    else:
        _nolog()
    p("heap       %d bytes free" % st["heap_free"])
    up = st["uploader"]
    if up:
        ago = ""
        if up.get("last_ok_ms") is not None:
            ago = ", last success %d s ago" % (
                time.ticks_diff(time.ticks_ms(), up["last_ok_ms"]) // 1000)
        p("uploader   %s%s, sent %d, backoff %d ms, dead letters %d (%d bytes on flash)%s" % (
            up.get("state"), ago, up.get("sent", 0), up.get("backoff_ms", 0),
            up.get("dead", 0), st["dead_letter_bytes"],
            ", last error: %s" % up["last_error"] if up.get("last_error") else ""))
    else:
        p("uploader   not running; dead letters %d bytes on flash" % st["dead_letter_bytes"])
