"""Helpers for tests that run under both CPython and the MicroPython unix port.

Tests are plain ``def test_*():`` functions with ``assert`` (micropython-lib
style): no pytest fixtures, no pytest import at module level.  pytest runs them
under CPython; ``mp_runner.py`` runs the same file under MicroPython.
"""

import os
import sys

from fsutil import exists

IS_MICROPYTHON = sys.implementation.name == "micropython"
_counter = [0]
# MicroPython functions take no attributes, so markers live here, keyed by function.
ONLY = {}

try:  # CPython: pytest's own skip, so pytest reports it as one
    import pytest

    Skip = pytest.skip.Exception
except ImportError:  # MicroPython: mp_runner.py reports it as a skip

    class Skip(Exception):
        pass


def skip(reason):
    """Skip the running test at run time (e.g. a tool it needs is not there)."""
    raise Skip(reason)


MP32_HOW = ("no 32-bit MicroPython (the ESP32's pointer size): `make mp32 MP_SRC=<MicroPython "
            "source tarball or checkout>` builds .mp32/micropython once (needs gcc-multilib: "
            "apt-get install gcc-multilib), or MICROPYTHON32=<binary> names one "
            "(docs/bench.md, \"A 32-bit MicroPython\")")


def micropython32():
    """The 32-bit unix port the 64 KB heap tests run on: ``$MICROPYTHON32``, else the one
    ``make mp32`` built; skips the running test, saying how to get one, when there is none."""
    named = os.getenv("MICROPYTHON32")
    path = named or (os.getenv("HOST_TEST_ROOT") or ".") + "/.mp32/micropython"
    if exists(path):
        return path
    if named:
        raise AssertionError("MICROPYTHON32=%s: no such file" % named)
    skip(MP32_HOW)


def cpython_only(reason):
    """Mark a test that cannot run under MicroPython; ``reason`` says why."""
    def mark(f):
        ONLY[f] = ("cpython", reason)
        return f
    return mark


def micropython_only(reason):
    """Mark a test that cannot run under CPython; ``reason`` says why."""
    def mark(f):
        ONLY[f] = ("micropython", reason)
        return f
    return mark


def makedirs(path):
    """``os.makedirs(path, exist_ok=True)`` for both interpreters."""
    parts = path.split("/")
    cur = "/" if path.startswith("/") else ""
    for part in parts:
        if not part:
            continue
        cur = cur + part if (not cur or cur.endswith("/")) else cur + "/" + part
        if not exists(cur):
            os.mkdir(cur)


def rmtree(path):
    """Remove a file or directory tree; missing paths are ignored."""
    try:
        mode = os.stat(path)[0]
    except OSError:
        return
    if mode & 0x4000:
        for name in os.listdir(path):
            rmtree(path + "/" + name)
        os.rmdir(path)
    else:
        os.remove(path)


class StepClock:
    """A store's ``clock_ns`` for tests: starts at ``ns``, 1 us later at each call."""

    def __init__(self, ns):
        self.ns = ns

    def __call__(self):
        self.ns += 1000
        return self.ns


def host_python():
    """The desktop Python that runs host programs a test starts (servers, brokers): the
    project's venv when there is one (it has their packages), else ``python3``."""
    py = (os.getenv("HOST_TEST_ROOT") or ".") + "/.venv/bin/python"
    return py if exists(py) else "python3"


def tmpdir(name="t"):
    """A new, empty directory for one test (under $HOST_TEST_TMP)."""
    base = os.getenv("HOST_TEST_TMP") or "/tmp/host_tests"
    _counter[0] += 1
    # xdist workers share the base: without the worker's name two of them collide
    worker = os.getenv("PYTEST_XDIST_WORKER") or "w"
    path = "%s/%s-%s-%s-%d" % (base, "mp" if IS_MICROPYTHON else "cp", worker, name, _counter[0])
    rmtree(path)
    makedirs(path)
    return path


def raises(exc_type, func, *args, **kwargs):
    """Call ``func`` and return the exception it raises; fail if it does not."""
    try:
        func(*args, **kwargs)
    except exc_type as e:
        return e
    raise AssertionError("%s not raised by %r" % (exc_type.__name__, func))


def next_values(reader):
    """The next committed record of a TSLog ``reader`` unpacked with its log's ``format``
    (the values ``TSLog.store`` took); None when none is left."""
    import struct

    raw = reader.next_record()
    return None if raw is None else struct.unpack(reader.log.format, raw)


def board_cfg(**overrides):
    """The settings dict a board with ``overrides`` in its config.json has: every key of
    the settings table, the overrides checked (``settings.complete``: ValueError naming an
    unknown key or a bad value). Like the firmware after boot, it drops the settings and
    config modules again unless they were loaded before (heap figures)."""
    drop = [m for m in ("settings", "config") if m not in sys.modules]
    import settings

    try:
        return settings.complete(overrides)
    finally:
        for m in drop:
            sys.modules.pop(m, None)
