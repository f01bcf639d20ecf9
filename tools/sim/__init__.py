"""tools.sim: the weather logger's firmware on a simulated board, on the desktop.

``python -m tools.sim [options]`` (``make sim ARGS='...'``) starts the bundled ingest server
(tools/ingest) with its own CA, then runs the real ``firmware/boot.py`` + ``main.py`` under
the MicroPython unix port with the fakes from host_tests/fakes (emulated AM2320 and BMP180
following a weather curve, Wi-Fi that drops now and then, a LittleFS ``vfs`` and the queue's
``tslog`` data partition on emulated NOR flash kept in ``<state-dir>/flash.img`` and
``tslog.img``), on a lockstep virtual clock (``--speed N`` or ``max``).  It prints a live
status line and a summary whose last line balances where every sample and stored record
went.  docs/sim.md has the options.

In Python (tests)::

    from tools.sim.run import Sim, parse_args
    result = Sim(parse_args(["--duration", "600", "--speed", "max"])).run()
    result["lost"], result["uploaded"], result["boots"]
"""
