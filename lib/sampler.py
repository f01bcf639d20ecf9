"""Sensor sampling on a drift-free schedule into the TSLog queue.

One *slot* every ``interval_ms``: slot ``k`` is due at ``start + k * interval_ms``
(``ticks_add`` of the previous due time, never "now + interval", so the rate does not
drift by the time a reading takes).  ``poll()`` processes the slot that is due:

* late by less than one interval (GC, a slow reading): the slot is taken now;
* late by one interval or more (the loop was blocked): every slot that passed is
  counted in ``missed`` and the schedule continues from the next slot: no burst of
  catch-up readings, which would be wrong data (taken at the same instant) anyway.

So ``taken + missed`` is the number of slots since ``start()``, and each taken slot is
``stored``, ``failed`` (no sensor gave a reading: nothing worth storing) or a
``store_errors`` (the flash refused the write): every slot is in the store once or
counted with a cause.

Records are of the current layout (``record.CURRENT``, v2), their values set by the
layout's field names: integers at the sensors' resolution (0.1 degC, 0.1 %RH, Pa); a
sensor whose reading failed has its null flag set (``FLAG_NO_AM``, ``FLAG_NO_BMP``: sent
as JSON null).  No driver holds the loop longer than its
datasheet conversion time: the AM2320 may be read only every 2 s, and returns no
fresh reading inside that rest or on its first (priming) read; such a slot still gets
its record, with the AM2320's values null and ``FLAG_AM_REST`` set (counted in
``rested``, not a failure). At ``sample_interval_s`` 1 every other record has them.
Per sensor,
``fails[name]`` is ``[consecutive, total]``; ``all_failed`` counts consecutive slots in
which no sensor gave a reading and one failed (the failure policy in ``bootguard``
resets on it).

A sensor missing at boot is not an error here: its driver object is created on the
first slot that finds it on the bus (BMP180 checks its chip id and calibration when
created; AM2320 needs nothing), and each slot retries while it is missing.

Time of a record: its slot's scheduled time, as UTC ms (``FLAG_UTC``) when
``clock.is_set``, else as ``clock.mono_ms()`` (ms since this boot) with the flag clear;
see ``record``. The readings follow it by the slot's lateness (``late_ms``) and the
sensors' conversion times; a fixed interval between records lets the queue store a
record's time in about one bit.

Heap figures: ``gc.collect()`` runs once per slot, right before ``mem_used``
(``gc.mem_alloc()``) and ``heap`` (``mem_alloc() + mem_free()``) are read, so a record
holds the live heap, not the garbage since the last collection.

``store`` is the TSLog (``store_record``; it commits every ``commit_delta`` records by
itself). ``lock`` (``_thread.allocate_lock()``) is held around every TSLog call because
the uploader thread reads the same TSLog object; without one the sampler makes its own.
"""

import _thread
import gc
import time

import record
from micropython import const

_AM = const(0)
_BMP = const(1)
NAMES = ("am2320", "bmp180")


class Sampler:
    """Reads both sensors every ``interval_ms`` and appends one ``record`` to ``store``.

    ``i2c``: the bus (``machine.I2C``); ``clock``: object with ``is_set``, ``utc_ms()``
    and ``mono_ms()`` (``lib/clock.py``); ``boot``: boot counter; ``am`` / ``bmp``:
    driver objects to use instead of creating them from ``i2c`` (tests). ``sensors``: the
    two drivers (``NAMES`` order), None while that sensor is missing.
    """

    def __init__(self, i2c, store, clock, boot, interval_ms, lock=None, log=print,
                 am=None, bmp=None):
        if interval_ms < 1:
            raise ValueError("interval_ms must be >= 1")
        self._i2c = i2c
        self._store = store
        self._clock = clock
        self.boot = boot & 0xFFFF
        self.interval_ms = interval_ms
        self._lock = lock if lock is not None else _thread.allocate_lock()
        self._log = log
        self.sensors = [am, bmp]
        self._missing_logged = [False, False]
        self._values = {}  # the record's values by field name (``record.encode``)
        self._started = False
        self.next_ms = time.ticks_ms()  # ticks_ms at which the next slot is due
        self.slot_ms = self.next_ms  # ticks_ms at which the last taken slot was due
        self.late_ms = 0  # how late the last taken slot started (ms)
        self.max_late_ms = 0  # worst lateness of a taken slot since start()
        # counters
        self.taken = 0
        self.stored = 0
        self.missed = 0
        self.failed = 0  # slots without any reading (not stored)
        self.rested = 0  # records without an AM2320 reading because it was resting
        self.store_errors = 0
        self.all_failed = 0  # consecutive slots with every sensor failing
        self.fails = {NAMES[0]: [0, 0], NAMES[1]: [0, 0]}  # [consecutive, total]
        self.last_seqn = None

    # -- schedule ----------------------------------------------------------
    def start(self, now_ms=None):
        """Start the schedule: the first slot is due at ``now_ms`` (default: now)."""
        self.next_ms = time.ticks_ms() if now_ms is None else now_ms
        self._started = True

    def due_in_ms(self):
        """Milliseconds until the next slot (<= 0: due now)."""
        if not self._started:
            self.start()
        return time.ticks_diff(self.next_ms, time.ticks_ms())

    def poll(self):
        """Process the due slot, if any; True if a slot was taken."""
        late = -self.due_in_ms()
        if late < 0:
            return False
        skip = late // self.interval_ms
        if skip:
            self.missed += skip
            self._log("sampler: loop was blocked %d ms: %d slot(s) missed" % (late, skip))
            late -= skip * self.interval_ms
        slot = time.ticks_add(self.next_ms, skip * self.interval_ms)
        self.next_ms = time.ticks_add(slot, self.interval_ms)
        self.slot_ms = slot
        self.late_ms = late
        if late > self.max_late_ms:
            self.max_late_ms = late
        self.sample(slot)
        return True

    # -- sensors -----------------------------------------------------------
    def _sensor(self, i):
        s = self.sensors[i]
        if s is not None:
            return s
        try:
            if i == _AM:
                import am2320
                s = am2320.AM2320(self._i2c)
            else:
                import bmp180
                s = bmp180.BMP180(self._i2c)
        except Exception as e:  # noqa: BLE001 - absent or broken: retried next slot
            if not self._missing_logged[i]:
                self._missing_logged[i] = True
                self._log("sampler: %s not found (%s); retrying every slot" % (NAMES[i], e))
            return None
        if self._missing_logged[i]:
            self._log("sampler: %s found" % NAMES[i])
        self.sensors[i] = s
        return s

    def _read(self, i):
        """Fill this sensor's values: True on a reading, False on a failure, None when
        the sensor had no fresh reading to give in this slot (the AM2320 inside its 2 s
        rest, or priming: ``am2320.measure()`` returns False then; not a failure)."""
        v = self._values
        s = self._sensor(i)
        err = None
        if s is not None:
            try:
                if s.measure() is False:
                    return None
                if i == _AM:
                    v["am2320_temp"] = s.temperature_tenths()
                    v["am2320_humidity"] = s.humidity_tenths()  # type: ignore
                else:
                    v["bmp180_temp"] = s.temperature_tenths()
                    v["bmp180_pressure"] = s.pressure()  # type: ignore
                err = 0
            except Exception as e:  # noqa: BLE001 - any driver failure is a failed reading
                err = e
        f = self.fails[NAMES[i]]
        if err == 0:
            if f[0]:
                self._log("sampler: %s back after %d failed reading(s)" % (NAMES[i], f[0]))
            f[0] = 0
            return True
        if f[0] == 0 and err is not None:  # log the first failure of a run, not every one
            self._log("sampler: %s reading failed: %s" % (NAMES[i], err))
        f[0] += 1
        f[1] += 1
        return False

    def probe(self):
        """Create the sensor drivers now (logs the missing ones); slots retry the rest."""
        for i in (_AM, _BMP):
            self._sensor(i)

    # -- one sample --------------------------------------------------------
    def sample(self, slot_ms=None):
        """Read the sensors now and store one record; returns its seqn or None.
        ``slot_ms``: the ticks_ms the slot was due at (the record's time; default now)."""
        self.taken += 1
        am = self._read(_AM)
        bmp = self._read(_BMP)
        flags = 0
        if not am:
            flags = record.FLAG_NO_AM | (record.FLAG_AM_REST if am is None else 0)
        if not bmp:
            flags |= record.FLAG_NO_BMP
        gc.collect()
        if not (am or bmp):  # no reading at all: nothing worth storing
            if am is False or bmp is False:
                self.all_failed += 1  # (a resting AM2320 is not a failing one)
            self.failed += 1
            return None
        self.all_failed = 0
        if am is None:
            self.rested += 1
        v = self._values
        used = v["mem_used"] = gc.mem_alloc()
        v["heap"] = used + gc.mem_free()
        clock = self._clock
        late = 0 if slot_ms is None else time.ticks_diff(time.ticks_ms(), slot_ms)
        if clock.is_set:
            t = clock.utc_ms() - late
            flags |= record.FLAG_UTC
        else:
            t = clock.mono_ms() - late
        data = record.encode(t, v, self.boot, flags)
        try:
            with self._lock:
                seqn = self._store.store_record(data)
        except OSError as e:
            self.store_errors += 1
            self._log("sampler: store failed: %s" % e)
            return None
        self.stored += 1
        self.last_seqn = seqn
        return seqn

    def stats(self):
        """Counters as a dict, under the health records' names (``samples``: slots
        taken, ``sensor_failed``: slots where every sensor failed)."""
        return {"samples": self.taken, "stored": self.stored, "missed": self.missed,
                "sensor_failed": self.failed, "store_errors": self.store_errors,
                "rested": self.rested,
                "all_failed": self.all_failed, "max_late_ms": self.max_late_ms,
                "am2320_fails": self.fails[NAMES[0]][1], "bmp180_fails": self.fails[NAMES[1]][1]}
