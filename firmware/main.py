"""The main loop (lib/app.py): sample on schedule, store, upload; returns only on Ctrl-C."""

import app

app.run()
