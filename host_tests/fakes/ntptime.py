"""Fake ``ntptime`` (micropython-lib): the same API, answered by ``network.world``.

``time()`` returns whole seconds since the port's epoch (``gmtime(0)``'s year), as
the real module does after converting the NTP timestamp; ``settime()`` writes that
into ``machine.RTC().datetime(...)`` exactly like the real one.  The "true" time is
this interpreter's ``time.time()`` (the simulator's virtual clock when it installs
one), so on the desktop an RTC set by NTP reads the same as ``time.time()``.

Failures, as the board sees them:
- no Wi-Fi link (``world.online()`` False): ``getaddrinfo`` fails, ``OSError(-202)``;
- NTP server silent (``world.ntp_ok`` False, or the next ``world.ntp_fail_next``
  calls): the UDP ``recv`` times out, ``OSError(ETIMEDOUT)``, after ``timeout`` s of
  (virtual) sleep when ``world.ntp_blocks`` is set.
``calls`` lists ``(host, ok)`` per attempt.
"""

import errno
import time as _t

import network

host = "pool.ntp.org"
timeout = 1
calls = []

_EAI_FAIL = -202


def time():
    w = network.world
    w.ntp_calls += 1
    if not w.online():
        calls.append((host, False))
        raise OSError(_EAI_FAIL)
    if w.ntp_fail_next > 0 or not w.ntp_ok:
        if w.ntp_fail_next > 0:
            w.ntp_fail_next -= 1
        calls.append((host, False))
        if w.ntp_blocks:
            _t.sleep_ms(int(timeout * 1000))
        raise OSError(errno.ETIMEDOUT)
    calls.append((host, True))
    if len(calls) > 200:
        del calls[:100]
    return int(_t.time())


def settime():
    t = time()
    import machine

    tm = _t.gmtime(t)
    machine.RTC().datetime((tm[0], tm[1], tm[2], tm[6] + 1, tm[3], tm[4], tm[5], 0))
