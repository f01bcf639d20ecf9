"""``python -m tools.sim``: run the firmware on a simulated board (see tools/sim/run.py)."""

import sys

from .run import main

sys.exit(main())
