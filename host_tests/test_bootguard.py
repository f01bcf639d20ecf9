"""lib/bootguard.py: boot counter, reset causes, sensor resets with back-off across boots
(simulated with the fake machine.reset() / RTC memory), watchdog feeding (both)."""

import json
import os

import bootguard
import machine
import support


def _boot(path, cause=None, **kw):
    if cause is not None:
        machine.set_reset_cause(cause)
    logs = []
    kw.setdefault("fail_reset", 5)
    kw.setdefault("backoff_min_s", 60)
    kw.setdefault("backoff_max_s", 3600)
    g = bootguard.BootGuard(path, log=logs.append, **kw).start()
    return g, logs


def _fresh():
    machine.rtc_memory[:] = b""
    return support.tmpdir("bootguard") + "/data/boot.json"


def _reset_of(g, *args):
    try:
        g.check_sensors(*args)
    except machine.Reset as e:
        return e
    return None


def test_boot_counter_and_causes_persist():
    path = _fresh()
    g, logs = _boot(path, machine.PWRON_RESET)
    assert g.boot == 1 and g.cause == "power_on"
    g, _ = _boot(path, machine.WDT_RESET)
    assert g.boot == 2 and g.cause == "watchdog"
    machine.rtc_memory[:] = b""  # power cut: RTC memory gone, the file remains
    g, _ = _boot(path, machine.PWRON_RESET)
    assert g.boot == 3 and g.history == [[1, "power_on"], [2, "watchdog"], [3, "power_on"]]
    with open(path) as f:
        assert json.loads(f.read())["boot"] == 3
    assert "boot.json.tmp" not in os.listdir(path.rsplit("/", 1)[0])


def test_corrupt_or_lost_file_falls_back_to_rtc_memory():
    path = _fresh()
    for _ in range(4):
        g, _ = _boot(path, machine.HARD_RESET)
    with open(path, "w") as f:
        f.write('{"boot": 2, "hist')  # torn by hand (an atomic write never leaves this)
    g, logs = _boot(path, machine.SOFT_RESET)
    assert g.boot == 5  # from RTC memory, not restarted at 1
    assert any("corrupt" in m for m in logs)
    os.remove(path)
    g, _ = _boot(path, machine.SOFT_RESET)
    assert g.boot == 6


def test_history_is_bounded():
    path = _fresh()
    for _ in range(20):
        g, _ = _boot(path, machine.HARD_RESET)
    assert g.boot == 20 and len(g.history) == 8 and g.history[-1] == [20, "hard_reset"]


def test_sensor_reset_backoff_across_boots():
    path = _fresh()
    g, _ = _boot(path, machine.PWRON_RESET, fail_reset=5)
    assert g.hold_ms == 0
    assert _reset_of(g, 4, 10_000) is None  # 4 < 5 failures: no reset
    e = _reset_of(g, 5, 10_000)
    assert e is not None  # first sensor reset: no hold at power-on
    boots = []
    mono_at_reset = []
    for _ in range(9):
        g, logs = _boot(path, e.cause)  # the next boot after machine.reset()
        boots.append((g.cause, g.sensor_resets, g.backoff_s, g.hold_ms))
        assert g.cause == "sensor"
        # the sensors still fail: no reset before the hold has passed, whatever the count
        assert _reset_of(g, 1000, g.hold_ms - 1) is None
        mono = g.hold_ms
        e = _reset_of(g, 5, mono)
        assert e is not None
        mono_at_reset.append(mono)
    # back-off doubles from 60 s and is capped at 1 h
    assert [b[2] for b in boots] == [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]
    assert mono_at_reset[-1] == 3600_000
    # one reset per back-off period: never a tight loop
    assert min(mono_at_reset) >= 60_000


def test_good_reading_clears_the_backoff():
    path = _fresh()
    g, _ = _boot(path, machine.PWRON_RESET)
    e = _reset_of(g, 5, 0)
    g, _ = _boot(path, e.cause)
    e = _reset_of(g, 5, g.hold_ms)
    g, logs = _boot(path, e.cause)
    assert g.sensor_resets == 2 and g.hold_ms == 120_000
    g.check_sensors(0, 1000)  # a slot with a good reading
    assert g.sensor_resets == 0 and any("cleared" in m for m in logs)
    g, _ = _boot(path, machine.WDT_RESET)
    assert g.sensor_resets == 0 and g.hold_ms == 0 and g.cause == "watchdog"


def test_power_cut_after_sensor_reset_is_power_on():
    path = _fresh()
    g, _ = _boot(path, machine.PWRON_RESET)
    _reset_of(g, 5, 0)
    # the board lost power instead of resetting: the recorded cause is not claimed
    machine.rtc_memory[:] = b""
    g, _ = _boot(path, machine.PWRON_RESET)
    assert g.cause == "power_on" and g.hold_ms == 0
    assert g.sensor_resets == 1  # but the count is kept until a good reading


def test_fail_reset_zero_never_resets():
    path = _fresh()
    g, _ = _boot(path, machine.PWRON_RESET, fail_reset=0)
    assert _reset_of(g, 10**6, 10**9) is None


def test_watchdog_feed_and_relax():
    path = _fresh()
    g, _ = _boot(path, machine.PWRON_RESET, wdt_timeout_ms=5000)
    g.feed()  # not armed yet: nothing
    assert g.feeds == 0
    g.wdt_start()
    wdt = machine.WDT.active
    assert wdt is not None and wdt.timeout == 5000
    g.feed()
    g.feed()
    assert g.feeds == 2 and wdt.feeds == 2
    g.wdt_relax(3600000)
    assert machine.WDT.active.timeout == 3600000
    g2, _ = _boot(path, machine.PWRON_RESET, wdt_timeout_ms=0)
    machine.WDT.active = None
    g2.wdt_start()
    assert machine.WDT.active is None


def test_uploader_stall_cause_is_recorded_for_the_watchdog_reset():
    path = _fresh()
    g, _ = _boot(path, machine.PWRON_RESET)
    g.save(pending="uploader_stall")
    g, _ = _boot(path, machine.WDT_RESET)
    assert g.cause == "uploader_stall" and g.hw_cause == "watchdog"
    g, _ = _boot(path, machine.WDT_RESET)
    assert g.cause == "watchdog"  # pending causes are used once


def test_backoff_formula():
    assert [bootguard.backoff_s(k, 60, 3600) for k in (1, 2, 3, 7, 8, 100)] == [
        60, 120, 240, 3600, 3600, 3600]


def test_before_reset_runs_first_and_cannot_block_the_reset():
    path = _fresh()
    g, logs = _boot(path, machine.PWRON_RESET)
    seen = []

    def commit():
        with open(path) as f:  # the cause is not written yet when the hook runs
            seen.append(json.loads(f.read())["pending"])
        raise OSError(5)

    g.before_reset = commit
    assert _reset_of(g, 5, 0) is not None
    assert seen == [None] and any("before reset" in m for m in logs)
    with open(path) as f:
        assert json.loads(f.read())["pending"] == "sensor"
