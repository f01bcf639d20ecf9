"""tools.pull: save a board's logged records as CSV (see ``python -m tools.pull --help``).

``--port``: over USB serial with ``mpremote`` (soft reset, so the firmware is stopped and
nothing writes the log meanwhile; ``console.dump()``; hard reset afterwards to restart the
firmware unless ``--no-reset``).  ``--image``: from a LittleFS flash image file (the
simulator's ``flash.img``), by running the same ``console.dump()`` under the MicroPython
unix port.  The CSV is written to a temporary file and renamed to ``--out`` only when the
pull succeeded, so a failed pull never clobbers an older file.
"""
