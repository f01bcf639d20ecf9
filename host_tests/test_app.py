"""lib/app.py: short runs of the real main loop with the uploader thread (both interpreters).

Fake I2C sensors on the fake bus, the TSLog in a temp dir, the clock on a time base
that runs ``SPEED`` times faster than the wall clock (``ScaledTime``, installed as the
``time`` of the loop, the sampler, the drivers and device models; unlike a stepped
virtual clock it works across threads).  The uploader is pointed at nothing (Wi-Fi
down) or at a server that accepts connections and never answers.
"""

import _thread
import json
import socket
import sys
import time

import am2320
import am2320_device
import app
import bmp180
import bmp180_device
import bootguard
import builder
import health
import machine
import record
import sampler
import support
import uploader
from am2320_device import AM2320Device
from bmp180_device import BMP180Device
from sensor_clock import VirtualClock

BUS = 1
SPEED = 5  # 2 s slots = 400 ms of wall time: room for a busy machine's jitter
_PERIOD = 1 << 30


class ScaledTime(VirtualClock):
    """``time`` running SPEED x faster: ticks and sleeps both scaled, so threads agree."""

    def __init__(self, speed):
        VirtualClock.__init__(self)
        self.speed = speed
        self._t0 = time.ticks_us()
        self._base = (_PERIOD - 20_000) * 1000  # start 20 s before the ticks_ms wrap

    def _us(self):
        return self._base + time.ticks_diff(time.ticks_us(), self._t0) * self.speed

    def sleep_us(self, us):
        if us > 0:
            time.sleep_us(max(1, us // self.speed))

    # wall-clock functions are the real ones (UTC is not scaled)
    def time(self):
        return time.time()

    def time_ns(self):
        return time.time_ns()

    def mktime(self, t):
        return time.mktime(t)

    def localtime(self, *a):
        return time.localtime(*a)

    def gmtime(self, *a):
        return time.gmtime(*a)


class FakeClock:
    """lib/clock.py's interface: mono ms on the scaled time; set by ``set_now()``."""

    def __init__(self, st):
        self.st = st
        self.t0 = st._us() // 1000
        self.is_set = False
        self.boot_epoch_ms = None
        self.on_set = None
        self.steps = 0
        self.utc0 = 1764000000000

    def mono_ms(self):
        return self.st._us() // 1000 - self.t0

    def utc_ms(self):
        return self.boot_epoch_ms + self.mono_ms() if self.is_set else None

    def step(self, online):
        self.steps += 1

    def set_now(self):
        self.boot_epoch_ms = self.utc0
        self.is_set = True
        if self.on_set:
            self.on_set(self.boot_epoch_ms)


def _cfg(d, **kw):
    cfg = {"commit_delta": 4, "bucket_size": 16, "tslog_dir": d + "/q", "symbol": "esptest"}
    cfg.update(kw)
    return support.board_cfg(**cfg)


def _start(d, cfg, threaded=True, online=False, am=True, bmp=True):
    machine.i2c_devices(BUS).clear()
    machine.rtc_memory[:] = b""
    machine.set_reset_cause(machine.PWRON_RESET)
    st = ScaledTime(SPEED).install(app, uploader, sampler, am2320, am2320_device, bmp180,
                                   bmp180_device, machine)
    devs = []
    if am:
        devs.append(machine.attach_i2c(BUS, AM2320Device(temperature_c=3.5, humidity_rh=80.0)))
    if bmp:
        devs.append(machine.attach_i2c(BUS, BMP180Device(temperature_c=3.0)))
    logs = []
    clock = FakeClock(st)
    guard = bootguard.BootGuard(d + "/boot.json", fail_reset=cfg["sensor_fail_reset"],
                                wdt_timeout_ms=cfg["wdt_timeout_ms"], log=logs.append).start()
    a = app.boot(cfg, log=logs.append, threaded=threaded, i2c=machine.I2C(BUS, freq=100000),
                 led=None, wifi=None, online=online, clock=clock, guard=guard)
    return a, st, logs, devs


def _finish(a, st):
    # let the uploader thread leave (it may sit in a socket call with a real-time timeout)
    t0 = time.ticks_ms()
    while a.up.running and time.ticks_diff(time.ticks_ms(), t0) < 20000:
        time.sleep_ms(20)
    st.uninstall()
    machine.i2c_devices(BUS).clear()
    machine.WDT.active = None
    app.board = None  # (the console shows the running board's parts)


def _read_all(folder):
    log = record.open_queue(folder, bucket_size=16)
    r = log.reader(0)
    out = []
    while True:
        raw = r.next_record()
        if raw is None:
            break
        out.append((r.seqn, record.decode(raw)))
    log.close()
    return out


def test_offline_run_stores_every_slot():
    d = support.tmpdir("app")
    a, st, logs, _ = _start(d, _cfg(d, tb_host="https://127.0.0.1:9", tb_insecure=True))
    try:
        assert a.sender is not None  # built, but Wi-Fi is down: it never sends
        iters = []
        stats = a.run(stop_after_s=41, on_iteration=lambda b: iters.append(b.iterations))
    finally:
        _finish(a, st)
    # Slots at 0, 2, ..., 40 s. The clock is wall time x5 (a slot is 400 ms): a loaded
    # host can make the loop miss one, which must then be counted, never lost, and the
    # last slot, late, can fall after the end of the 41 s run.
    n = stats["samples"]
    assert 20 <= n + stats["missed"] <= 21 and stats["missed"] <= 1, stats
    assert stats["sensor_failed"] == 0 and stats["store_errors"] == 0
    assert stats["stored"] == n and stats["last_seqn"] == n and stats["queue_lag"] == n
    assert stats["sent"] == 0 and stats["sender_state"] == "idle"
    assert stats["uploader_steps"] >= 1 and stats["uploader_restarts"] == 0
    assert stats["wdt_feeds"] >= n
    assert iters == list(range(1, n + 1))
    recs = _read_all(d + "/q")  # shutdown committed the tail: none lost
    assert [s for s, _ in recs] == list(range(1, n + 1))
    for i, (_, r) in enumerate(recs):  # layout v2: 0.1 degC, Pa
        flags = r[record.I_FLAGS] & record.FLAG_MASK
        assert r[record.I_BOOT] == 1 and abs(r[4] - 101325) < 3
        rest = record.FLAG_NO_AM | record.FLAG_AM_REST
        if i == 0:  # the AM2320's first read primes it: no fresh reading, marked so
            assert flags == rest, flags
        else:  # (on a loaded host a slot > 25 ms later than the one before rests too:
            # 5 ms of this test's wall time; marked, and counted in "rested")
            assert (flags == 0 and r[1] == 35) or flags == rest, (i, r)
    assert stats["rested"] == sum(1 for _, r in recs if r[record.I_FLAGS] & record.FLAG_AM_REST)
    times = [r[0] for _, r in recs]  # ms since boot, 2 s apart (drift-free)
    assert all(1900 < b - a_ < 2600 for a_, b in zip(times, times[1:])), times


def test_console_is_not_loaded_by_the_firmware_and_finds_its_parts_when_imported():
    sys.modules.pop("console", None)
    d = support.tmpdir("app")
    a, st, _, _ = _start(d, _cfg(d))
    try:
        assert "console" not in sys.modules  # its code takes no heap until someone asks
        import console  # what a person types at the REPL

        st_ = console.status()
        assert st_["version"] == app.VERSION and st_["queue"] == a.queue_place
        assert st_["last_seqn"] == a.queue.last_seqn and st_["sampler"] == a.sampler.stats()
        console.detach()
    finally:
        _finish(a, st)
        a.queue.close()


def test_clock_set_during_run_and_health_snapshot():
    d = support.tmpdir("app")
    a, st, logs, _ = _start(d, _cfg(d))

    def on_it(b):
        if b.iterations == 5:
            b.clock.set_now()

    try:
        stats = a.run(stop_after_s=21, on_iteration=on_it)
    finally:
        _finish(a, st)
    # (scaled wall clock: a loaded host may miss a slot, counted)
    n = stats["samples"]  # (the last slot, late, may fall after the run's end)
    assert 10 <= n + stats["missed"] <= 11 and stats["missed"] <= 1, stats
    assert stats["stored"] == n and stats["clock_set"], stats
    recs = _read_all(d + "/q")
    flags = [r[record.I_FLAGS] & record.FLAG_UTC for _, r in recs]
    assert flags == [0] * 5 + [1] * (n - 5)
    # pre-sync records map to UTC with the boot epoch, in order with the later ones
    ts = [record.timestamp_of(r, {1: a.clock.boot_epoch_ms}) for _, r in recs]
    assert ts == sorted(ts) and ts[0] >= a.clock.utc0
    snap = a.stats()
    for name in health.FIELDS:
        assert name in snap, name
    assert snap["samples"] == n and snap["stored"] == n and snap["queue_lag"] == n
    assert snap["boot"] == 1 and snap["reset_cause"] == "power_on"
    assert snap["resets"] == "1:power_on" and snap["flash_free"] > 0


def test_dead_sensors_lead_to_a_sensor_reset_and_the_next_boot_holds_off():
    d = support.tmpdir("app")
    cfg = _cfg(d, sensor_fail_reset=5)  # commit_delta 4
    a, st, logs, (am, bmp) = _start(d, cfg)

    def on_it(b):
        if b.iterations == 3:  # both sensors die (e.g. the cable to the sensor board)
            am.on_bus = bmp.on_bus = False

    reset = None
    try:
        a.run(stop_after_s=60, on_iteration=on_it)
    except machine.Reset as e:
        reset = e
    finally:
        _finish(a, st)
    assert reset is not None and a.sampler.taken == 8 and a.sampler.stored == 3
    assert not a.up.running  # shutdown stopped the uploader thread on the way out
    assert len(_read_all(d + "/q")) == 3  # committed before the reset (commit_delta is 4)
    # next boot: the guard holds sensor resets off for the back-off (60 s)
    machine.set_reset_cause(reset.cause)
    g = bootguard.BootGuard(d + "/boot.json", fail_reset=5).start()
    assert g.cause == "sensor" and g.boot == 2 and g.hold_ms == 60000


def _stall_server():
    """A listening socket that never accepts: TLS handshakes to it stall until timeout."""
    s = socket.socket()
    for port in range(47000 + (time.ticks_ms() % 997), 48100):
        try:
            s.bind(socket.getaddrinfo("127.0.0.1", port)[0][-1])
            s.listen(4)
            return s, port
        except OSError:
            continue
    raise OSError("no free port")


def _stalled_run(threaded, upload_stall_ms=300000, run_s=41):
    d = support.tmpdir("app")
    srv, port = _stall_server()
    # socket timeouts are real time: 1 s = 5 s of scaled time, 2.5 slots
    cfg = _cfg(d, tb_host="https://127.0.0.1:%d" % port, tb_insecure=True, timeout_s=1,
               tb_user="u", tb_pass="p", send_interval_s=1)
    cfg["upload_stall_ms"] = upload_stall_ms  # unchecked: 2.5 s, below a board's minimum
    a, st, logs, _ = _start(d, cfg, threaded=threaded, online=True)
    try:
        stats = a.run(stop_after_s=run_s)
    finally:
        _finish(a, st)
        srv.close()
    return a, stats, logs


def test_stalled_server_does_not_delay_sampling_with_the_thread():
    a, stats, logs = _stalled_run(threaded=True)
    # The uploader was stuck in handshakes.  (On the unix port each gc.collect() of the
    # main loop signals the other thread, whose recv then restarts its timeout (EINTR):
    # the handshake stalls until the loop stops, so only one attempt may end.)
    assert a.sender.retries >= 1, stats
    assert "timeout" in a.sender.last_error, a.sender.last_error
    # 0 missed on a quiet host; a loaded one can delay one 400 ms (wall) slot. The inline
    # variant below misses ~45 % of them.
    assert stats["missed"] <= 1, stats
    # (the last slot, at 40 s, may fall after the end of the 41 s run when it is late)
    assert stats["samples"] >= 19 and stats["stored"] == stats["samples"], stats
    # the uploader kept returning (each stall ends with its timeouts): watchdog fed
    assert stats["wdt_feeds"] >= stats["samples"] and not a._stall_noted
    print("thread: taken", stats["samples"], "missed", stats["missed"],
          "max_late_ms", stats["max_late_ms"])


def test_uploader_stall_stops_the_watchdog_and_records_the_cause():
    # 2.5 s of scaled time = 0.5 s of wall time: shorter than one stalled handshake
    # (its socket timeout is 1 s of wall time)
    a, stats, logs = _stalled_run(threaded=True, upload_stall_ms=2500, run_s=21)
    assert a._stall_noted and any("watchdog not fed" in m for m in logs)
    with open(a.guard.path) as f:
        assert json.loads(f.read())["pending"] == "uploader_stall"
    g = bootguard.BootGuard(a.guard.path, log=logs.append)
    machine.set_reset_cause(machine.WDT_RESET)
    assert g.start().cause == "uploader_stall"
    machine.set_reset_cause(machine.PWRON_RESET)


def test_inline_uploader_misses_slots_on_a_stalled_server():
    """The alternative measured: sender.step() in the loop stalls sampling."""
    a, stats, logs = _stalled_run(threaded=False)
    assert stats["missed"] > 0, stats
    # (a stall running past the end of the run leaves its slots uncounted)
    assert 21 - 6 <= stats["samples"] + stats["missed"] <= 21, stats
    print("inline: taken", stats["samples"], "missed", stats["missed"])


def test_health_posts_the_latest_snapshot_best_effort():
    class Resp:
        def __init__(self, status, body):
            self.status, self.body = status, body

    class Client:
        def __init__(self):
            self.calls = []
            self.replies = []

        def request(self, method, path, headers, body, length=None):
            self.calls.append((method, path, dict(headers), body))
            r = self.replies.pop(0)
            if isinstance(r, Exception):
                raise r
            return r

    class Auth:
        def __init__(self):
            self.invalid = 0
            self.logged_in = False

        def valid(self):
            return self.logged_in

        def authorization(self):
            return "Bearer t"

        def invalidate(self):
            self.invalid += 1

    class Clock:
        is_set = False

        def utc_ms(self):
            return 1764000000000

    n = [0]

    def gather():
        n[0] += 1
        return {"boot": 3, "reset_cause": "sensor", "samples": n[0]}

    c, au, ck = Client(), Auth(), Clock()
    h = health.Health(c, au, "weather-data", "esp1", 60000, gather, ck)
    assert h.step() is None and not c.calls  # clock not set: stays due
    ck.is_set = True
    assert h.step(online=False) is None
    assert h.step() is None and not c.calls  # the sender logs in (it keeps room for it)
    au.logged_in = True
    c.replies = [Resp(200, b"[]")]
    assert h.step() is True and h.sent == 1
    method, path, hdrs, body = c.calls[0]
    assert method == "POST" and path == "/api/v0/weather-data/write?writeMode=APPEND"
    assert hdrs["Authorization"] == "Bearer t"
    msgs = json.loads(body)
    assert len(msgs) == 1 and msgs[0]["$type"] == "health_record"
    m = msgs[0]
    assert m["symbol"] == "esp1" and m["timestamp"] == "2025-11-24T16:00:00.000Z"
    assert m["boot"] == 3 and m["reset_cause"] == "sensor" and m["samples"] == 1
    assert m["rssi"] == 0 and m["resets"] == ""  # missing values: 0 / "" (non-null schema)
    assert h.step() is None  # not due again for 60 s
    h._next_ms = time.ticks_ms()
    c.replies = [OSError(110)]
    assert h.step() is False and h.failed == 1 and "110" in h.last_error
    assert h.step() is None  # a failure waits for the next interval: no retry burst
    h._next_ms = time.ticks_ms()
    c.replies = [Resp(401, b""), Resp(401, b"")]  # the token renewed, sent once more
    assert h.step() is False and au.invalid == 2 and "401" in h.last_error
    h._next_ms = time.ticks_ms()
    c.replies = [Resp(401, b""), Resp(200, b"[]")]  # the server's key changed
    assert h.step() is True and au.invalid == 3 and h.sent == 2
    h._next_ms = time.ticks_ms()
    logs = []
    h._log = logs.append
    refusal = (b'[{"message":"Message is invalid:{...}","error":"java.lang.IllegalState'
               b'Exception:Unknown type: health_record","stacktrace":"","index":0}]')
    for _ in range(3):  # a stream without the class: logged once, counted, sent on
        h._next_ms = time.ticks_ms()
        c.replies = [Resp(200, refusal)]
        assert h.step() is False and "Unknown type: health_record" in h.last_error
    assert h.refused == 3 and len(logs) == 1 and "class health_record" in logs[0], logs
    assert len(c.calls) == 9 and json.loads(c.calls[-1][3])[0]["samples"] == 7  # latest
    h._next_ms = time.ticks_ms()
    c.replies = [Resp(200, b"[]")]  # the class was added: accepted, said once
    assert h.step() is True and len(logs) == 2 and "accepted again" in logs[1]
    h._next_ms = time.ticks_ms()
    c.replies = [Resp(200, b"<html>portal</html>")]  # not JSON: its start is quoted
    assert h.step() is False and "portal" in h.last_error and len(logs) == 3


@support.cpython_only("imports tools.ingest (desktop)")
def test_ingest_schema_accepts_health_records():
    from tools.ingest import config as icfg
    from tools.ingest import schema as ischema

    kinds = {n: "VARCHAR" if n in health.TEXT_FIELDS else "INTEGER" for n in health.FIELDS}
    assert kinds == {k: v.rstrip("?") for k, v in icfg.HEALTH_RECORD.items()}
    types = icfg.DEFAULTS["streams"]["weather-data"]["types"]
    assert set(types) == {"weather_record", "health_record"}

    class Clock:
        is_set = True

        def utc_ms(self):
            return 1764000000000

    snap = {name: ("x" if name in health.TEXT_FIELDS else 7) for name in health.FIELDS}
    snap["rssi"] = -61
    h = health.Health(None, None, "weather-data", "esp1", 1000, lambda: snap, Clock())
    row = ischema.validate(json.loads(h.message()), types)
    assert row["type"] == "health_record" and row["fields"]["rssi"] == -61
    # weather records are still matched to their own class
    w = {"$type": "weather_record", "symbol": "esp1", "timestamp": "2026-11-24T10:00:00.000Z"}
    w.update({k: 1.0 for k in icfg.WEATHER_RECORD})
    w["time_estimated"] = True
    assert ischema.validate(w, types)["type"] == "weather_record"


def test_locked_reader_holds_the_lock():
    class R:
        seqn = 5

        def __init__(self):
            self.locked = []

        def next_record(self):
            self.locked.append(lock.locked())
            return b"x"

        def commit(self):
            self.locked.append(lock.locked())

    lock = _thread.allocate_lock()
    r = R()
    lr = uploader.LockedReader(r, lock)
    assert lr.next_record() == b"x" and lr.seqn == 5
    lr.commit()
    assert r.locked == [True, True] and not lock.locked()


def test_boot_py_and_main_py_run_with_the_fakes():
    """firmware/boot.py then main.py as the board runs them (cwd = the flash root):
    settings from config.json, Wi-Fi monitor thread on the fake radio, NTP via the fake
    ntptime, sensors on I2C(0), LED PWM; ``app.run_limit_s`` bounds the loop."""
    import os
    import sys

    import clock
    import network
    import webrepl
    import wifi

    root = os.getcwd()
    fw = root + "/firmware"
    d = support.tmpdir("fw")
    with open(d + "/config.json", "w") as f:
        f.write(json.dumps({"wifi_ssid": "home", "wifi_password": "secret-pw",
                            "symbol": "espfw", "commit_delta": 2, "webrepl_password": "pw123"}))
    machine.i2c_devices(0).clear()
    machine.rtc_memory[:] = b""
    machine.set_reset_cause(machine.PWRON_RESET)
    network.world.reset()
    network.world.add_ap("home", "secret-pw", rssi=-55)
    st = ScaledTime(SPEED).install(app, uploader, sampler, am2320, am2320_device, bmp180,
                                   bmp180_device, machine, wifi, clock, network)
    network.world._last_ticks = st.ticks_ms()
    machine.attach_i2c(0, AM2320Device())
    machine.attach_i2c(0, BMP180Device())
    sys.path.insert(0, fw)
    os.chdir(d)
    app.board = None
    app.run_limit_s = 21
    del webrepl.calls[:]
    try:
        for name in ("boot.py", "main.py"):
            with open(fw + "/" + name) as f:
                exec(f.read(), {"__name__": "__main__"})
        b = app.board
        stats = b.stats()
        _finish(b, st)
    finally:
        app.run_limit_s = None
        os.chdir(root)
        sys.path.remove(fw)
        st.uninstall()
        machine.i2c_devices(0).clear()
    # (scaled wall clock: a loaded host may miss one slot, counted)
    assert 10 <= stats["samples"] + stats["missed"] <= 11 and stats["missed"] <= 1, stats
    assert stats["stored"] == stats["samples"], stats
    assert b.symbol == "espfw" and b.cfg["commit_delta"] == 2
    assert b.wifi is not None and b.wifi.connected and stats["clock_set"], stats
    assert stats["boot"] == 1 and stats["reset_cause"] == "power_on"
    assert stats["sender_state"] == "off"  # no tb_host: samples stay queued
    assert sorted(os.listdir(d + "/data")) == ["boot.json", "epochs.json", "q"]
    recs = _read_all(d + "/data/q")
    assert len(recs) == 11
    assert not recs[0][1][record.I_FLAGS] & record.FLAG_UTC  # before Wi-Fi + NTP: ms since boot
    assert recs[-1][1][record.I_FLAGS] & record.FLAG_UTC  # after: UTC
    led = machine.pwms[2].history
    assert (1, 32768) in [(f, du) for _, f, du in led]  # blinking while disconnected
    assert led[-1][2] == 65535  # solid once connected
    assert ("start", 8266, True) in webrepl.calls and webrepl.running
    webrepl.stop()


class _Wifi:
    connected = True
    state = "connected"
    drops = 2

    def __init__(self):
        self.stopped = False

    def rssi(self):
        return -67

    def stop(self):
        self.stopped = True


def test_ctrl_c_relaxes_the_watchdog_and_keeps_wifi():
    d = support.tmpdir("app")
    a, st, logs, _ = _start(d, _cfg(d))
    w = a.wifi = _Wifi()

    def on_it(b):
        if b.iterations == 3:
            raise KeyboardInterrupt

    try:
        stats = a.run(stop_after_s=60, on_iteration=on_it)
    finally:
        _finish(a, st)
    assert stats["samples"] == 3 and any("Ctrl-C" in m for m in logs)
    assert a.guard._wdt.timeout == 3600000
    assert not w.stopped  # WebREPL still reachable
    snap = a.stats()
    assert snap["rssi"] == -67 and snap["wifi_drops"] == 2


def test_a_crashed_uploader_thread_is_restarted():
    d = support.tmpdir("app")
    a, st, logs, _ = _start(d, _cfg(d, tb_host="https://127.0.0.1:9", tb_insecure=True),
                            online=True)
    calls = []

    def bad_step():
        calls.append(1)
        raise RuntimeError("bug")

    a.sender.step = bad_step
    try:
        stats = a.run(stop_after_s=9)
    finally:
        _finish(a, st)
    assert stats["uploader_restarts"] >= 2 and len(calls) >= 3, stats
    assert 4 <= stats["stored"] + stats["missed"] <= 5 and stats["missed"] <= 1, stats
    assert any("uploader: thread failed" in m for m in logs)


def test_default_symbol_is_unique_per_board():
    # The seed's default, "esp" + the first 4 hex digits of the MAC, is the vendor's prefix:
    # two boards of one vendor had one symbol and their records collided at the server.
    old = machine.unique_id()
    try:
        symbols = []
        for uid in (b"\x24\x6f\x28\xa1\xb2\xc3", b"\x24\x6f\x28\x00\x00\x01"):
            machine.set_unique_id(uid)
            symbols.append(builder.default_symbol())
        assert symbols == ["esp246f28a1b2c3", "esp246f28000001"], symbols
    finally:
        machine.set_unique_id(old)
