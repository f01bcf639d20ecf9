"""Boot counter, reset causes and the failure policy: sensor resets with back-off, watchdog.

State (a few hundred bytes of JSON) is kept in ``path`` on flash, written atomically
(temp file, flush, rename: LittleFS renames over the old file in one step; on FAT the
old file is removed first), and mirrored in RTC memory, which survives a reset but
not a power cut.  At boot the newer of the two wins (higher boot counter), so a lost
or corrupt file costs nothing after a reset and the counter still moves on.

* ``boot``: boot counter, +1 at every ``start()``; the records of a boot carry it
  (mod 65536) so pre-NTP samples are tied to the boot whose epoch is learnt later.
* ``cause``: why this boot happened.  Our own resets record their cause in the state
  before ``machine.reset()`` ("sensor", "config", "uploader_stall"); otherwise the
  hardware's ``machine.reset_cause()`` names it ("power_on", "watchdog", ...).
  ``history``: the last ``_HISTORY`` (boot, cause) pairs.

Sensor failure policy: ``fail_reset`` consecutive slots with every sensor failing
lead to ``reset("sensor")`` (a re-initialised I2C peripheral and sensors is the only
remedy software has for a wedged bus).  The k-th such reset in a row records a
back-off ``min(backoff_max_s, backoff_min_s * 2 ** (k - 1))``; the next boot holds
off any sensor reset for that long (``hold_ms``, on the boot's monotonic clock)
while the loop keeps running normally: Wi-Fi, the uploader and health records
work, and slots are still tried every interval (the sensor may come back).  A dead
sensor thus costs one reset per back-off period (1 h at most), never a tight boot
loop, and the queued data still goes out.  The first good reading clears the count.

Watchdog: ``wdt_start()`` arms ``machine.WDT(timeout=wdt_timeout_ms)``; the main loop
calls ``feed()`` only when it made progress (see ``app``).  ``wdt_timeout_ms=0``
disables it.
"""

import json

import machine
from fsutil import makedirs, write_atomic
from micropython import const

_HISTORY = const(8)
_RTC_MAGIC = b"BG1:"
_HW_CAUSES = ((getattr(machine, "PWRON_RESET", 1), "power_on"),
              (getattr(machine, "HARD_RESET", 2), "hard_reset"),
              (getattr(machine, "WDT_RESET", 3), "watchdog"),
              (getattr(machine, "DEEPSLEEP_RESET", 4), "deepsleep"),
              (getattr(machine, "SOFT_RESET", 5), "soft_reset"))
_PWRON = _HW_CAUSES[0][0]


def _nothing():
    pass


def hw_cause_name(code):
    for c, name in _HW_CAUSES:
        if c == code:
            return name
    return "unknown_%d" % code


def backoff_s(k, backoff_min_s, backoff_max_s):
    """Back-off after the k-th consecutive sensor reset (k >= 1), in s."""
    d = backoff_min_s << (k - 1 if k < 24 else 24)
    return d if d < backoff_max_s else backoff_max_s


class BootGuard:
    """Boot bookkeeping and the failure policy (see the module docstring).

    ``fail_reset``: consecutive all-sensor failures before a reset (0: never).
    ``backoff_min_s`` / ``backoff_max_s``: the back-off's first value and cap.
    """

    def __init__(self, path="data/boot.json", fail_reset=30, backoff_min_s=60,
                 backoff_max_s=3600, wdt_timeout_ms=60000, log=print):
        self.path = path
        self.fail_reset = fail_reset
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.wdt_timeout_ms = wdt_timeout_ms
        self._log = log
        self._wdt = None
        self.feeds = 0
        self.boot = 0
        self.cause = "unknown"
        self.hw_cause = "unknown"
        self.sensor_resets = 0  # sensor resets in a row (cleared by a good reading)
        self.backoff_s = 0  # back-off recorded by the last sensor reset
        self.hold_ms = 0  # no sensor reset before mono_ms reaches this
        self.history = []
        self.save_errors = 0
        self.before_reset = _nothing  # run before a reset on purpose (app: commit the queue)

    # -- state -------------------------------------------------------------
    def _read(self, rtc):
        """The state kept in RTC memory (``rtc``) or in the file; None when there is none
        (no file, a power-up's RTC memory) or it is unusable (logged)."""
        try:
            if rtc:
                raw = machine.RTC().memory()
                if raw[:len(_RTC_MAGIC)] != _RTC_MAGIC:
                    return None
                raw = raw[len(_RTC_MAGIC):]
            else:
                with open(self.path) as f:
                    raw = f.read()
            st = json.loads(raw)
            if isinstance(st, dict) and isinstance(st.get("boot"), int):
                return st
            why = "has no boot counter"
        except (AttributeError, OSError):  # no RTC memory (a port without it), no file
            return None
        except ValueError:
            why = "is corrupt"
        self._log("bootguard: %s %s; ignored" % ("RTC memory" if rtc else self.path, why))
        return None

    def save(self, pending=None):
        """Persist the state (flash file + RTC memory); never raises."""
        text = json.dumps({"boot": self.boot, "pending": pending,
                           "sensor_resets": self.sensor_resets, "backoff_s": self.backoff_s,
                           "history": self.history})
        try:
            machine.RTC().memory(_RTC_MAGIC + text.encode())
        except (AttributeError, OSError, ValueError):
            pass
        try:
            write_atomic(self.path, text)
            return True
        except OSError as e:
            self.save_errors += 1
            self._log("bootguard: cannot write %s: %s" % (self.path, e))
            return False

    # -- boot --------------------------------------------------------------
    def start(self):
        """Count this boot and find its cause; call once, early in boot."""
        i = self.path.rfind("/")
        if i > 0:
            makedirs(self.path[:i])
        st = self._read(False)
        r = self._read(True)
        if r is not None and (st is None or r["boot"] > st["boot"]):
            st = r
        st = st or {"boot": 0}
        hw = machine.reset_cause()
        self.hw_cause = hw_cause_name(hw)
        pending = st.get("pending")
        self.cause = pending if pending and hw != _PWRON else self.hw_cause
        self.boot = st["boot"] + 1
        self.sensor_resets = int(st.get("sensor_resets") or 0)
        self.backoff_s = int(st.get("backoff_s") or 0)
        hist = st.get("history")
        self.history = hist[-(_HISTORY - 1):] if isinstance(hist, list) else []
        self.history.append([self.boot, self.cause])
        self.hold_ms = self.backoff_s * 1000 if self.cause == "sensor" else 0
        self.save()
        self._log("bootguard: boot %d, cause %s" % (self.boot, self.cause))
        if self.hold_ms:
            self._log("bootguard: sensor reset #%d: no further sensor reset for %d s" % (
                self.sensor_resets, self.backoff_s))
        return self

    # -- policy ------------------------------------------------------------
    def check_sensors(self, all_failed, mono_ms):
        """Reset if every sensor failed ``fail_reset`` slots in a row and no hold is on."""
        if all_failed == 0:
            if self.sensor_resets:
                self.sensor_resets = 0
                self.backoff_s = 0
                self.save()
                self._log("bootguard: sensors work again; back-off cleared")
            return
        if self.fail_reset > 0 and all_failed >= self.fail_reset and mono_ms >= self.hold_ms:
            self.reset("sensor", "every sensor failed %d times in a row" % all_failed)

    def reset(self, cause, why=""):
        """Record ``cause`` (and a back-off for "sensor"), then ``machine.reset()``."""
        try:
            self.before_reset()
        except Exception as e:  # noqa: BLE001 - the reset must happen anyway
            self._log("bootguard: before reset: %s" % e)
        if cause == "sensor":
            self.sensor_resets += 1
            self.backoff_s = backoff_s(self.sensor_resets, self.backoff_min_s,
                                       self.backoff_max_s)
        self.save(pending=cause)
        self._log("bootguard: reset (%s%s%s)%s" % (
            cause, ": " if why else "", why,
            "; back-off %d s" % self.backoff_s if cause == "sensor" else ""))
        machine.reset()

    # -- watchdog ----------------------------------------------------------
    def wdt_start(self):
        if self.wdt_timeout_ms > 0 and self._wdt is None:
            self._wdt = machine.WDT(timeout=self.wdt_timeout_ms)

    def wdt_relax(self, timeout_ms):
        """Lengthen the watchdog (e.g. 1 h when the loop stops for an interactive REPL)."""
        if self._wdt is not None:
            try:
                self._wdt = machine.WDT(timeout=timeout_ms)
            except (OSError, ValueError):
                pass

    def feed(self):
        if self._wdt is not None:
            self._wdt.feed()
            self.feeds += 1
