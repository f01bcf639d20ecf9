"""WifiMonitor against the fake radio on a virtual clock (both interpreters).

The monitor, the fake ``network`` world and the fake PWM all read the same
``VirtualClock``, so a minute of Wi-Fi life costs no wall time and LED patterns
are asserted from the PWM's recorded ``(ticks_ms, freq, duty_u16)`` history.
"""

import machine
import network
import support
import wifi
from sensor_clock import VirtualClock

SOLID = "solid"
BLINK_1HZ = "1Hz"
BLINK_4HZ = "4Hz"
OFF = "off"


def _pattern(freq, duty):
    if duty == 0:
        return OFF
    if duty == 65535:
        return SOLID  # the frequency does not matter at 100 % duty
    return "%dHz" % freq if duty == 32768 else "%dHz@%d" % (freq, duty)


class Rig:
    def __init__(self, **cfg):
        self.clk = VirtualClock().install(wifi, network, machine)
        network.world.reset()
        self.world = network.world
        self.sta = network.WLAN(network.STA_IF)
        self.ap = network.WLAN(network.AP_IF)
        self.led = machine.PWM(machine.Pin(2), freq=1000, duty_u16=0)
        self.t0 = self.clk.ticks_ms()
        self.lines = []
        conf = support.board_cfg(wifi_ssid="home", wifi_password="secret123")
        conf.update(cfg)  # unchecked: the monitor must refuse a bad AP password itself
        self.mon = wifi.WifiMonitor(self.sta, self.ap, self.led, conf, log=self.lines.append)
        self.trace = []  # (t_s, state) on each change

    def now_s(self):
        return self.clk.ticks_diff(self.clk.ticks_ms(), self.t0) / 1000

    def run(self, seconds):
        """step() once a virtual second, as the monitor thread does."""
        for _ in range(int(seconds)):
            self.mon.step()
            if not self.trace or self.trace[-1][1] != self.mon.state:
                self.trace.append((self.now_s(), self.mon.state))
            self.clk.advance_ms(1000)

    def led_states(self):
        """LED pattern after each change, settled per instant, without the initial PWM."""
        out = []
        hist = self.led.history[1:]
        for i, (t, f, d) in enumerate(hist):
            if i + 1 < len(hist) and hist[i + 1][0] == t:
                continue  # freq and duty set in the same instant: keep the settled value
            p = _pattern(f, d)
            if not out or out[-1] != p:
                out.append(p)
        return out

    def close(self):
        self.mon.stop()
        self.clk.uninstall()
        network.world.reset()


def test_connects_and_led_goes_solid():
    r = Rig()
    try:
        r.world.add_ap("home", "secret123", rssi=-67)
        r.run(5)
        assert r.mon.state == "connected" and r.mon.connected
        assert r.mon.rssi() == -67
        assert r.mon.ifconfig()[0] != "0.0.0.0"
        assert r.led_states() == [BLINK_1HZ, SOLID]
        assert not r.ap.active()
        r.run(100)  # steady: no more LED writes, no more connect() calls
        assert r.led_states() == [BLINK_1HZ, SOLID]
        assert r.mon.attempts == 1
        assert not any("secret123" in line for line in r.lines)
    finally:
        r.close()


def test_short_drop_is_recovered_by_the_driver_without_ap():
    r = Rig()
    try:
        r.world.add_ap("home", "secret123")
        r.world.add_outage(20, 50)
        r.run(120)
        assert r.mon.state == "connected"
        assert r.mon.drops == 1 and r.mon.ap_starts == 0
        assert [s for _, s in r.trace] == ["disconnected", "connected", "disconnected",
                                           "connected"]
        assert r.led_states() == [BLINK_1HZ, SOLID, BLINK_1HZ, SOLID]
        t_lost = r.trace[2][0]
        assert 20 <= t_lost <= 20 + r.world.beacon_timeout_ms / 1000 + 1
        assert 50 <= r.trace[3][0] <= 50 + 8
    finally:
        r.close()


def test_long_outage_starts_wpa2_ap_then_returns_to_station():
    r = Rig()
    try:
        w = r.world
        w.add_ap("home", "secret123")
        w.add_outage(10, 200)
        r.run(300)
        states = [s for _, s in r.trace]
        assert states == ["disconnected", "connected", "disconnected", "ap", "connected"]
        t_lost, t_ap, t_back = r.trace[2][0], r.trace[3][0], r.trace[4][0]
        # 60 s after the monitor saw the link go (the driver notices a lost AP late).
        assert 59 <= t_ap - t_lost <= 61
        assert t_lost - 10 <= w.beacon_timeout_ms / 1000 + 1
        # Back within one (backed-off) retry period after the router returns.
        assert 200 <= t_back <= 200 + 8 * 30 + 20 + 2
        assert r.led_states() == [BLINK_1HZ, SOLID, BLINK_1HZ, BLINK_4HZ, SOLID]
        assert not r.ap.active() and r.mon.ap_starts == 1 and w.ap_starts == 1
        assert r.mon.drops == 1
    finally:
        r.close()


def test_wrong_password_ap_is_wpa2_and_sta_retries_back_off():
    r = Rig(wifi_password="wrong-one")
    try:
        w = r.world
        w.add_ap("home", "secret123")
        r.run(59)
        assert r.mon.state == "disconnected" and not r.ap.active()
        assert any("wrong password" in line for line in r.lines)
        r.run(2)
        assert r.mon.state == "ap" and r.ap.active()
        assert r.ap.config("authmode") == network.AUTH_WPA2_PSK
        mac = r.sta.config("mac")
        assert r.ap.config("ssid") == "weather-%02x%02x" % (mac[4], mac[5])
        assert not w.join_ap("")  # never open
        assert w.join_ap("weather-setup")
        assert r.led_states()[-1] == BLINK_4HZ
        # STA attempts while the AP is up: 30 s after the AP, then doubling, capped at 8 x.
        starts = []
        n = r.mon.attempts
        for _ in range(2000):
            r.run(1)
            if r.mon.attempts != n:
                n = r.mon.attempts
                starts.append(r.now_s())
        gaps = [b - a for a, b in zip(starts, starts[1:])]
        assert len(starts) >= 6
        assert gaps[0] >= 60 + 20 - 2  # 20 s attempt + 60 s backoff
        assert all(b >= a for a, b in zip(gaps, gaps[1:]))  # non-decreasing
        assert max(gaps) <= 8 * 30 + 20 + 2  # capped
        assert r.mon.state == "ap" and r.ap.active()
        # The radio was not left scanning: driver attempts are a handful per STA try.
        w.update()
        assert w.attempts <= 10 * len(starts) + 30
    finally:
        r.close()


def test_router_appears_while_ap_up():
    r = Rig(no_wifi_before_ap_s=30, sta_retry_s=10)
    try:
        r.run(35)
        assert r.mon.state == "ap"
        assert any("no AP found" in line for line in r.lines)
        r.world.add_ap("home", "secret123")
        r.run(60)
        assert r.mon.state == "connected" and not r.ap.active()
        assert r.led_states() == [BLINK_1HZ, BLINK_4HZ, SOLID]
    finally:
        r.close()


def test_short_ap_password_is_refused_and_default_used():
    r = Rig(ap_password="short", ap_ssid="roof-logger")
    try:
        r.run(62)
        assert r.mon.state == "ap"
        assert any("shorter than 8" in line for line in r.lines)
        assert not any("short" in line and "shorter" not in line for line in r.lines)
        assert r.ap.config("ssid") == "roof-logger"
        assert r.ap.config("authmode") == network.AUTH_WPA2_PSK
        assert r.world.join_ap("weather-setup") and not r.world.join_ap("short")
    finally:
        r.close()


def test_no_ssid_starts_ap_at_once_and_never_tries_sta():
    r = Rig(wifi_ssid="", wifi_password="")
    try:
        r.run(3)
        assert r.mon.state == "ap" and r.ap.active()
        r.run(300)
        assert r.mon.attempts == 0
        assert r.led_states() == [BLINK_4HZ]  # in the very first step
    finally:
        r.close()


def test_no_led_is_fine():
    r = Rig()
    try:
        r.mon.led = None
        r.world.add_ap("home", "secret123")
        r.run(5)
        assert r.mon.state == "connected"
    finally:
        r.close()


def test_run_sleeps_a_second_per_step_and_stops():
    r = Rig()
    try:
        steps = [0]

        def step():
            steps[0] += 1
            if steps[0] == 5:
                r.mon.stop()

        r.mon.step = step
        r.mon.run()
        assert steps[0] == 5
        assert r.clk.slept_us == 5 * 1_000_000  # never a busy loop
    finally:
        r.close()


def test_a_failing_step_is_logged_and_the_loop_goes_on():
    r = Rig()
    try:
        calls = [0]

        def step():
            calls[0] += 1
            if calls[0] == 3:
                r.mon.stop()
            raise OSError("radio hiccup")

        r.mon.step = step
        r.mon.run()
        assert calls[0] == 3 and r.clk.slept_us == 3 * 1_000_000
        assert sum(1 for line in r.lines if "radio hiccup" in line) == 3
    finally:
        r.close()


def test_ap_on_a_port_that_configures_only_a_running_ap():
    r = Rig(no_wifi_before_ap_s=5)
    try:
        r.world.ap_config_needs_active = True
        r.run(7)
        assert r.mon.state == "ap"
        assert r.ap.config("authmode") == network.AUTH_WPA2_PSK
        assert r.world.join_ap("weather-setup") and not r.world.join_ap("")
    finally:
        r.close()


def test_overlong_ap_password_is_refused_not_truncated():
    r = Rig(no_wifi_before_ap_s=5, ap_password="x" * 70)
    try:
        r.run(7)
        assert r.mon.state == "ap"
        assert any("longer than 63" in line for line in r.lines)
        assert r.world.join_ap("weather-setup")
    finally:
        r.close()
