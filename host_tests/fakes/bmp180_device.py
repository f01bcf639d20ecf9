"""Register-level model of a Bosch BMP180 on the fake I2C bus.

Registers per BST-BMP180-DS000: 0xD0 chip id 0x55, 0xD1 version, 0xE0 soft
reset (write 0xB6), 0xAA..0xBF calibration EEPROM (11 big-endian words),
0xF4 control (bit 5 SCO set while converting), 0xF6..0xF8 result.  Reads
auto-increment from the register pointer set by a write.

Writing 0x2E / 0x34+(oss<<6) to 0xF4 starts a conversion that completes
after the datasheet's maximum time (4.5 ms; 4.5/7.5/13.5/25.5 ms for oss
0..3), measured with ``time.ticks_*``.  Until then the result registers
still hold the previous result (``stale_reads`` counts such reads).

Raw values come from the physical ``temperature_c`` / ``pressure_pa``
through the inverse of the datasheet's compensation for this chip's
calibration (searching UT, then UP), so a driver that compensates correctly
reads them back to within the sensor's resolution.  ``raw_ut`` / ``raw_up``
override that (e.g. the datasheet's worked example).

Fault knobs: ``on_bus = False``, ``fail_next = N`` (NACK the next N
transactions), ``stuck = True`` (results stop updating), ``slowdown``
(conversion time factor, e.g. 1.5 for a chip slower than specified),
``set_word(i, value)`` to corrupt a calibration word, ``chip_id``.
"""

import time

import machine

# The datasheet's worked example calibration (AC1..MD).
DATASHEET_CAL = (408, -72, -14383, 32741, 32757, 23153, 6190, 4, -32768, -8711, 2868)
# A production chip's calibration, for realistic UT/UP ranges.
TYPICAL_CAL = (8240, -1196, -14709, 32912, 24959, 16487, 6515, 48, -32768, -11786, 2845)

TEMP_US = 4500
PRESS_US = (4500, 7500, 13500, 25500)
_U32 = 0xFFFFFFFF


def _tdiv(a, b):
    q = abs(a) // abs(b)
    return -q if (a < 0) != (b < 0) else q


def model_temperature(cal, ut):
    """(T in 0.1 degC, B5) the chip's calibration assigns to raw ``ut``."""
    x1 = ((ut - cal[5]) * cal[4]) >> 15
    d = x1 + cal[10]
    if d == 0:
        return None, None
    b5 = x1 + _tdiv(cal[9] << 11, d)
    return (b5 + 8) >> 4, b5


def model_pressure(cal, b5, up, oss):
    """Pressure in Pa for raw ``up`` at temperature parameter ``b5``."""
    ac1, ac2, ac3, ac4, _ac5, _ac6, b1, b2 = cal[:8]
    b6 = b5 - 4000
    x3 = ((b2 * ((b6 * b6) >> 12)) >> 11) + ((ac2 * b6) >> 11)
    b3 = _tdiv(((ac1 * 4 + x3) << oss) + 2, 4)
    x3 = (((ac3 * b6) >> 13) + ((b1 * ((b6 * b6) >> 12)) >> 16) + 2) >> 2
    b4 = (ac4 * ((x3 + 32768) & _U32) & _U32) >> 15
    b7 = (((up - b3) & _U32) * (50000 >> oss)) & _U32
    p = (b7 * 2) // b4 if b7 < 0x80000000 else (b7 // b4) * 2
    x1 = (((p >> 8) * (p >> 8)) * 3038) >> 16
    return p + ((x1 + ((-7357 * p) >> 16) + 3791) >> 4)


def _search(f, lo, hi, target):
    """Argument in [lo, hi] where the non-decreasing ``f`` is closest to ``target``."""
    a, b = lo, hi
    while a < b:
        m = (a + b) // 2
        if f(m) < target:
            a = m + 1
        else:
            b = m
    best = a
    for c in (a - 2, a - 1, a + 1):
        if lo <= c <= hi and abs(f(c) - target) < abs(f(best) - target):
            best = c
    return best


def inverse(cal, temperature_c, pressure_pa, oss):
    """Raw (UT, UP) that this calibration maps to the given physical values."""
    # UT range where X1 + MD > 0 (the model's valid branch).
    lo = cal[5] - ((cal[10] << 15) // cal[4]) + 2
    while model_temperature(cal, lo)[0] is None or ((lo - cal[5]) * cal[4] >> 15) + cal[10] <= 0:
        lo += 1
    t10 = int(round(temperature_c * 10))
    ut = _search(lambda u: model_temperature(cal, u)[0], lo, 0xFFFF, t10)
    b5 = model_temperature(cal, ut)[1]
    ac1, ac2, b2 = cal[0], cal[1], cal[7]
    b6 = b5 - 4000
    x3 = ((b2 * ((b6 * b6) >> 12)) >> 11) + ((ac2 * b6) >> 11)
    b3 = _tdiv(((ac1 * 4 + x3) << oss) + 2, 4)
    up = _search(lambda u: model_pressure(cal, b5, u, oss), max(b3 + 1, 0),
                 (1 << (16 + oss)) - 1, int(round(pressure_pa)))
    return ut, up


class BMP180Device(machine.I2CDevice):
    """The chip; ``temperature_c`` / ``pressure_pa`` are the physical values."""

    def __init__(self, address=0x77, temperature_c=21.5, pressure_pa=101325.0,
                 calibration=TYPICAL_CAL):
        self.address = address
        self.temperature_c = temperature_c
        self.pressure_pa = pressure_pa
        self.regs = bytearray(256)
        self.chip_id = 0x55
        self.regs[0xD1] = 0x02
        self.calibration = tuple(calibration)
        for i, v in enumerate(calibration):
            self.set_word(i, v)
        self.on_bus = True
        self.fail_next = 0
        self.stuck = False
        self.slowdown = 1.0
        self.raw_ut = None
        self.raw_up = None
        self._ptr = 0
        self._pending = None  # (result bytes, done after us, started us, started ms)
        self.conversions = 0
        self.stale_reads = 0
        self.nacks = 0

    @property
    def ack_scan(self):
        return self.on_bus

    @property
    def chip_id(self):
        return self.regs[0xD0]

    @chip_id.setter
    def chip_id(self, value):
        self.regs[0xD0] = value

    def set_word(self, index, value):
        """Store calibration word ``index`` (0 = AC1 .. 10 = MD) big-endian."""
        value &= 0xFFFF
        self.regs[0xAA + 2 * index] = value >> 8
        self.regs[0xAB + 2 * index] = value & 0xFF

    def _raw(self, oss):
        ut, up = inverse(self.calibration, self.temperature_c, self.pressure_pa, oss)
        if self.raw_ut is not None:
            ut = self.raw_ut
        if self.raw_up is not None:
            up = self.raw_up
        return ut, up

    def _finish(self):
        pend = self._pending
        if pend is None:
            return
        result, need_us, t_us, t_ms = pend
        if time.ticks_diff(time.ticks_us(), t_us) < need_us and \
                time.ticks_diff(time.ticks_ms(), t_ms) < need_us // 1000 + 100:
            return
        self._pending = None
        self.regs[0xF4] &= ~0x20 & 0xFF
        if not self.stuck:
            self.regs[0xF6:0xF9] = result
        self.conversions += 1

    def _start(self, ctrl):
        oss = ctrl >> 6
        kind = ctrl & 0x1F
        if kind == 0x0E:
            ut = self._raw(oss)[0]
            result, need = bytes((ut >> 8, ut & 0xFF, self.regs[0xF8])), TEMP_US
        elif kind == 0x14:
            up = self._raw(oss)[1] << (8 - oss)
            result, need = bytes((up >> 16, (up >> 8) & 0xFF, up & 0xFF)), PRESS_US[oss]
        else:
            return  # not a conversion command: the register just holds the value
        self.regs[0xF4] = ctrl | 0x20
        need = int(need * self.slowdown)
        self._pending = (result, need, time.ticks_us(), time.ticks_ms())

    def _check_bus(self):
        if self.fail_next > 0:
            self.fail_next -= 1
        elif self.on_bus:
            return
        self.nacks += 1
        raise machine.Nack()

    def write(self, data):
        self._check_bus()
        self._finish()
        if not data:
            return
        self._ptr = data[0]
        for i, b in enumerate(data[1:]):
            reg = (self._ptr + i) & 0xFF
            if reg == 0xF4:
                self.regs[0xF4] = b
                self._start(b)
            elif reg == 0xE0 and b == 0xB6:
                self._pending = None
                self.regs[0xF4] = 0
            # Other registers (id, EEPROM, results) are read-only.

    def read(self, n):
        self._check_bus()
        self._finish()
        start = self._ptr
        out = bytes(self.regs[(start + i) & 0xFF] for i in range(n))
        if self._pending is not None and start <= 0xF8 and start + n > 0xF6:
            self.stale_reads += 1
        self._ptr = (start + n) & 0xFF
        return out
