#!/bin/sh
# Stands in for a Python interpreter when pyright asks for its search paths, so that
# lib/ and firmware/ are checked against the MicroPython stubs alone: an import of a
# CPython-only module (dataclasses, typing, pathlib ...) is then an error.
echo '{"path": [], "prefix": ""}'
