"""Register-level model of an Aosong AM2320 on the fake I2C bus.

Behaviour modelled from the datasheet (times from ``time.ticks_*``, so a
virtual clock behind ``time`` drives it too):

- The chip sleeps.  A transaction addressed to a sleeping chip is NACKed and
  wakes it; it accepts commands 800 us later and falls asleep again 3 s
  after waking, or right after a reply has been read.
- Command ``03 start count`` (count 1..10, registers 0x00..0x1F) is ACKed;
  the reply can be read 1.5 ms later: ``03 count regs... CRC_lo CRC_hi``
  (CRC-16/Modbus).  Reading earlier, or without a command, is NACKed.
  Illegal addresses or function codes get an exception reply ``0x80|f code``.
- Registers 0..3 hold the conversion started by the *previous* read
  (RH then T, 0.1 units, T sign-magnitude); the chip converts right after
  each read, unless that read came < 2 s after the one before (then the
  registers stay stale and ``early_reads`` counts it).  At power-up they
  hold zeros.
- Bus clock above ``max_freq_hz`` (100 kHz, the datasheet's limit): NACK.
- ``I2C.scan()`` misses a sleeping chip (and wakes it): scan twice.

Fault knobs: ``on_bus = False`` (drops off the bus), ``bad_crc`` /
``bad_header`` (corrupt the next N replies), ``stuck = True`` (conversions
stop updating the registers).
"""

import time

import machine

WAKE_US = 800
AWAKE_MS = 3000
CMD_TO_READ_US = 1500
MIN_INTERVAL_MS = 2000
_NREGS = 0x20


def crc16(data):
    """CRC-16/Modbus of ``data``."""
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def encode(temperature_c, humidity_rh):
    """Register bytes 0..3 for a conversion result (rounded to 0.1 units)."""
    rh = min(1000, max(0, int(round(humidity_rh * 10))))
    t = int(round(temperature_c * 10))
    traw = (0x8000 | -t) if t < 0 else t
    return bytes((rh >> 8, rh & 0xFF, traw >> 8, traw & 0xFF))


class AM2320Device(machine.I2CDevice):
    """The chip; ``temperature_c`` / ``humidity_rh`` are the physical values."""

    def __init__(self, address=0x5C, temperature_c=21.5, humidity_rh=45.0):
        self.address = address
        self.temperature_c = temperature_c
        self.humidity_rh = humidity_rh
        self.regs = bytearray(_NREGS)
        self.on_bus = True
        self.stuck = False
        self.bad_crc = 0
        self.bad_header = 0
        self.max_freq_hz = 100_000
        self._awake = False
        self._wake_us = self._wake_ms = 0
        self._cmd = None  # (start, count, error code) awaiting its reply
        self._cmd_us = 0
        self._last_read_ms = None
        self._last_read_us = 0
        # Counters for tests.
        self.wakeups = 0
        self.commands = 0
        self.replies = 0
        self.conversions = 0
        self.early_reads = 0
        self.nacks = 0

    @property
    def ack_scan(self):
        # A scan probe is a transaction too: a sleeping chip NACKs it and wakes up,
        # so only a second scan within 3 s finds it (as with the real chip).
        if not self.on_bus:
            return False
        if self._is_awake():
            return True
        self._awake = True
        self._wake_us, self._wake_ms = time.ticks_us(), time.ticks_ms()
        self.wakeups += 1
        return False

    def _is_awake(self):
        if self._awake and time.ticks_diff(time.ticks_ms(), self._wake_ms) >= AWAKE_MS:
            self._awake = False
        return self._awake

    def _nack(self):
        self.nacks += 1
        raise machine.Nack()

    def _check_bus(self):
        if not self.on_bus:
            self._nack()
        bus = self.bus
        if bus is not None and bus.freq > self.max_freq_hz:
            self._nack()
        if not self._is_awake():
            self._awake = True
            self._wake_us, self._wake_ms = time.ticks_us(), time.ticks_ms()
            self.wakeups += 1
            self._nack()
        if time.ticks_diff(time.ticks_us(), self._wake_us) < WAKE_US and \
                time.ticks_diff(time.ticks_ms(), self._wake_ms) < 2:
            self._nack()  # still waking up

    def write(self, data):
        self._check_bus()
        if not data:
            return
        f = data[0]
        if f == 0x03 and len(data) == 3:
            start, count = data[1], data[2]
            err = 0 if 1 <= count <= 10 and start + count <= _NREGS else 0x02
            self._cmd = (start, count, err, f)
        elif f == 0x10 and len(data) >= 3:
            self._cmd = (data[1], data[2], 0x05, f)  # writes refused: "write disabled"
        else:
            self._cmd = (0, 0, 0x01, f)  # function code not supported
        self._cmd_us = time.ticks_us()
        self.commands += 1

    def read(self, n):
        self._check_bus()
        if self._cmd is None or time.ticks_diff(time.ticks_us(), self._cmd_us) < CMD_TO_READ_US:
            self._nack()  # no reply ready
        start, count, err, f = self._cmd
        self._cmd = None
        if err:
            frame = bytearray((0x80 | f, err))
        else:
            frame = bytearray((0x03, count)) + self.regs[start:start + count]
        if self.bad_header and not err:
            self.bad_header -= 1
            frame[0] = 0x83
        crc = crc16(frame)
        if self.bad_crc:
            self.bad_crc -= 1
            crc ^= 0x0100
        frame += bytes((crc & 0xFF, crc >> 8))
        self.replies += 1
        self._convert()
        self._awake = False  # measures, then sleeps
        # The master clocks n bytes; past the frame the released SDA reads 0xFF.
        return bytes(frame[:n]) + b"\xff" * max(0, n - len(frame))

    def _convert(self):
        # The chip times the gap itself (not in whole ms): compare in us when it is short.
        now, now_us = time.ticks_ms(), time.ticks_us()
        last, last_us = self._last_read_ms, self._last_read_us
        self._last_read_ms, self._last_read_us = now, now_us
        if last is not None and time.ticks_diff(now, last) <= MIN_INTERVAL_MS and \
                time.ticks_diff(now_us, last_us) < MIN_INTERVAL_MS * 1000:
            self.early_reads += 1
            return
        if not self.stuck:
            self.regs[0:4] = encode(self.temperature_c, self.humidity_rh)
            self.conversions += 1
