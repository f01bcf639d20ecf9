# cpython-only: orchestrates processes (tools/sim runs the firmware under the unix port)
"""End to end: the real firmware/boot.py + main.py on the simulated board (tools/sim),
against the bundled ingest server, with a virtual clock (``--speed``).

Every case checks the ledger: each sample slot of the run is in the ingest store exactly
once, still queued on flash, or explained by a counted cause (board down while booting
or after a power cut, slots missed or failed, records dead-lettered, dropped or not yet
committed at a power cut), with zero lost; ``--weather ramp`` makes the BMP180 pressure a
clock (10 Pa per simulated second), so every stored record's timestamp is also checked
against the true time it was sampled (pre-NTP samples included).

Each case takes 20-40 s of real time.
"""

import io
import os
import random
import subprocess
import sys

import support


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


def _check_ledger(r):
    text = r["out"]
    assert r["lost"] == 0, text
    assert r["duplicates"] == 0 and r["timestamp_errors"] == 0, text
    parts = (r["uploaded"] + r["queued"] + r["dead"] + r["dropped"] +
             r["power_cut_uncommitted"] + r["missed"] + r["sensor_failed"] +
             r["store_errors"] + r["board_down"] + r["lost"])
    assert parts == r["slots"], (parts, r["slots"], text)
    last = text.strip().splitlines()[-1]
    assert last.startswith("sim: samples taken %d, stored %d, uploaded %d, lost 0" % (
        r["samples"], r["stored"], r["uploaded"])), last


def _states(r):
    return [t for b in r["boots"] for t in b["transitions"]]


def test_boot_uploads_every_sample():
    r = _sim("boot", "--duration", 600, "--speed", 30)
    _check_ledger(r)
    assert len(r["boots"]) == 1 and r["boots"][0]["how"] == "end", r["out"]
    assert r["uploaded"] > 0.85 * r["slots"], r["out"]
    assert r["board_down"] <= 5, r["out"]  # only the boot itself (a few seconds)
    assert r["first_arrival_s"] is not None and r["first_arrival_s"] < 30, r["out"]
    wifi = [w for _, w, _ in _states(r)]
    assert "connected" in wifi, _states(r)
    led = [led for _, w, led in _states(r) if w == "connected"]
    assert led and led[-1] == "on", _states(r)  # solid while connected


def test_wifi_outage_ap_fallback_and_return():
    """8 minutes without Wi-Fi: LED 1 Hz, then the AP (LED 4 Hz) after
    no_wifi_before_ap_s, the station back when the link returns (LED solid), and the
    backlog uploaded."""
    r = _sim("outage", "--duration", 1200, "--speed", 40, "--wifi-outage", "120:600")
    _check_ledger(r)
    st = _states(r)
    during = [(w, led) for t, w, led in st if 130 <= t <= 600]
    assert ("ap", "4Hz") in during, st
    assert any(led == "1Hz" for t, w, led in st if 120 <= t <= 200), st
    after = [(w, led) for t, w, led in st if t > 600]
    assert after and after[-1] == ("connected", "on"), st
    # the 240-record backlog went out: what is left is the last few send intervals' worth
    # (more on a loaded host, where the board's CPU looks --speed times slower)
    assert r["queued"] < 60 and r["uploaded"] > 0.85 * r["slots"], r["out"]


def test_ntp_fails_then_succeeds_and_early_samples_get_true_timestamps():
    r = _sim("ntp", "--duration", 900, "--speed", 30, "--ntp-fail-until", 400)
    _check_ledger(r)  # includes: every record's timestamp matches its true sampling time
    rows = [x for x in r["rows"]]
    early = [x for x in rows if x["capture_ns"] // 1_000_000 < _utc0(r) + 380_000]
    assert len(early) > 150, (len(early), r["out"])  # sampled before NTP, sent with true UTC
    assert r["uploaded"] > 0.85 * r["slots"], r["out"]


def _utc0(r):
    rows = r["rows"]
    return min(x["capture_ns"] for x in rows) // 1_000_000 - 10_000 if rows else 0


def test_power_cut_at_a_random_moment_and_restart_from_the_same_image():
    cut = round(random.uniform(60, 500), 1)
    r = _sim("cut", "--duration", 900, "--speed", 30, "--power-cut-at", cut,
             "--set", "commit_delta=16")
    _check_ledger(r)
    boots = r["boots"]
    assert len(boots) == 2, (cut, r["out"])
    assert boots[0]["how"] == "powercut" and boots[1]["cause"] == "power-on", r["out"]
    assert boots[1]["fw_boot"] == boots[0]["fw_boot"] + 1, r["out"]  # same flash image
    assert r["power_cut_uncommitted"] <= 16, (cut, r["out"])
    assert r["uploaded"] > 0.8 * r["slots"], (cut, r["out"])


def test_dead_sensors_reset_with_backoff_not_a_boot_loop():
    r = _sim("dead", "--duration", 1800, "--speed", 60, "--dead-sensor", "am2320",
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
    power-on of the same flash) uploads its own samples; the first run's can never get a
    true timestamp (that boot never learnt the time), so they are dead-lettered, counted,
    never sent with a made-up time."""
    r = _sim("config", "--duration", 300, "--speed", 30,
             "--config-json", '{"wifi_ssid": "sim-wifi", "tb_host": ')
    _check_ledger(r)
    assert len(r["boots"]) == 1 and r["uploaded"] == 0, r["out"]
    assert r["queued"] == r["stored"] > 100, r["out"]
    assert "ap" in [w for _, w, _ in _states(r)], _states(r)  # reachable for WebREPL
    r2 = _sim("config", "--duration", 300, "--speed", 30, state=r["state"])
    _check_ledger(r2)
    assert r2["uploaded"] > 0.8 * r2["slots"], r2["out"]
    old = [x["seq"] for x in r2["rows"] if x["seq"] <= r["stored"]]
    assert old == [] and r2["dead_earlier"] == r["stored"], (old[:5], r2["out"])


def test_make_sim_defaults_acceptance():
    """``python -m tools.sim`` as ``make sim`` runs it (default options, random Wi-Fi drops
    included), shortened to 15 simulated minutes: records reach the store within a minute,
    the exit status is 0 and the last line reports zero lost."""
    state = os.path.join(support.tmpdir("sim-default"), "state")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = subprocess.run([sys.executable, "-m", "tools.sim", "--duration", "900", "--state-dir",
                        state, "--wifi-drops", "300", "--seed", "7"], cwd=root,
                       capture_output=True, text=True, timeout=300)
    lines = p.stdout.strip().splitlines()
    assert p.returncode == 0, p.stdout + p.stderr
    assert lines[-1].startswith("sim: samples taken") and lines[-1].endswith(" lost 0"), lines
    arrival = [x for x in lines if x.startswith("sim: first records in the ingest store")]
    assert arrival and float(arrival[0].split(" after ")[1].split()[0]) < 60, lines
    assert any(x.startswith("sim: Wi-Fi outages") for x in lines), lines
