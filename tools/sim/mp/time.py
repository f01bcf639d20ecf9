"""Virtual clock for the simulated board: replaces the built-in ``time`` module.

``tools/sim`` puts this directory first on MICROPYPATH, so every ``import time`` in the
firmware, ``lib/`` and the fakes gets this module (the unix port looks on the path before
its built-in ``time``; the built-in stays reachable as ``utime``).

Virtual time runs ``speed`` times faster than real time and is shared by every board
process of one simulator run (it is computed from the real wall clock):

    virtual ns since the run started = (real ns now - SIM_REAL0_NS) * SIM_SPEED

- ``sleep*`` sleep the real time divided by ``speed``; ``ticks_*`` count virtual time from
  this process' start (a boot), starting 10 minutes before the 2**30 wrap like an ESP32
  that has been up 12 days; ``ticks_diff``/``ticks_add`` wrap like the board's.
- ``time()``/``time_ns()``/``gmtime()``/``localtime()``/``mktime()`` are the board's RTC
  wall clock with the ESP32's epoch 2000 (``SIM_EPOCH=1970`` for the unix port's).  At
  power-on it reads 2000-01-01 00:00:00 like an unset ESP32 RTC; ``set_time()`` (called by
  the fake ``machine.RTC().datetime(...)``, which ``ntptime.settime()`` uses) sets it.
  ``SIM_WALL_OFFSET_MS`` carries a set RTC across a ``machine.reset()`` (the ESP32's RTC
  keeps counting through a reset, not through a power cut).
- ``sim_utc_ms()``: the true (virtual) UTC, what an NTP server would answer.
- ``sim_elapsed_ms()``: virtual ms since the run started (status lines, schedules).
- ``sim_end_ms`` / ``SimEnd``: when the run is over, a sleep in the main thread raises
  ``SimEnd`` (a BaseException) so the board runner can end the firmware cleanly.
"""

import os

import utime as _rt  # the built-in module (this file shadows ``time``)

try:
    import _thread

    _MAIN = _thread.get_ident()
except ImportError:  # pragma: no cover
    _thread = None
    _MAIN = None

_PERIOD = 1 << 30
_MASK = _PERIOD - 1
_HALF = _PERIOD // 2
_TICKS_START_MS = _PERIOD - 600_000  # 10 minutes before the wrap
_Y2K_S = 946684800


def _env_int(name, default):
    v = os.getenv(name)
    return int(v) if v else default


SPEED = float(os.getenv("SIM_SPEED") or "1")
REAL0_NS = _env_int("SIM_REAL0_NS", _rt.time_ns())
UTC0_MS = _env_int("SIM_UTC0_MS", _rt.time_ns() // 1_000_000)  # true UTC at virtual 0
EPOCH = _env_int("SIM_EPOCH", 2000)
_EPOCH_S = _Y2K_S if EPOCH == 2000 else 0  # unix seconds of this port's epoch


class SimEnd(BaseException):
    """The simulated run is over (raised by a sleep in the main thread)."""


sim_end_ms = [None]  # virtual ms since the run started at which sleeps raise SimEnd


def _virt_ns():
    return int((_rt.time_ns() - REAL0_NS) * SPEED)


_BOOT_NS = _virt_ns()


def sim_elapsed_ms():
    return _virt_ns() // 1_000_000


def sim_utc_ms():
    """True UTC ms since 1970 in the simulated world."""
    return UTC0_MS + _virt_ns() // 1_000_000


# The RTC: wall ms (since this port's epoch) = virtual ms + _wall[0].
_off = os.getenv("SIM_WALL_OFFSET_MS")
if _off:
    _wall = [int(_off)]
else:  # power-on: the RTC reads 0 (2000-01-01 on the ESP32) now
    _wall = [-(_BOOT_NS // 1_000_000)]


def wall_offset_ms():
    """The RTC's offset from virtual time (the board runner keeps it across resets)."""
    return _wall[0]


def set_time(seconds):
    """Set the RTC to ``seconds`` since the port's epoch (fake machine.RTC's hook)."""
    _wall[0] = int(seconds * 1000) - _virt_ns() // 1_000_000


def _check_end():
    end = sim_end_ms[0]
    if end is not None and (_thread is None or _thread.get_ident() == _MAIN):
        if _virt_ns() // 1_000_000 >= end:
            sim_end_ms[0] = None  # once: the firmware may sleep while it shuts down
            raise SimEnd()


# ---------------------------------------------------------------- sleeps
def sleep_us(us):
    _check_end()
    if us > 0:
        _rt.sleep_us(int(us / SPEED))
    _check_end()


def sleep_ms(ms):
    _check_end()
    if ms > 0:
        _rt.sleep_us(int(ms * 1000 / SPEED))
    _check_end()


def sleep(s):
    _check_end()
    if s > 0:
        _rt.sleep_us(int(s * 1_000_000 / SPEED))
    _check_end()


# ---------------------------------------------------------------- ticks
def ticks_ms():
    return (_TICKS_START_MS + (_virt_ns() - _BOOT_NS) // 1_000_000) & _MASK


def ticks_us():
    return (_TICKS_START_MS * 1000 + (_virt_ns() - _BOOT_NS) // 1000) & _MASK


def ticks_cpu():
    return ticks_us()


def ticks_add(ticks, delta):
    if not -_HALF <= delta < _HALF:
        raise OverflowError("ticks interval overflow")
    return (ticks + delta) & _MASK


def ticks_diff(end, start):
    return ((end - start + _HALF) & _MASK) - _HALF


# ---------------------------------------------------------------- wall clock
def time_ns():
    v = _virt_ns()
    return v + _wall[0] * 1_000_000


def time():
    return (_virt_ns() // 1_000_000 + _wall[0]) // 1000


def _civil(days):
    """(y, m, d) of days since 1970-01-01 (H. Hinnant's algorithm)."""
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (1 if m <= 2 else 0), m, d


def _days(y, m, d):
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def gmtime(secs=None):
    """(year, month, mday, hour, minute, second, weekday (Mon=0), yearday) like the ESP32."""
    if secs is None:
        secs = time()
    s = int(secs) + _EPOCH_S
    days, sod = divmod(s, 86400)
    y, m, d = _civil(days)
    yday = days - _days(y, 1, 1) + 1
    return (y, m, d, sod // 3600, (sod // 60) % 60, sod % 60, (days + 3) % 7, yday)


localtime = gmtime  # the board has no time zone


def mktime(t):
    """Seconds since the port's epoch of a local (= UTC) time tuple; fields may overflow."""
    y, m, d, hh, mm, ss = t[0], t[1], t[2], t[3], t[4], t[5]
    y += (m - 1) // 12
    m = (m - 1) % 12 + 1
    return _days(y, m, 1) * 86400 + (d - 1) * 86400 + hh * 3600 + mm * 60 + ss - _EPOCH_S
