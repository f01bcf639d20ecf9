"""Every module in lib/ imports on both interpreters.

This is what catches a lib module that uses a CPython-only feature
(dataclasses, typing at run time, f-string debug ...) even before a test
of its own exercises it.
"""

import os

LIB = (os.getenv("HOST_TEST_ROOT") or ".") + "/lib"


def lib_modules():
    return sorted(n[:-3] for n in os.listdir(LIB) if n.endswith(".py") and n != "__init__.py")


def test_every_lib_module_imports():
    failures = []
    for name in lib_modules():
        try:
            __import__(name)
        except Exception as e:  # noqa: BLE001 - collect all failures
            failures.append("%s: %s: %s" % (name, type(e).__name__, e))
    assert not failures, "\n".join(failures)

