"""CPython stand-in for MicroPython's built-in ``micropython`` module.

Only used under CPython (the unix port's built-in module always wins).
Importing it also installs the MicroPython-only helpers that ``lib/`` uses
into CPython's ``time``, ``gc`` and ``sys`` (``time.ticks_ms`` and friends,
``gc.mem_free``), so lib code runs unchanged on both interpreters.
"""

import cpython_shims

cpython_shims.install()


def const(value):
    return value


def native(f):
    return f


def viper(f):
    return f


def alloc_emergency_exception_buf(size):
    pass


def opt_level(level=None):
    return 0


def heap_lock():
    return 0


def heap_unlock():
    return 0


def mem_info(verbose=False):
    print("mem: (CPython, no MicroPython heap)")


def schedule(func, arg):
    func(arg)
