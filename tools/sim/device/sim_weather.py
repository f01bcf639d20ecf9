"""The simulated weather, seen through the register-level sensor models.

``Weather`` is a plausible curve in true (virtual) UTC: a diurnal temperature wave (coldest
near 05:00, warmest near 15:00) with a slow day-to-day drift, relative humidity moving
against temperature, and pressure drifting over days with a small semi-diurnal tide.
``WeatherAM2320`` / ``WeatherBMP180`` are the fakes from host_tests/fakes whose physical
``temperature_c`` / ``humidity_rh`` / ``pressure_pa`` follow it (writes are ignored), so
the firmware's drivers read the curve through the chips' real protocols.

Each conversion adds the sensor's own noise (``Noise``, a seeded Gaussian): AM2320
sigma 0.05 degC and 0.1 %RH (its last digit flickers, as a real one does), BMP180
sigma 0.05 degC and 3 Pa (oss 3). A flat line would make the queue's compression and
every figure measured on simulated data look better than a real roof.
"""

import math
import time  # the virtual clock: sim_utc_ms()

from am2320_device import AM2320Device
from bmp180_device import BMP180Device

_DAY = 86400.0


class Noise:
    """Seeded Gaussian noise (Box-Muller over a 32-bit xorshift): the same sequence under
    CPython and MicroPython for a seed, independent of the ``random`` module."""

    def __init__(self, seed):
        self._x = (seed * 2654435761 + 1) & 0xFFFFFFFF or 1
        self._spare = None

    def _uniform(self):
        x = self._x
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self._x = x
        return (x + 1) / 4294967297.0  # in (0, 1)

    def gauss(self, sigma):
        if self._spare is not None:
            z, self._spare = self._spare, None
            return z * sigma
        r = math.sqrt(-2.0 * math.log(self._uniform()))
        a = 2 * math.pi * self._uniform()
        self._spare = r * math.sin(a)
        return r * math.cos(a) * sigma


class Weather:
    def __init__(self, seed=1, mean_c=14.0, swing_c=6.0, pressure_pa=101325.0):
        self.phase = (seed * 0.6180339887) % 1.0  # a different weather per seed
        self.mean_c = mean_c
        self.swing_c = swing_c
        self.pressure_pa = pressure_pa

    def _t(self):
        return time.sim_utc_ms() / 1000.0

    def temperature_c(self):
        t = self._t()
        hour = (t % _DAY) / 3600.0
        daily = -math.cos(2 * math.pi * (hour - 3.0) / 24.0)  # min ~03:00+2h lag, max ~15:00
        drift = 2.5 * math.sin(2 * math.pi * (t / (_DAY * 3.7) + self.phase))
        wobble = 0.3 * math.sin(2 * math.pi * t / 1700.0) + 0.15 * math.sin(t / 97.0)
        return self.mean_c + self.swing_c * daily + drift + wobble

    def humidity_rh(self):
        rh = 62.0 - 3.0 * (self.temperature_c() - self.mean_c)
        rh += 4.0 * math.sin(2 * math.pi * (self._t() / (_DAY * 2.3) + self.phase))
        return min(99.0, max(12.0, rh))

    def pressure(self):
        t = self._t()
        slow = 900.0 * math.sin(2 * math.pi * (t / (_DAY * 4.1) + self.phase))
        tide = 110.0 * math.cos(4 * math.pi * (t % _DAY) / _DAY)
        return self.pressure_pa + slow + tide


class RampWeather(Weather):
    """A test signal instead of weather: the pressure ramps 10 Pa per simulated second
    (95000 Pa + 10 * (UTC seconds mod 1000)), so a record's pressure tells the true time it
    was sampled to about a second (tools/sim checks every timestamp against it)."""

    def pressure(self):
        return ramp_pressure(time.sim_utc_ms())


def ramp_pressure(utc_ms):
    return 95000.0 + (utc_ms % 1_000_000) / 100.0


AM2320_NOISE = (0.05, 0.1)  # sigma: degC, %RH
BMP180_NOISE = (0.05, 3.0)  # sigma: degC, Pa (oss 3)


class WeatherAM2320(AM2320Device):
    def __init__(self, weather, noise=AM2320_NOISE, seed=2, **kw):
        self.weather = weather
        self.noise = noise
        self._rng = Noise(seed)
        super().__init__(**kw)

    @property
    def temperature_c(self):
        return self.weather.temperature_c() + self._rng.gauss(self.noise[0])

    @temperature_c.setter
    def temperature_c(self, value):
        pass

    @property
    def humidity_rh(self):
        return self.weather.humidity_rh() + self._rng.gauss(self.noise[1])

    @humidity_rh.setter
    def humidity_rh(self, value):
        pass


class WeatherBMP180(BMP180Device):
    """One noise pair per measurement: the chip's temperature and pressure conversions of
    one ``measure()`` see the same draw, so the temperature's noise does not leak into the
    compensated pressure (which would make it ten times noisier than the datasheet's)."""

    def __init__(self, weather, noise=BMP180_NOISE, seed=3, **kw):
        self.weather = weather
        self.noise = noise
        self._rng = Noise(seed)
        self._drawn_ms = None
        self._pair = (0.0, 0.0)
        super().__init__(**kw)

    def _noise(self, i):
        now = time.ticks_ms()
        if self._drawn_ms is None or time.ticks_diff(now, self._drawn_ms) > 200:
            self._drawn_ms = now
            self._pair = (self._rng.gauss(self.noise[0]), self._rng.gauss(self.noise[1]))
        return self._pair[i]

    @property
    def temperature_c(self):
        # the board warms its own sensor a little
        return self.weather.temperature_c() + 0.4 + self._noise(0)

    @temperature_c.setter
    def temperature_c(self, value):
        pass

    @property
    def pressure_pa(self):
        return self.weather.pressure() + self._noise(1)

    @pressure_pa.setter
    def pressure_pa(self, value):
        pass
