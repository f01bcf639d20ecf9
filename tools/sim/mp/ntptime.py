"""``ntptime`` for the simulated board: host_tests/fakes/ntptime.py answering the true time.

The fake answers with ``time.time()``, which under the simulator's virtual clock is the
board's own RTC (unset: year 2000).  A real NTP server knows the true UTC, so this module
loads the fake unchanged and gives it a clock whose ``time()`` is the simulated world's
true UTC in the port's epoch (``time.sim_utc_ms()``); everything else is the virtual clock.
"""

import sys
import time as _vt


class _TrueClock:
    def time(self):
        return _vt.sim_utc_ms() // 1000 - _vt._EPOCH_S

    def __getattr__(self, name):
        return getattr(_vt, name)


def _load():
    for d in sys.path:
        if d and not d.endswith("tools/sim/mp"):
            try:
                with open(d + "/ntptime.py") as f:
                    return f.read()
            except OSError:
                pass
    raise ImportError("host_tests/fakes/ntptime.py not on the path")


exec(_load(), globals())
_t = _TrueClock()  # noqa: F811 - the fake's clock, rebound to the true time
