# run: micropython
"""Heap bytes, sleep and fresh readings per ``measure()`` of the AM2320 and BMP180 drivers.

Counts ``gc.mem_alloc()`` growth over many measurements with the GC
disabled, on three set-ups:
- driver alone: a canned bus that answers from pre-built frames without
  allocating, so the figure is the driver's own allocation;
- AM2320 with its wake-up NACK raised as a new ``OSError``, as the ESP32
  port does (the exception object is the port's, not the driver's);
- the whole stack: fake ``machine.I2C`` plus the register-level emulators
  (their Python code allocates; not representative of a board).
Calls follow a drift-free schedule as the sampler's (slot k at t0 + k * period),
optionally with loop jitter (uniform within +-5 ms, seeded).  A virtual clock
stands in for ``time`` so the AM2320's 2 s spacing costs no wall time; it also
reports how long each driver sleeps per call (mean and worst) and the share of
calls that returned a fresh reading.
Run: ``make bench`` or
``MICROPYPATH=host_tests/fakes:lib:host_tests .venv/bin/micropython bench/bench_sensors.py``
"""

import gc

import am2320
import am2320_device
import bmp180
import bmp180_device
import machine
from sensor_clock import VirtualClock

N = 200
AM_FRAME = bytes((0x03, 0x04, 0x01, 0xF4, 0x80, 0x65, 0, 0))


def _am_frame():
    f = bytearray(AM_FRAME)
    crc = am2320.crc16(f, 6)
    f[6], f[7] = crc & 0xFF, crc >> 8
    return bytes(f)


class CannedAM2320Bus:
    """Replies with one valid frame; ``nack_wake`` raises a new OSError on wake-up."""

    def __init__(self, nack_wake):
        self.frame = _am_frame()
        self.nack_wake = nack_wake

    def writeto(self, addr, buf, stop=True):
        if self.nack_wake and not len(buf):
            raise OSError(19)
        return len(buf)

    def readfrom_into(self, addr, buf, stop=True):
        f = self.frame
        for i in range(8):
            buf[i] = f[i]


class CannedBMP180Bus:
    """Register file with the datasheet's calibration and raw UT/UP (oss 3)."""

    def __init__(self):
        dev = bmp180_device.BMP180Device(calibration=bmp180_device.DATASHEET_CAL)
        self.regs = bytearray(dev.regs)
        ut, up = bmp180_device.inverse(dev.calibration, 21.5, 100230, 3)
        self.ut = bytes((ut >> 8, ut & 0xFF))
        up <<= 5
        self.up = bytes((up >> 16, (up >> 8) & 0xFF, up & 0xFF))

    def writeto_mem(self, addr, reg, buf):
        src = self.ut if buf[0] == 0x2E else self.up
        for i in range(len(src)):
            self.regs[0xF6 + i] = src[i]

    def readfrom_mem_into(self, addr, reg, buf):
        regs = self.regs
        for i in range(len(buf)):
            buf[i] = regs[reg + i]


def jitter_us(span_us, n=97, seed=12345):
    """``n`` pseudo-random offsets in [-span_us, span_us] (an LCG: same on every run)."""
    out = []
    x = seed
    for _ in range(n):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        out.append(x % (2 * span_us + 1) - span_us if span_us else 0)
    return out


def per_measure(sensor, clock, period_ms, jitter=(0,), n=N):
    """(bytes allocated, mean us slept, worst us slept, share fresh) per measure() call.

    Call k comes at t0 + k * period_ms + jitter[k % len(jitter)] (us) on the virtual clock.
    """
    sensor.measure()  # warm up: first-call priming, lazily created objects
    t0 = clock.us + period_ms * 1000 + max(0, -min(jitter))
    period_us = period_ms * 1000
    nj = len(jitter)
    gc.collect()
    gc.disable()
    slept = clock.slept_us
    worst = 0
    fresh = 0
    before = gc.mem_alloc()
    for k in range(n):
        clock.us = t0 + k * period_us + jitter[k % nj]
        s0 = clock.slept_us
        if sensor.measure() is not False:  # BMP180: None, it always reads
            fresh += 1
        if clock.slept_us - s0 > worst:
            worst = clock.slept_us - s0
    after = gc.mem_alloc()
    gc.enable()
    return (after - before) / n, (clock.slept_us - slept) / n, worst, fresh / n


def first_call(sensor, clock):
    """(us slept, result) of the first measure() after power-up."""
    s0 = clock.slept_us
    ok = sensor.measure()
    return clock.slept_us - s0, ok


def main():
    clock = VirtualClock().install(am2320, am2320_device, bmp180, bmp180_device)
    rows = []
    jit = jitter_us(5000)
    try:
        first = first_call(am2320.AM2320(CannedAM2320Bus(False)), clock)
        rows.append(("AM2320 alone, 2 s", per_measure(
            am2320.AM2320(CannedAM2320Bus(False)), clock, 2000)))
        rows.append(("AM2320 alone, 2 s +-5 ms jitter", per_measure(
            am2320.AM2320(CannedAM2320Bus(False)), clock, 2000, jit)))
        rows.append(("AM2320 alone, 1 s", per_measure(
            am2320.AM2320(CannedAM2320Bus(False)), clock, 1000)))
        rows.append(("AM2320 + port's wake-up OSError, 2 s", per_measure(
            am2320.AM2320(CannedAM2320Bus(True)), clock, 2000)))
        rows.append(("BMP180 alone (oss 3), 1 s", per_measure(
            bmp180.BMP180(CannedBMP180Bus(), oss=3), clock, 1000)))
        machine.attach_i2c(0, am2320_device.AM2320Device())
        machine.attach_i2c(0, bmp180_device.BMP180Device())
        i2c = machine.I2C(0, freq=100_000)
        rows.append(("AM2320 + fake I2C + emulator, 2 s", per_measure(
            am2320.AM2320(i2c), clock, 2000, (0,), 20)))
        rows.append(("BMP180 + fake I2C + emulator (oss 3)", per_measure(
            bmp180.BMP180(i2c, oss=3), clock, 2000, (0,), 20)))
    finally:
        clock.uninstall()
    print("per measure() call on a drift-free schedule (driver alone: mean of %d calls;"
          " emulated: 20)" % N)
    print("%-38s %8s %9s %9s %7s" % ("set-up, call period", "bytes", "slept ms", "worst ms",
                                     "fresh"))
    for name, (nbytes, slept, worst, fresh) in rows:
        print("%-38s %8.1f %9.2f %9.2f %6d%%" % (name, nbytes, slept / 1000, worst / 1000,
                                                 round(fresh * 100)))
    print("AM2320 first call after power-up: slept %.2f ms, returned %s (primes)"
          % (first[0] / 1000, first[1]))
    print("AM2320 longest sleep to complete its 2 s: MAX_WAIT_MS = %d ms" % am2320.MAX_WAIT_MS)


main()
