# cpython-only: hypothesis property tests (hypothesis and gcc are host tools)
"""Property tests for the AM2320 and BMP180 drivers and their emulators."""

import os
import shutil
import subprocess
import tempfile

from hypothesis import given, settings
from hypothesis import strategies as st

import am2320
import am2320_device
import bmp180
import bmp180_device
import machine
from am2320_device import AM2320Device
from bmp180_device import DATASHEET_CAL, TYPICAL_CAL, BMP180Device
from sensor_clock import VirtualClock

BUS = "soft"
P_TOL = (3, 2, 1, 1)
CALS = st.sampled_from((TYPICAL_CAL, DATASHEET_CAL))
SETTINGS = settings(max_examples=150, deadline=None)

# The datasheet's compensation code, compiled with 32-bit longs.
C_SOURCE = r"""
#include <stdio.h>
#include <stdint.h>
typedef int32_t lng; typedef uint32_t ulng;
int main(void) {
  long c[11], UT, UP; int oss;
  while (scanf("%ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %d", &c[0], &c[1], &c[2],
               &c[3], &c[4], &c[5], &c[6], &c[7], &c[8], &c[9], &c[10], &UT, &UP, &oss) == 14) {
    lng AC1 = c[0], AC2 = c[1], AC3 = c[2], B1 = c[6], B2 = c[7], MC = c[9], MD = c[10];
    ulng AC4 = c[3], AC5 = c[4], AC6 = c[5];
    lng X1, X2, X3, B3, B5, B6, T, p; ulng B4, B7;
    X1 = (((lng)UT - (lng)AC6) * (lng)AC5) >> 15;
    X2 = (MC << 11) / (X1 + MD);
    B5 = X1 + X2;
    T = (B5 + 8) >> 4;
    B6 = B5 - 4000;
    X1 = (B2 * ((B6 * B6) >> 12)) >> 11;
    X2 = (AC2 * B6) >> 11;
    X3 = X1 + X2;
    B3 = (((AC1 * 4 + X3) << oss) + 2) / 4;
    X1 = (AC3 * B6) >> 13;
    X2 = (B1 * ((B6 * B6) >> 12)) >> 16;
    X3 = ((X1 + X2) + 2) >> 2;
    B4 = (AC4 * (ulng)(X3 + 32768)) >> 15;
    B7 = ((ulng)UP - (ulng)B3) * (ulng)(50000 >> oss);
    if (B7 < 0x80000000u) p = (lng)((B7 * 2) / B4); else p = (lng)((B7 / B4) * 2);
    X1 = (p >> 8) * (p >> 8);
    X1 = (X1 * 3038) >> 16;
    X2 = (-7357 * p) >> 16;
    p = p + ((X1 + X2 + 3791) >> 4);
    printf("%d %d\n", (int)T, (int)p);
  }
  return 0;
}
"""


def _clock():
    return VirtualClock().install(am2320, am2320_device, bmp180, bmp180_device)


@SETTINGS
@given(cal=CALS, oss=st.integers(0, 3), t10=st.integers(-400, 850),
       p=st.integers(30000 + 3, 110000 - 3))
def test_bmp180_roundtrip_through_emulator(cal, oss, t10, p):
    clk = _clock()
    try:
        dev = machine.attach_i2c(BUS, BMP180Device(temperature_c=t10 / 10, pressure_pa=p,
                                                   calibration=cal))
        s = bmp180.BMP180(machine.I2C(BUS, freq=100_000), oss=oss)
        s.measure()
        assert round(s.temperature() * 10) == t10
        assert abs(s.pressure() - p) <= P_TOL[oss]
        assert dev.stale_reads == 0
    finally:
        clk.uninstall()


@SETTINGS
@given(cal=CALS, oss=st.integers(0, 3), ut=st.integers(20000, 40000),
       up=st.integers(5000, (1 << 16) - 1))
def test_bmp180_monotonic(cal, oss, ut, up):
    up <<= oss
    t0, p0 = bmp180.compensate(cal, ut, up, oss)
    t1, _ = bmp180.compensate(cal, ut + 1, up, oss)
    _, p1 = bmp180.compensate(cal, ut, up + 1, oss)
    assert t1 >= t0
    if 30000 <= p0 <= 110000:
        assert p1 >= p0


@SETTINGS
@given(cal=st.tuples(*[st.integers(-32768, 32767)] * 3 + [st.integers(1, 65534)] * 3
                     + [st.integers(-32768, 32767)] * 5),
       oss=st.integers(0, 3), ut=st.integers(0, 65535), up=st.integers(0, (1 << 19) - 1))
def test_bmp180_small_int_path_equals_32bit_arithmetic(cal, oss, ut, up):
    # The driver's split products must equal the literal unsigned 32-bit code.
    up &= (1 << (16 + oss)) - 1
    try:
        b5 = bmp180.compute_b5(cal, ut)
        got = bmp180.compute_pressure(cal, b5, up, oss)
        ref = bmp180_device.model_pressure(cal, b5, up, oss)
    except ZeroDivisionError:
        return
    if ref < 0x80000000:
        assert got == ref


def test_bmp180_matches_compiled_datasheet_code():
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        print("no C compiler: skipped")
        return
    import random

    rnd = random.Random(180)
    d = tempfile.mkdtemp()
    src, exe = os.path.join(d, "ref.c"), os.path.join(d, "ref")
    with open(src, "w") as f:
        f.write(C_SOURCE)
    subprocess.run([cc, "-O1", "-fwrapv", "-o", exe, src], check=True)
    cases = []
    for i in range(20000):
        cal = (TYPICAL_CAL, DATASHEET_CAL)[i % 2]
        oss = rnd.randint(0, 3)
        cases.append((cal, rnd.randint(15000, 40000),
                      rnd.randint(1000, (1 << (16 + oss)) - 1), oss))
    text = "\n".join(" ".join(map(str, c + (ut, up, oss))) for c, ut, up, oss in cases) + "\n"
    out = subprocess.run([exe], input=text, capture_output=True, text=True, check=True).stdout
    checked = 0
    for (cal, ut, up, oss), line in zip(cases, out.splitlines()):
        t, p = map(int, line.split())
        if -400 <= t <= 850 and 30000 <= p <= 110000:  # the driver's accepted range
            assert bmp180.compensate(cal, ut, up, oss) == (t, p), (cal, ut, up, oss)
            checked += 1
    shutil.rmtree(d)
    assert checked > 5000


@SETTINGS
@given(t10=st.integers(-400, 800), rh10=st.integers(0, 1000))
def test_am2320_roundtrip_through_emulator(t10, rh10):
    clk = _clock()
    try:
        dev = machine.attach_i2c(BUS, AM2320Device(temperature_c=t10 / 10,
                                                   humidity_rh=rh10 / 10))
        s = am2320.AM2320(machine.I2C(BUS, freq=100_000))
        assert s.measure() is False  # primes
        clk.advance_ms(2000)
        assert s.measure() is True
        assert s.temperature_tenths() == t10 and s.humidity_tenths() == rh10
        assert round(s.temperature() * 10) == t10 and round(s.humidity() * 10) == rh10
        assert dev.early_reads == 0
    finally:
        clk.uninstall()


class _FlippingBus:
    """Replies with a valid frame with one bit flipped."""

    def __init__(self, frame, bit):
        self.frame = bytearray(frame)
        self.frame[bit // 8] ^= 1 << (bit % 8)

    def writeto(self, addr, buf, stop=True):
        return len(buf)

    def readfrom_into(self, addr, buf, stop=True):
        buf[:] = self.frame


@SETTINGS
@given(t10=st.integers(-400, 800), rh10=st.integers(0, 1000), bit=st.integers(0, 63))
def test_am2320_never_returns_a_corrupted_frame(t10, rh10, bit):
    clk = _clock()
    try:
        body = b"\x03\x04" + am2320_device.encode(t10 / 10, rh10 / 10)
        crc = am2320_device.crc16(body)
        s = am2320.AM2320(_FlippingBus(body + bytes((crc & 0xFF, crc >> 8)), bit), retries=0)
        try:
            s.measure()
        except am2320.AM2320Error:
            return
        raise AssertionError("corrupted frame accepted: bit %d" % bit)
    finally:
        clk.uninstall()
