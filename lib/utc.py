"""UTC on the board: the wall clock as ms since 1970 whatever the port's epoch, civil dates.

``now_ms()`` corrects for the epoch of ``time``: the ESP32 (and most bare-metal ports)
count from 2000, the unix port from 1970. Before NTP sets it, an ESP32's RTC reads 2000
(or whatever it kept across a reset): a time before ``MIN_VALID_MS`` (2020) is an unset
clock, never a sample's time. The date maths is H. Hinnant's ``days_from_civil`` and its
inverse (proleptic Gregorian, exact for any date, no use of the port's ``gmtime``), so
it gives the same answers on every port and for any year.
"""

import time

from micropython import const

MIN_VALID_MS = 1577836800000  # 2020-01-01T00:00:00Z: anything earlier is an unset clock
_Y2K_S = const(946684800)  # 1970 -> 2000 in seconds
_EPOCH_2000 = time.gmtime(0)[0] == 2000


def now_ms():
    """UTC milliseconds since 1970 from the wall clock (whatever epoch the port uses)."""
    try:
        ms = time.time_ns() // 1000000
    except AttributeError:  # pragma: no cover - ports without time_ns
        ms = int(time.time()) * 1000
    if _EPOCH_2000:
        ms += _Y2K_S * 1000
    return ms


def civil_from_days(days):
    """(year, month, day) of a count of days since 1970-01-01."""
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (1 if m <= 2 else 0), m, d


def days_from_civil(y, m, d):
    """Days since 1970-01-01 of the date ``y``-``m``-``d``."""
    y -= m <= 2
    era = y // 400  # (floor division: right for years before 0 too)
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


_day = (None, "")  # (days since 1970, "YYYY-MM-DDT") of the last iso() call


def iso(ms):
    """``yyyy-MM-ddTHH:mm:ss.SSSZ`` (the TimeBase format) of UTC ms since 1970."""
    global _day
    s, milli = divmod(ms, 1000)
    days, sod = divmod(s, 86400)
    day = _day  # one tuple, swapped whole: safe when two threads format times
    if day[0] != days:
        y, mo, d = civil_from_days(days)
        day = _day = (days, "%04d-%02d-%02dT" % (y, mo, d))
    return "%s%02d:%02d:%02d.%03dZ" % (day[1], sod // 3600, (sod // 60) % 60, sod % 60, milli)
