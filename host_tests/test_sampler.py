"""lib/sampler.py: drift-free schedule, missed slots, null flags on failures, time flags (both).

A VirtualClock (host_tests/sensor_clock.py) stands behind ``time`` in the sampler, the
drivers and the device models, so sleeps cost nothing and the schedule is exact.
"""

import am2320
import am2320_device
import bmp180
import bmp180_device
import machine
import record
import sampler
import support
import tslog
from am2320_device import AM2320Device
from bmp180_device import BMP180Device
from sensor_clock import VirtualClock

BUS = 1


class FakeClock:
    """lib/clock.py's interface on the virtual clock: mono ms, UTC once ``is_set``."""

    def __init__(self, vc):
        self.vc = vc
        self.t0 = vc.us // 1000
        self.is_set = False
        self.utc0 = 1764000000000  # 2025-11-24

    def mono_ms(self):
        return self.vc.us // 1000 - self.t0

    def utc_ms(self):
        return self.utc0 + self.mono_ms() if self.is_set else None


class ListStore:
    def __init__(self):
        self.recs = []
        self.fail = False

    def store_record(self, data):
        if self.fail:
            raise OSError(5)
        self.recs.append(record.decode(data))
        return len(self.recs)


def _setup(interval_ms=2000, am=True, bmp=True):
    machine.i2c_devices(BUS).clear()
    vc = VirtualClock().install(sampler, am2320, am2320_device, bmp180, bmp180_device)
    devs = []
    if am:
        devs.append(machine.attach_i2c(BUS, AM2320Device(temperature_c=12.3, humidity_rh=67.8)))
    if bmp:
        devs.append(machine.attach_i2c(BUS, BMP180Device(temperature_c=11.5,
                                                         pressure_pa=99000.0)))
    store = ListStore()
    clock = FakeClock(vc)
    logs = []
    s = sampler.Sampler(machine.I2C(BUS, freq=100000), store, clock, 7, interval_ms,
                        log=logs.append)
    return vc, s, store, clock, logs, devs


def _teardown(vc):
    vc.uninstall()
    machine.i2c_devices(BUS).clear()


def _run_slots(vc, s, n, work_ms=0):
    """Sleep until each slot, poll, then 'work' ``work_ms`` more (other loop work)."""
    taken = []
    while len(taken) < n:
        wait = s.due_in_ms()
        if wait > 0:
            vc.sleep_ms(wait)
        if s.poll():
            taken.append((s.slot_ms, s.late_ms))
            vc.advance_ms(work_ms)
    return taken


def test_schedule_is_drift_free_across_the_ticks_wrap():
    # 2.5 s: at exactly 2 s the AM2320 driver's own >= 2 s wait (counted from the end of
    # its previous read) adds its ~3 ms transaction to every slot (see docs/firmware.md).
    vc, s, store, clock, logs, _ = _setup(interval_ms=2500)
    try:
        s.start()
        t0 = s.next_ms
        # Each slot costs the readings (~35 ms incl. the AM2320 pauses) plus 300 ms of other
        # work: a "now + interval" scheduler would drift 335 ms a slot, this one must not.
        taken = _run_slots(vc, s, 40, work_ms=300)
        for k, (slot, late) in enumerate(taken):
            assert slot == vc.ticks_add(t0, k * 2500), (k, slot)
            assert 0 <= late < 2500
        assert s.taken == 40 and s.stored == 40 and s.missed == 0 and s.failed == 0
        assert len(store.recs) == 40
        # the run crossed the 2**30 ms ticks wrap (VirtualClock starts 3 s before it)
        assert vc.ticks_diff(vc.ticks_ms(), t0) >= 39 * 2500
        assert vc.ticks_ms() < t0
        # the 40th sample started on time: no accumulated drift
        assert max(late for _, late in taken[2:]) == 0
        assert vc.ticks_diff(vc.ticks_ms(), vc.ticks_add(t0, 39 * 2500)) < 400
        r = store.recs[-1]  # record v2: integers at the sensors' resolution
        assert r[1] == 123 and r[2] == 678 and r[3] == 115 and abs(r[4] - 99000) < 2
        assert r[7] == 7 and r[8] & record.FLAG_MASK == 0  # boot counter, no FLAG_UTC
        # each record carries its slot's time: exactly one interval apart
        times = [rec[0] for rec in store.recs]
        assert all(b - a == 2500 for a, b in zip(times, times[1:])), times
    finally:
        _teardown(vc)


def test_values_follow_the_current_layouts_field_names():
    """A firmware update's layout may order its fields otherwise and add some: the sampler
    fills each value by its field's name (one nothing reads yet is stored as 0)."""
    lay = record.Layout(5, "<qIhIhHiHHB", ("time_ms", "heap", "bmp180_temp", "mem_used",
                                           "am2320_temp", "battery_mv", "bmp180_pressure",
                                           "am2320_humidity", "boot", "flags"),
                        nulls={"am2320_temp": record.FLAG_NO_AM,
                               "am2320_humidity": record.FLAG_NO_AM,
                               "bmp180_temp": record.FLAG_NO_BMP,
                               "bmp180_pressure": record.FLAG_NO_BMP})
    try:
        record.register(lay, current=True)
        vc, s, store, clock, logs, _ = _setup()
        try:
            s.start()
            _run_slots(vc, s, 2)  # (the first primes the AM2320)
        finally:
            _teardown(vc)
        r = dict(zip(lay.fields, store.recs[-1]))
        assert record.layout_of(store.recs[-1]) is lay and r["boot"] == 7
        assert r["am2320_temp"] == 123 and r["am2320_humidity"] == 678, r
        assert r["bmp180_temp"] == 115 and abs(r["bmp180_pressure"] - 99000) < 2, r
        assert r["battery_mv"] == 0 and 0 < r["mem_used"] < r["heap"], r
    finally:
        record.LAYOUTS.pop(5, None)
        record.CURRENT = 2


def test_first_am2320_priming_does_not_miss_a_slot():
    vc, s, store, clock, logs, _ = _setup(interval_ms=2000)
    try:
        s.start()
        _run_slots(vc, s, 3)
        # the first AM2320 read primes it without waiting: slot 0's record has the
        # BMP180's values and the AM2320's null, marked as resting; no slot is late
        assert s.missed == 0 and s.taken == 3 and s.stored == 3 and s.rested == 1
        assert s.max_late_ms < 50
        first = store.recs[0]
        assert first[8] & record.FLAG_NO_AM and first[8] & record.FLAG_AM_REST
        assert all(not r[8] & record.FLAG_NO_AM for r in store.recs[1:])
        assert s.fails["am2320"] == [0, 0]
    finally:
        _teardown(vc)


def test_one_second_interval_takes_every_slot():
    """At 1 s the AM2320 can give a reading every other slot only: every slot still gets a
    record (the BMP180's reading), the AM2320's values null and marked resting in the
    others, and the loop is never held for the AM2320's 2 s."""
    vc, s, store, clock, logs, (am, bmp) = _setup(interval_ms=1000)
    try:
        s.start()
        _run_slots(vc, s, 20)
        assert s.missed == 0 and s.stored == 20 and s.max_late_ms < 50
        rest = [bool(r[8] & record.FLAG_AM_REST) for r in store.recs]
        assert rest[0] and rest[1] and rest.count(True) == 11, rest  # slot 0 primes
        assert all(rest[i] != rest[i + 1] for i in range(1, 19))  # every other slot
        assert all(not r[8] & record.FLAG_NO_BMP for r in store.recs)
        assert am.early_reads == 0 and s.rested == 11 and s.fails["am2320"] == [0, 0]
    finally:
        _teardown(vc)


def test_blocked_loop_counts_missed_slots_without_burst():
    vc, s, store, clock, logs, _ = _setup(interval_ms=3000)
    try:
        s.start()
        _run_slots(vc, s, 3)
        assert s.missed == 0
        base = s.taken
        nxt = s.next_ms
        vc.advance_ms(10500 + vc.ticks_diff(nxt, vc.ticks_ms()))  # blocked 3.5 slots
        assert s.poll()
        assert s.missed == 3 and s.taken == base + 1
        assert s.slot_ms == vc.ticks_add(nxt, 9000)
        assert s.next_ms == vc.ticks_add(nxt, 12000)
        assert not s.poll()  # no catch-up burst
        assert any("missed" in m for m in logs)
        # every slot is taken or missed
        assert s.taken + s.missed == base + 4
    finally:
        _teardown(vc)


def test_failed_readings_are_null_and_counted():
    vc, s, store, clock, logs, (am, bmp) = _setup()
    try:
        s.start()
        _run_slots(vc, s, 2)
        am.on_bus = False
        _run_slots(vc, s, 3)
        r = store.recs[-1]
        assert r[8] & record.FLAG_NO_AM and r[1] == r[2] == 0  # null, sent as null
        assert not r[8] & record.FLAG_NO_BMP and r[4] > 90000  # BMP180 still read
        assert s.fails["am2320"] == [3, 3] and s.fails["bmp180"] == [0, 0]
        assert s.all_failed == 0 and s.stored == 5
        bmp.on_bus = False
        _run_slots(vc, s, 2)
        assert s.all_failed == 2 and s.failed == 2 and s.stored == 5  # nothing worth storing
        assert s.fails["am2320"] == [5, 5] and s.fails["bmp180"] == [2, 2]
        am.on_bus = bmp.on_bus = True
        _run_slots(vc, s, 2)
        assert s.all_failed == 0 and s.stored == 7
        assert s.fails["am2320"] == [0, 5] and s.fails["bmp180"] == [0, 2]
        assert s.taken == s.stored + s.failed + s.store_errors
        assert len([m for m in logs if "reading failed" in m]) == 2  # once per failure run
    finally:
        _teardown(vc)


def test_sensor_missing_at_boot_is_retried():
    vc, s, store, clock, logs, devs = _setup(bmp=False)
    try:
        s.probe()
        assert s.sensors[1] is None and s.sensors[0] is not None
        assert any("bmp180 not found" in m for m in logs)
        s.start()
        _run_slots(vc, s, 2)
        # slot 0: the AM2320 primes (no fresh reading yet) and there is no BMP180: nothing
        # to store; slot 1: the AM2320's reading, the BMP180's values null
        assert s.stored == 1 and s.failed == 1 and store.recs[-1][8] & record.FLAG_NO_BMP
        machine.attach_i2c(BUS, BMP180Device(temperature_c=5.0))
        _run_slots(vc, s, 1)
        assert s.sensors[1] is not None and store.recs[-1][3] == 50
        assert any("bmp180 found" in m for m in logs)
    finally:
        _teardown(vc)


def test_time_is_mono_before_the_clock_is_set_then_utc():
    vc, s, store, clock, logs, _ = _setup()
    try:
        s.start()
        _run_slots(vc, s, 2)
        r = store.recs[-1]
        assert r[8] & record.FLAG_UTC == 0
        assert 0 <= r[0] < 10000  # ms since boot
        clock.is_set = True
        _run_slots(vc, s, 1)
        r = store.recs[-1]
        assert r[8] & record.FLAG_UTC and r[0] >= clock.utc0
        assert record.timestamp_of(r) == r[0]
    finally:
        _teardown(vc)


def test_store_error_is_counted_not_raised():
    vc, s, store, clock, logs, _ = _setup()
    try:
        s.start()
        _run_slots(vc, s, 1)
        store.fail = True
        _run_slots(vc, s, 2)
        assert s.store_errors == 2 and s.stored == 1 and s.taken == 3
    finally:
        _teardown(vc)


def test_stores_into_a_real_tslog_with_commit_delta():
    vc, s, store, clock, logs, _ = _setup()
    try:
        log = tslog.TSLog(support.tmpdir("sampler"), record_size=record.QUEUE_RECORD_SIZE,
                          bucket_size=8, commit_delta=4, codec=record.CODEC)
        s._store = log
        s.start()
        _run_slots(vc, s, 6)
        assert log.last_seqn == 6 and log.committed_seqn == 4  # commits every 4 stores
        r = log.reader(0)
        got = []
        while True:
            rec = r.next_record()
            if rec is None:
                break
            got.append(record.decode(rec))
        assert len(got) == 4 and got[0][7] == 7
        log.close()
    finally:
        _teardown(vc)
