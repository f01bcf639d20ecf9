"""Fake ``ntptime`` (micropython-lib): the same API, answered by ``network.world``.

``time()`` returns whole seconds since the port's epoch (``gmtime(0)``'s year), as
the real module does after converting the NTP timestamp; ``settime()`` writes that
into ``machine.RTC().datetime(...)`` exactly like the real one.  The "true" time is
this interpreter's ``time.time()``, so on the desktop an RTC set by NTP reads the same
as ``time.time()``; under the simulator's clock (tools/sim/mp/time.py), whose ``time()``
is the board's RTC, it is that clock's ``true_time()``, the simulated world's UTC.

Failures, as the board sees them:
- no Wi-Fi link (``world.online()`` False): ``getaddrinfo`` fails, ``OSError(-202)``;
- NTP server silent (``world.ntp_ok`` False, or the next ``world.ntp_fail_next``
  calls): the UDP ``recv`` times out, ``OSError(ETIMEDOUT)``, after ``timeout`` s of
  (virtual) sleep when ``world.ntp_blocks`` is set.
``calls`` lists ``(host, ok)`` per attempt, a record of the world's like
``network.world.events`` (kept unless ``network.keep_events`` is False).
"""

import errno
import time as _t

import network

host = "pool.ntp.org"
timeout = 1
calls = []

_EAI_FAIL = -202


def _call(ok):
    if network.keep_events:
        calls.append((host, ok))
        if len(calls) > 200:
            del calls[:100]


def time():
    w = network.world
    w.ntp_calls += 1
    if not w.online():
        _call(False)
        raise OSError(_EAI_FAIL)
    if w.ntp_fail_next > 0 or not w.ntp_ok:
        if w.ntp_fail_next > 0:
            w.ntp_fail_next -= 1
        _call(False)
        if w.ntp_blocks:
            _t.sleep_ms(int(timeout * 1000))
        raise OSError(errno.ETIMEDOUT)
    _call(True)
    return int(getattr(_t, "true_time", _t.time)())


def settime():
    t = time()
    import machine

    tm = _t.gmtime(t)
    machine.RTC().datetime((tm[0], tm[1], tm[2], tm[6] + 1, tm[3], tm[4], tm[5], 0))
