# ruff: noqa: F821 - run by MicroPython's tools/makemanifest.py, which defines include/package
"""Frozen modules of the 32-bit build (`make mp32`; tools/build_mp32.sh passes this file as
FROZEN_MANIFEST): the unix port's own, plus the simulated board's side of tools/sim and the
hardware fakes, frozen as a board's ROM is, so that `make sim ARGS=--mp32` charges the
firmware's heap with nothing of theirs but the objects they create (docs/sim.md, "--mp32").

Each set sits in its own folder of ``.frozen``, found only by a MICROPYPATH that names it
(``.frozen/sim/mp``, ``.frozen/sim/device``, ``.frozen/fakes``): a plain ``import time``
on this build is still the built-in, whatever else uses the binary.  Relative paths start
from this file's folder.
"""

include("$(PORT_DIR)/variants/standard/manifest.py")  # what `make` freezes by default
package("sim/mp", base_path=".")  # the board's time and socket (lockstep clock, gated sockets)
package("sim/device", base_path=".")  # sim_board and its parts
package("fakes", base_path="../host_tests")  # machine, network, esp32, flash, sensor chips...
