"""Failed-login throttling for /oauth/token (per client address and per user).

``free`` failures in a row cost nothing; each further failure locks the key for 1, 2, 4 ...
seconds, up to ``max_s``.  While locked, a login is answered 429 without looking at the
password, so guessing runs at a few tries an hour, whatever the attacker's speed.  A success
forgets the key, and so does a quiet quarter of an hour.  At most ``max_keys`` keys are
kept (the least recently failed are forgotten first), so a flood of names costs bounded memory.
"""

import threading
import time

_FORGET_S = 900.0


class LoginThrottle:
    def __init__(self, free, max_s, clock=time.monotonic, max_keys=4096):
        self.free = int(free)
        self.max_s = float(max_s)
        self.clock = clock
        self.max_keys = max_keys
        self._lock = threading.Lock()
        self._keys = {}  # key -> [failures, locked until, last failure]

    def wait(self, key):
        """Seconds ``key`` is still locked out for (0.0: go ahead)."""
        with self._lock:
            e = self._keys.get(key)
            return max(0.0, e[1] - self.clock()) if e else 0.0

    def failed(self, key):
        now = self.clock()
        with self._lock:
            e = self._keys.get(key)
            if e is None or now - e[2] > _FORGET_S:
                if e is None and len(self._keys) >= self.max_keys:
                    self._evict()
                e = self._keys[key] = [0, 0.0, now]
            e[0] += 1
            e[2] = now
            over = e[0] - self.free
            if over > 0:
                e[1] = now + min(self.max_s, 2.0 ** min(over - 1, 30))

    def succeeded(self, key):
        with self._lock:
            self._keys.pop(key, None)

    def _evict(self):
        by_age = sorted(self._keys, key=lambda k: self._keys[k][2])
        for k in by_age[:max(1, len(by_age) // 8)]:
            del self._keys[k]
