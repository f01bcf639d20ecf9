"""tools.sim: the weather logger's firmware on a simulated board, on the desktop.

``python -m tools.sim [options]`` (``make sim ARGS='...'``) starts the bundled ingest server
(tools/ingest) with its own CA, then runs the real ``firmware/boot.py`` + ``main.py`` under
the MicroPython unix port with the fakes from host_tests/fakes (emulated AM2320 and BMP180
following a weather curve, Wi-Fi that drops now and then, a LittleFS image on emulated NOR
flash kept in ``<state-dir>/flash.img``), behind a virtual clock (``--speed``).  It prints a
live status line and a summary whose last line says how many samples were taken, stored,
uploaded and lost.  docs/sim.md has the options.

In Python (tests)::

    from tools.sim.run import Sim, parse_args
    result = Sim(parse_args(["--duration", "600", "--speed", "50"])).run()
    result["lost"], result["uploaded"], result["boots"]
"""
