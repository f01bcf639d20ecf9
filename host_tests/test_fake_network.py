"""The fake network/ntptime/webrepl modules behave like the ESP32 port (both interpreters)."""

import errno

import machine
import network
import ntptime
import support
import webrepl
from sensor_clock import VirtualClock


def _world():
    """A fresh world on a virtual clock bound to the fakes; returns (clock, sta, ap)."""
    clk = VirtualClock().install(network)
    network.world.reset()
    return clk, network.WLAN(network.STA_IF), network.WLAN(network.AP_IF)


def _done(clk):
    clk.uninstall()
    network.world.reset()


def test_connect_takes_time_then_got_ip():
    clk, sta, _ap = _world()
    try:
        network.world.add_ap("home", "secret123", rssi=-55)
        assert not sta.active()
        err = support.raises(OSError, sta.connect, "home", "secret123")
        assert "Not Started" in str(err)
        sta.active(True)
        assert sta.status() == network.STAT_IDLE
        sta.connect("home", "secret123")
        assert sta.status() == network.STAT_CONNECTING
        # A second connect() while the attempt runs is an ESP-IDF error.
        support.raises(OSError, sta.connect, "home", "secret123")
        clk.advance_ms(1000)
        assert not sta.isconnected() and not network.world.online()
        clk.advance_ms(network.world.connect_ms)
        assert sta.isconnected() and sta.status() == network.STAT_GOT_IP
        assert network.world.online()
        assert sta.status("rssi") == -55
        assert sta.ifconfig()[0] != "0.0.0.0"
        assert sta.config("ssid") == "home"
        sta.disconnect()
        assert sta.status() == network.STAT_IDLE and not sta.isconnected()
        assert sta.ifconfig()[0] == "0.0.0.0"
        support.raises(OSError, sta.status, "rssi")
    finally:
        _done(clk)


def test_wrong_password_is_reported_while_the_driver_retries():
    clk, sta, _ap = _world()
    try:
        network.world.add_ap("home", "secret123")
        sta.active(True)
        sta.connect("home", "wrong-pass")
        clk.advance_ms(network.world.fail_ms + 10)
        assert sta.status() == network.STAT_WRONG_PASSWORD
        before = network.world.attempts
        clk.advance_ms(30_000)
        assert sta.status() == network.STAT_WRONG_PASSWORD  # sticky until GOT_IP
        assert network.world.attempts > before  # auto reconnect keeps trying
        assert not sta.isconnected()
        sta.disconnect()
        assert sta.status() == network.STAT_IDLE
    finally:
        _done(clk)


def test_no_ap_found_then_ap_appears_and_driver_reconnects_alone():
    clk, sta, _ap = _world()
    try:
        sta.active(True)
        sta.connect("home", "secret123")
        clk.advance_ms(5000)
        assert sta.status() == network.STAT_NO_AP_FOUND
        network.world.add_ap("home", "secret123")
        clk.advance_ms(network.world.fail_ms + network.world.connect_ms + 10)
        assert sta.isconnected() and sta.status() == network.STAT_GOT_IP
    finally:
        _done(clk)


def test_reconnects_limit_stops_auto_retry():
    clk, sta, _ap = _world()
    try:
        sta.active(True)
        sta.config(reconnects=2)
        assert sta.config("reconnects") == 2
        sta.connect("nowhere", "x")
        clk.advance_ms(60_000)
        network.world.update()
        assert network.world.attempts == 3  # the first one + 2 retries
        assert sta.status() == network.STAT_NO_AP_FOUND
    finally:
        _done(clk)


def test_scheduled_outage_drops_and_recovers():
    clk, sta, _ap = _world()
    try:
        w = network.world
        w.add_ap("home", "secret123")
        w.add_outage(10, 40)
        sta.active(True)
        sta.connect("home", "secret123")
        clk.advance_ms(5000)
        assert sta.isconnected()
        clk.advance_ms(6000)  # t = 11 s: link gone, driver has not noticed yet
        assert not w.online()
        assert sta.isconnected()
        clk.advance_ms(w.beacon_timeout_ms)  # noticed
        assert not sta.isconnected()
        assert sta.status() in (network.STAT_CONNECTING, network.STAT_NO_AP_FOUND)
        assert w.drops == 1
        clk.advance_ms(40_000 - w.now_ms() - 100)
        assert not sta.isconnected()
        clk.advance_ms(100 + w.fail_ms + w.connect_ms + 10)
        assert sta.isconnected() and w.online()
        assert w.drops == 1
        # set_link works from "now" on
        w.set_link(False)
        assert not w.online()
        clk.advance_ms(w.beacon_timeout_ms + 1)
        assert not sta.isconnected() and w.drops == 2
        w.set_link(True)
        clk.advance_ms(w.fail_ms + w.connect_ms + 10)
        assert sta.isconnected()
    finally:
        _done(clk)


def test_access_point_security_mac_and_clients():
    clk, sta, ap = _world()
    try:
        w = network.world
        sta_mac, ap_mac = sta.config("mac"), ap.config("mac")
        assert len(sta_mac) == 6 and len(ap_mac) == 6
        assert sta_mac == bytes(machine.unique_id())
        assert ap_mac[:5] == sta_mac[:5] and ap_mac[5] == (sta_mac[5] + 1) & 0xFF
        assert ap.config("authmode") == network.AUTH_OPEN  # the chip's default
        support.raises(OSError, ap.config, authmode=network.AUTH_WPA2_PSK, key="short")
        support.raises(OSError, sta.config, ssid="x")  # AP-only parameter
        support.raises(ValueError, ap.config, "key")  # not readable
        ap.config(ssid="weather-b2c3", key="weather-setup", authmode=network.AUTH_WPA2_PSK)
        ap.active(True)
        assert ap.active() and ap.config("ssid") == "weather-b2c3"
        assert ap.ifconfig()[0] == "192.168.4.1"
        assert ap.status() is None
        support.raises(OSError, ap.status, "rssi")
        assert not ap.isconnected()
        assert not w.join_ap("wrong")
        assert w.join_ap("weather-setup")
        assert ap.isconnected() and len(ap.status("stations")) == 1
        ap.active(False)
        assert not ap.isconnected()
        assert w.ap_starts == 1
    finally:
        _done(clk)


def test_scan_needs_active_sta_and_lists_reachable_aps():
    clk, sta, _ap = _world()
    try:
        w = network.world
        w.add_ap("home", "secret123", rssi=-70)
        w.add_ap("cafe", "", rssi=-80)
        support.raises(OSError, sta.scan)
        sta.active(True)
        found = {r[0]: r for r in sta.scan()}
        assert set(found) == {b"home", b"cafe"}
        assert found[b"home"][3] == -70 and found[b"home"][4] == network.AUTH_WPA2_PSK
        assert found[b"cafe"][4] == network.AUTH_OPEN and len(found[b"cafe"][1]) == 6
        w.remove_ap("cafe")
        assert [r[0] for r in sta.scan()] == [b"home"]
    finally:
        _done(clk)


def test_ntptime_needs_link_and_server():
    clk, sta, _ap = _world()
    try:
        w = network.world
        w.add_ap("home", "secret123")
        e = support.raises(OSError, ntptime.settime)
        assert e.args[0] == -202  # no link: getaddrinfo fails
        sta.active(True)
        sta.connect("home", "secret123")
        clk.advance_ms(5000)
        w.ntp_fail_next = 2
        for _ in range(2):
            e = support.raises(OSError, ntptime.settime)
            assert e.args[0] == errno.ETIMEDOUT
        ntptime.settime()
        dt = machine.RTC().datetime()
        assert dt[0] >= 2024 and 1 <= dt[3] <= 7
        w.ntp_ok = False
        support.raises(OSError, ntptime.time)
        assert w.ntp_calls == 5
    finally:
        _done(clk)


def test_webrepl_records_calls_without_the_password():
    webrepl.reset()
    webrepl.start(password="pw1234")
    assert webrepl.running and webrepl.check_password("pw1234")
    assert not webrepl.check_password("nope")
    webrepl.stop()
    assert not webrepl.running
    assert webrepl.calls == [("start", 8266, True), ("stop",)]
    assert "pw1234" not in repr(webrepl.calls)
    webrepl.reset()
