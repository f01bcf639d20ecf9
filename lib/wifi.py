"""Wi-Fi monitor: station with stored credentials, access-point fallback, status LED.

``WifiMonitor(sta, ap, led, cfg)`` is driven by ``step()`` once a second (``run()``
in its own thread does that).  ``step()`` never waits for a connection; all
timing is ``time.ticks_ms`` based, so the wrap of the ticks counter is harmless.

Policy (config keys in brackets):

* Boot: STA up, ``connect(wifi_ssid, wifi_password)``; AP down.  While the STA has
  a connection request, the ESP32 driver re-associates by itself after a drop
  (that is the quickest way back after a router reboot), so the monitor only
  re-issues ``connect()`` when the driver has nothing in flight.
* No link for ``no_wifi_before_ap_s`` seconds (60): the access point starts,
  WPA2-PSK with ``ap_password`` (never open; a password shorter than 8 or longer
  than 63 characters is refused with a log line and the default is used), SSID
  ``ap_ssid`` or "weather-" + the last 4 hex digits of the MAC.  Without any
  ``wifi_ssid`` the AP starts at once.
* While the AP is up the STA is not left scanning continuously (in AP+STA mode
  the radio follows the STA's channel hopping, which breaks the link to a phone
  on the AP): every ``sta_retry_s`` seconds (30), doubling after each failed
  attempt up to 8 x, it tries for ``_ATTEMPT_MS`` and then backs off again.
* When the STA gets an IP the AP is switched off and the LED goes solid.

LED (a ``machine.PWM`` on the LED pin, changed only on state changes):
disconnected = 1 Hz blink (duty 50 %), connected = solid (duty 100 %),
AP up = 4 Hz blink.
"""

import time

from micropython import const

_STAT_IDLE = const(1000)
_STAT_CONNECTING = const(1001)
_STAT_GOT_IP = const(1010)
_STAT_NO_AP_FOUND = const(201)
_STAT_WRONG_PASSWORD = const(202)
_AUTH_WPA2_PSK = const(3)  # network.AUTH_WPA2_PSK on the ESP32 port

_ATTEMPT_MS = const(20_000)  # one STA attempt while the AP is up (scan+assoc+DHCP fit easily)
_RETRY_MAX_FACTOR = const(8)  # backoff cap: sta_retry_s * 8
_DEFAULT_AP_PASSWORD = "weather-setup"
_HALF = const(32768)
_FULL = const(65535)

_STATUS_NAMES = {
    _STAT_IDLE: "idle",
    _STAT_CONNECTING: "connecting",
    _STAT_GOT_IP: "got IP",
    _STAT_NO_AP_FOUND: "no AP found",
    _STAT_WRONG_PASSWORD: "wrong password",
}


def _hex(b):
    return "".join("%02x" % x for x in b)


class WifiMonitor:
    """Keeps the board on Wi-Fi; see the module docstring for the policy."""

    def __init__(self, sta, ap, led, cfg, log=print):
        self.sta = sta
        self.ap = ap
        self.led = led
        self.log = log
        self.ssid = cfg["wifi_ssid"]  # cfg: every key, checked (settings.load)
        self._password = cfg["wifi_password"]
        self._ap_ssid = cfg["ap_ssid"]
        self._ap_password = cfg["ap_password"]
        self._ap_after_ms = cfg["no_wifi_before_ap_s"] * 1000
        self._retry_ms = cfg["sta_retry_s"] * 1000
        self.state = "disconnected"
        self.connected = False
        self.stopped = False
        self.drops = 0  # connected -> lost
        self.ap_starts = 0
        self.attempts = 0  # connect() calls made by the monitor
        self.status = None  # last STA status() seen
        self._begun = False
        self._last_up = time.ticks_ms()  # last time the link was up (or boot)
        self._next_try = self._last_up  # ticks when the next monitor-made STA attempt may start
        self._attempt_end = None  # ticks when the running attempt is given up (AP mode)
        self._backoff_ms = self._retry_ms
        self._led_state = None

    # -- public
    def rssi(self):
        """Signal strength in dBm while connected, else None."""
        if not self.connected:
            return None
        try:
            return self.sta.status("rssi")
        except (OSError, ValueError):
            return None

    def ifconfig(self):
        """(ip, netmask, gateway, dns) of the interface in use."""
        if self.state == "ap":
            return self.ap.ifconfig()
        return self.sta.ifconfig()

    def run(self):
        """Thread body: one ``step()`` a second until ``stop()``."""
        while not self.stopped:
            try:
                self.step()
            except Exception as e:  # noqa: BLE001 - the monitor must outlive a bad step
                self.log("wifi: step failed: %s %s" % (type(e).__name__, e))
            time.sleep_ms(1000)

    def start(self):
        import _thread

        self.stopped = False
        _thread.start_new_thread(self.run, ())

    def stop(self):
        self.stopped = True

    # -- the state machine
    def step(self):
        """One non-blocking check of the link (call about once a second)."""
        now = time.ticks_ms()
        if not self._begun:
            self._begin(now)
        try:
            up = self.sta.isconnected()
            status = self.sta.status()
        except OSError:
            up, status = False, None
        if status != self.status:
            self.status = status
            if not up and status in (_STAT_WRONG_PASSWORD, _STAT_NO_AP_FOUND):
                self.log("wifi: %s: %s" % (self.ssid, _STATUS_NAMES[status]))
        if up:
            self._last_up = now
            if not self.connected:
                self._on_connect()
            return
        if self.connected:
            self.connected = False
            self.drops += 1
            self.log("wifi: link to %s lost" % self.ssid)
            self._set_state("disconnected")
        if self.state == "ap":
            self._ap_step(now)
            return
        if not self.ssid or time.ticks_diff(now, self._last_up) >= self._ap_after_ms:
            self._start_ap(now)
            return
        if status == _STAT_IDLE and time.ticks_diff(now, self._next_try) >= 0:
            # Nothing in flight (the driver gave up or was stopped): ask again, not faster
            # than the retry interval.
            self._connect()
            self._next_try = time.ticks_add(now, self._retry_ms)

    def _begin(self, now):
        self._begun = True
        self._set_state("disconnected")
        try:
            if self.ap.active():
                self.ap.active(False)
            self.sta.active(True)
        except OSError as e:
            self.log("wifi: radio start failed: %s" % e)
        self._next_try = time.ticks_add(now, self._retry_ms)
        if self.ssid:
            self.log("wifi: connecting to %s" % self.ssid)
            self._connect()
        else:
            self.log("wifi: no wifi_ssid configured")

    def _connect(self):
        """Start one STA attempt (non-blocking); False if the driver refused."""
        if not self.ssid:
            return False
        self.attempts += 1
        try:
            # disconnect() first: ESP-IDF refuses connect() while an attempt is in flight.
            self.sta.disconnect()
        except OSError:
            pass
        try:
            self.sta.connect(self.ssid, self._password)
            return True
        except OSError as e:
            self.log("wifi: connect failed: %s" % e)
            return False

    def _on_connect(self):
        self.connected = True
        self._attempt_end = None
        self._backoff_ms = self._retry_ms
        ip = "?"
        try:
            ip = self.sta.ifconfig()[0]
        except OSError:
            pass
        self.log("wifi: connected to %s, ip %s, rssi %s" % (self.ssid, ip, self.rssi()))
        if self.state == "ap":
            try:
                self.ap.active(False)
            except OSError as e:
                self.log("wifi: AP stop failed: %s" % e)
            self.log("wifi: access point off")
        self._set_state("connected")

    def _ap_credentials(self):
        ssid = self._ap_ssid
        if not ssid:
            try:
                ssid = "weather-" + _hex(self.sta.config("mac"))[-4:]
            except (OSError, ValueError):
                ssid = "weather-setup"
        pw = self._ap_password
        if len(pw) < 8:
            # WPA2 needs 8..63 characters; an open AP would hand the REPL to anyone nearby.
            self.log("wifi: ap_password shorter than 8 characters, using the default")
            pw = _DEFAULT_AP_PASSWORD
        elif len(pw) > 63:
            # The port would silently cut it to 63 characters: a password nobody knows.
            self.log("wifi: ap_password longer than 63 characters, using the default")
            pw = _DEFAULT_AP_PASSWORD
        return ssid[:32], pw

    def _start_ap(self, now):
        ssid, pw = self._ap_credentials()
        try:
            try:
                # Configure before activating so the AP never comes up open, even briefly.
                self.ap.config(ssid=ssid, key=pw, authmode=_AUTH_WPA2_PSK)
                self.ap.active(True)
            except OSError:
                # Ports that only configure a running AP: secure it right after start-up,
                # far sooner than a client could associate with the default AP.
                self.ap.active(True)
                self.ap.config(ssid=ssid, key=pw, authmode=_AUTH_WPA2_PSK)
            if self.ap.config("authmode") != _AUTH_WPA2_PSK:
                raise OSError("AP security not applied")
        except OSError as e:
            self.log("wifi: access point failed: %s" % e)
            try:
                self.ap.active(False)
            except OSError:
                pass
            self._last_up = now  # try again after another no_wifi_before_ap_s
            return
        self.ap_starts += 1
        self.log("wifi: no link for %d s, access point %s up (WPA2), ip %s" % (
            self._ap_after_ms // 1000, ssid, self.ap.ifconfig()[0]))
        try:
            self.sta.disconnect()  # stop the driver's continuous retries (see docstring)
        except OSError:
            pass
        self._attempt_end = None
        self._backoff_ms = self._retry_ms
        self._next_try = time.ticks_add(now, self._retry_ms)
        self._set_state("ap")

    def _ap_step(self, now):
        if not self.ssid:
            return
        if self._attempt_end is not None:
            if time.ticks_diff(now, self._attempt_end) < 0:
                return
            # Attempt over without a link: stop it so the AP's channel stays put.
            try:
                self.sta.disconnect()
            except OSError:
                pass
            self._attempt_end = None
            self._backoff_ms = min(self._backoff_ms * 2, self._retry_ms * _RETRY_MAX_FACTOR)
            self._next_try = time.ticks_add(now, self._backoff_ms)
            return
        if time.ticks_diff(now, self._next_try) >= 0:
            if self._connect():
                self._attempt_end = time.ticks_add(now, _ATTEMPT_MS)
            else:
                self._next_try = time.ticks_add(now, self._backoff_ms)

    def _set_state(self, state):
        self.state = state
        if state == self._led_state:
            return
        self._led_state = state
        led = self.led
        if led is None:
            return
        try:
            if state == "connected":
                led.duty_u16(_FULL)
            else:
                led.freq(4 if state == "ap" else 1)
                led.duty_u16(_HALF)
        except (OSError, ValueError) as e:
            self.log("wifi: LED: %s" % e)
