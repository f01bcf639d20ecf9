"""Run one test module's ``test_*`` functions under MicroPython.

Usage: micropython mp_runner.py MODULE [TEST ...]
Prints one line per test, ``@@RESULT <name> <pass|fail|skip>``, followed for
failures by the traceback and for skips by the reason, ended by ``@@END``.
conftest.py turns these lines into pytest results.
"""

import io
import sys

import support


def _run(mod, name):
    f = getattr(mod, name)
    only = support.ONLY.get(f)
    if only and only[0] != "micropython":
        print("@@RESULT", name, "skip")
        print("%s only: %s" % only)
        print("@@END")
        return
    try:
        f()
    except support.Skip as e:
        print("@@RESULT", name, "skip")
        print(e.args[0] if e.args else "skipped")
        print("@@END")
        return
    except Exception as e:  # noqa: BLE001 - report every failure
        buf = io.StringIO()
        sys.print_exception(e, buf)
        print("@@RESULT", name, "fail")
        print(buf.getvalue())
        print("@@END")
        return
    print("@@RESULT", name, "pass")
    print("@@END")


def main():
    modname = sys.argv[1]
    mod = __import__(modname)
    names = sys.argv[2:] or sorted(n for n in dir(mod) if n.startswith("test_"))
    for name in names:
        _run(mod, name)


main()
