# cpython-only: runs the simulator's board-side modules in MicroPython subprocesses
"""The simulator's parts under the MicroPython unix port: the lockstep virtual clock
(tools/sim/mp/time.py: threads, timers, pacing), the RTC hook and the fake NTP answering
true time, the socket gate and its real timeouts, the write-through flash image and the
locked LittleFS (tools/sim/device)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import support

ROOT = Path(__file__).resolve().parent.parent
MP = str(Path(sys.executable).parent / "micropython")


def _mp(script, env=None, timeout=60):
    """Run ``script`` on the simulated board's path; returns the dict it prints last."""
    d = support.tmpdir("simpart")
    path = os.path.join(d, "script.py")
    with open(path, "w") as f:
        f.write(script)
    e = dict(os.environ, MICROPYPATH=":".join([
        str(ROOT / "tools/sim/mp"), str(ROOT / "tools/sim/device"), str(ROOT / "lib"),
        str(ROOT / "host_tests/fakes"), ".frozen"]))
    e.update(env or {})
    p = subprocess.run([MP, "-X", "heapsize=4M", path], env=e, capture_output=True, text=True,
                       timeout=timeout, cwd=d)
    assert p.returncode == 0, p.stdout + p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


# The board's station on the simulated access point (a script fragment).
_WIFI_UP = """
network.world.reset()
network.world.add_ap("ap", "pw")
sta = network.WLAN(network.STA_IF)
sta.active(True)
sta.connect("ap", "pw")
while not sta.isconnected():
    time.sleep_ms(100)
"""


def test_virtual_clock_epoch_2000_calendar_and_ticks_wrap():
    r = _mp("""
import json, time
out = {"g0": list(time.gmtime(0)), "t": time.time()}
bad = 0
for t in range(0, 4000000000, 86399 * 37 + 3601):
    g = time.gmtime(t)
    if time.mktime(g) != t:
        bad += 1
out["bad"] = bad
out["leap"] = list(time.gmtime(time.mktime((2024, 2, 29, 12, 0, 0, 0, 0))))[:3]
out["wd"] = time.gmtime(time.mktime((2026, 11, 25, 0, 0, 0, 0, 0)))[6]  # a Wednesday
t0 = time.ticks_ms()
out["t0"] = t0
out["diff"] = time.ticks_diff(time.ticks_add(t0, 700000), t0)
out["wrapped"] = time.ticks_add(t0, 700000) < t0
print(json.dumps(out))
""", {"SIM_EPOCH": "2000"})
    assert r["g0"][:6] == [2000, 1, 1, 0, 0, 0] and r["g0"][6] == 5  # a Saturday
    assert 0 <= r["t"] < 5  # an unset ESP32 RTC: 2000-01-01
    assert r["bad"] == 0 and r["leap"] == [2024, 2, 29] and r["wd"] == 2
    assert (1 << 30) - 600_000 <= r["t0"] < (1 << 30) and r["wrapped"] and r["diff"] == 700000


def test_sleep_follows_the_speed_and_ntp_sets_the_rtc_to_true_utc():
    import time as host_time

    real0 = host_time.time_ns()
    r = _mp("""
import json, time, utime, machine, network, ntptime
r0 = utime.ticks_ms()
v0 = time.ticks_ms()
time.sleep_ms(5000)
time.sleep(5)
out = {"real_ms": utime.ticks_diff(utime.ticks_ms(), r0),
       "virt_ms": time.ticks_diff(time.ticks_ms(), v0), "before": time.time()}
""" + _WIFI_UP + """ntptime.settime()
out["after_ms"] = time.time_ns() // 1000000
out["true_ms"] = time.sim_utc_ms()
out["rtc"] = list(machine.RTC().datetime())
print(json.dumps(out))
""", {"SIM_SPEED": "100", "SIM_REAL0_NS": str(real0), "SIM_UTC0_MS": "1795600000000",
      "SIM_EPOCH": "2000"})
    assert 9900 <= r["virt_ms"] < 12000, r
    assert r["real_ms"] < 1000, r  # 10 simulated seconds in about 0.1 s
    assert r["before"] < 60, r
    # NTP set the RTC to the true (virtual) UTC: whole seconds, like ntptime
    utc_after = r["after_ms"] + 946684800000
    assert 0 <= r["true_ms"] - utc_after < 1500, r
    assert r["rtc"][:3] == [2026, 11, 25], r


def test_lockstep_time_stands_still_while_a_thread_runs_and_jumps_when_all_wait():
    """A board thread busy for 300 ms of real time (no sleep) costs no simulated time; the
    other thread's 10 ms sleep ends only once it sleeps too; a timer due at the same
    instant as a sleeper fires first; a thread's exit counts as waiting for ever."""
    r = _mp("""
import json, sys, time, utime
sys.modules["_thread"] = time.thread_module()
import _thread
out = {}
def board_thread():
    out["t0"] = time.ticks_ms()
    utime.sleep_ms(300)  # real work: the clock must not move
    out["t1"] = time.ticks_ms()
    time.sleep_ms(5000)
    out["t2"] = time.ticks_ms()
class Timer:
    at = time.sim_elapsed_ms() + 2000
    def due(self):
        return self.at
    def fire(self):
        out["timer"] = time.sim_elapsed_ms()
        self.at = None
time.add_timer(Timer())
r0 = utime.ticks_ms()
v0 = time.ticks_ms()
_thread.start_new_thread(board_thread, ())
time.sleep_ms(10)
out["main_woke"] = time.ticks_diff(time.ticks_ms(), v0)
time.sleep_ms(1990)
out["main_2000"] = time.sim_elapsed_ms()
time.sleep_ms(60000)
out["real_ms"] = utime.ticks_diff(utime.ticks_ms(), r0)
out["v"] = time.ticks_diff(time.ticks_ms(), v0)
out["t1-t0"] = time.ticks_diff(out.pop("t1"), out["t0"])
out["t2-t0"] = time.ticks_diff(out.pop("t2"), out.pop("t0"))
print(json.dumps(out))
""", {"SIM_SPEED": "max", "SIM_V0_MS": "5000"})
    assert r["t1-t0"] == 0 and r["main_woke"] == 10, r  # main slept 10 ms, not 300 + 10
    assert r["t2-t0"] == 5000 and r["v"] == 62000, r
    assert r["timer"] == 7000 and r["main_2000"] == 7000, r  # SIM_V0_MS + 2000
    assert r["real_ms"] < 30000, r  # 62 simulated seconds: the 300 ms of work and jumps


def test_paced_clock_runs_at_most_the_speed_and_slows_down_for_a_busy_board():
    r = _mp("""
import json, time, utime
r0 = utime.ticks_ms()
time.sleep(5)
paced = utime.ticks_diff(utime.ticks_ms(), r0)
utime.sleep_ms(500)  # the board busy for 500 ms real: 50 simulated s behind the pace
time.sleep(1)
print(json.dumps({"paced_ms": paced, "v": time.sim_elapsed_ms(),
                  "slowed": time.stats["slowed"]}))
""", {"SIM_SPEED": "100"})
    assert 45 <= r["paced_ms"] < 5000, r  # 5 simulated s at 100x: 50 ms real, not less
    # behind by far more than the slack: the pace starts again from here (slowed)
    assert r["slowed"] == 1 and r["v"] == 6000, r


def test_a_silent_server_times_out_in_real_time_and_takes_the_timeout_in_simulated_time():
    import socket

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    try:
        r = _mp("""
import json, socket, network, time
""" + _WIFI_UP + """s = socket.socket()
s.settimeout(3)
s.connect(socket.getaddrinfo("127.0.0.1", %d)[0][-1])
v0 = time.sim_elapsed_ms()
try:
    s.read(10)
except OSError as e:
    err = e.args[0]
print(json.dumps({"err": err, "took": time.sim_elapsed_ms() - v0,
                  "timed_out": socket.stats["timed_out"]}))
""" % srv.getsockname()[1], {"SIM_SPEED": "max"})
    finally:
        srv.close()
    assert r == {"err": 110, "took": 3000, "timed_out": 1}, r


def test_sockets_fail_like_a_dead_network_while_the_link_is_down():
    r = _mp("""
import json, socket, network, time
network.world.reset()
network.world.add_ap("ap", "pw")
out = {}
try:
    socket.getaddrinfo("localhost", 80)
except OSError as e:
    out["dns"] = e.args[0]
s = socket.socket()
try:
    s.connect(("127.0.0.1", 9))
except OSError as e:
    out["connect"] = e.args[0]
out["online"] = socket.online()
print(json.dumps(out))
""", {"SIM_SPEED": "50"})
    assert r == {"dns": -202, "connect": 113, "online": False}, r


def test_flash_image_is_written_through_and_mounts_again():
    d = support.tmpdir("simflash")
    img = os.path.join(d, "flash.img")
    script = """
import json, os, vfs, _thread
from sim_flash import FileFlash
from sim_vfs import LockedVfs
dev = FileFlash(%r, 4096, 64)
lock = _thread.allocate_lock()
try:
    vfs.mount(LockedVfs(vfs.VfsLfs2(dev), lock), "/flash")
except OSError:
    vfs.VfsLfs2.mkfs(dev)
    vfs.mount(LockedVfs(vfs.VfsLfs2(dev), lock), "/flash")
os.chdir("/flash")
try:
    with open("n.txt") as f:
        n = int(f.read())
except OSError:
    n = 0
with open("n.txt", "w") as f:
    f.write(str(n + 1))
print(json.dumps({"n": n, "created": dev.created, "erases": dev.blocks_erased}))
""" % img
    a = _mp(script)
    b = _mp(script)
    assert a["n"] == 0 and a["created"] and b["n"] == 1 and not b["created"], (a, b)
    assert os.path.getsize(img) == 4096 * 64


def _ledger(boots, rows, queue=None, duration=200):
    """Sim.ledger over hand-made boots and store rows (no processes)."""
    from tools.sim.run import Boot, Sim, parse_args

    s = Sim(parse_args(["--duration", str(duration), "--state-dir",
                        support.tmpdir("simledger"), "-q"]))
    s.config, s.meta, s.utc0, s.url = {"commit_delta": 16}, {}, 1_800_000_000_000, "x"
    s.outages = []
    s.state = Path(support.tmpdir("simledger"))

    class Store:
        def query(self, *a, **k):
            return iter(rows)

    s.store = Store()
    s.boots = []
    for i, (how, start, end, first, last) in enumerate(boots):
        b = Boot(i + 1, 1, start)
        b.how, b.end_v, b.first, b.last = how, end, first, last
        if how == "end":
            b.final = dict(last, queue=queue or {})
        if how == "powercut":
            b.cut = last
        s.boots.append(b)
    return s.ledger()


def _row(seq):
    return {"seq": seq, "capture_ns": (1_800_000_000_000 + seq * 2000) * 1_000_000}


def _figs(v, taken, stored, last_seqn, **kw):
    d = {"v": v, "taken": taken, "stored": stored, "last_seqn": last_seqn, "missed": 0,
         "failed": 0, "store_errors": 0, "dead": 0, "dropped": 0}
    d.update(kw)
    return d


def test_ledger_counts_a_missing_record_as_lost():
    first = _figs(2000, 1, 1, 1)
    ok = _ledger([("end", 0, 200000, first, _figs(200000, 100, 100, 100))],
                 [_row(i) for i in range(1, 96)], {"first": 96, "last": 100, "count": 5,
                                                   "last_seqn": 100, "dead_seqs": []})
    assert ok["lost"] == 0 and ok["uploaded"] == 95 and ok["queued"] == 5, ok
    gone = _ledger([("end", 0, 200000, first, _figs(200000, 100, 100, 100))],
                   [_row(i) for i in range(1, 96) if i != 50],
                   {"first": 96, "last": 100, "count": 5, "last_seqn": 100, "dead_seqs": []})
    assert gone["lost"] == 1 and gone["uploaded"] == 94, gone


def test_ledger_power_cut_allows_commit_delta_and_no_more():
    def run(resume, uploaded_before_cut=None):
        boots = [("powercut", 0, 100000, _figs(2000, 1, 1, 1), _figs(100000, 50, 50, 50)),
                 ("end", 102000, 200000, _figs(104000, 1, 1, resume),
                  _figs(200000, 49, 49, resume + 48))]
        old = uploaded_before_cut or resume - 1  # boot 1's records in the store
        rows = [_row(i) for i in range(1, old + 1)]
        rows += [{"seq": resume + k, "capture_ns": (1_800_000_104_000 + 2000 * k) * 1_000_000}
                 for k in range(49) if resume + k > old]
        return _ledger(boots, rows, {"first": None, "last": None, "count": 0,
                                     "last_seqn": resume + 48, "dead_seqs": []})
    ok = run(41)  # 10 uncommitted records lost with the power
    assert ok["lost"] == 0 and ok["power_cut_uncommitted"] == 10, ok
    bad = run(21)  # 30 gone: more than commit_delta (16)
    assert bad["lost"] == 14 and bad["power_cut_uncommitted"] == 16, bad
    # seqns 41..45 had been uploaded (so committed) yet were handed out again after the
    # cut: the server kept the old records and dropped boot 2's five as duplicates
    reused = run(41, uploaded_before_cut=45)
    assert reused["seq_reused"] == 5 and reused["lost"] == 5, reused


def test_ledger_crashed_firmware_is_lost_not_down():
    r = _ledger([("crash", 0, 200000, None, {})], [], {})
    assert r["lost"] >= 99 and r["board_down"] <= 1, r


def test_summary_last_line_balances_and_states_the_queue_figures():
    from tools.sim.run import Sim, last_line, parse_args

    s = Sim(parse_args(["--state-dir", support.tmpdir("simline"), "--sample-interval", "2"]))
    r = {"samples": 450, "stored": 445, "uploaded": 432, "queued": 9, "dead": 0, "dropped": 0,
         "cut_uncommitted": 4, "lost_stored": 0, "cut_inflight": 5, "lost": 0,
         "earlier_uploaded": 13, "earlier_queued": 0, "dead_earlier": 0,
         "usage": [36000, 248400, 262144]}  # 6.9 bytes a record in a 256 KiB partition
    per, days = s._queue_figures(r)
    assert (per, days) == ("6.9", "0.9"), (per, days)  # 37,992 records of 2 s: 0.88 days
    line = last_line(r, per, days, 2)
    assert line == ("sim: samples taken 450 = stored 445 + cut mid-sample 5; stored 445 = "
                    "uploaded 432 + queued 9 + dead-lettered 0 + dropped 0 + uncommitted at a "
                    "power cut 4; earlier runs' records: uploaded 13, dead-lettered 0, still "
                    "queued 0; queue 6.9 flash bytes/record, holds 0.9 days at 2 s; lost 0"), line
    assert s._queue_figures(dict(r, usage=None)) == ("?", "?")
