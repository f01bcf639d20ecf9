"""Bosch BMP180 barometric pressure / temperature sensor over I2C.

Written from the datasheet BST-BMP180-DS000: chip id 0x55 at 0xD0, eleven
calibration words at 0xAA..0xBF (big-endian; AC4..AC6 unsigned), control
register 0xF4 (0x2E: temperature, 0x34 + (oss << 6): pressure), result at
0xF6..0xF8.  Compensation is the datasheet's integer code with C semantics:
divisions by powers of two are arithmetic shifts, the two real divisions
truncate toward zero (Python's ``//`` floors, which is wrong for negatives),
and B4/B7 are 32-bit unsigned.

Only ESP32-port ``machine.I2C`` methods are used (``writeto_mem``,
``readfrom_mem_into``); buffers are allocated once.

Example (paste into a board's REPL; SDA 21, SCL 22)::

    from machine import I2C, Pin
    import bmp180
    s = bmp180.BMP180(I2C(0, scl=Pin(22), sda=Pin(21), freq=100_000))
    s.measure(); print(s.temperature(), "C", s.pressure(), "Pa")
"""

import time

from micropython import const

_CHIP_ID = const(0x55)
_REG_ID = const(0xD0)
_REG_CALIB = const(0xAA)
_REG_CTRL = const(0xF4)
_REG_OUT = const(0xF6)
_CMD_TEMP = const(0x2E)
_CMD_PRESS = const(0x34)
_SCO = const(0x20)  # ctrl bit 5: set while a conversion runs
_TEMP_WAIT_US = const(4500)
_SCO_POLLS = const(3)  # extra 1 ms waits allowed when SCO is still set
_T_MIN = const(-400)  # 0.1 degC: datasheet operating range -40..+85 degC
_T_MAX = const(850)
_P_MIN = const(30000)  # Pa: datasheet range 300..1100 hPa
_P_MAX = const(110000)
_U32 = const(0xFFFFFFFF)

# Maximum conversion time per oversampling setting, in us (datasheet table 8).
_PRESS_WAIT_US = (4500, 7500, 13500, 25500)
# Largest UP - B3 for which the datasheet's B7 stays below 0x80000000, per oss:
# 0x7FFFFFFF // (50000 >> oss) (literal: on the ESP32 that constant is a big int).
_B7_SIGNED = (42949, 85899, 171798, 343597)
# Largest UP - B3 for which B7 does not wrap around 2**32, per oss: 0xFFFFFFFF // (50000 >> oss).
_B7_U32 = (85899, 171798, 343597, 687194)
_CALIB_NAMES = ("AC1", "AC2", "AC3", "AC4", "AC5", "AC6", "B1", "B2", "MB", "MC", "MD")


class BMP180Error(OSError):
    """A failed check: missing device, NACK, bad id/calibration or implausible data."""


def _cdiv(a, b):
    """C99 signed division: truncates toward zero."""
    q = abs(a) // abs(b)
    return -q if (a < 0) != (b < 0) else q


def compensate(cal, ut, up, oss):
    """Datasheet compensation: returns (T in 0.1 degC, p in Pa) as ints.

    ``cal`` is the 11 calibration values in datasheet order (AC1..MD).
    """
    b5 = compute_b5(cal, ut)
    return (b5 + 8) >> 4, compute_pressure(cal, b5, up, oss)


def compute_b5(cal, ut):
    """The datasheet's B5 from raw temperature ``ut``; T = (B5 + 8) >> 4 in 0.1 degC."""
    x1 = ((ut - cal[5]) * cal[4]) >> 15
    return x1 + _cdiv(cal[9] << 11, x1 + cal[10])


def compute_pressure(cal, b5, up, oss):
    """Pressure in Pa from raw ``up`` (already shifted by 8 - oss) and B5."""
    ac1, ac2, ac3, ac4, _ac5, _ac6, b1, b2, _mb, _mc, _md = cal
    b6 = b5 - 4000
    x1 = (b2 * ((b6 * b6) >> 12)) >> 11
    x2 = (ac2 * b6) >> 11
    x3 = x1 + x2
    b3 = _cdiv(((ac1 * 4 + x3) << oss) + 2, 4)
    x1 = (ac3 * b6) >> 13
    x2 = (b1 * ((b6 * b6) >> 12)) >> 16
    x3 = ((x1 + x2) + 2) >> 2
    u = x3 + 32768
    d = up - b3
    if 0 <= u <= 0xFFFF and 0 <= d <= _B7_U32[oss]:
        # Same values, but no intermediate leaves the ESP32's 31-bit small ints
        # (a big int would allocate): B4 = AC4 * u >> 15 and B7 = d * k split.
        a = (ac4 >> 8) * u
        b4 = (a >> 7) + ((((a & 0x7F) << 8) + (ac4 & 0xFF) * u) >> 15)
        k = 50000 >> oss
        double_first = d <= _B7_SIGNED[oss]
        if double_first:  # B7 < 0x80000000: p = B7 * 2 / B4
            k *= 2
        dh = (d >> 10) * k
        p = (dh // b4 << 10) + (((dh % b4) << 10) + (d & 0x3FF) * k) // b4
        if not double_first:  # else p = B7 / B4 * 2
            p *= 2
    else:  # implausible raw data: the C code's unsigned 32-bit arithmetic, literally
        b4 = ((ac4 * (u & _U32)) & _U32) >> 15
        b7 = ((d & _U32) * (50000 >> oss)) & _U32
        if b7 < 0x80000000:
            p = (b7 * 2) // b4
        else:
            p = (b7 // b4) * 2
        if p & 0x80000000:  # the C code stores the unsigned quotient in a signed long
            p -= 0x100000000
    x1 = (p >> 8) * (p >> 8)
    x1 = (x1 * 3038) >> 16
    x2 = (-7357 * p) >> 16
    return p + ((x1 + x2 + 3791) >> 4)


def altitude_m(pressure_pa, sea_level_pa=101325):
    """Altitude in m of a pressure in Pa, from the sea-level pressure in Pa (the
    international barometric formula the datasheet gives)."""
    return 44330.0 * (1.0 - (pressure_pa / sea_level_pa) ** (1 / 5.255))


class BMP180:
    """BMP180 at ``addr`` on ``i2c``; ``oss`` 0..3 is the pressure oversampling.

    The constructor checks the chip id and loads and validates the
    calibration.  ``retries`` extra attempts are made after a failed step,
    ``retry_delay_ms`` apart; then ``BMP180Error`` names the failed check.
    """

    def __init__(self, i2c, addr=0x77, oss=3, *, retries=2, retry_delay_ms=5):
        if not 0 <= oss <= 3:
            raise ValueError("oss must be 0..3")
        self._i2c = i2c
        self._addr = addr
        self._oss = oss
        self._retries = retries
        self._retry_delay_ms = retry_delay_ms
        self._b1 = bytearray(1)
        self._b3 = bytearray(3)
        self._t = None  # 0.1 degC, last validated
        self._p = None  # Pa, last validated
        self.errors = 0  # failed attempts, retried or not
        self.cal = None
        self._retry(False)

    # ------------------------------------------------------------ public API

    def measure(self):
        """Run a temperature then a pressure conversion (about 30 ms at oss 3).

        Each wait is the datasheet's maximum conversion time (temperature 4.5 ms,
        pressure 4.5 / 7.5 / 13.5 / 25.5 ms for oss 0..3); only a chip still busy
        after it (SCO set) gets up to 3 more 1 ms polls, and a failed attempt is
        retried ``retry_delay_ms`` later.

        Raises ``BMP180Error`` when every attempt failed; the previous values
        are then dropped so no stale reading can be returned.
        """
        self._t = self._p = None
        self._retry(True)

    def temperature(self):
        """Last measured temperature in degC (float, 0.1 degC resolution)."""
        return self._valid(self._t) / 10

    def temperature_tenths(self):
        """Last measured temperature in 0.1 degC (int, the datasheet's unit: 150 = 15.0 degC)."""
        return self._valid(self._t)

    def pressure(self):
        """Last measured pressure in Pa (int)."""
        return self._valid(self._p)

    def altitude(self, sea_level_pa=101325):
        """Altitude in m from the last pressure and the sea-level pressure in Pa."""
        return altitude_m(self._valid(self._p), sea_level_pa)

    def sea_level_pressure(self, altitude_m):
        """Pressure reduced to sea level, in Pa, from the last pressure at ``altitude_m``."""
        return self._valid(self._p) / (1.0 - altitude_m / 44330.0) ** 5.255

    # ------------------------------------------------------------ internals

    def _valid(self, value):
        if value is None:
            raise BMP180Error("BMP180: no valid measurement")
        return value

    def _retry(self, measure):
        """Measure (else: check the chip id and load the calibration), with retries.
        A flag, not a bound method to call: making one would allocate."""
        attempt = 0
        while True:
            try:
                return self._measure_once() if measure else self._load_calibration()
            except OSError as e:
                self.errors += 1
                if attempt >= self._retries:
                    msg = e.args[0] if e.args else "?"
                    if not isinstance(e, BMP180Error):
                        msg = "BMP180 at 0x%02x: I2C error %s" % (self._addr, msg)
                    raise BMP180Error("%s (after %d attempts)" % (msg, attempt + 1))
                attempt += 1
                time.sleep_ms(self._retry_delay_ms)

    def _load_calibration(self):
        """Check the chip id, then read and check the calibration into ``cal``."""
        i2c, addr, b1 = self._i2c, self._addr, self._b1
        i2c.readfrom_mem_into(addr, _REG_ID, b1)
        if b1[0] != _CHIP_ID:
            raise BMP180Error("BMP180 at 0x%02x: chip id 0x%02x, expected 0x55" % (addr, b1[0]))
        raw = bytearray(22)
        i2c.readfrom_mem_into(addr, _REG_CALIB, raw)
        cal = []
        for i in range(11):
            word = (raw[2 * i] << 8) | raw[2 * i + 1]
            if word == 0 or word == 0xFFFF:
                # The datasheet: 0x0000 / 0xFFFF words mean a failed EEPROM read.
                raise BMP180Error("BMP180: calibration %s (0x%02X) is 0x%04X" % (
                    _CALIB_NAMES[i], _REG_CALIB + 2 * i, word))
            if word & 0x8000 and not 3 <= i <= 5:  # signed, but AC4..AC6
                word -= 0x10000
            cal.append(word)
        self.cal = tuple(cal)

    def _convert(self, cmd, wait_us):
        """Start a conversion, wait for it, check it finished; the result registers
        (MSB, LSB, XLSB) as one 24-bit int."""
        i2c, addr, b1 = self._i2c, self._addr, self._b1
        b1[0] = cmd
        i2c.writeto_mem(addr, _REG_CTRL, b1)
        time.sleep_us(wait_us)
        polls = 0
        while True:
            i2c.readfrom_mem_into(addr, _REG_CTRL, b1)
            if not b1[0] & _SCO:
                break
            if polls >= _SCO_POLLS:
                raise BMP180Error("BMP180: conversion 0x%02x not complete (SCO set)" % cmd)
            polls += 1
            time.sleep_ms(1)
        b = self._b3
        i2c.readfrom_mem_into(addr, _REG_OUT, b)
        return (b[0] << 16) | (b[1] << 8) | b[2]

    def _measure_once(self):
        oss = self._oss
        ut = self._convert(_CMD_TEMP, _TEMP_WAIT_US) >> 8
        up = self._convert(_CMD_PRESS | (oss << 6), _PRESS_WAIT_US[oss]) >> (8 - oss)
        if ut == 0 or ut == 0xFFFF:
            raise BMP180Error("BMP180: raw temperature 0x%04X (bus stuck?)" % ut)
        if up == 0 or up == (0xFFFFFF >> (8 - oss)):
            raise BMP180Error("BMP180: raw pressure 0x%X (bus stuck?)" % up)
        try:
            t, p = compensate(self.cal, ut, up, oss)
        except ZeroDivisionError:
            raise BMP180Error("BMP180: raw UT %d / UP %d divide by zero" % (ut, up))
        if not _T_MIN <= t <= _T_MAX:
            raise BMP180Error("BMP180: temperature %d (0.1 C) out of range" % t)
        if not _P_MIN <= p <= _P_MAX:
            raise BMP180Error("BMP180: pressure %d Pa out of range" % p)
        self._t = t
        self._p = p
