"""Fake ``network`` module: the ESP32 port's ``network.WLAN`` over a scriptable world.

Behaviour follows ``ports/esp32/network_wlan.c`` (MicroPython 1.23+):

- ``WLAN(STA_IF)`` and ``WLAN(AP_IF)`` are views of one radio; the state lives in
  the module-level ``world`` (the real objects are singletons too).
- ``connect(ssid, key)`` starts an attempt that takes a while (``world.connect_ms``
  to associate + DHCP, ``world.fail_ms`` to give up).  The driver then retries on
  its own for ever (``config(reconnects=-1)``, the default) until ``disconnect()``.
- ``status()`` on the STA: ``STAT_GOT_IP`` when connected; else the last failure
  reason if it was "no AP found" (201) or "auth fail" (202, also for the
  connection-fail reason), which stays reported even while the driver keeps
  retrying, until the next ``GOT_IP``; ``STAT_IDLE`` after ``disconnect()``;
  ``STAT_CONNECTING`` while a connection is requested; ``STAT_IDLE`` before any.
  On the AP, ``status()`` is ``None``; ``status('rssi')`` needs the STA and a
  connection (else ``OSError('Wifi Not Connected')``); ``status('stations')`` the AP.
- ``connect()`` on an inactive STA raises ``OSError('Wifi Not Started')``; a
  second ``connect()`` while an attempt is in flight raises
  ``OSError('Wifi Internal Error')`` as ESP-IDF does (call ``disconnect()`` first).
- The AP's default security is open (as on the chip: setting ``key`` alone does
  not enable WPA2); ``config(authmode=3, key=k)`` with ``len(k) < 8`` raises
  ``OSError('Wifi Invalid Password')``; a key over 63 characters and an SSID over
  32 are silently truncated, as the port does.  ``config('key')`` is not readable.
  ``world.ap_config_needs_active`` makes AP ``config()`` fail until the AP is
  active, as some older ports did.
- ``config('mac')`` is 6 bytes: the STA MAC is ``machine.unique_id()`` (the
  base MAC), the AP MAC is the base + 1, as ESP-IDF derives them.
- A lost link is noticed after ``world.beacon_timeout_ms`` (reason 200); sockets
  stop working at once: ``world.online()`` is what the simulator gates them on.

``world.events`` records what happened for tests (not with ``keep_events`` False: the
simulator's setting, as a board keeps no such record in its heap).

World time is ``time.ticks_ms()`` of this module's ``time`` global, made
non-wrapping; a test or the simulator can rebind ``network.time`` to a virtual
clock.  Everything scheduled is in world ms/seconds since ``world.reset()``.
"""

import time

try:
    time.ticks_ms  # noqa: B018 - probe: MicroPython, or CPython with the shims
except AttributeError:  # pragma: no cover - CPython without conftest
    import cpython_shims

    cpython_shims.install()

STA_IF = 0
AP_IF = 1

STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_BEACON_TIMEOUT = 200
STAT_NO_AP_FOUND = 201
STAT_WRONG_PASSWORD = 202
STAT_ASSOC_FAIL = 203
STAT_CONNECT_FAIL = 203
STAT_HANDSHAKE_TIMEOUT = 204

AUTH_OPEN = 0
AUTH_WEP = 1
AUTH_WPA_PSK = 2
AUTH_WPA2_PSK = 3
AUTH_WPA_WPA2_PSK = 4

_REASON_ASSOC_LEAVE = 8  # after disconnect()/active(False): status() says STAT_IDLE
_NO_IP = ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0")
_AP_IP = ("192.168.4.1", "255.255.255.0", "192.168.4.1", "0.0.0.0")

_hostname = ["espressif"]
keep_events = True


def hostname(name=None):
    if name is None:
        return _hostname[0]
    _hostname[0] = name


def country(code=None):
    if code is None:
        return "01"


def phy_mode(mode=None):
    if mode is None:
        return 4


def _base_mac():
    try:
        import machine

        return bytes(machine.unique_id())[:6]
    except ImportError:  # pragma: no cover
        return b"\x24\x6f\x28\xa1\xb2\xc3"


class _Sta:
    def __init__(self):
        self.active = False
        self.requested = False  # wifi_sta_connect_requested
        self.connected = False
        self.reason = 0  # wifi_sta_disconn_reason (0 = none)
        self.ssid = ""
        self.key = ""
        self.attempt_end = None  # world ms when the running attempt resolves
        self.attempt_ok = False
        self.pending_reason = 0  # the reason an attempt in flight will fail with
        self.since = 0  # world ms of the last state change processed
        self.reconnects_conf = 0  # 0 = for ever (config(reconnects=-1))
        self.reconnects = 0
        self.ip = "192.168.1.57"


class _Ap:
    def __init__(self):
        self.active = False
        mac = _base_mac()
        self.ssid = "ESP_%02X%02X%02X" % (mac[3], mac[4], (mac[5] + 1) & 0xFF)
        self.key = ""
        self.authmode = AUTH_OPEN
        self.channel = 1
        self.hidden = False
        self.max_clients = 10
        self.clients = []  # MACs of stations joined to our AP


class World:
    """The radio environment around the board (not part of the board's API)."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.aps = {}  # ssid -> [password, rssi, channel]
        self.link_up = True  # False: every upstream AP is unreachable
        self.outages = []  # [(start_ms, end_ms)] world time: the upstream link is down
        self.ntp_ok = True
        self.ntp_fail_next = 0  # fail this many settime() calls, then obey ntp_ok
        self.ntp_calls = 0
        self.ap_config_needs_active = False  # True: AP config() only on a running AP (old ports)
        self.ntp_blocks = False  # a failing settime() sleeps ntptime.timeout like the real one
        self.connect_ms = 2500  # scan + associate + 4-way handshake + DHCP
        self.fail_ms = 3000  # an attempt that finds no AP / is refused
        self.beacon_timeout_ms = 6000  # ESP-IDF notices a vanished AP after ~6 s
        # Counters are brought up to date lazily, by any WLAN call, online() or update().
        self.attempts = 0  # connection attempts made by the driver (incl. auto retries)
        self.connects = 0  # successful associations
        self.drops = 0  # links lost while connected
        self.ap_starts = 0
        self.events = []  # (world ms, text), capped
        self._last_ticks = time.ticks_ms()
        self._now = 0
        self.sta = _Sta()
        self.ap = _Ap()

    # -- time
    def now_ms(self):
        """World ms since ``reset()`` (non-wrapping; follows ``network.time``)."""
        t = time.ticks_ms()
        d = time.ticks_diff(t, self._last_ticks)
        if d > 0:
            self._now += d
        self._last_ticks = t
        return self._now

    def _event(self, t, text):
        if not keep_events:
            return
        self.events.append((t, text))
        if len(self.events) > 500:
            del self.events[:250]

    # -- scripting
    def add_ap(self, ssid, password, rssi=-60, channel=6):
        self._update()
        self.aps[ssid] = [password, rssi, channel]

    def remove_ap(self, ssid):
        self._update()
        self.aps.pop(ssid, None)

    def set_rssi(self, ssid, rssi):
        self.aps[ssid][1] = rssi

    def set_link(self, up):
        """Take every upstream AP out of reach (False) or back (True) from now on."""
        self._update()
        self.link_up = bool(up)

    def add_outage(self, start_s, end_s):
        """Schedule an upstream outage [start_s, end_s) in world seconds since reset()."""
        self._update()
        self.outages.append((int(start_s * 1000), int(end_s * 1000)))
        self.outages.sort()

    def reachable(self, ssid, t=None):
        """True when AP ``ssid`` exists and the link is up at world time ``t``."""
        if t is None:
            t = self.now_ms()
        if not self.link_up or ssid not in self.aps:
            return False
        for s, e in self.outages:
            if s <= t < e:
                return False
        return True

    def online(self):
        """True when the board's sockets would work: STA has an IP and the link is up."""
        self._update()
        return self.sta.connected and self.reachable(self.sta.ssid)

    def join_ap(self, password, mac=b"\x02\x00\x00\x00\x00\x01"):
        """A phone joins the board's access point; returns True if it is let in."""
        ap = self.ap
        if not ap.active:
            return False
        if ap.authmode != AUTH_OPEN and password != ap.key:
            return False
        if mac not in ap.clients:
            ap.clients.append(mac)
        return True

    def leave_ap(self, mac=b"\x02\x00\x00\x00\x00\x01"):
        if mac in self.ap.clients:
            self.ap.clients.remove(mac)

    # -- the STA state machine, evaluated lazily up to "now"
    def _first_down(self, a, b):
        """First world ms in [a, b] at which the connected AP is unreachable, or None."""
        sta = self.sta
        if not self.link_up or sta.ssid not in self.aps:
            return a
        for s, e in self.outages:
            if e > a and s <= b:
                return max(s, a)
        return None

    def _start_attempt(self, t):
        sta = self.sta
        self.attempts += 1
        if not self.reachable(sta.ssid, t):
            sta.attempt_ok = False
            sta.attempt_end = t + self.fail_ms
            sta.pending_reason = STAT_NO_AP_FOUND
        elif self.aps[sta.ssid][0] != sta.key:
            sta.attempt_ok = False
            sta.attempt_end = t + self.fail_ms
            sta.pending_reason = STAT_WRONG_PASSWORD
        else:
            sta.attempt_ok = True
            sta.attempt_end = t + self.connect_ms

    def update(self):
        """Process everything that happened up to now (counters, events)."""
        self._update()

    def _update(self):
        now = self.now_ms()
        sta = self.sta
        for _ in range(100000):  # bounded: each step moves world time forward
            if not sta.active:
                return
            if sta.connected:
                down = self._first_down(sta.since, now)
                if down is None:
                    sta.since = now
                    return
                noticed = down + self.beacon_timeout_ms
                if noticed > now:
                    return  # lost, but the driver has not noticed yet
                sta.connected = False
                sta.reason = STAT_BEACON_TIMEOUT
                self.drops += 1
                self._event(noticed, "sta lost link")
                sta.since = noticed
                sta.attempt_end = None
                if sta.requested:
                    self._start_attempt(noticed)
                continue
            if sta.attempt_end is None or sta.attempt_end > now:
                return
            t = sta.attempt_end
            sta.attempt_end = None
            sta.since = t
            if sta.attempt_ok and self.reachable(sta.ssid, t):
                sta.connected = True
                sta.reason = 0
                sta.reconnects = 0
                self.connects += 1
                self._event(t, "sta got ip")
                continue
            if sta.attempt_ok:  # the link went away during the handshake
                sta.reason = STAT_NO_AP_FOUND
            else:
                sta.reason = sta.pending_reason
            self._event(t, "sta attempt failed %d" % sta.reason)
            if sta.requested:
                if sta.reconnects_conf:
                    sta.reconnects += 1
                    if sta.reconnects >= sta.reconnects_conf:
                        continue  # gave up: status() now reports the reason
                self._start_attempt(t)

    def _sta_status(self):
        self._update()
        sta = self.sta
        if sta.connected:
            return STAT_GOT_IP
        if sta.reason in (STAT_NO_AP_FOUND, STAT_WRONG_PASSWORD):
            return sta.reason
        if sta.reason == _REASON_ASSOC_LEAVE:
            return STAT_IDLE
        if sta.requested and (not sta.reconnects_conf or sta.reconnects < sta.reconnects_conf):
            return STAT_CONNECTING
        if sta.reason == 0:
            return STAT_IDLE
        return sta.reason


world = World()


class WLAN:
    """``network.WLAN(interface_id)``: a view of the STA or AP side of ``world``."""

    IF_STA = STA_IF
    IF_AP = AP_IF
    SEC_OPEN = AUTH_OPEN
    SEC_WEP = AUTH_WEP
    SEC_WPA = AUTH_WPA_PSK
    SEC_WPA2 = AUTH_WPA2_PSK
    SEC_WPA_WPA2 = AUTH_WPA_WPA2_PSK
    PM_NONE = 0
    PM_PERFORMANCE = 1
    PM_POWERSAVE = 2

    def __init__(self, interface_id=STA_IF):
        if interface_id not in (STA_IF, AP_IF):
            raise ValueError("invalid WLAN interface identifier")
        self._if = interface_id

    def _require(self, if_id):
        if self._if != if_id:
            raise OSError("STA required" if if_id == STA_IF else "AP required")

    def _started(self):
        return world.sta.active or world.ap.active

    def active(self, is_active=None):
        w = world
        w._update()
        side = w.sta if self._if == STA_IF else w.ap
        if is_active is None:
            return side.active
        is_active = bool(is_active)
        if is_active == side.active:
            return None
        side.active = is_active
        t = w.now_ms()
        if self._if == STA_IF:
            if not is_active:
                if side.connected:
                    w._event(t, "sta stopped")
                side.connected = False
                side.attempt_end = None
                side.reason = _REASON_ASSOC_LEAVE
            side.since = t
        else:
            if is_active:
                w.ap_starts += 1
                w._event(t, "ap up %s auth %d" % (side.ssid, side.authmode))
            else:
                side.clients = []
                w._event(t, "ap down")
        return None

    def connect(self, ssid=None, key=None, *, bssid=None):
        self._require(STA_IF)
        w = world
        w._update()
        sta = w.sta
        if not sta.active:
            raise OSError("Wifi Not Started")
        if sta.attempt_end is not None:
            raise OSError("Wifi Internal Error")
        if ssid is not None:
            sta.ssid = ssid
            sta.key = key or ""
        t = w.now_ms()
        if sta.connected:
            sta.connected = False
            w._event(t, "sta reconnect")
        sta.requested = True
        sta.reconnects = 0
        sta.since = t
        w._event(t, "sta connect %s" % sta.ssid)
        w._start_attempt(t)

    def disconnect(self):
        w = world
        w._update()
        sta = w.sta
        if not self._started():
            raise OSError("Wifi Not Started")
        sta.requested = False
        sta.attempt_end = None
        if sta.connected or sta.reason != 0:
            sta.reason = _REASON_ASSOC_LEAVE
        if sta.connected:
            w._event(w.now_ms(), "sta disconnect")
        sta.connected = False
        sta.since = w.now_ms()

    def isconnected(self):
        w = world
        if self._if == STA_IF:
            w._update()
            return w.sta.connected
        return bool(w.ap.active and w.ap.clients)

    def status(self, param=None):
        w = world
        if param is None:
            return w._sta_status() if self._if == STA_IF else None
        if param == "rssi":
            self._require(STA_IF)
            w._update()
            if not w.sta.connected:
                raise OSError("Wifi Not Connected")
            return w.aps[w.sta.ssid][1] if w.sta.ssid in w.aps else -95
        if param == "stations":
            self._require(AP_IF)
            return [(m,) for m in w.ap.clients]
        raise ValueError("unknown status param")

    def scan(self):
        w = world
        if not w.sta.active:
            raise OSError("STA must be active")
        out = []
        for i, (ssid, (pw, rssi, ch)) in enumerate(sorted(w.aps.items())):
            if w.reachable(ssid):
                bssid = bytes((0x02, 0x11, 0x22, 0x33, 0x44, i & 0xFF))
                auth = AUTH_WPA2_PSK if pw else AUTH_OPEN
                out.append((ssid.encode(), bssid, ch, rssi, auth, False))
        return out

    def ifconfig(self, config=None):
        w = world
        if config is not None:
            if self._if == STA_IF:
                w.sta.ip = config[0]
            return None
        if self._if == AP_IF:
            return _AP_IP if w.ap.active else _NO_IP
        w._update()
        if not w.sta.connected:
            return _NO_IP
        return (w.sta.ip, "255.255.255.0", "192.168.1.1", "192.168.1.1")

    def config(self, *args, **kwargs):
        if args and kwargs:
            raise TypeError("either pos or kw args are allowed")
        w = world
        ap = w.ap
        if kwargs:
            new = {}
            for k, v in kwargs.items():
                if k in ("ssid", "essid", "hidden", "authmode", "security", "key", "password",
                         "max_clients"):
                    self._require(AP_IF)
                elif k == "reconnects":
                    self._require(STA_IF)
                elif k not in ("mac", "channel", "hostname", "dhcp_hostname", "txpower",
                               "protocol", "pm"):
                    raise ValueError("unknown config param")
                new[k] = v
            if self._if == AP_IF and w.ap_config_needs_active and not ap.active:
                raise OSError("Wifi Invalid Mode")
            auth = new.get("authmode", new.get("security", ap.authmode))
            key = new.get("key", new.get("password", ap.key))[:63]  # the port truncates
            if self._if == AP_IF and auth != AUTH_OPEN and len(key) < 8:
                raise OSError("Wifi Invalid Password")
            for k, v in new.items():
                if k in ("ssid", "essid"):
                    ap.ssid = v[:32]  # wifi_ap_config_t.ssid is 32 bytes
                elif k in ("authmode", "security"):
                    ap.authmode = v
                elif k in ("key", "password"):
                    ap.key = v[:63]
                elif k == "hidden":
                    ap.hidden = bool(v)
                elif k == "channel":
                    ap.channel = v
                elif k == "max_clients":
                    ap.max_clients = v
                elif k in ("hostname", "dhcp_hostname"):
                    hostname(v)
                elif k == "reconnects":
                    w.sta.reconnects_conf = 0 if v == -1 else v + 1
            return None
        if len(args) != 1:
            raise TypeError("can query only one param")
        p = args[0]
        if p == "mac":
            mac = bytearray(_base_mac())
            if self._if == AP_IF:
                mac[5] = (mac[5] + 1) & 0xFF
            return bytes(mac)
        if p in ("ssid", "essid"):
            return w.sta.ssid if self._if == STA_IF else ap.ssid
        if p in ("authmode", "security"):
            self._require(AP_IF)
            return ap.authmode
        if p == "hidden":
            self._require(AP_IF)
            return ap.hidden
        if p == "channel":
            if self._if == STA_IF and w.sta.connected and w.sta.ssid in w.aps:
                return w.aps[w.sta.ssid][2]
            return ap.channel
        if p in ("hostname", "dhcp_hostname"):
            return hostname()
        if p == "max_clients":
            return ap.max_clients
        if p == "reconnects":
            self._require(STA_IF)
            return w.sta.reconnects_conf - 1
        if p == "txpower":
            return 20.0
        if p == "pm":
            return 1
        raise ValueError("unknown config param")
