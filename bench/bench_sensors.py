# run: micropython
"""Heap bytes allocated per ``measure()`` of the AM2320 and BMP180 drivers.

Counts ``gc.mem_alloc()`` growth over many measurements with the GC
disabled, on three set-ups:
- driver alone: a canned bus that answers from pre-built frames without
  allocating, so the figure is the driver's own allocation;
- AM2320 with its wake-up NACK raised as a new ``OSError``, as the ESP32
  port does (the exception object is the port's, not the driver's);
- the whole stack: fake ``machine.I2C`` plus the register-level emulators
  (their Python code allocates; not representative of a board).
A virtual clock stands in for ``time`` so the AM2320's 2 s spacing costs no
wall time; it also reports how long each driver sleeps per measurement.
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


def per_measure(sensor, clock, gap_ms, n=N):
    """(bytes allocated, us slept) per measure(), averaged over ``n`` calls."""
    sensor.measure()  # warm up: first-call priming, lazily created objects
    gc.collect()
    gc.disable()
    slept = clock.slept_us
    before = gc.mem_alloc()
    for _ in range(n):
        clock.advance_ms(gap_ms)
        sensor.measure()
    after = gc.mem_alloc()
    gc.enable()
    return (after - before) / n, (clock.slept_us - slept) / n


def main():
    clock = VirtualClock().install(am2320, am2320_device, bmp180, bmp180_device)
    rows = []
    try:
        rows.append(("AM2320 driver alone", per_measure(
            am2320.AM2320(CannedAM2320Bus(False)), clock, 2000)))
        rows.append(("AM2320 driver + port's wake-up OSError", per_measure(
            am2320.AM2320(CannedAM2320Bus(True)), clock, 2000)))
        rows.append(("BMP180 driver alone (oss 3)", per_measure(
            bmp180.BMP180(CannedBMP180Bus(), oss=3), clock, 2000)))
        machine.attach_i2c(0, am2320_device.AM2320Device())
        machine.attach_i2c(0, bmp180_device.BMP180Device())
        i2c = machine.I2C(0, freq=100_000)
        rows.append(("AM2320 + fake I2C + emulator", per_measure(
            am2320.AM2320(i2c), clock, 2000, 20)))
        rows.append(("BMP180 + fake I2C + emulator (oss 3)", per_measure(
            bmp180.BMP180(i2c, oss=3), clock, 2000, 20)))
    finally:
        clock.uninstall()
    print("bytes allocated and time slept per measure() (driver alone: mean of %d calls;"
          " emulated: 20)" % N)
    print("%-40s %10s %10s" % ("set-up", "bytes", "slept ms"))
    for name, (nbytes, slept) in rows:
        print("%-40s %10.1f %10.2f" % (name, nbytes, slept / 1000))


main()
