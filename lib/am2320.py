"""Aosong AM2320 temperature / humidity sensor over I2C.

Written from the Aosong datasheet.  One reading is one transaction:
wake-up (an address-only write the sleeping chip NACKs), >= 800 us pause,
the read command (function 0x03, start register 0x00, 4 registers),
>= 1.5 ms pause, then a plain 8-byte read of the reply
``03 04 RH_hi RH_lo T_hi T_lo CRC_lo CRC_hi`` (CRC-16/Modbus).  The reply
header, the CRC and the ranges are checked before anything is stored.

The chip replies with the conversion it made after the *previous* read and
needs >= 2 s between reads: ``measure()`` waits out the rest of those 2 s if
called early, and primes (one read, 2 s wait) when its data would be older
than ``max_age_ms``, e.g. on the first call after power-up.

Only ESP32-port ``machine.I2C`` methods are used (``writeto``,
``readfrom_into``; not ``readfrom_mem``, which would send a stray register
byte); the reply buffer is allocated once.

Example (paste into a board's REPL; SDA 21, SCL 22)::

    from machine import I2C, Pin
    import am2320
    s = am2320.AM2320(I2C(0, scl=Pin(22), sda=Pin(21), freq=100_000))
    s.measure(); print(s.temperature(), "C", s.humidity(), "%RH")
"""

import time

from micropython import const

_FUNC_READ = const(0x03)
_NREGS = const(4)
_WAKE_US = const(1000)  # datasheet: hold >= 800 us (and <= 3 ms) after the wake-up
_CMD_WAIT_US = const(1600)  # datasheet: >= 1.5 ms from the command to the read
_MIN_INTERVAL_MS = const(2000)  # datasheet: >= 2 s between reads
_RH_MAX = const(1000)  # 0.1 %RH
_T_MIN = const(-400)  # 0.1 degC: datasheet range -40..+80 degC
_T_MAX = const(800)

_CMD = b"\x03\x00\x04"  # function 0x03, start register 0x00, 4 registers
_WAKE = b""


class AM2320Error(OSError):
    """A failed check: missing device, NACK, bad reply header, CRC or range."""


def crc16(buf, n):
    """CRC-16/Modbus (poly 0xA001 reflected, init 0xFFFF) of ``buf[:n]``."""
    crc = 0xFFFF
    for i in range(n):
        crc ^= buf[i]
        for _ in range(8):
            if crc & 1:
                crc = (crc >> 1) ^ 0xA001
            else:
                crc >>= 1
    return crc


def decode_temperature(hi, lo):
    """Temperature register pair to 0.1 degC: sign-magnitude, bit 15 is the sign."""
    raw = (hi << 8) | lo
    return -(raw & 0x7FFF) if raw & 0x8000 else raw


class AM2320:
    """AM2320 at ``addr`` on ``i2c`` (100 kHz max; the bus setup is the caller's).

    ``retries`` extra attempts follow a failed one after ``retry_delay_ms``
    (plus whatever remains of the chip's 2 s interval when a read reached
    it); then ``AM2320Error`` names the failed check.  ``max_age_ms``: data
    older than this is refreshed by a priming read first.
    """

    def __init__(self, i2c, addr=0x5C, *, retries=1, retry_delay_ms=20, max_age_ms=60_000):
        self._i2c = i2c
        self._addr = addr
        self._retries = retries
        self._retry_delay_ms = retry_delay_ms
        self._max_age_ms = max_age_ms
        self._buf = bytearray(8)
        self._last_read = None  # ticks_ms of the last transaction's start
        self._last_us = 0  # the same in ticks_us, for a spacing exact to the microsecond
        self._rh = None  # 0.1 %RH, last validated
        self._t = None  # 0.1 degC, last validated
        self.errors = 0  # failed attempts, retried or not

    def measure(self):
        """Read temperature and humidity (about 3 ms when called every >= 2 s).

        Raises ``AM2320Error`` when every attempt failed; the previous values
        are then dropped so no stale reading can be returned.
        """
        last = self._last_read
        if last is None or time.ticks_diff(time.ticks_ms(), last) > self._max_age_ms:
            self._rh = self._t = None
            self._attempts()  # its data is old: it only triggers a fresh conversion
        self._rh = self._t = None
        self._attempts()
        buf = self._buf
        self._rh = (buf[2] << 8) | buf[3]
        self._t = decode_temperature(buf[4], buf[5])

    def temperature(self):
        """Last measured temperature in degC (0.1 degC resolution)."""
        if self._t is None:
            raise AM2320Error("AM2320: no valid measurement")
        return self._t / 10

    def humidity(self):
        """Last measured relative humidity in %RH (0.1 %RH resolution)."""
        if self._rh is None:
            raise AM2320Error("AM2320: no valid measurement")
        return self._rh / 10

    # ------------------------------------------------------------ internals

    def _attempts(self):
        attempt = 0
        while True:
            try:
                self._read_frame()
                return
            except OSError as e:
                self.errors += 1
                if attempt >= self._retries:
                    raise AM2320Error("%s (after %d attempts)" % (
                        e.args[0] if e.args else repr(e), attempt + 1))
                attempt += 1
                time.sleep_ms(self._retry_delay_ms)

    def _wait_interval(self):
        last = self._last_read
        # ticks_us wraps every ~18 min: only trusted when the ms clock says the gap is short.
        if last is not None and time.ticks_diff(time.ticks_ms(), last) <= _MIN_INTERVAL_MS:
            left = _MIN_INTERVAL_MS * 1000 - time.ticks_diff(time.ticks_us(), self._last_us)
            if left > 0:
                time.sleep_us(left)

    def _read_frame(self):
        """One wake/command/read transaction into ``self._buf``, checked."""
        i2c, addr, buf = self._i2c, self._addr, self._buf
        self._wait_interval()
        # Spacing is kept from the start of one transaction to the next: the read itself
        # comes a fixed ~2.6 ms later each time, so reads stay >= 2 s apart, and a caller
        # on a 2 s schedule is not pushed 2.6 ms later every time (which drifts into a
        # missed slot about every 25 minutes).
        start, start_us = time.ticks_ms(), time.ticks_us()
        try:
            i2c.writeto(addr, _WAKE)
        except OSError:
            pass  # a sleeping chip NACKs its wake-up call
        time.sleep_us(_WAKE_US)
        try:
            i2c.writeto(addr, _CMD)
        except OSError as e:
            raise AM2320Error("AM2320 at 0x%02x: read command not ACKed (I2C error %s)" % (
                addr, e.args[0] if e.args else "?"))
        time.sleep_us(_CMD_WAIT_US)
        try:
            i2c.readfrom_into(addr, buf)
        except OSError as e:
            raise AM2320Error("AM2320 at 0x%02x: reply read not ACKed (I2C error %s)" % (
                addr, e.args[0] if e.args else "?"))
        self._last_read, self._last_us = start, start_us
        if buf[0] != _FUNC_READ or buf[1] != _NREGS:
            raise AM2320Error("AM2320: bad reply header %02x %02x, expected 03 04" % (
                buf[0], buf[1]))
        got = buf[6] | (buf[7] << 8)
        crc = crc16(buf, 6)
        if got != crc:
            raise AM2320Error("AM2320: CRC mismatch, got 0x%04x, computed 0x%04x" % (got, crc))
        rh = (buf[2] << 8) | buf[3]
        if rh > _RH_MAX:
            raise AM2320Error("AM2320: humidity %d (0.1 %%RH) out of range" % rh)
        t = decode_temperature(buf[4], buf[5])
        if not _T_MIN <= t <= _T_MAX:
            raise AM2320Error("AM2320: temperature %d (0.1 C) out of range" % t)
