"""Fault injection knobs and the server's own figures.

``Faults`` holds the knobs of config.FAULT_DEFAULTS; tests change them at run time with
``server.faults.update(error_next=2)`` (in-process) or ``POST /admin/faults`` (subprocess).
``*_next`` counters are deterministic (the next N requests), ``*_rate`` ones random (seeded by
``seed`` when given).
"""

import random
import threading
import time

from .config import FAULT_DEFAULTS


class Faults:
    def __init__(self, knobs=None):
        self._lock = threading.Lock()
        self._k = dict(FAULT_DEFAULTS)
        self._rng = random.Random()
        self.update(**(knobs or {}))

    def update(self, **knobs):
        """Change knobs (unknown names raise KeyError); returns the new snapshot."""
        with self._lock:
            for name, v in knobs.items():
                if name not in FAULT_DEFAULTS:
                    raise KeyError("unknown fault knob %r" % name)
                self._k[name] = v
            if "seed" in knobs:
                self._rng.seed(knobs["seed"])
            return dict(self._k)

    def reset(self):
        with self._lock:
            self._k = dict(FAULT_DEFAULTS)
        return self.snapshot()

    def snapshot(self):
        with self._lock:
            return dict(self._k)

    def get(self, name):
        with self._lock:
            return self._k[name]

    def take(self, name):
        """True if the ``<name>_next`` counter is positive (and decrement it) or the
        ``<name>_rate`` dice say so."""
        with self._lock:
            n = self._k.get(name + "_next", 0)
            if n and n > 0:
                self._k[name + "_next"] = n - 1
                return True
            rate = self._k.get(name + "_rate", 0.0)
            return bool(rate) and self._rng.random() < rate


_COUNTERS = ("connections", "tls_failures", "requests", "token_requests", "token_errors",
             "auth_failures", "batches", "messages", "written", "duplicates", "collisions",
             "rejects", "bytes_in", "injected_errors", "dropped_before_body",
             "dropped_after_store", "client_errors", "server_errors", "connections_refused",
             "accept_failures", "request_timeouts", "login_failures", "logins_throttled")


class Stats:
    """Counters and rates.  ``snapshot()`` adds uptime and messages/s (written per second of
    uptime, and over the active span from the first to the last stored batch)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.reset()

    def reset(self):
        with self._lock:
            self._c = dict.fromkeys(_COUNTERS, 0)
            self._t0 = time.monotonic()
            self._first = self._last = None
            self.last_activity = time.monotonic()

    def add(self, **inc):
        with self._lock:
            for k, v in inc.items():
                self._c[k] += v
            self.last_activity = time.monotonic()

    def batch(self, received, written, duplicates, rejects, collisions=0):
        now = time.monotonic()
        with self._lock:
            self._c["batches"] += 1
            self._c["messages"] += received
            self._c["written"] += written
            self._c["duplicates"] += duplicates
            self._c["collisions"] += collisions
            self._c["rejects"] += rejects
            if self._first is None:
                self._first = now
            self._last = now

    def snapshot(self):
        with self._lock:
            d = dict(self._c)
            up = time.monotonic() - self._t0
            d["uptime_s"] = round(up, 3)
            d["messages_per_s"] = round(d["written"] / up, 1) if up > 0 else 0.0
            span = (self._last - self._first) if self._first is not None else 0.0
            d["active_s"] = round(span, 3)
            d["messages_per_s_active"] = round(d["written"] / span, 1) if span > 0 else None
            return d
