"""The harness itself: both interpreters see lib/, the fakes and the shims."""

import time

import support


def test_ticks_wrap_arithmetic():
    a = time.ticks_ms()
    b = time.ticks_add(a, 5000)
    assert time.ticks_diff(b, a) == 5000
    assert time.ticks_diff(a, b) == -5000


def test_tmpdir_is_empty_and_unique():
    import os
    a, b = support.tmpdir("x"), support.tmpdir("x")
    assert a != b
    assert os.listdir(a) == []


def test_const_available():
    from micropython import const
    assert const(3) == 3


@support.cpython_only("demonstrates the cpython-only marker")
def test_cpython_only_marker():
    import sys
    assert sys.implementation.name == "cpython"


@support.micropython_only("demonstrates the micropython-only marker")
def test_micropython_only_marker():
    import sys
    assert sys.implementation.name == "micropython"
