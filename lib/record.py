"""One stored weather sample: the record layouts shared by the firmware and the uploader.

A sample is one TSLog record packed with the ``struct`` format of a *layout*. The
firmware writes layout v2 (``CURRENT``), integers at the sensors' own resolution, so a
round trip through the queue changes no uploaded number, and the queue's codec
(``CODEC``, lib/tscodec.py) packs a record into about 3 bytes of flash::

    time_ms          int64  see "Time" below
    am2320_temp      int16  0.1 degC          (null: FLAG_NO_AM)
    am2320_humidity  uint16 0.1 %RH           (null: FLAG_NO_AM)
    bmp180_temp      int16  0.1 degC          (null: FLAG_NO_BMP)
    bmp180_pressure  int32  Pa                (null: FLAG_NO_BMP)
    mem_used         uint32 bytes (gc.mem_alloc() right after the slot's gc.collect())
    heap             uint32 bytes (mem_alloc + mem_free: constant on a board)
    boot             uint16 boot counter (mod 65536) of the boot that took the sample
    flags            uint8  FLAG_* bits (0..4) and the layout version (5..7)

What the uploader sends for a v2 record (``Layout.values``, in this order): the four
readings with their decimals (``21.5``, ``48.2``, ``21.8``, ``100231``),
``bmp180_altitude`` (m, derived from the pressure exactly as the BMP180 driver does,
``bmp180.altitude_m``), ``mem_used`` and ``mem_free`` (= heap - mem_used). A reading that
failed (or an AM2320 resting inside its 2 s, ``FLAG_AM_REST``) is stored with its null
flag set and sent as JSON ``null``.

Layout v1 (39 bytes: the five readings as float32, ``mem_used``, ``mem_free``) was
written by firmware 1.0; an update moves its queue into the current one and turns each
v1 record into v2 (lib/oldqueue.py), so this firmware reads v2 only.

Layouts (schema evolution, A2WH's self-describing record types made compact):

* Every layout starts with ``time_ms`` (int64, offset 0) and ends with ``boot``
  (u16) and ``flags`` (u8, the last byte); the values in between are named by the
  layout.
* The top 3 bits of ``flags`` hold ``version - 1`` (v1 records have them clear).
  ``decode`` picks the layout from that last byte (and checks the length), so a
  record is never mis-decoded after an update.
* ``LAYOUTS`` maps version -> ``Layout``; a firmware update that adds a field
  registers a new ``Layout`` (never changes an old one) and makes it ``CURRENT``;
  ``register`` also teaches the queue's codec the layout. The decoded ``flags`` value
  keeps the version bits, so a decoded tuple names its layout too (``layout_of``).
* The TSLog queue is created with ``record_size=QUEUE_RECORD_SIZE`` (the largest
  layout plus room, no ``format``) and ``codec=CODEC``; records are stored with
  ``store_record(encode(...))``.

Time (the rule the firmware and ``sender`` both rely on):

* If the wall clock was set (NTP) when the sample was taken, ``time_ms`` is UTC
  milliseconds since 1970-01-01 and ``flags`` has ``FLAG_UTC``.  Use
  ``utc.now_ms()``, which corrects the ESP32's 2000-based ``time.time()``.
* Otherwise ``time_ms`` is milliseconds since that boot (a monotonic count kept
  by the firmware, not raw ``ticks_ms``, which wraps) and ``FLAG_UTC`` is clear.
  Such a record only gets a timestamp once the same boot learns the time: the
  firmware calls ``sender.set_boot_epoch(boot, utc_ms_at_boot)``.
* ``timestamp_of()`` never returns a time before ``utc.MIN_VALID_MS`` (2020): a
  "year-2000" time means an unset clock and is treated as unknown.
"""

import struct

import tscodec
import utc
from micropython import const

FLAG_UTC = const(1)
FLAG_NO_AM = const(2)  # no AM2320 reading in this record (failed, or resting)
FLAG_NO_BMP = const(4)  # no BMP180 reading in this record
FLAG_AM_REST = const(8)  # the AM2320 was inside its 2 s rest: not read (FLAG_NO_AM set too)
FLAG_MASK = const(0x1F)  # flag bits; the top 3 bits of the flags byte are the layout version
_VSHIFT = const(5)
MAX_VERSION = const(8)
I_TIME = const(0)
I_BOOT = const(-2)  # boot and flags are the last two values of every layout
I_FLAGS = const(-1)
QUEUE_RECORD_SIZE = const(48)  # TSLog record_size of the queue: the largest layout plus room
SEA_LEVEL_PA = const(101325)  # the pressure bmp180_altitude is reckoned from

# How a sent value is made from a record (Layout.texts): an integer field with
# decimals, an altitude from a pressure field, a difference of two fields.
_FIXED = const(0)
_ALT = const(1)
_DIFF = const(2)


class Layout:
    """One record layout: ``version`` (1..8), ``format`` (struct, little endian, integer
    fields), ``fields`` (names in order: ``time_ms``, the values, ``boot``, ``flags``).

    Optional, per stored field name: ``decimals`` (an integer in units of
    10**-decimals), ``nulls`` (the flag bit that marks it null), ``rare`` (names that
    seldom change: one bit a record in the queue), ``derived`` ({sent name: (kind,
    source names)}, see ``V2``) and ``send`` (the sent names in order; default: every
    value field). ``values``: the names sent to the server.
    """

    def __init__(self, version, format, fields, decimals=None, nulls=None, rare=(),
                 derived=None, send=None):
        codes = [c for c in format if c not in "<>=!@ "]
        if (not 1 <= version <= MAX_VERSION or len(codes) != len(fields)
                or codes[0] != "q" or codes[-2:] != ["H", "B"] or fields[0] != "time_ms"
                or tuple(fields[-2:]) != ("boot", "flags")):
            raise ValueError("layout v%d: time_ms q first, boot H, flags B last" % version)
        self.version = version
        self.format = format
        self.fields = tuple(fields)
        self.size = struct.calcsize(format)
        self.values = tuple(send) if send else self.fields[1:-2]
        decimals = decimals or {}
        nulls = nulls or {}
        derived = derived or {}
        ix = self.fields.index
        sent = []  # per sent value: (how, field index, decimals or 2nd field index, null bit)
        for name in self.values:
            how, src = derived.get(name, (_FIXED, (name,)))
            a = ix(src[0])
            b = decimals.get(name, 0) if how == _FIXED else ix(src[1]) if len(src) > 1 else 0
            sent.append((how, a, b, nulls.get(src[0], 0)))
        self._sent = tuple(sent)
        self.nulls = tuple(nulls.get(f, 0) for f in self.fields)
        self.kinds = "t" + "".join("r" if f in rare else "d" for f in self.fields[1:-2]) + "rF"

    def texts(self, rec):
        """Generator of (name, text) of the sent values of decoded record ``rec``; text
        None for a null (a failed reading: JSON null, an empty CSV cell)."""
        flags = rec[-1]
        for j in range(len(self._sent)):
            how, a, b, null = self._sent[j]
            v = rec[a]
            if flags & null:
                t = None
            elif how == _DIFF:
                t = "%d" % (v - rec[b])
            elif how == _ALT:
                t = "%.7g" % altitude_m(v) if v > 0 else None
            elif b:
                q, r = divmod(abs(v), 10 ** b)
                t = "%s%d.%0*d" % ("-" if v < 0 else "", q, b, r)
            else:
                t = "%d" % v
            yield self.values[j], t


def altitude_m(pressure_pa, sea_level_pa=SEA_LEVEL_PA):
    """Altitude in m of a pressure in Pa: the BMP180 driver's formula, term for term
    (``bmp180.altitude_m``; a test holds them equal), so the value sent is the one the
    driver returned."""
    return 44330.0 * (1.0 - (pressure_pa / sea_level_pa) ** (1 / 5.255))


# Names in lists, not tuples: a tuple of constants is stored whole in the .mpy, each of its
# names one more time in the heap (~30 B each); a list's names are the module's own.
V2 = Layout(2, "<qhHhiIIHB",
            ["time_ms", "am2320_temp", "am2320_humidity", "bmp180_temp", "bmp180_pressure",
             "mem_used", "heap", "boot", "flags"],
            decimals={"am2320_temp": 1, "am2320_humidity": 1, "bmp180_temp": 1},
            nulls={"am2320_temp": FLAG_NO_AM, "am2320_humidity": FLAG_NO_AM,
                   "bmp180_temp": FLAG_NO_BMP, "bmp180_pressure": FLAG_NO_BMP},
            rare=["heap"],
            derived={"bmp180_altitude": (_ALT, ["bmp180_pressure"]),
                     "mem_free": (_DIFF, ["heap", "mem_used"])},
            send=["am2320_temp", "am2320_humidity", "bmp180_temp", "bmp180_pressure",
                  "bmp180_altitude", "mem_used", "mem_free"])
# The values sent to the server, in order (what firmware 1.0's layout v1 sent too).
SENSOR_FIELDS = V2.values
LAYOUTS = {}  # version -> Layout: every layout ever written (never remove one)
CURRENT = 2  # the version encode() writes by default (a firmware update may raise it)
# The queue's codec (a name of its own: a queue written with another codec is refused).
CODEC = tscodec.Delta({}, select=lambda flags: (flags >> _VSHIFT) + 1, name="rec1")


def open_queue(where, **kw):
    """The firmware's queue (a folder or a partition) as a TSLog: records up to
    ``QUEUE_RECORD_SIZE`` coded by ``CODEC``, with the time index. ``kw``: more TSLog
    arguments (``bucket_size``, ``commit_delta``, ``nreaders``, ``recreate``)."""
    import tslog

    return tslog.TSLog(where, record_size=QUEUE_RECORD_SIZE, codec=CODEC, time_of=time_of, **kw)


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
    if old is None:
        CODEC.add(layout.version, layout.format, layout.kinds, layout.nulls)
    LAYOUTS[layout.version] = layout
    if current:
        CURRENT = layout.version
    return layout


register(V2)


def layout_of(rec):
    """The ``Layout`` of packed record bytes or of a decoded tuple (its last item is
    the flags byte, which carries the version); ValueError if unknown."""
    v = (rec[-1] >> _VSHIFT) + 1
    lay = LAYOUTS.get(v)
    if lay is None:
        raise ValueError("record layout v%d unknown to this firmware" % v)
    return lay


def encode(time_ms, values, boot, flags, version=None):
    """Pack one sample with layout ``version`` (default ``CURRENT``); ``values`` are its
    stored value fields in order (v2: am2320_temp, am2320_humidity, bmp180_temp,
    bmp180_pressure, mem_used, heap), or a dict of them by field name (the sampler's: a
    field it lacks is 0). A field nulled by ``flags`` is stored as 0 whatever is given."""
    lay = LAYOUTS[version or CURRENT]
    n = len(lay.fields) - 3
    if isinstance(values, dict):
        values = [values.get(name, 0) for name in lay.fields[1:-2]]
    elif len(values) != n:
        raise ValueError("layout v%d takes %d values, got %d" % (lay.version, n, len(values)))
    flags = (flags & FLAG_MASK) | (lay.version - 1) << _VSHIFT
    for b in lay.nulls:
        if flags & b:
            values = [0 if flags & lay.nulls[i + 1] else values[i] for i in range(n)]
            break
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
    return t if t >= utc.MIN_VALID_MS else None


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
    return t if t >= utc.MIN_VALID_MS else None


def waits(rec, epochs, boot):
    """True if decoded record ``rec``, which has no time yet (``timestamp_of`` None), may
    still get one: it is of boot ``boot`` (this boot; None: not known), or this boot has
    not learned its epoch yet (when it does, each earlier boot that never learned one gets
    an estimate: ``clock.Epochs``).  False: its time will never be known."""
    return boot is None or rec[I_BOOT] == boot or boot not in epochs


# What an uploaded record whose time is an estimate carries (``clock.Epochs``).
ESTIMATED = ',"time_estimated":true'


def json_message(prefix, seq, rec, ts, estimated, lead="", tail=""):
    """The uplinks' JSON message of decoded record ``rec`` (the same from ``sender`` and
    ``mqtt_uplink``), between ``lead`` and ``tail``: ``prefix`` (``{"$type":...,"symbol":
    ...,"timestamp":"``), the UTC time ``ts`` (ms), ``seq``, the sent values of the record's
    own layout, and ``ESTIMATED`` when its boot is in ``estimated`` (the boots whose epoch
    is an estimate) and it has no wall-clock time of its own."""
    parts = [lead, prefix, utc.iso(ts), '","seq":%d' % seq]
    for name, text in layout_of(rec).texts(rec):
        parts.append(',"%s":%s' % (name, "null" if text is None else text))
    if rec[I_BOOT] in estimated and not rec[I_FLAGS] & FLAG_UTC:
        parts.append(ESTIMATED)
    parts.append("}" + tail)
    return "".join(parts)


def json_bound(prefix):
    """An upper bound of the length of any ``json_message`` with ``prefix``, over every
    registered layout (a batch is capped by bytes with it, without reading ahead: a record
    read but not sent must not be committed with the reader's cursor)."""
    most = 0
    for lay in LAYOUTS.values():
        n = len(prefix) + 44 + len(ESTIMATED)  # timestamp, seq, "}"
        for name in lay.values:
            n += len(name) + 18  # ,"name": and the longest "%.7g" / u32 text
        most = max(most, n)
    return most
