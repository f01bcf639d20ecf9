"""Run every test module twice: under CPython and under the MicroPython unix port.

CPython: pytest collects the module as usual; each test gets the id suffix
``[cpython]``.  MicroPython: a second collector runs the same file with
``mp_runner.py`` under ``micropython`` (once per file, on first use) and turns
each test's result into a pytest item ``name[micropython]``, with the
MicroPython traceback as the failure text.

A file can restrict itself with a comment line at the top:
``# cpython-only: <reason>`` or ``# micropython-only: <reason>``; a single
test with ``support.cpython_only(reason)`` / ``support.micropython_only(reason)``.
``# mp-args: -X heapsize=64k`` passes interpreter options for that file.
"""

import ast
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "host_tests"
FAKES = TESTS / "fakes"
LIB = ROOT / "lib"
MP_TIMEOUT_S = 900

for p in (str(ROOT), str(TESTS), str(LIB), str(FAKES)):
    if p not in sys.path:
        sys.path.insert(0, p)

import cpython_shims  # noqa: E402
import support  # noqa: E402

cpython_shims.install()
os.environ.setdefault("HOST_TEST_TMP", tempfile.mkdtemp(prefix="host_tests-"))
os.environ.setdefault("HOST_TEST_ROOT", str(ROOT))


def micropython_binary():
    """The unix-port binary from the venv that runs pytest, else from PATH."""
    cand = Path(sys.executable).parent / "micropython"
    return str(cand) if cand.exists() else "micropython"


def micropython_env(extra_path=()):
    env = dict(os.environ)
    parts = [str(p) for p in extra_path] + [str(FAKES), str(LIB), str(TESTS), ".frozen"]
    env["MICROPYPATH"] = ":".join(parts)
    return env


def _header(path):
    """The ``# key: value`` comment lines at the top of a test file."""
    out = {}
    for line in path.read_text().splitlines()[:15]:
        if line.startswith("# ") and ":" in line:
            key, _, value = line[2:].partition(":")
            out[key.strip()] = value.strip()
    return out


@pytest.fixture(scope="session")
def interp(request):
    return request.param


def pytest_generate_tests(metafunc):
    if "interp" in metafunc.fixturenames:
        metafunc.parametrize("interp", ["cpython"], indirect=True)


def pytest_collection_modifyitems(items):
    for item in items:
        if isinstance(item, MicroPythonItem):
            continue
        fn = getattr(item, "function", None)
        only = support.ONLY.get(fn)
        header = _header(Path(item.fspath))
        if only and only[0] != "cpython":
            item.add_marker(pytest.mark.skip(reason="%s only: %s" % only))
        elif "micropython-only" in header:
            item.add_marker(pytest.mark.skip(
                reason="micropython only: " + header["micropython-only"]))


@pytest.fixture(autouse=True)
def _cpython_marker(interp):
    """Autouse so every CPython test is parametrized as ``[cpython]``."""
    return interp


def pytest_collect_file(parent, file_path):
    if file_path.suffix == ".py" and file_path.name.startswith("test_"):
        return MicroPythonFile.from_parent(parent, path=file_path)
    return None


class NotUnderCPython(pytest.File):
    """A ``# micropython-only`` file: CPython must not even import it."""

    def collect(self):
        return []


def pytest_pycollect_makemodule(module_path, parent):
    if "micropython-only" in _header(module_path):
        return NotUnderCPython.from_parent(parent, path=module_path)
    return None


class MicroPythonFile(pytest.File):
    def collect(self):
        self._results = None
        tree = ast.parse(self.path.read_text())
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                yield MicroPythonItem.from_parent(self, name=node.name + "[micropython]",
                                                  test_name=node.name)

    def results(self):
        if self._results is None:
            self._results = self._run()
        return self._results

    def _run(self):
        header = _header(self.path)
        if "cpython-only" in header:
            return {"*": ("skip", "cpython only: " + header["cpython-only"])}
        cmd = [micropython_binary()] + header.get("mp-args", "").split()
        cmd += [str(TESTS / "mp_runner.py"), self.path.stem]
        try:
            proc = subprocess.run(cmd, cwd=str(ROOT), env=micropython_env(),
                                  capture_output=True, text=True, timeout=MP_TIMEOUT_S)
        except subprocess.TimeoutExpired as e:
            return {"*": ("fail", "micropython timed out after %ss\n%s" % (
                MP_TIMEOUT_S, e.stdout or ""))}
        results, name, status, lines = {}, None, None, []
        for line in proc.stdout.splitlines():
            if line.startswith("@@RESULT "):
                _, name, status = line.split()
                lines = []
            elif line == "@@END" and name:
                results[name] = (status, "\n".join(lines))
                name = None
            elif name:
                lines.append(line)
        if proc.returncode != 0 or name:
            detail = "micropython exited %d\n--- stdout\n%s\n--- stderr\n%s" % (
                proc.returncode, proc.stdout[-4000:], proc.stderr[-4000:])
            results.setdefault("*crash*", ("fail", detail))
        return results


class MicroPythonError(Exception):
    pass


class MicroPythonItem(pytest.Item):
    def __init__(self, *, test_name, **kwargs):
        super().__init__(**kwargs)
        self.test_name = test_name

    def runtest(self):
        results = self.parent.results()
        status, text = results.get("*") or results.get(self.test_name) or results.get(
            "*crash*", ("fail", "test did not run under micropython"))
        if status == "skip":
            pytest.skip(text.strip())
        if status != "pass":
            raise MicroPythonError(text)

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, MicroPythonError):
            return "MicroPython traceback:\n" + str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, 0, "micropython: " + self.test_name
