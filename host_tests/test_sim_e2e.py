# cpython-only: orchestrates processes (tools/sim runs the firmware under the unix port)
"""End to end: the real firmware/boot.py + main.py on the simulated board (tools/sim),
against the bundled ingest server, with the lockstep virtual clock (``--speed``).

Every case checks the ledger: each sample slot of the run is in the ingest store exactly
once, still queued on flash, or explained by a counted cause (board down while booting
or after a power cut, slots failed, records dead-lettered, dropped or not yet committed
at a power cut, slots a hung firmware let pass until its watchdog reset), with zero lost
and zero missed (the simulator never makes the firmware miss a slot); the summary's last
line balances; ``--weather ramp`` makes the BMP180 pressure a clock (10 Pa per simulated
second), so every stored record's timestamp is also checked against the true time it was
sampled (pre-NTP samples included).

Most cases run at ``--speed max`` (a few simulated hours in seconds); the paced clock has
its own cases (``--speed 600`` and the default 30).
"""

import io
import os
import random
import re
import shutil
import subprocess
import sys

import support

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _sim(name, *args, state=None):
    from tools.sim.run import Sim, parse_args

    state = state or os.path.join(support.tmpdir("sim-" + name), "state")
    argv = ["--state-dir", state, "--weather", "ramp", "--wifi-drops", "0", "-q"]
    argv += [str(a) for a in args]
    out = io.StringIO()
    r = Sim(parse_args(argv), out=out).run()
    r["out"] = out.getvalue()
    r["argv"] = argv
    r["state"] = state
    return r


def _sum(text):
    """{name: n} of 'a 1 + b c 2 + ...'."""
    return dict((p.rsplit(" ", 1)[0], int(p.rsplit(" ", 1)[1])) for p in text.split(" + "))


def _check_last_line(r):
    """The summary's last line: both of its sums balance and agree with the ledger."""
    last = r["out"].strip().splitlines()[-1]
    m = re.match(r"sim: samples taken (\d+) = ([^;]*); stored (\d+) = ([^;]*);.* lost (\d+)$",
                 last)
    assert m, last
    taken, stored = int(m.group(1)), int(m.group(3))
    taken_parts, stored_parts = _sum(m.group(2)), _sum(m.group(4))
    assert (taken, stored, int(m.group(5))) == (r["samples"], r["stored"], r["lost"]), last
    assert sum(taken_parts.values()) == taken and taken_parts["stored"] == stored, last
    assert sum(stored_parts.values()) == stored, last
    assert stored_parts["uploaded"] == r["uploaded"], last
    return last


def _check_ledger(r, missed=0):
    text = r["out"]
    assert r["lost"] == 0, text
    assert r["missed"] == missed, text  # lockstep: the host's pace never costs a slot
    assert r["duplicates"] == 0 and r["timestamp_errors"] == 0, text
    parts = (r["uploaded"] + r["queued"] + r["dead"] + r["dropped"] +
             r["power_cut_uncommitted"] + r["missed"] + r["sensor_failed"] +
             r["store_errors"] + r["board_down"] + r["hung"] + r["lost"])
    assert parts == r["slots"], (parts, r["slots"], text)
    _check_last_line(r)


def _states(r):
    return [t for b in r["boots"] for t in b["transitions"]]


def _console(r):
    with open(os.path.join(r["state"], "console.log")) as f:
        return f.read()


_PREFIX = re.compile(r"\b(wifi|sender|app|clock|bootguard|sampler|health|https|oauth|tslog|"
                     r"settings|sim): ")


def _check_console(r):
    """Lines from the firmware's threads are whole: no line holds two log lines."""
    for line in _console(r).splitlines():
        assert len(_PREFIX.findall(line)) <= 1 and "@@SIM" not in line, line


def test_boot_uploads_every_sample():
    r = _sim("boot", "--duration", 600, "--speed", 60)
    _check_ledger(r)
    assert len(r["boots"]) == 1 and r["boots"][0]["how"] == "end", r["out"]
    assert r["uploaded"] > 0.9 * r["slots"], r["out"]
    assert r["board_down"] <= 2, r["out"]  # only the boot itself (1 s + the AM2320's rest)
    assert r["first_arrival_s"] is not None and r["first_arrival_s"] < 30, r["out"]
    wifi = [w for _, w, _ in _states(r)]
    assert "connected" in wifi, _states(r)
    led = [led for _, w, led in _states(r) if w == "connected"]
    assert led and led[-1] == "on", _states(r)  # solid while connected


def test_wifi_outage_ap_fallback_and_return():
    """8 minutes without Wi-Fi: LED 1 Hz, then the AP (LED 4 Hz) after
    no_wifi_before_ap_s, the station back when the link returns (LED solid), and the
    backlog uploaded."""
    r = _sim("outage", "--duration", 1200, "--speed", "max", "--wifi-outage", "120:600")
    _check_ledger(r)
    st = _states(r)
    during = [(w, led) for t, w, led in st if 130 <= t <= 600]
    assert ("ap", "4Hz") in during, st
    assert any(led == "1Hz" for t, w, led in st if 120 <= t <= 200), st
    after = [(w, led) for t, w, led in st if t > 600]
    assert after and after[-1] == ("connected", "on"), st
    # the 240-record backlog went out: what is left is the last send interval's worth
    assert r["queued"] <= 10 and r["uploaded"] > 0.95 * r["slots"], r["out"]


def test_ntp_fails_then_succeeds_and_early_samples_get_true_timestamps():
    """Also the board with MicroPython's own partition table (no tslog partition): the
    queue in a LittleFS folder."""
    r = _sim("ntp", "--duration", 900, "--speed", "max", "--ntp-fail-until", 400,
             "--queue-kib", 0)
    _check_ledger(r)  # includes: every record's timestamp matches its true sampling time
    early = [x for x in r["rows"] if x["capture_ns"] // 1_000_000 < _utc0(r) + 380_000]
    assert len(early) > 150, (len(early), r["out"])  # sampled before NTP, sent with true UTC
    assert r["uploaded"] > 0.95 * r["slots"], r["out"]
    # no tslog partition: the firmware said where its queue went
    assert re.search(r"app: .*queue (in|on) data/q", _console(r)), _console(r)[-2000:]


def _utc0(r):
    rows = r["rows"]
    return min(x["capture_ns"] for x in rows) // 1_000_000 - 10_000 if rows else 0


def test_a_boot_that_never_learned_the_time_gets_estimated_timestamps():
    """Issue 16.4: no NTP during boot 1, a power cut, NTP still failing in boot 2, then the
    link back: boot 1's records are delivered (not dead-lettered) with a time estimated
    from boot 2's (``clock.Epochs``), each marked ``time_estimated``; boot 2's get their
    true time; timestamps increase with the seq; the ramp checks each estimate's error
    against its bound (docs/firmware.md "Time")."""
    # 1500 s: NTP's back-off (jittered, up to 600 s) may put boot 2's first good try
    # anywhere up to ~1200 s; the uploads follow it.
    r = _sim("estimated", "--duration", 1500, "--speed", "max", "--power-cut-at", 300,
             "--ntp-fail-until", 600)
    _check_ledger(r)
    _check_last_line(r)
    boots = r["boots"]
    assert len(boots) == 2 and r["dead"] == 0, r["out"]
    rows = sorted((x for x in r["rows"] if x["type"] == "weather_record"),
                  key=lambda x: x["seq"])
    est = [x["seq"] for x in rows if x.get("time_estimated")]
    assert est and est == [x["seq"] for x in rows[:len(est)]], (est, r["out"])  # boot 1's
    assert len(est) >= boots[0]["stored"] - 16, r["out"]  # all of boot 1 but a cut's loss
    stamps = [x["capture_ns"] for x in rows]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert "; %d uploaded with an estimated time;" % len(est) in r["out"], r["out"]


def test_power_cut_at_a_random_moment_and_restart_from_the_same_image():
    cut = round(random.uniform(60, 500), 1)
    r = _sim("cut", "--duration", 900, "--speed", "max", "--power-cut-at", cut,
             "--set", "commit_delta=16")
    _check_ledger(r)
    boots = r["boots"]
    assert len(boots) == 2, (cut, r["out"])
    assert boots[0]["how"] == "powercut" and boots[1]["cause"] == "power-on", r["out"]
    assert boots[0]["cut_s"] == cut, (cut, r["out"])  # at its simulated instant
    assert boots[1]["fw_boot"] == boots[0]["fw_boot"] + 1, r["out"]  # same flash image
    assert r["power_cut_uncommitted"] <= 17, (cut, r["out"])
    assert r["uploaded"] > 0.9 * r["slots"], (cut, r["out"])
    con = _console(r)
    assert "===== power cut at %.1f s simulated" % cut in con, con[-2000:]
    assert "PowerCut" not in con, con[-2000:]  # labelled, not a traceback
    _check_console(r)


def test_dead_sensors_reset_with_backoff_not_a_boot_loop():
    r = _sim("dead", "--duration", 1800, "--speed", "max", "--dead-sensor", "am2320",
             "--dead-sensor", "bmp180")
    _check_ledger(r)
    boots = r["boots"]
    assert r["stored"] == 0 and r["sensor_failed"] > 0, r["out"]
    assert 2 <= len(boots) <= 6, r["out"]  # back-off: 1 min, 2 min, 4 min, ...
    gaps = [b["end_s"] - b["start_s"] for b in boots[1:-1]]
    assert gaps == sorted(gaps), (gaps, r["out"])  # each boot holds off longer
    assert all(b["cause"] == "reset" for b in boots[1:]), r["out"]


def test_corrupt_config_json_falls_back_to_defaults_then_recovers():
    """A corrupt config.json: the board runs on the defaults (no Wi-Fi, so no NTP and no
    server), no crash, every sample kept queued.  A second run with a good config (a
    power-on of the same flash) uploads its own samples and the first run's: that boot
    never learnt the time, so they go with a time estimated from the second boot's and
    are marked ``time_estimated`` (docs/firmware.md "Time").  The console numbers the
    second run's boot 2, as the firmware does.  (--queue-kib 0: a corrupt config.json
    also loses tslog_partition, and a queue on the partition would start again at seqn 1.)
    """
    r = _sim("config", "--duration", 300, "--speed", "max", "--queue-kib", 0,
             "--config-json", '{"wifi_ssid": "sim-wifi", "tb_host": ')
    _check_ledger(r)
    assert len(r["boots"]) == 1 and r["uploaded"] == 0, r["out"]
    assert r["queued"] == r["stored"] > 100, r["out"]
    assert "ap" in [w for _, w, _ in _states(r)], _states(r)  # reachable for WebREPL
    r2 = _sim("config", "--duration", 300, "--speed", "max", "--queue-kib", 0,
              state=r["state"])
    _check_ledger(r2)
    assert r2["uploaded"] > 0.9 * r2["slots"], r2["out"]
    old = [x for x in r2["rows"] if x["seq"] <= r["stored"]]
    assert len(old) == r["stored"] == r2["earlier_uploaded"], r2["out"]
    assert all(x["time_estimated"] for x in old) and not r2["dead_earlier"], r2["out"]
    heads = re.findall(r"===== boot (\d+) \(", _console(r2))
    assert heads == ["1", "2"], heads


def test_lockstep_hours_every_slot_taken_through_an_outage_and_a_power_cut():
    """``--speed max``: four simulated hours with an hour offline and a power cut in the
    backlog's drain, on a 256 KiB tslog partition: every slot taken (none missed however
    busy the host), the ledger and the last line balance after the cut."""
    cut = round(random.uniform(7300, 9000), 1)
    r = _sim("lockstep", "--duration", 14400, "--speed", "max", "--queue-kib", 256,
             "--wifi-outage", "3600:7200", "--power-cut-at", cut)
    _check_ledger(r)
    boots = r["boots"]
    assert [b["how"] for b in boots] == ["powercut", "end"], r["out"]
    assert boots[0]["cut_s"] == cut, (cut, r["out"])
    assert r["board_down"] <= 4 and r["dropped"] == 0, r["out"]
    assert r["uploaded"] > 0.98 * r["slots"], r["out"]
    assert "tslog partition 256 KiB" in r["out"], r["out"]


def test_a_256_kib_queue_holds_20_hours_offline():
    """Issue 12's capacity check (``make sim ARGS='--queue-kib 256 --speed max --duration
    72000 --wifi-outage 0:72000 --fresh'``): 20 hours of the simulated weather with its
    sensor noise at 0.5 Hz (36,000 records) and the Wi-Fi out the whole time, on a 256 KiB
    tslog partition: every record still queued, none dropped."""
    r = _sim("cap256", "--duration", 72000, "--speed", "max", "--queue-kib", 256,
             "--wifi-outage", "0:72000", "--weather", "curve")
    _check_ledger(r)
    assert r["slots"] == r["stored"] == r["queued"] == 36000, r["out"]
    assert r["dropped"] == 0 and r["uploaded"] == 0, r["out"]
    held, used, total = r["usage"]
    assert held == 36000 and total == 256 * 1024 and used < total, r["out"]


def test_paced_speed_600_takes_every_slot_through_an_outage():
    """The Makefile's example speed through an outage (which once missed a third of the
    slots on a busy host): the clock waits for the board instead."""
    r = _sim("paced", "--duration", 7200, "--speed", 600, "--wifi-outage", "1800:5400")
    _check_ledger(r)
    assert r["uploaded"] > 0.98 * r["slots"] and r["board_down"] <= 2, r["out"]


def test_watchdog_fires_in_simulated_time_on_a_blocked_loop():
    """The main loop blocks for 90 s (simulated) after its 60th slot: the watchdog
    (``wdt_timeout_ms`` 60 s) resets the board 60 s of simulated time after the last feed,
    whatever the host's speed; the slots in between are counted as hung, the next boot's
    cause is the watchdog, and nothing stored is lost."""
    fw = support.tmpdir("sim-wdt-fw")
    shutil.copy(os.path.join(ROOT, "firmware", "boot.py"), fw)
    with open(os.path.join(fw, "main.py"), "w") as f:
        f.write("import app\nimport time\n\n\n"
                "def _hang(board):\n"
                "    if board.iterations == 60 and board.guard.boot == 1:\n"
                "        print('test: the loop blocks at', time.ticks_ms())\n"
                "        time.sleep(90)\n\n\n"
                "app.run(on_iteration=_hang)\n")
    r = _sim("wdt", "--duration", 600, "--speed", "max", "--firmware", fw)
    _check_ledger(r)
    boots = r["boots"]
    assert [b["how"] for b in boots] == ["wdt", "end"], r["out"]
    assert boots[1]["cause"] == "watchdog" and boots[0]["taken"] == 60, r["out"]
    con = _console(r)
    blocked = int(re.search(r"test: the loop blocks at (\d+)", con).group(1))
    blocked_s = boots[0]["start_s"] + (blocked - ((1 << 30) - 600_000)) / 1000
    assert abs(boots[0]["cut_s"] - (blocked_s + 60)) <= 0.01, (blocked_s, r["out"])
    assert 29 <= r["hung"] <= 31, r["out"]  # 60 s of 2 s slots
    assert "===== watchdog reset at" in con and "(watchdog)" in con, con[-2000:]


def test_rerun_reports_records_an_earlier_run_queued():
    """Records queued at the end of one run (Wi-Fi down) are delivered by the next: its
    summary reports them, and the status line's uploaded total is this run's plus them."""
    r = _sim("rerun", "--duration", 600, "--speed", "max", "--wifi-outage", "400:600")
    _check_ledger(r)
    assert r["queued"] > 90, r["out"]
    r2 = _sim("rerun", "--duration", 300, "--speed", "max", state=r["state"])
    _check_ledger(r2)
    assert r2["earlier_uploaded"] == r["queued"], r2["out"]
    assert r2["sent_total"] == r2["uploaded"] + r2["earlier_uploaded"], r2["out"]
    last = r2["out"].strip().splitlines()[-1]
    assert "earlier runs' records: uploaded %d," % r["queued"] in last, last


def test_make_sim_defaults_acceptance():
    """``python -m tools.sim`` as ``make sim`` runs it (default options, random Wi-Fi drops
    included), shortened to 15 simulated minutes: records reach the store within a minute,
    the exit status is 0 and the last line reports zero lost."""
    state = os.path.join(support.tmpdir("sim-default"), "state")
    p = subprocess.run([sys.executable, "-m", "tools.sim", "--duration", "900", "--state-dir",
                        state, "--wifi-drops", "300", "--seed", "7"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    lines = p.stdout.strip().splitlines()
    assert p.returncode == 0, p.stdout + p.stderr
    assert lines[-1].startswith("sim: samples taken") and lines[-1].endswith(" lost 0"), lines
    arrival = [x for x in lines if x.startswith("sim: first records in the ingest store")]
    assert arrival and float(arrival[0].split(" after ")[1].split()[0]) < 60, lines
    assert any(x.startswith("sim: Wi-Fi outages") for x in lines), lines
    assert " missed 0 " in [x for x in lines if x.startswith("sim: slots")][0], lines
