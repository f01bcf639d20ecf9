# run: micropython
"""The firmware's main loop (lib/app.py): heap after set-up, heap per slot, steady state.

A board with no uplink and the uploader inline (single thread, so the stepped virtual
clock of host_tests/sensor_clock.py drives the loop: hours cost seconds), the TSLog in a
temp dir.  Two runs:

* stub sensors (constant readings): the firmware's own allocation per slot (sampler,
  record, TSLog) and the live heap after the loop's ``gc.collect()`` every simulated
  hour: it must stay flat (bounded allocation);
* the AM2320/BMP180 device models on the fake I2C bus at the default 2 s interval: the
  slot accounting (taken + missed = slots, every taken slot stored).  The fake bus and
  models allocate far more than the real ``machine.I2C`` does, so no heap figure here.

Heap figures are for the 64-bit unix port: about twice a 32-bit ESP32's, and module
bytecode costs nothing there when frozen into the firmware.
"""

import gc
import time

import am2320
import am2320_device
import app
import bmp180
import bmp180_device
import bootguard
import fsutil  # noqa: F401 - the modules app.boot() imports: loaded first, so the
import machine
import record  # noqa: F401 -   figure below is the objects it builds, not their code
import sampler
import support
import tslog  # noqa: F401
import tslog_dir  # noqa: F401
import uploader
from am2320_device import AM2320Device
from bmp180_device import BMP180Device
from sensor_clock import VirtualClock


class Clock:
    is_set = False
    boot_epoch_ms = None
    on_set = None

    def __init__(self, vc):
        self.vc = vc
        self.t0 = vc.us // 1000

    def mono_ms(self):
        return self.vc.us // 1000 - self.t0

    def utc_ms(self):
        return None

    def step(self, online):
        pass


class StubAM:
    """The AM2320 driver's API with constant readings (0.1 degC, 0.1 %RH)."""

    def measure(self):
        return True

    def temperature_tenths(self):
        return 215

    def humidity_tenths(self):
        return 455


class StubBMP:
    """The BMP180 driver's API with constant readings (0.1 degC, Pa)."""

    def measure(self):
        return True

    def temperature_tenths(self):
        return 212

    def pressure(self):
        return 101325


def _board(vc, name, **parts):
    d = support.tmpdir(name)
    cfg = support.board_cfg(tslog_dir=d + "/q", symbol="espbench")
    guard = bootguard.BootGuard(d + "/boot.json", log=lambda m: None).start()
    a = app.boot(cfg, log=lambda m: None, threaded=False, i2c=machine.I2C(1, freq=100000),
                 led=None, wifi=None, clock=Clock(vc), guard=guard, **parts)
    a.guard.wdt_start()
    a.sampler.start()
    return a


def _run(vc, a, slots, every):
    """Run ``slots`` slots as the loop does; (max B, total B, hourly live heap, wall ms)."""
    most = total = 0
    live = []
    t0 = time.ticks_ms()
    gc.collect()
    while a.sampler.taken + a.sampler.missed < slots:
        wait = a.sampler.due_in_ms()
        if wait > 0:
            vc.sleep_ms(wait)
        m0 = gc.mem_alloc()  # the previous slot ended with gc.collect()
        if not a.sampler.poll():
            continue
        used = gc.mem_alloc() - m0
        total += used
        most = used if used > most else most
        gc.collect()  # the rest of App.iterate(), as the loop runs it
        a.guard.check_sensors(a.sampler.all_failed, a.clock.mono_ms())
        a._feed()
        if a.sampler.taken % every == 0:
            live.append(gc.mem_alloc())
    return most, total, live, time.ticks_diff(time.ticks_ms(), t0)


def main():
    vc = VirtualClock().install(app, uploader, sampler, am2320, am2320_device, bmp180,
                                bmp180_device, machine)
    gc.collect()
    before = gc.mem_alloc()
    a = _board(vc, "bench_fw_stub", am=StubAM(), bmp=StubBMP())
    gc.collect()
    print("app.boot() objects (queue, sampler, guard; not bytecode): %d B live" % (
        gc.mem_alloc() - before))
    hours = 1
    most, total, live, wall = _run(vc, a, hours * 1800, 900)
    print("stub sensors, %d h: a slot (sample + store + commit) allocates %d B on average, "
          "%d B at most" % (hours, total // a.sampler.taken, most))
    print("  live heap after the loop's gc.collect(), every 30 min: %s" % live)
    a.shutdown()

    machine.i2c_devices(1).clear()
    machine.attach_i2c(1, AM2320Device())
    machine.attach_i2c(1, BMP180Device())
    a = _board(vc, "bench_fw_models")
    hours = 1
    most, total, live, wall = _run(vc, a, hours * 1800, 1800)
    s = a.stats()
    print("device models at 2 s, %d h (%d ms wall): %d slots taken, %d stored, %d missed, "
          "worst lateness %d ms" % (hours, wall, s["samples"], s["stored"], s["missed"],
                                    s["max_late_ms"]))
    a.shutdown()
    vc.uninstall()


main()
