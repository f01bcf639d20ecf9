"""A virtual clock standing in for the ``time`` module of chosen modules.

MicroPython's built-in ``time`` cannot be patched, so a test rebinds the
``time`` global of the driver and device-model modules to a ``VirtualClock``
(``install``) and puts it back afterwards (``uninstall``).  Sleeps advance
the clock instantly, so the AM2320's 2 s intervals cost no wall time, and
``slept_us`` tells how long a driver chose to wait.  Ticks follow
MicroPython's wrap (period 2**30), starting just before the wrap.
"""

_PERIOD = 1 << 30
_MASK = _PERIOD - 1
_HALF = _PERIOD // 2


class VirtualClock:
    def __init__(self, start_ms=_PERIOD - 3000):
        self.us = start_ms * 1000  # monotonic, unwrapped
        self.slept_us = 0
        self._saved = []

    def _us(self):
        """Microseconds, unwrapped (subclasses may derive them from another clock)."""
        return self.us

    # -- the ``time`` API used by drivers and device models
    def ticks_us(self):
        return self._us() & _MASK

    def ticks_ms(self):
        return (self._us() // 1000) & _MASK

    def ticks_add(self, ticks, delta):
        return (ticks + delta) & _MASK

    def ticks_diff(self, end, start):
        return ((end - start + _HALF) & _MASK) - _HALF

    def sleep_us(self, us):
        if us > 0:
            self.us += us
            self.slept_us += us

    def sleep_ms(self, ms):
        self.sleep_us(ms * 1000)

    def sleep(self, s):
        self.sleep_us(int(s * 1_000_000))

    # -- test control
    def advance_ms(self, ms):
        """Let ``ms`` pass without anyone sleeping (other work in the main loop)."""
        self.us += ms * 1000

    def install(self, *modules):
        for m in modules:
            self._saved.append((m, m.time))
            m.time = self
        return self

    def uninstall(self):
        while self._saved:
            m, t = self._saved.pop()
            m.time = t
