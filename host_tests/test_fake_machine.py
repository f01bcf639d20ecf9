"""The fake machine module behaves like the ESP32 port at the protocol level."""

import time

import machine
import support


class Register8(machine.I2CDevice):
    """A minimal register-file chip: write [reg, data...], read from reg on."""

    def __init__(self, address):
        self.address = address
        self.regs = bytearray(256)
        self.ptr = 0

    def write(self, data):
        if data:
            self.ptr = data[0]
            for i, b in enumerate(data[1:]):
                self.regs[(self.ptr + i) & 0xFF] = b

    def read(self, n):
        out = bytes(self.regs[(self.ptr + i) & 0xFF] for i in range(n))
        self.ptr = (self.ptr + n) & 0xFF
        return out


def test_i2c_register_roundtrip_and_scan():
    dev = machine.attach_i2c(1, Register8(0x42))
    i2c = machine.I2C(1, scl=machine.Pin(22), sda=machine.Pin(21), freq=100_000)
    assert i2c.freq == 100_000
    assert 0x42 in i2c.scan()
    i2c.writeto_mem(0x42, 0x10, b"\x01\x02\x03")
    assert dev.regs[0x10:0x13] == b"\x01\x02\x03"
    assert i2c.readfrom_mem(0x42, 0x11, 2) == b"\x02\x03"
    buf = bytearray(3)
    i2c.readfrom_mem_into(0x42, 0x10, buf)
    assert buf == b"\x01\x02\x03"
    machine.detach_i2c(1, 0x42)


def test_i2c_missing_device_is_enodev():
    i2c = machine.I2C(0)
    e = support.raises(OSError, i2c.readfrom, 0x13, 2)
    assert e.args[0] == 19
    e = support.raises(OSError, i2c.writeto, 0x13, b"\x00")
    assert e.args[0] == 19


def test_i2c_device_nack_is_enodev():
    class Sleeper(machine.I2CDevice):
        address = 0x5C

        def write(self, data):
            raise machine.Nack()

    machine.attach_i2c(1, Sleeper())
    e = support.raises(OSError, machine.I2C(1).writeto, 0x5C, b"")
    assert e.args[0] == 19
    machine.detach_i2c(1, 0x5C)


def test_pwm_records_changes():
    pwm = machine.PWM(machine.Pin(2), freq=1, duty_u16=0)
    pwm.duty_u16(32768)
    pwm.freq(4)
    hist = [(f, d) for _t, f, d in pwm.history]
    assert hist == [(1, 0), (1, 32768), (4, 32768)]
    assert machine.pwms[2] is pwm


def test_reset_is_not_an_exception():
    try:
        try:
            machine.reset()
        except Exception:  # noqa: BLE001 - firmware's catch-all must not swallow it
            raise AssertionError("reset swallowed by except Exception")
    except machine.Reset as r:
        assert r.cause == machine.HARD_RESET


def test_wdt_starves():
    wdt = machine.WDT(timeout=20)
    wdt.feed()
    wdt.check()
    time.sleep_ms(40)
    assert wdt.expired()
    support.raises(machine.Reset, wdt.check)


def test_rtc_memory_survives_reset():
    machine.RTC().memory(b"boots=3")
    assert machine.RTC().memory() == b"boots=3"
