# cpython-only: orchestrates processes (tools/sim runs the firmware under the 32-bit unix port)
"""``make sim ARGS=--mp32``: the real firmware on the 32-bit build (the ESP32's pointer size,
``make mp32``) with the GC heap a stock ESP32 leaves it (docs/sim.md, "--mp32"), for 30
simulated minutes with ``make sim``'s defaults (random Wi-Fi drops included).

Read from the summary, as a user reads it: every sample slot is taken (none missed, none
failed, the board down only while it boots), nothing is lost, and the samples reach the
server.  Skipped, saying how to build one, when there is no 32-bit build.  About 3 minutes.
"""

import os
import subprocess
import sys

import support

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A third of make sim's 30x: a host stall of 2000 / speed ms makes the firmware a slot late
# (docs/sim.md, "Speed"), this test allows no missed slot, and at 20x a loaded `make test`
# host missed 3 of 900.
SPEED = 10


def summary(text):
    """{"slots": N, "uploaded": n, ..., "lost": n} from the summary's ``sim: slots`` line."""
    line = [x for x in text.splitlines() if x.startswith("sim: slots ")][-1]
    total, _, parts = line[len("sim: slots "):].partition(" = ")
    out = {"slots": int(total)}
    for part in parts.split(" + "):
        name, _, n = part.rpartition(" ")
        out[name] = int(n)
    return out


def test_thirty_minutes_on_the_32_bit_build_with_a_stock_esp32_heap():
    mp32 = support.micropython32()
    state = os.path.join(support.tmpdir("sim-mp32"), "state")
    p = subprocess.run([sys.executable, "-m", "tools.sim", "--mp32", "--duration", "1800",
                        "--speed", str(SPEED), "--seed", "16", "--weather", "ramp",
                        "--state-dir", state, "-q"],
                       cwd=ROOT, env=dict(os.environ, MICROPYTHON32=mp32),
                       capture_output=True, text=True, timeout=600)
    with open(os.path.join(state, "console.log")) as f:
        console = f.read()
    text = p.stdout + p.stderr + "\n--- console.log (end) ---\n" + console[-3000:]
    from tools.sim.run import MP32_FIRMWARE_HEAP

    got = [int(x.split()[4]) for x in console.splitlines()
           if x.startswith("sim: the firmware gets ")]  # one line a boot
    assert got and all(0 <= n - MP32_FIRMWARE_HEAP < 64 for n in got), (got, text)
    # The simulator's names are frozen in (tools/mp32_manifest.py): none is in RAM when
    # boot.py starts, as on a board, so the firmware's names fill the RAM pools a board's do.
    names = [x for x in console.splitlines() if x.startswith("sim: names in RAM before ")]
    assert len(names) == len(got) and all(" n_qstr=0," in x for x in names), (names, text)
    s = summary(p.stdout)
    assert sum(n for k, n in s.items() if k != "slots") == s["slots"], (s, text)
    assert s["lost"] == 0 and s["missed"] == 0 and s["sensor-failed"] == 0, (s, text)
    assert s["store errors"] == 0 and s["dead-lettered"] == 0 and s["dropped"] == 0, text
    assert s["board down"] <= 5, (s, text)  # only the boot itself (a few seconds)
    assert s["uploaded"] > 0.85 * s["slots"], (s, text)  # the rest: the last few sends
    assert p.returncode == 0 and p.stdout.rstrip().endswith(" lost 0"), text
