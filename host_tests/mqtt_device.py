"""A "board" for the fleet tests and bench: lib/mqtt_uplink.py draining a real TSLog.

Usage: micropython mqtt_device.py CONFIG.json (or ``-c "import sys; sys.argv[1:] =
[CONFIG]; import mqtt_device"`` with the modules as .mpy).  Stores ``count`` samples
(a plausible noisy day: temperature, humidity, pressure drifting with sensor noise) in a
TSLog in ``dir``, then publishes them with the real uplink to ``url`` as ``symbol``,
storing ``store_during`` more (one per step) while it drains, and prints one line
``@@DEVICE {json figures}``.  A second run on the same ``dir`` continues the queue
(a reboot: what was not acknowledged goes again).  ``deadline_s``: give up after this
long (figures still printed); ``measure_heap``: the largest live heap after a step;
``pace_ms``: sleep between steps; ``stop_file``: stop when this file exists (a power cut
at a random point when the test kills the process instead).

Kept small on purpose: under ``-X heapsize=64k`` this script's own bytecode counts too.
"""

import gc
import json
import sys
import time

gc.collect()
_M0 = gc.mem_alloc()
import mqtt_uplink  # noqa: E402
import record  # noqa: E402
import tslog  # noqa: E402, F401  (its code counts in CODE)
import utc  # noqa: E402  (loaded by record)

gc.collect()
CODE = gc.mem_alloc() - _M0
_M0 = None


T0 = [0]  # UTC ms of sample 0: samples are 2 s apart (0.5 Hz), a backlog lies in the past


def store(log, i):
    """Sample ``i``: a day-long curve with noise (a pseudo-random walk, no float lists)."""
    n = (i * 7919) % 101 - 50  # -50..50: the sensors' noise
    t = 150 + (i % 43200) // 300 + n // 25  # 0.1 degC
    return log.store_record(record.encode(
        T0[0] + 2000 * i, (t, 550 + n, t - 4, 101325 + n, 30000 + n, 80000), 1,
        record.FLAG_UTC))


def main():
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    log = record.open_queue(cfg["dir"], bucket_size=cfg.get("bucket_size", 1024),
                            commit_delta=16, nreaders=3)
    rd = log.reader(2)
    # Made before the backlog is stored, as a board builds its uplink at boot (the message
    # buffer is one block of batch_bytes: a day of stores first leaves no such hole in 64k).
    up = mqtt_uplink.MqttUplink(
        rd, cfg.get("symbol", "esp2462"), cfg["url"], ca_file=cfg.get("ca"),
        insecure=cfg.get("insecure", False), user=cfg.get("user"), password=cfg.get("password"),
        batch_bytes=cfg.get("batch_bytes", 4096), timeout_s=cfg.get("timeout_s", 5),
        backoff_min_ms=cfg.get("backoff_min_ms", 50), backoff_max_ms=cfg.get("backoff_max_ms",
                                                                            1000),
        log=print if cfg.get("verbose") else (lambda t: None))
    n = cfg.get("count", 0)
    base = log.last_seqn
    T0[0] = utc.now_ms() - 2000 * (base + n)
    for i in range(1, n + 1):
        store(log, base + i)
    log.commit()
    gc.collect()
    before = gc.mem_alloc()
    more = cfg.get("store_during", 0)
    nxt = log.last_seqn + 1
    pace = cfg.get("pace_ms", 0)
    stop_file = cfg.get("stop_file")
    peak = idle = 0
    t0 = time.ticks_ms()
    deadline = int(cfg.get("deadline_s", 60) * 1000)
    while time.ticks_diff(time.ticks_ms(), t0) < deadline:
        if more:
            store(log, nxt)
            log.commit()
            nxt += 1
            more -= 1
        up.step()
        if cfg.get("measure_heap"):
            gc.collect()
            a = gc.mem_alloc()
            peak = a if a > peak else peak
        if up.state == "idle" and not more:
            idle += 1
            if idle > 3:
                break
        else:
            idle = 0
        if stop_file:
            try:
                open(stop_file).close()
                break
            except OSError:
                pass
        time.sleep_ms(pace if up.state != "backoff" else 20)
    up.close()
    figs = up.stats()
    figs["lag"] = log.last_seqn - rd.seqn
    figs["send_s"] = time.ticks_diff(time.ticks_ms(), t0) / 1000
    figs["code_heap"] = CODE
    figs["heap_before"] = before
    figs["heap_peak_live"] = peak
    figs["heap_total"] = gc.mem_alloc() + gc.mem_free()
    figs["last_seqn"] = log.last_seqn
    up = log = rd = None
    gc.collect()
    print("@@DEVICE " + json.dumps(figs))


main()
