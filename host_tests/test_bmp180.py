"""BMP180 driver against the datasheet, C reference values and the emulator."""

import time

import bmp180
import bmp180_device
import machine
import support
from bmp180_device import DATASHEET_CAL, TYPICAL_CAL, BMP180Device
from sensor_clock import VirtualClock

BUS = 1
ADDR = 0x77
DS = DATASHEET_CAL
REAL = TYPICAL_CAL
# Pressure resolution in Pa per oversampling setting (the UP step).
P_TOL = (3, 2, 1, 1)

# (calibration, UT, UP, oss, T, p) computed by the datasheet's code compiled
# with gcc (int32_t long, uint32_t B4/B7).  Each case differs from a
# floor-division (Python ``//``) port of the code, shown in the comment.
C_REFERENCE = (
    (DS, 27898, 23843, 0, 150, 69964),  # the datasheet's worked example
    (REAL, 32806, 26340, 0, 678, 63181),  # floor: (678, 63179)
    (DS, 24457, 30151, 0, -186, 82210),  # floor: (-186, 82208)
    (REAL, 17392, 43537, 0, -384, 88307),  # floor: (-384, 88305)
    (DS, 34437, 35758, 1, 626, 57780),  # floor: (626, 57779)
    (DS, 26014, 56107, 1, -16, 79490),  # floor: (-16, 79487)
    (REAL, 17281, 80003, 1, -400, 78611),  # floor: (-400, 78608)
    (REAL, 35257, 53882, 1, 806, 67633),  # floor: (805, 67633)
    (REAL, 25399, 81794, 2, 268, 37400),  # floor: (268, 37398)
    (REAL, 18951, 159067, 2, -202, 83250),  # floor: (-202, 83249)
    (DS, 34148, 80579, 2, 607, 64986),  # floor: (606, 64986)
    (REAL, 23917, 337017, 3, 176, 100761),  # floor: (176, 100757)
    (REAL, 19211, 322376, 3, -177, 85393),  # floor: (-177, 85391)
    (DS, 25723, 140900, 3, -44, 49118),  # floor: (-45, 49117)
)


def _setup(**kw):
    dev = machine.attach_i2c(BUS, BMP180Device(**kw))
    i2c = machine.I2C(BUS, scl=machine.Pin(22), sda=machine.Pin(21), freq=100_000)
    return dev, i2c


def _clock():
    return VirtualClock().install(bmp180, bmp180_device)


def test_datasheet_worked_example():
    assert bmp180.compensate(DS, 27898, 23843, 0) == (150, 69964)


def test_c_reference_vectors():
    for cal, ut, up, oss, t, p in C_REFERENCE:
        assert bmp180.compensate(cal, ut, up, oss) == (t, p), (ut, up, oss)


def test_truncating_division():
    assert bmp180._cdiv(-7, 2) == -3 and bmp180._cdiv(7, -2) == -3
    assert bmp180._cdiv(7, 2) == 3 and bmp180._cdiv(-8, 2) == -4


def test_datasheet_example_through_the_bus():
    clk = _clock()
    try:
        dev, i2c = _setup(calibration=DS)
        dev.raw_ut, dev.raw_up = 27898, 23843
        s = bmp180.BMP180(i2c, oss=0)
        assert s.cal == DS
        s.measure()
        assert s.temperature() == 15.0 and s.pressure() == 69964
        assert s.temperature_tenths() == 150 and type(s.temperature_tenths()) is int
        assert type(s.pressure()) is int
    finally:
        clk.uninstall()


def test_every_oss_roundtrip_and_waits():
    clk = _clock()
    try:
        dev, i2c = _setup(temperature_c=21.5, pressure_pa=100230)
        for oss in range(4):
            s = bmp180.BMP180(i2c, oss=oss)
            before = clk.slept_us
            s.measure()
            # Exactly the datasheet's conversion times: nothing longer.
            assert clk.slept_us - before == 4500 + (4500, 7500, 13500, 25500)[oss]
            assert s.temperature() == 21.5
            assert abs(s.pressure() - 100230) <= P_TOL[oss], (oss, s.pressure())
        assert dev.stale_reads == 0
    finally:
        clk.uninstall()


def test_sweep_through_emulator():
    clk = _clock()
    try:
        for cal in (REAL, DS):
            dev, i2c = _setup(calibration=cal)
            sensors = [bmp180.BMP180(i2c, oss=oss) for oss in range(4)]
            t10 = -400
            while t10 <= 850:
                p = 30100 + (t10 + 400) * 64 % 79801
                dev.temperature_c, dev.pressure_pa = t10 / 10, p
                for oss, s in enumerate(sensors):
                    s.measure()
                    assert s.temperature_tenths() == t10, (cal, oss, t10)
                    assert round(s.temperature() * 10) == t10
                    assert abs(s.pressure() - p) <= P_TOL[oss], (cal, oss, t10, p, s.pressure())
                t10 += 23
            assert dev.stale_reads == 0
    finally:
        clk.uninstall()


def test_altitude_and_sea_level():
    clk = _clock()
    try:
        dev, i2c = _setup(pressure_pa=101325)
        s = bmp180.BMP180(i2c)
        s.measure()
        assert abs(s.altitude()) < 0.5
        dev.pressure_pa = 89876  # standard atmosphere at 1000 m
        s.measure()
        assert abs(s.altitude() - 1000) < 1.0
        assert abs(s.sea_level_pressure(1000) - 101325) < 15
        assert abs(s.altitude(s.sea_level_pressure(432.0)) - 432.0) < 0.1
    finally:
        clk.uninstall()


def _fails(f, needle, *args):
    e = support.raises(bmp180.BMP180Error, f, *args)
    assert isinstance(e, OSError)
    assert needle in str(e.args[0]), e.args
    return e


def test_construction_errors():
    clk = _clock()
    try:
        machine.detach_i2c(BUS, ADDR)
        i2c = machine.I2C(BUS)
        _fails(bmp180.BMP180, "I2C error 19", i2c)
        dev, i2c = _setup()
        dev.chip_id = 0x58  # a BMP280 at the same address
        _fails(bmp180.BMP180, "chip id 0x58", i2c)
        for word in (0xFFFF, 0x0000):
            dev, i2c = _setup()
            dev.set_word(3, word)
            _fails(bmp180.BMP180, "calibration AC4 (0xB0) is 0x%04X" % word, i2c)
        support.raises(ValueError, bmp180.BMP180, i2c, oss=4)
    finally:
        clk.uninstall()


def test_measure_errors_and_retries():
    clk = _clock()
    try:
        dev, i2c = _setup(temperature_c=-12.3)
        s = bmp180.BMP180(i2c, retries=2, retry_delay_ms=5)
        support.raises(bmp180.BMP180Error, s.temperature)  # nothing measured yet
        dev.fail_next = 2  # two NACKs, then fine
        s.measure()
        assert s.temperature() == -12.3 and s.errors == 2
        dev.on_bus = False
        e = _fails(s.measure, "I2C error 19")
        assert "(after 3 attempts)" in e.args[0]
        support.raises(bmp180.BMP180Error, s.temperature)  # no stale value survives
        support.raises(bmp180.BMP180Error, s.temperature_tenths)
        support.raises(bmp180.BMP180Error, s.pressure)
        support.raises(bmp180.BMP180Error, s.altitude)
        dev.on_bus = True
        dev.pressure_pa = 20000  # below the datasheet's 300 hPa
        _fails(s.measure, "pressure")
        dev.pressure_pa, dev.temperature_c = 101000, 95.0
        _fails(s.measure, "temperature")
        dev.temperature_c = 20.0
        s.measure()
        assert s.temperature() == 20.0
    finally:
        clk.uninstall()


def test_slow_conversion_is_waited_for_not_read_stale():
    clk = _clock()
    try:
        dev, i2c = _setup(temperature_c=30.0)
        s = bmp180.BMP180(i2c, oss=3)
        dev.slowdown = 1.1  # 10 % slower than the datasheet's maximum
        s.measure()
        assert s.temperature() == 30.0 and dev.stale_reads == 0
        dev.slowdown = 3.0  # SCO never clears in time
        _fails(s.measure, "SCO")
        assert dev.stale_reads == 0
    finally:
        clk.uninstall()


def test_stuck_output_is_caught():
    clk = _clock()
    try:
        dev, i2c = _setup()
        dev.stuck = True  # result registers never written: still 0 from reset
        s = bmp180.BMP180(i2c)
        _fails(s.measure, "raw temperature 0x0000")
    finally:
        clk.uninstall()


def test_emulator_stale_data_when_read_early():
    clk = _clock()
    try:
        dev, i2c = _setup(calibration=DS)
        dev.raw_ut = 27898
        i2c.writeto_mem(ADDR, 0xF4, b"\x2e")
        assert i2c.readfrom_mem(ADDR, 0xF4, 1)[0] & 0x20  # SCO: converting
        assert i2c.readfrom_mem(ADDR, 0xF6, 2) == b"\x00\x00"  # previous (reset) data
        assert dev.stale_reads == 1
        clk.sleep_us(4500)
        assert not i2c.readfrom_mem(ADDR, 0xF4, 1)[0] & 0x20
        assert i2c.readfrom_mem(ADDR, 0xF6, 2) == bytes((27898 >> 8, 27898 & 0xFF))
        assert i2c.readfrom_mem(ADDR, 0xD0, 1) == b"\x55"
        assert i2c.readfrom_mem(ADDR, 0xAA, 2) == b"\x01\x98"  # AC1 = 408
    finally:
        clk.uninstall()


def test_only_esp32_i2c_methods_are_used():
    clk = _clock()
    try:
        dev, i2c = _setup()
        used = []

        class Spy:
            def __getattr__(self, name):
                used.append(name)
                return getattr(i2c, name)

        s = bmp180.BMP180(Spy())
        s.measure()
        allowed = ("scan", "writeto", "readfrom", "readfrom_into", "writevto",
                   "writeto_mem", "readfrom_mem", "readfrom_mem_into")
        assert used and all(name in allowed for name in used), used
    finally:
        clk.uninstall()


def test_real_clock_measure():
    dev, i2c = _setup(temperature_c=-21.5, pressure_pa=95000)
    s = bmp180.BMP180(i2c)
    t0 = time.ticks_ms()
    s.measure()
    took = time.ticks_diff(time.ticks_ms(), t0)
    assert s.temperature() == -21.5 and abs(s.pressure() - 95000) <= 1
    assert dev.stale_reads == 0 and took >= 30
