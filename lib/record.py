"""One stored weather sample: the record layout shared by the firmware and the uploader.

A sample is one fixed-size TSLog record packed with ``FORMAT`` (little endian, no
padding, ``SIZE`` = 39 bytes); ``FIELDS`` names the values in order::

    time_ms          int64  see "Time" below
    am2320_temp      f32    degC
    am2320_humidity  f32    %RH
    bmp180_temp      f32    degC
    bmp180_pressure  f32    Pa
    bmp180_altitude  f32    m
    mem_used         u32    bytes (gc.mem_alloc() when the sample was taken)
    mem_free         u32    bytes (gc.mem_free())
    boot             u16    boot counter (mod 65536) of the boot that took the sample
    flags            u8     FLAG_* bits

A reading that failed is stored as NaN; the uploader sends it as JSON ``null``.

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

FORMAT = "<qfffffIIHB"
SIZE = struct.calcsize(FORMAT)
FIELDS = ("time_ms", "am2320_temp", "am2320_humidity", "bmp180_temp", "bmp180_pressure",
          "bmp180_altitude", "mem_used", "mem_free", "boot", "flags")
# The sensor/memory values sent to the server, in FIELDS order (indexes 1..7).
SENSOR_FIELDS = FIELDS[1:8]
FLOAT_FIELDS = 5  # FIELDS[1:6] are floats, FIELDS[6:8] integers

FLAG_UTC = const(1)
I_TIME = const(0)
I_BOOT = const(8)
I_FLAGS = const(9)

MIN_VALID_UTC_MS = 1577836800000  # 2020-01-01T00:00:00Z: anything earlier is an unset clock
_Y2K_S = const(946684800)  # 1970 -> 2000 in seconds
_EPOCH_2000 = time.gmtime(0)[0] == 2000  # ESP32 (and most bare-metal ports) count from 2000


def encode(time_ms, values, boot, flags):
    """Pack one sample to ``SIZE`` bytes; ``values`` are the 7 SENSOR_FIELDS in order."""
    return struct.pack(FORMAT, time_ms, values[0], values[1], values[2], values[3],
                       values[4], values[5], values[6], boot, flags)


def decode(buf):
    """Unpack ``SIZE`` bytes into a tuple in FIELDS order."""
    return struct.unpack(FORMAT, buf)


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


def iso_utc(ms):
    """``yyyy-MM-ddTHH:mm:ss.SSSZ`` (the TimeBase format) of UTC ms since 1970."""
    s, milli = divmod(ms, 1000)
    days, sod = divmod(s, 86400)
    y, mo, d = _civil(days)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (
        y, mo, d, sod // 3600, (sod // 60) % 60, sod % 60, milli)
