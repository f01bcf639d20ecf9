"""Lockstep virtual clock for the simulated board: replaces the built-in ``time`` module.

``tools/sim`` puts this directory (with ``--mp32`` its frozen copy, ``.frozen/sim/mp``)
first on MICROPYPATH, so every ``import time`` in the firmware, ``lib/`` and the fakes
gets this module (the unix port looks on the path before its built-in ``time``; the
built-in stays reachable as ``utime``).

Lockstep: virtual time stands still while any board thread runs, and jumps to the
earliest wake-up when every board thread waits (sleeps, or has exited). A board thread
is the main thread and every thread started through ``thread_module()`` (the simulator
puts it in ``sys.modules["_thread"]`` before the firmware runs, so the firmware's own
``_thread.start_new_thread`` calls register their threads). So the firmware's code costs
no simulated time, whatever the host's load: a slot is never late because the host was
busy. A thread blocked in a host call (a socket waiting for the real local server's
answer, a lock held by a running thread) counts as running: the clock waits for it (see
tools/sim/mp/socket.py for sockets that time out). ``SIM_SPEED``:

- ``max``: a jump happens as soon as every board thread waits;
- a number N: jumps are paced so that virtual time runs at most N times real time; when
  the host cannot keep up the clock simply runs slower (it never bursts to catch up more
  than ``_SLACK_NS`` of real time), and the simulator says so on its status line.

``ticks_*`` count virtual time from this process' start (a boot), starting 10 minutes
before the 2**30 wrap like an ESP32 that has been up 12 days; ``ticks_diff``/``ticks_add``
wrap like the board's. ``time()``/``time_ns()``/``gmtime()``/``localtime()``/``mktime()``
are the board's RTC with the ESP32's epoch 2000 (``SIM_EPOCH=1970`` for the unix port's):
at power-on it reads 2000-01-01 00:00:00 like an unset ESP32 RTC; ``set_time()`` (called
by the fake ``machine.RTC().datetime(...)``, which ``ntptime.settime()`` uses) sets it;
``SIM_WALL_OFFSET_MS`` carries a set RTC across a ``machine.reset()``.

Environment: ``SIM_V0_MS`` (virtual ms since the run started at which this process
starts), ``SIM_UTC0_MS`` (true UTC at virtual 0), ``SIM_CLOCK_FILE`` (8 bytes, the
virtual ms as a little-endian int64, rewritten at every jump: the orchestrator and the
ingest server's token clock read it).

Simulator hooks: ``sim_utc_ms()`` (the true UTC, what an NTP server answers; in the
port's epoch, ``true_time()``, which host_tests/fakes/ntptime.py answers with),
``sim_elapsed_ms()`` (virtual ms since the run started), ``add_timer(t)`` (``t.due()``:
virtual ms or None; ``t.fire()`` runs when the clock reaches it, before any thread due at
the same instant wakes, and may call ``freeze()``: the board stops for good, as at a power
cut or a watchdog reset), ``stall_check()`` (called by a watcher thread), ``sim_end_ms`` /
``SimEnd`` (a sleep in the main thread raises ``SimEnd`` once the run is over).
"""

import _thread as _th
import os
import struct

import utime as _rt  # the built-in module (this file shadows ``time``)

_PERIOD = 1 << 30
_MASK = _PERIOD - 1
_HALF = _PERIOD // 2
_TICKS_START_MS = _PERIOD - 600_000  # 10 minutes before the wrap
_Y2K_S = 946684800
_SLACK_NS = 250_000_000  # real time a paced clock may fall behind and still catch up
_STALL_NS = 10_000_000_000  # real time without a jump while threads run: see stall_check()


def _env_int(name, default):
    v = os.getenv(name)
    return int(v) if v else default


_speed = os.getenv("SIM_SPEED") or "max"
SPEED = None if _speed == "max" else float(_speed)  # None: as fast as the host allows
V0_MS = _env_int("SIM_V0_MS", 0)
UTC0_MS = _env_int("SIM_UTC0_MS", _rt.time_ns() // 1_000_000)  # true UTC at virtual 0
EPOCH = _env_int("SIM_EPOCH", 2000)
_EPOCH_S = _Y2K_S if EPOCH == 2000 else 0  # unix seconds of this port's epoch


class SimEnd(BaseException):
    """The simulated run is over (raised by a sleep in the main thread)."""


sim_end_ms = [None]  # virtual ms since the run started at which sleeps raise SimEnd

# ---------------------------------------------------------------- lockstep state
_m = _th.allocate_lock()  # guards everything below
_now = V0_MS * 1_000_000  # virtual ns since the run started
_BOOT_NS = _now
_MAIN = _th.get_ident()
_threads = {_MAIN}  # idents of board threads
_busy = 1  # board threads not waiting on the clock (the main thread runs)
_sleepers = []  # [deadline ns, ident], earliest first
_wake = {}  # ident -> its wake-up lock
_timers = []
_frozen = False
_pace_v = _now  # the pace line: virtual ns _pace_v at real ns _pace_r
_pace_r = _rt.time_ns()
_stall = [_now, _rt.time_ns(), False]  # virtual ns last seen, real ns then, reported
stats = {"jumps": 0, "slowed": 0, "forced": 0}
on_thread_error = None  # fn(function, exc): how an uncaught exception in a board thread is shown

_cf = None
_cf_path = os.getenv("SIM_CLOCK_FILE")
if _cf_path:
    try:
        _cf = open(_cf_path, "r+b")
    except OSError:
        _cf = open(_cf_path, "wb")


def _publish():
    if _cf is not None:
        _cf.seek(0)
        _cf.write(struct.pack("<q", _now // 1_000_000))


_publish()


def sim_elapsed_ms():
    return _now // 1_000_000


def sim_utc_ms():
    """True UTC ms since 1970 in the simulated world."""
    return UTC0_MS + _now // 1_000_000


def add_timer(t):
    with _m:
        _timers.append(t)


def frozen():
    return _frozen


def freeze():
    """The board stops here for good (power cut, watchdog reset): no thread wakes again."""
    global _frozen
    _frozen = True
    _publish()
    lk = _th.allocate_lock()
    lk.acquire()
    lk.acquire()  # never returns; the simulator kills the process


def _next_timer():
    best, when = None, None
    for t in _timers:
        d = t.due()
        if d is not None and (when is None or d < when):
            best, when = t, int(d)
    return best, (None if when is None else when * 1_000_000)


def _wake_due():
    """Wake every sleeper due at ``_now`` (they count as running from here). Holds _m."""
    global _busy
    while _sleepers and _sleepers[0][0] <= _now:
        ident = _sleepers.pop(0)[1]
        _busy += 1
        _wake[ident].release()


def _step(limit=None):
    """Move the clock to the next event (a timer or a sleeper) if it is due by the pace
    line and not after ``limit``; returns (timer to fire or None, real ns to wait or 0,
    done). Holds _m."""
    global _now, _pace_v, _pace_r
    timer, target = _next_timer()
    if _sleepers and (target is None or _sleepers[0][0] < target):
        timer, target = None, _sleepers[0][0]
    if target is None or (limit is not None and target > limit):
        if limit is not None and limit > _now:
            _now = limit
            _publish()
        return None, 0, True
    if target > _now and SPEED is not None and limit is None:
        real = _rt.time_ns()
        allowed = _pace_v + int((real - _pace_r) * SPEED)
        if target > allowed:
            return None, int((target - allowed) / SPEED) + 1, False
        if allowed - target > _SLACK_NS * SPEED:  # the host fell behind: slow down
            _pace_v, _pace_r = target, real
            stats["slowed"] += 1
    if target > _now:
        _now = target
        stats["jumps"] += 1
        _publish()
    if timer is None:
        _wake_due()
        return None, 0, True
    return timer, 0, False


def _fire(timer):
    try:
        timer.fire()
    except Exception as e:  # noqa: BLE001 - the simulator's fault, never the firmware's
        print("sim: clock timer %r failed: %r" % (timer, e))


def _settle():
    """Called by the board thread that left none running: advance the clock and wake the
    next sleeper(s), firing timers on the way (pacing waits real time here)."""
    while True:
        with _m:
            if _busy or _frozen:
                return
            timer, wait, done = _step()
        if timer is not None:
            _fire(timer)
        elif done:
            return
        elif wait:
            _rt.sleep_us(wait // 1000 if wait < 50_000_000 else 50_000)


def stall_check():
    """Called every so often by a thread of the simulator. Board threads that run for
    ``_STALL_NS`` of real time without the clock moving (a loop polling ``ticks_ms``
    without sleeping, or a lock held across a sleep) would stop the clock for ever: time
    then moves on at real speed, timers included. Returns a message the first time."""
    with _m:
        real = _rt.time_ns()
        if _frozen or not _busy or _now != _stall[0]:
            _stall[0], _stall[1] = _now, real
            return None
        if real - _stall[1] < _STALL_NS:
            return None
        limit = _now + (real - _stall[1])
    stats["forced"] += 1
    while True:
        with _m:
            if not _busy or _frozen:  # a board thread moves the clock again
                break
            timer, _, done = _step(limit)
            _stall[0], _stall[1] = _now, _rt.time_ns()
        if timer is not None:
            _fire(timer)
        if done:
            break
    if _stall[2]:
        return None
    _stall[2] = True
    return ("sim: lockstep: board threads ran %d s (real) without sleeping; time moves on "
            "at real speed while they do (a loop polling ticks_ms, or a lock held across "
            "a sleep?)" % (_STALL_NS // 1_000_000_000))


# ---------------------------------------------------------------- threads
def _run(fn, args, kwargs):
    global _busy
    ident = _th.get_ident()
    with _m:
        _threads.add(ident)
    try:
        fn(*args, **kwargs)
    except SystemExit:
        pass
    except BaseException as e:  # noqa: BLE001 - shown like the port does, then the thread ends
        if on_thread_error is None:
            raise
        on_thread_error(fn, e)
    finally:
        with _m:
            _threads.discard(ident)
            _wake.pop(ident, None)
            _busy -= 1
            idle = _busy == 0
        if idle:
            _settle()


def _start_new_thread(fn, args, kwargs=None):
    global _busy
    with _m:
        _busy += 1  # running from now: the clock must not jump before it gets the CPU
    try:
        return _th.start_new_thread(_run, (fn, args, kwargs or {}))
    except BaseException:
        with _m:
            _busy -= 1
        raise


class _ThreadModule:
    """``_thread`` whose ``start_new_thread`` makes board threads (the rest is the port's)."""

    start_new_thread = staticmethod(_start_new_thread)

    def __getattr__(self, name):
        return getattr(_th, name)


def thread_module():
    return _ThreadModule()


# ---------------------------------------------------------------- sleeps
def _check_end():
    end = sim_end_ms[0]
    if end is not None and _th.get_ident() == _MAIN and _now // 1_000_000 >= end:
        sim_end_ms[0] = None  # once: the firmware may sleep while it shuts down
        raise SimEnd()


def _sleep_ns(ns):
    global _busy
    _check_end()
    if ns <= 0:
        return
    ident = _th.get_ident()
    if ident not in _threads:  # a thread the clock does not know: real time, scaled
        _rt.sleep_us(int(ns / 1000 / (SPEED or 1000)))
        return
    with _m:
        lk = _wake.get(ident)
        if lk is None:
            lk = _wake[ident] = _th.allocate_lock()
        lk.acquire()
        dl = _now + ns
        i = len(_sleepers)
        while i and _sleepers[i - 1][0] > dl:
            i -= 1
        _sleepers.insert(i, [dl, ident])
        _busy -= 1
        idle = _busy == 0
    if idle:
        _settle()
    lk.acquire()  # released by whoever moves the clock to dl
    lk.release()
    _check_end()


def sleep_us(us):
    _sleep_ns(int(us) * 1000)


def sleep_ms(ms):
    _sleep_ns(int(ms * 1_000_000))


def sleep(s):
    _sleep_ns(int(s * 1_000_000_000))


# ---------------------------------------------------------------- ticks
def ticks_ms():
    return (_TICKS_START_MS + (_now - _BOOT_NS) // 1_000_000) & _MASK


def ticks_us():
    return (_TICKS_START_MS * 1000 + (_now - _BOOT_NS) // 1000) & _MASK


def ticks_cpu():
    return ticks_us()


def ticks_add(ticks, delta):
    if not -_HALF <= delta < _HALF:
        raise OverflowError("ticks interval overflow")
    return (ticks + delta) & _MASK


def ticks_diff(end, start):
    return ((end - start + _HALF) & _MASK) - _HALF


# ---------------------------------------------------------------- wall clock
# The RTC: wall ms (since this port's epoch) = virtual ms + _wall[0].
_off = os.getenv("SIM_WALL_OFFSET_MS")
_wall = [int(_off)] if _off else [-(_BOOT_NS // 1_000_000)]  # power-on: the RTC reads 0


def wall_offset_ms():
    """The RTC's offset from virtual time (the board runner keeps it across resets)."""
    return _wall[0]


def set_time(seconds):
    """Set the RTC to ``seconds`` since the port's epoch (fake machine.RTC's hook)."""
    _wall[0] = int(seconds * 1000) - _now // 1_000_000


def time_ns():
    return _now + _wall[0] * 1_000_000


def time():
    return (_now // 1_000_000 + _wall[0]) // 1000


def true_time():
    """The simulated world's true UTC in s since the port's epoch: what an NTP server
    answers (host_tests/fakes/ntptime.py asks for it)."""
    return sim_utc_ms() // 1000 - _EPOCH_S


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
