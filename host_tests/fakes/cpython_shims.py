"""MicroPython-only APIs added to CPython's standard modules.

``time.ticks_ms`` etc. follow MicroPython's semantics, including the wrap
of the ticks counter (period 2**30 ms on ports with small ints), so code that
mishandles the wrap fails on the desktop too.  ``TICKS_OFFSET_MS`` starts
the counter close to the wrap point so the wrap happens early in a run.
"""

import gc
import time

TICKS_PERIOD = 1 << 30
_TICKS_MAX = TICKS_PERIOD - 1
_HALF = TICKS_PERIOD // 2
# Start 10 minutes before the wrap, as a board that has been up ~12 days would.
TICKS_OFFSET_MS = TICKS_PERIOD - 600_000
_t0 = time.monotonic_ns()


def _elapsed_us():
    return (time.monotonic_ns() - _t0) // 1000


def ticks_ms():
    return (TICKS_OFFSET_MS + _elapsed_us() // 1000) & _TICKS_MAX


def ticks_us():
    return (TICKS_OFFSET_MS * 1000 + _elapsed_us()) & _TICKS_MAX


def ticks_cpu():
    return ticks_us()


def ticks_add(ticks, delta):
    return (ticks + delta) & _TICKS_MAX


def ticks_diff(end, start):
    return ((end - start + _HALF) & _TICKS_MAX) - _HALF


def sleep_ms(ms):
    if ms > 0:
        time.sleep(ms / 1000)


def sleep_us(us):
    if us > 0:
        time.sleep(us / 1_000_000)


def _mem_free():
    return 100_000


def _mem_alloc():
    return 10_000


def install():
    """Add the MicroPython-only names to ``time`` and ``gc`` (idempotent)."""
    for name in ("ticks_ms", "ticks_us", "ticks_cpu", "ticks_add", "ticks_diff",
                 "sleep_ms", "sleep_us"):
        if not hasattr(time, name):
            setattr(time, name, globals()[name])
    if not hasattr(gc, "mem_free"):
        gc.mem_free = _mem_free
        gc.mem_alloc = _mem_alloc
        gc.threshold = lambda *a: -1
