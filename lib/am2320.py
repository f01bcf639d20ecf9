"""Aosong AM2320 temperature / humidity sensor over I2C, without blocking waits.

Written from the Aosong datasheet.  One reading is one transaction:
wake-up (an address-only write the sleeping chip NACKs), >= 800 us pause,
the read command (function 0x03, start register 0x00, 4 registers),
>= 1.5 ms pause, then a plain 8-byte read of the reply
``03 04 RH_hi RH_lo T_hi T_lo CRC_lo CRC_hi`` (CRC-16/Modbus).  The reply
header, the CRC and the ranges are checked before anything is stored.

The chip converts right after each read and replies with that conversion at
the *next* read, which must come >= 2 s later.  ``measure()`` never sleeps
for those 2 s: called inside them it returns False at once (``ready_in_ms()``
says when it may read), and when the chip's data would be older than
``max_age_ms`` (first call, long gap) it reads once to start a conversion and
returns False: the next call, 2 s later, gets a fresh reading.  It sleeps only
for the protocol's pauses (2.6 ms a transaction) and, when called up to
``MAX_WAIT_MS`` before the 2 s are over, for that remainder (loop jitter on a
2 s schedule).

Only ESP32-port ``machine.I2C`` methods are used (``writeto``,
``readfrom_into``; not ``readfrom_mem``, which would send a stray register
byte); the reply buffer is allocated once.

Example (paste into a board's REPL; SDA 21, SCL 22)::

    import time
    from machine import I2C, Pin
    import am2320
    s = am2320.AM2320(I2C(0, scl=Pin(22), sda=Pin(21), freq=100_000))
    while not s.measure():  # the first call only primes the chip
        time.sleep_ms(s.ready_in_ms())
    print(s.temperature(), "C", s.humidity(), "%RH")
"""

import time

from micropython import const

MIN_INTERVAL_MS = const(2000)  # datasheet: >= 2 s between reads
MAX_WAIT_MS = const(25)  # most measure() sleeps to reach those 2 s (the BMP180's oss 3: 25.5 ms)

_FUNC_READ = const(0x03)
_NREGS = const(4)
_WAKE_US = const(1000)  # datasheet: hold >= 800 us (and <= 3 ms) after the wake-up
_CMD_WAIT_US = const(1600)  # datasheet: >= 1.5 ms from the command to the read
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

    ``max_age_ms`` (>= 2000): a reply whose conversion is older than this
    (started by a read longer ago) is not returned as fresh: that read only
    primes.  ``retries`` extra attempts follow a failed wake-up/command/read
    that the chip did not answer, ``retry_delay_ms`` later; a reply that
    arrived but fails a check is not retried (the chip has started a new
    conversion and rests 2 s): ``AM2320Error`` names the failed check.
    """

    def __init__(self, i2c, addr=0x5C, *, retries=1, retry_delay_ms=5, max_age_ms=60_000):
        if max_age_ms < MIN_INTERVAL_MS:
            raise ValueError("max_age_ms must be >= %d" % MIN_INTERVAL_MS)
        self._i2c = i2c
        self._addr = addr
        self._retries = retries
        self._retry_delay_ms = retry_delay_ms
        self._max_age_ms = max_age_ms
        self._buf = bytearray(8)
        # Start of the last transaction whose read reached the chip, in ticks_ms and (for a
        # spacing exact to the microsecond) ticks_us; None before the first one.
        self._last_ms = None
        self._last_us = time.ticks_us()  # (meaningless while _last_ms is None)
        self._rh = None  # 0.1 %RH, last fresh reading
        self._t = None  # 0.1 degC, last fresh reading
        self.errors = 0  # failed attempts, retried or not

    def ready_in_ms(self):
        """Milliseconds (int) until the chip may be read again; 0: now.

        ``measure()`` already reads when this is <= ``MAX_WAIT_MS``, sleeping
        the rest.
        """
        rest = self._rest_us()
        return (rest + 999) // 1000 if rest > 0 else 0

    def measure(self):
        """Take a fresh reading if the chip can give one now: True if it did.

        False, with the bus untouched, while the chip rests (``ready_in_ms()``
        > ``MAX_WAIT_MS``); False too after a priming read, made when the
        chip's data would be older than ``max_age_ms`` (first call, long gap),
        which starts the conversion the next call, 2 s later, returns.  False
        leaves the accessors at the last fresh reading.

        Sleeps 2.6 ms per attempt (the protocol's pauses), plus up to
        ``MAX_WAIT_MS`` to complete the 2 s after the previous read, plus
        ``retry_delay_ms`` per retry.  Raises ``AM2320Error`` when no attempt
        got a valid reply; the last reading is then dropped, so the accessors
        raise until the next fresh one.
        """
        rest = self._rest_us()
        if rest > MAX_WAIT_MS * 1000:
            return False
        last_ms = self._last_ms
        fresh = last_ms is not None and \
            time.ticks_diff(time.ticks_ms(), last_ms) <= self._max_age_ms
        if rest > 0 and last_ms is not None:  # (rest > 0 implies a previous read)
            time.sleep_us(rest)
            # Space from where the 2 s ended, not from after the sleep: on a 2 s schedule
            # sleep overshoot would otherwise push every later read a little later (drift).
            self._attempts(time.ticks_add(last_ms, MIN_INTERVAL_MS),
                           time.ticks_add(self._last_us, MIN_INTERVAL_MS * 1000))
        else:
            self._attempts(None, 0)
        if not fresh:
            return False
        buf = self._buf
        self._rh = (buf[2] << 8) | buf[3]
        self._t = decode_temperature(buf[4], buf[5])
        return True

    def temperature(self):
        """Last fresh temperature in degC (float, 0.1 degC resolution)."""
        return self.temperature_tenths() / 10

    def humidity(self):
        """Last fresh relative humidity in %RH (float, 0.1 %RH resolution)."""
        return self.humidity_tenths() / 10

    def temperature_tenths(self):
        """Last fresh temperature in 0.1 degC (int, the chip's own unit: 215 = 21.5 degC)."""
        if self._t is None:
            raise AM2320Error("AM2320: no valid measurement")
        return self._t

    def humidity_tenths(self):
        """Last fresh relative humidity in 0.1 %RH (int, the chip's own unit: 452 = 45.2 %)."""
        if self._rh is None:
            raise AM2320Error("AM2320: no valid measurement")
        return self._rh

    # ------------------------------------------------------------ internals

    def _rest_us(self):
        """Microseconds until the next transaction may start (<= 0: now)."""
        last = self._last_ms
        # ticks_us wraps every ~18 min: only trusted when the ms clock says the gap is short.
        if last is None or time.ticks_diff(time.ticks_ms(), last) > MIN_INTERVAL_MS:
            return 0
        return MIN_INTERVAL_MS * 1000 - time.ticks_diff(time.ticks_us(), self._last_us)

    def _attempts(self, start_ms, start_us):
        """Transactions until one reply arrives, then its checks; raises on failure.

        ``start_ms``/``start_us``: when the first attempt counts as started (None: now).
        Spacing is kept from the start of one transaction to the next: the read comes a
        fixed 2.6 ms after the start each time, so reads stay >= 2 s apart, and a caller
        on a 2 s schedule is not pushed 2.6 ms later every time.
        """
        attempt = 0
        while True:
            if start_ms is None:
                start_ms, start_us = time.ticks_ms(), time.ticks_us()
            try:
                self._transfer()
                break
            except OSError as e:
                self._fail(e, attempt)
                attempt += 1
                start_ms = None
                time.sleep_ms(self._retry_delay_ms)
        # The reply was clocked out: the chip has started a conversion and rests 2 s.
        self._last_ms, self._last_us = start_ms, start_us
        try:
            self._check()
        except AM2320Error as e:
            self._fail(e, attempt, True)

    def _fail(self, e, attempt, final=False):
        """Count a failed attempt; raise (dropping the last reading) if it is the last."""
        self.errors += 1
        if final or attempt >= self._retries:
            self._rh = self._t = None
            raise AM2320Error("%s (after %d attempts)" % (
                e.args[0] if e.args else repr(e), attempt + 1))

    def _transfer(self):
        """One wake/command/read transaction into ``self._buf``."""
        i2c, addr = self._i2c, self._addr
        try:
            i2c.writeto(addr, _WAKE)
        except OSError:
            pass  # a sleeping chip NACKs its wake-up call
        time.sleep_us(_WAKE_US)
        what = "read command"
        try:
            i2c.writeto(addr, _CMD)
            time.sleep_us(_CMD_WAIT_US)
            what = "reply read"
            i2c.readfrom_into(addr, self._buf)
        except OSError as e:
            raise AM2320Error("AM2320 at 0x%02x: %s not ACKed (I2C error %s)" % (
                addr, what, e.args[0] if e.args else "?"))

    def _check(self):
        buf = self._buf
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
