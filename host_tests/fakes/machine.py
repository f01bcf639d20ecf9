"""Fake ``machine`` module: the ESP32 port's API over emulated hardware.

Used by tests, the simulator and benchmarks on both interpreters.  The
emulation is at the protocol level: I2C transactions go to device models that
ACK or NACK and return bytes as a chip would; the driver code under test sees
only what the ESP32 port's ``machine.I2C`` would show it.

World set-up (not part of the board's API):
- ``attach_i2c(bus_id, device)``: put a device model on bus ``bus_id``
  (``I2C(bus_id, ...)`` and ``SoftI2C`` both use it; SoftI2C's id is "soft").
- ``set_reset_cause(cause)``, ``rtc_memory`` persists across ``reset()``.
- ``pins`` / ``pwms``: every Pin and PWM created, by pin number.
- ``keep_history``: Pin and PWM record their changes (``history``) for tests; the
  simulator sets it False, as a board keeps no such record in its heap.
"""

import time

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5

_ENODEV = 19
_ETIMEDOUT = 116
_EINVAL = 22


class Reset(BaseException):
    """Raised by ``reset()``/``soft_reset()``/``deepsleep()`` and a starved WDT.

    A BaseException, like SystemExit, so ``except Exception`` in firmware
    does not swallow it; the simulator catches it and "reboots".
    """

    def __init__(self, cause):
        super().__init__(cause)
        self.cause = cause


keep_history = True
_state = {"reset_cause": PWRON_RESET, "freq": 160_000_000}
_uid = [b"\x24\x6f\x28\xa1\xb2\xc3"]


def set_reset_cause(cause):
    _state["reset_cause"] = cause


def set_unique_id(uid):
    _uid[0] = bytes(uid)


def reset_cause():
    return _state["reset_cause"]


def reset():
    raise Reset(HARD_RESET)


def soft_reset():
    raise Reset(SOFT_RESET)


def deepsleep(ms=0):
    raise Reset(DEEPSLEEP_RESET)


def lightsleep(ms=0):
    time.sleep_ms(ms)


def idle():
    pass


def unique_id():
    return _uid[0]


def freq(hz=None):
    if hz is None:
        return _state["freq"]
    _state["freq"] = hz


def disable_irq():
    return 0


def enable_irq(state=0):
    pass


# ---------------------------------------------------------------- I2C

class Nack(Exception):
    """Raised by a device model to NACK (its address or a data byte)."""


class I2CDevice:
    """Base for device models.  A transaction is one ``write`` or ``read``.

    ``write(data)`` receives every byte the master sent in one transaction
    (``writeto_mem`` prepends the register address); raise ``Nack`` to NACK.
    ``read(n)`` returns exactly ``n`` bytes; raise ``Nack`` to NACK.
    ``bus`` is set on attach, so a model can see ``bus.freq``.
    """

    address = 0
    bus = None

    def write(self, data):
        raise Nack()

    def read(self, n):
        raise Nack()


_i2c_buses = {}


def attach_i2c(bus_id, device, address=None):
    if address is not None:
        device.address = address
    _i2c_buses.setdefault(bus_id, {})[device.address] = device
    return device


def detach_i2c(bus_id, address):
    _i2c_buses.get(bus_id, {}).pop(address, None)


def i2c_devices(bus_id):
    return _i2c_buses.setdefault(bus_id, {})


class I2C:
    """``machine.I2C`` as on the ESP32 port (hardware I2C).

    A NACK, on the address or on a data byte, raises ``OSError(ENODEV)``
    as the ESP32 port does; a missing device is a NACK on the address.
    ``stats`` counts transactions and bytes, for tests and benchmarks.
    """

    def __init__(self, id=0, *, scl=None, sda=None, freq=400_000, timeout=50_000):
        if id not in (0, 1, "soft"):
            raise ValueError("I2C(%s) doesn't exist" % id)
        self.id = id
        self.scl, self.sda, self.freq, self.timeout = scl, sda, freq, timeout
        self.stats = {"writes": 0, "reads": 0, "nacks": 0, "bytes": 0}

    def init(self, *, scl=None, sda=None, freq=400_000, timeout=50_000):
        self.__init__(self.id, scl=scl, sda=sda, freq=freq, timeout=timeout)

    def deinit(self):
        pass

    def _device(self, addr):
        dev = _i2c_buses.get(self.id, {}).get(addr)
        if dev is None:
            self.stats["nacks"] += 1
            raise OSError(_ENODEV)
        dev.bus = self
        return dev

    def scan(self):
        found = []
        for addr, dev in sorted(_i2c_buses.get(self.id, {}).items()):
            dev.bus = self
            if getattr(dev, "ack_scan", True):
                found.append(addr)
        return found

    def writeto(self, addr, buf, stop=True):
        dev = self._device(addr)
        self.stats["writes"] += 1
        try:
            dev.write(bytes(buf))
        except Nack:
            self.stats["nacks"] += 1
            raise OSError(_ENODEV) from None
        self.stats["bytes"] += len(buf)
        return len(buf)

    def writevto(self, addr, vector, stop=True):
        data = b"".join(bytes(b) for b in vector)
        return self.writeto(addr, data, stop)

    def readfrom_into(self, addr, buf, stop=True):
        dev = self._device(addr)
        self.stats["reads"] += 1
        try:
            data = dev.read(len(buf))
        except Nack:
            self.stats["nacks"] += 1
            raise OSError(_ENODEV) from None
        if len(data) != len(buf):
            raise AssertionError("device model returned %d bytes, %d asked" % (
                len(data), len(buf)))
        buf[:] = data
        self.stats["bytes"] += len(buf)

    def readfrom(self, addr, nbytes, stop=True):
        buf = bytearray(nbytes)
        self.readfrom_into(addr, buf, stop)
        return bytes(buf)

    def _memaddr(self, memaddr, addrsize):
        if addrsize not in (8, 16):
            raise OSError(_EINVAL)
        if addrsize == 16:
            return bytes(((memaddr >> 8) & 0xFF, memaddr & 0xFF))
        return bytes((memaddr & 0xFF,))

    def writeto_mem(self, addr, memaddr, buf, *, addrsize=8):
        self.writeto(addr, self._memaddr(memaddr, addrsize) + bytes(buf))

    def readfrom_mem_into(self, addr, memaddr, buf, *, addrsize=8):
        # Write the register address without STOP, then a repeated-start read.
        self.writeto(addr, self._memaddr(memaddr, addrsize), False)
        self.readfrom_into(addr, buf)

    def readfrom_mem(self, addr, memaddr, nbytes, *, addrsize=8):
        buf = bytearray(nbytes)
        self.readfrom_mem_into(addr, memaddr, buf, addrsize=addrsize)
        return bytes(buf)


class SoftI2C(I2C):
    def __init__(self, scl=None, sda=None, *, freq=400_000, timeout=50_000):
        super().__init__("soft", scl=scl, sda=sda, freq=freq, timeout=timeout)


# ---------------------------------------------------------------- GPIO, PWM

pins = {}
pwms = {}


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_RISING = 1
    IRQ_FALLING = 2

    def __init__(self, id, mode=-1, pull=-1, *, value=None):
        self.id = id
        self.mode = mode
        self._value = 0 if value is None else int(bool(value))
        self.history = [(time.ticks_ms(), self._value)] if keep_history else []
        pins[id] = self

    def init(self, mode=-1, pull=-1, *, value=None):
        self.mode = mode
        if value is not None:
            self.value(value)

    def value(self, v=None):
        if v is None:
            return self._value
        v = int(bool(v))
        if v != self._value:
            self._value = v
            if not keep_history:
                return
            self.history.append((time.ticks_ms(), v))
            if len(self.history) > 2000:
                del self.history[:1000]

    def __call__(self, v=None):
        return self.value(v)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def irq(self, handler=None, trigger=3):
        return None


class PWM:
    """Records (ticks_ms, freq, duty_u16) each time the output changes."""

    def __init__(self, dest, *, freq=None, duty=None, duty_u16=None, duty_ns=None):
        self.pin = dest
        self._freq = freq or 5000
        self._duty_u16 = 0
        self.history = []
        pwms[getattr(dest, "id", dest)] = self
        if duty is not None:
            self.duty(duty)
        if duty_u16 is not None:
            self.duty_u16(duty_u16)
        self._record()

    def _record(self):
        if not keep_history:
            return
        self.history.append((time.ticks_ms(), self._freq, self._duty_u16))
        if len(self.history) > 4000:
            del self.history[:2000]

    def init(self, *, freq=None, duty=None, duty_u16=None, duty_ns=None):
        if freq is not None:
            self.freq(freq)
        if duty is not None:
            self.duty(duty)
        if duty_u16 is not None:
            self.duty_u16(duty_u16)

    def freq(self, hz=None):
        if hz is None:
            return self._freq
        if not 1 <= hz <= 40_000_000:
            raise ValueError("frequency must be from 1Hz to 40MHz")
        if hz != self._freq:
            self._freq = hz
            self._record()

    def duty_u16(self, d=None):
        if d is None:
            return self._duty_u16
        if not 0 <= d <= 65535:
            raise ValueError("duty_u16 must be from 0 to 65535")
        if d != self._duty_u16:
            self._duty_u16 = d
            self._record()

    def duty(self, d=None):
        if d is None:
            return self._duty_u16 >> 6
        self.duty_u16(min(1023, d) * 65535 // 1023)

    def deinit(self):
        self.duty_u16(0)


# ---------------------------------------------------------------- WDT, RTC

class WDT:
    """Watchdog: ``expired()`` tells whether ``timeout`` ms passed unfed.

    The real WDT resets the chip from hardware; here the simulator (or a
    test) calls ``check()``, which raises ``Reset(WDT_RESET)`` when starved.
    """

    active = None

    def __init__(self, id=0, timeout=5000):
        if timeout < 1:
            raise ValueError("timeout")
        self.timeout = timeout
        self.last_feed = time.ticks_ms()
        self.feeds = 0
        WDT.active = self

    def feed(self):
        self.last_feed = time.ticks_ms()
        self.feeds += 1

    def expired(self):
        return time.ticks_diff(time.ticks_ms(), self.last_feed) > self.timeout

    def check(self):
        if self.expired():
            WDT.active = None
            raise Reset(WDT_RESET)


rtc_memory = bytearray()


class RTC:
    """RTC with ``datetime()`` kept as an offset from ``time.time()``.

    ``memory()`` is RTC slow memory: it survives ``reset()`` (module state)
    but not a power cut (the simulator clears ``rtc_memory`` then).
    """

    _offset = [0]

    def __init__(self, id=0):
        pass

    def init(self, datetime_tuple=None):
        if datetime_tuple:
            self.datetime(datetime_tuple)

    def datetime(self, dt=None):
        if dt is None:
            t = time.localtime(int(time.time()) + RTC._offset[0])
            return (t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0)
        y, mo, d, _wd, h, mi, s = dt[:7]
        target = time.mktime((y, mo, d, h, mi, s, 0, 0) + ((-1,) if _cpython() else ()))
        set_time = getattr(time, "set_time", None)
        if set_time is not None:  # tools/sim's virtual clock: the RTC is time.time() itself
            set_time(target)
            RTC._offset[0] = 0
            return
        RTC._offset[0] = int(target - time.time())

    def memory(self, data=None):
        if data is None:
            return bytes(rtc_memory)
        if len(data) > 2048:
            raise ValueError("buffer too long")
        rtc_memory[:] = data


def _cpython():
    import sys
    return sys.implementation.name == "cpython"
