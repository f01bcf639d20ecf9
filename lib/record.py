"""One stored weather sample: the record layouts shared by the firmware and the uploader.

A sample is one TSLog record packed with the ``struct`` format of a *layout*.
Layout v1 (``FORMAT``, little endian, no padding, ``SIZE`` = 39 bytes); ``FIELDS``
names its values in order::

    time_ms          int64  see "Time" below
    am2320_temp      f32    degC
    am2320_humidity  f32    %RH
    bmp180_temp      f32    degC
    bmp180_pressure  f32    Pa
    bmp180_altitude  f32    m
    mem_used         u32    bytes (gc.mem_alloc() when the sample was taken)
    mem_free         u32    bytes (gc.mem_free())
    boot             u16    boot counter (mod 65536) of the boot that took the sample
    flags            u8     FLAG_* bits (0..4) and the layout version (5..7)

A reading that failed is stored as NaN; the uploader sends it as JSON ``null``.

Layouts (schema evolution, A2WH's self-describing record types made compact):

* Every layout starts with ``time_ms`` (int64, offset 0) and ends with ``boot``
  (u16) and ``flags`` (u8, the last byte); the values in between are what the
  uploader sends, named by the layout.
* The top 3 bits of ``flags`` hold ``version - 1``: records written before
  versioning have them clear and are v1, so old queued records stay readable.
  ``decode`` picks the layout from that last byte (and checks the length, which
  TSLog keeps per record), so a record is never mis-decoded after an update.
* ``LAYOUTS`` maps version -> ``Layout``; a firmware update that adds a field
  registers a new ``Layout`` (never changes an old one) and makes it ``CURRENT``.
  The decoded ``flags`` value keeps the version bits, so a decoded tuple names
  its layout too (``layout_of``); test flags with ``&``.
* The TSLog queue is created with ``record_size=QUEUE_RECORD_SIZE`` (the largest
  layout plus room, no ``format``) and records are stored with
  ``store_record(encode(...))``: a slot keeps each record's own length, so v1 and
  later records share one folder.  A layout longer than a folder's record_size
  needs a new folder (see docs/console.md).

Time (the rule the firmware and ``sender`` both rely on):

* If the wall clock was set (NTP) when the sample was taken, ``time_ms`` is UTC
  milliseconds since 1970-01-01 and ``flags`` has ``FLAG_UTC``.  Use
  ``utc_ms()``, which corrects the ESP32's 2000-based ``time.time()``.
* Otherwise ``time_ms`` is milliseconds since that boot (a monotonic count kept
  by the firmware, not raw ``ticks_ms``, which wraps) and ``FLAG_UTC`` is clear.
  Such a record only gets a timestamp once the same boot learns the time: the
  firmware calls ``sender.set_boot_epoch(boot, utc_ms_at_boot)``.
* ``timestamp_of()`` never returns a time before ``MIN_VALID_UTC_MS`` (2020): a
  "year-2000" time means an unset clock and is treated as unknown.
"""

import struct
import time

from micropython import const

FLAG_UTC = const(1)
FLAG_MASK = const(0x1F)  # flag bits; the top 3 bits of the flags byte are the layout version
_VSHIFT = const(5)
MAX_VERSION = const(8)
I_TIME = const(0)
I_BOOT = const(-2)  # boot and flags are the last two values of every layout
I_FLAGS = const(-1)
QUEUE_RECORD_SIZE = const(48)  # TSLog record_size of the queue: v1 (39 B) plus room


class Layout:
    """One record layout: ``version`` (1..8), ``format`` (struct, little endian),
    ``fields`` (names in order: ``time_ms``, the values, ``boot``, ``flags``).

    ``values``: the names sent to the server (``fields[1:-2]``); ``floats``: per
    field, True for a float (``f``/``d``/``e``) and False for an integer.
    """

    def __init__(self, version, format, fields):
        if not 1 <= version <= MAX_VERSION:
            raise ValueError("layout version must be 1..%d" % MAX_VERSION)
        codes = [c for c in format if c not in "<>=!@ "]
        if (len(codes) != len(fields) or codes[0] != "q" or codes[-2:] != ["H", "B"]
                or tuple(fields[:1]) != ("time_ms",) or tuple(fields[-2:]) != ("boot", "flags")):
            raise ValueError("layout v%d: one code per field, time_ms q first, boot H and "
                             "flags B last" % version)
        self.version = version
        self.format = format
        self.fields = tuple(fields)
        self.values = self.fields[1:-2]
        self.floats = tuple(c in "fde" for c in codes)
        self.size = struct.calcsize(format)

    def __repr__(self):
        return "<Layout v%d %d B %s>" % (self.version, self.size, ",".join(self.values))


FORMAT = "<qfffffIIHB"
SIZE = struct.calcsize(FORMAT)
FIELDS = ("time_ms", "am2320_temp", "am2320_humidity", "bmp180_temp", "bmp180_pressure",
          "bmp180_altitude", "mem_used", "mem_free", "boot", "flags")
# The sensor/memory values of v1 sent to the server, in FIELDS order (indexes 1..7).
SENSOR_FIELDS = FIELDS[1:8]
FLOAT_FIELDS = 5  # v1: FIELDS[1:6] are floats, FIELDS[6:8] integers

V1 = Layout(1, FORMAT, FIELDS)
LAYOUTS = {1: V1}  # version -> Layout: every layout ever written (never remove one)
CURRENT = 1  # the version encode() writes by default (a firmware update may raise it)

MIN_VALID_UTC_MS = 1577836800000  # 2020-01-01T00:00:00Z: anything earlier is an unset clock
_Y2K_S = const(946684800)  # 1970 -> 2000 in seconds
_EPOCH_2000 = time.gmtime(0)[0] == 2000  # ESP32 (and most bare-metal ports) count from 2000


def register(layout, current=False):
    """Add ``layout`` to ``LAYOUTS`` (a version already there must be identical);
    ``current=True`` also makes it the layout ``encode`` writes."""
    global CURRENT
    old = LAYOUTS.get(layout.version)
    if old is not None and (old.format != layout.format or old.fields != layout.fields):
        raise ValueError("layout v%d is already registered differently" % layout.version)
    if layout.size > QUEUE_RECORD_SIZE:
        raise ValueError("layout v%d is %d bytes, more than QUEUE_RECORD_SIZE %d"
                         % (layout.version, layout.size, QUEUE_RECORD_SIZE))
    LAYOUTS[layout.version] = layout
    if current:
        CURRENT = layout.version
    return layout


def layout_of(rec):
    """The ``Layout`` of packed record bytes or of a decoded tuple (its last item is
    the flags byte, which carries the version); ValueError if unknown."""
    v = (rec[-1] >> _VSHIFT) + 1
    lay = LAYOUTS.get(v)
    if lay is None:
        raise ValueError("record layout v%d unknown to this firmware" % v)
    return lay


def encode(time_ms, values, boot, flags, version=None):
    """Pack one sample with layout ``version`` (default ``CURRENT``); ``values`` are
    that layout's ``values`` in order (v1: the 7 SENSOR_FIELDS)."""
    lay = LAYOUTS[version or CURRENT]
    if len(values) != len(lay.values):
        raise ValueError("layout v%d takes %d values, got %d" % (
            lay.version, len(lay.values), len(values)))
    flags = (flags & FLAG_MASK) | (lay.version - 1) << _VSHIFT
    return struct.pack(lay.format, time_ms, *values, boot, flags)


def decode(buf):
    """Unpack one record (exactly its bytes, as TSLog returns them) into a tuple in its
    layout's field order; ValueError if the layout is unknown or the length is wrong."""
    lay = layout_of(buf)
    if len(buf) != lay.size:
        raise ValueError("record of %d bytes, layout v%d is %d" % (len(buf), lay.version,
                                                                  lay.size))
    return struct.unpack(lay.format, buf)


def time_of(buf):
    """UTC ms of packed record bytes if stamped with the wall clock, else None (no
    boot epoch known here); reads 9 bytes, no tuple: for TSLog's ``time_of``."""
    if len(buf) < 12 or not buf[-1] & FLAG_UTC:
        return None
    t = struct.unpack_from("<q", buf, 0)[0]
    return t if t >= MIN_VALID_UTC_MS else None


def utc_ms():
    """UTC milliseconds since 1970 from the wall clock (whatever epoch the port uses)."""
    try:
        ns = time.time_ns()
        ms = ns // 1000000
    except AttributeError:  # pragma: no cover - ports without time_ns
        ms = int(time.time()) * 1000
    if _EPOCH_2000:
        ms += _Y2K_S * 1000
    return ms


def clock_is_set(now_utc_ms=None):
    """True when the wall clock holds a plausible time (after 2020)."""
    if now_utc_ms is None:
        now_utc_ms = utc_ms()
    return now_utc_ms >= MIN_VALID_UTC_MS


def timestamp_of(rec, boot_epochs=None):
    """UTC ms of a decoded record, or None if its time is unknown.

    ``boot_epochs`` maps a boot counter to the UTC ms at which that boot's
    monotonic clock read 0 (see the module docstring).
    """
    t = rec[I_TIME]
    if not rec[I_FLAGS] & FLAG_UTC:
        base = boot_epochs.get(rec[I_BOOT]) if boot_epochs else None
        if base is None:
            return None
        t = base + t
    return t if t >= MIN_VALID_UTC_MS else None


def _civil(days):
    """(year, month, day) of a count of days since 1970-01-01 (proleptic Gregorian)."""
    # H. Hinnant's days_from_civil inverse: exact for any date, independent of the port's epoch.
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (1 if m <= 2 else 0), m, d


_day = (None, "")  # (days since 1970, "YYYY-MM-DDT") of the last iso_utc() call


def iso_utc(ms):
    """``yyyy-MM-ddTHH:mm:ss.SSSZ`` (the TimeBase format) of UTC ms since 1970."""
    global _day
    s, milli = divmod(ms, 1000)
    days, sod = divmod(s, 86400)
    day = _day  # one tuple, swapped whole: safe when two threads format times
    if day[0] != days:
        y, mo, d = _civil(days)
        day = _day = (days, "%04d-%02d-%02dT" % (y, mo, d))
    return "%s%02d:%02d:%02d.%03dZ" % (day[1], sod // 3600, (sod // 60) % 60, sod % 60, milli)


# ---------------------------------------------------------------- CSV (console, archive)
def csv_num(v, is_float):
    """A value as CSV text: ``%.7g`` for floats (NaN, a failed reading: empty), ``%d``."""
    if not is_float:
        return "%d" % v
    if v != v:
        return ""
    return "%.7g" % v


def csv_columns():
    """CSV columns: seq, utc, the raw time_ms/boot/flags, layout, then the union of every
    registered layout's values (a record leaves other layouts' columns empty)."""
    cols = ["seq", "utc", "time_ms", "boot", "flags", "layout"]
    for v in sorted(LAYOUTS):
        for name in LAYOUTS[v].values:
            if name not in cols:
                cols.append(name)
    return cols


def csv_line(seqn, rec, cols, boot_epochs=None):
    """One CSV line (no newline) of decoded record ``rec`` for the columns ``cols``; a
    value whose name is not in ``cols`` is left out, a column the layout lacks is empty."""
    lay = layout_of(rec)
    ts = timestamp_of(rec, boot_epochs)
    out = ["%d" % seqn, iso_utc(ts) if ts is not None else "", "%d" % rec[0],
           "%d" % rec[-2], "%d" % (rec[-1] & FLAG_MASK), "%d" % lay.version]
    names = lay.fields
    floats = lay.floats
    n = len(names) - 3  # values of this layout
    if len(cols) == 6 + n:  # the usual case: the columns are exactly this layout's values
        for i in range(1, n + 1):
            if cols[5 + i] != names[i]:
                break
        else:
            for i in range(1, n + 1):
                out.append(csv_num(rec[i], floats[i]))
            return ",".join(out)
    for c in range(6, len(cols)):
        name = cols[c]
        cell = ""
        for i in range(1, len(names) - 2):
            if names[i] == name:
                cell = csv_num(rec[i], floats[i])
                break
        out.append(cell)
    return ",".join(out)
