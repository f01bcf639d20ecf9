"""Light simulated boards: the firmware's own lib/mqtt_uplink.py and lib/tslog.py under
CPython, many boards per process (one thread each), for load.

``python -m tools.fleet.boards --state DIR --boards K --records R --rate HZ --urls U,...``
Board ``i`` (symbol ``sim<first+i>``) samples ``R`` records at ``HZ`` (a plausible noisy
day, as the real sensors give) into its own TSLog under ``DIR``, and publishes them as
the firmware does (reader 2, commit after PUBACK) to ``urls[i % len(urls)]``.  Each board
ends when every record it stored is acknowledged (or at ``--deadline``) and prints one
line ``@@BOARD {json}``: symbol, stored, sent (acknowledged), retries, connects, state.
The MicroPython boards (the same module on the unix port) are host_tests/mqtt_device.py.
"""

import json
import os
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def board_path():
    """Make the board's modules importable under CPython (lib/ and the ``micropython``
    and ``time.ticks_*`` shims the tests use)."""
    for p in (os.path.join(ROOT, "lib"), os.path.join(ROOT, "host_tests", "fakes")):
        if p not in sys.path:
            sys.path.insert(0, p)
    import cpython_shims

    cpython_shims.install()


def sample(i):
    """Record values of sample ``i``: a day's temperature curve with sensor noise."""
    n = (i * 7919) % 101 - 50
    t = 150 + (i % 43200) // 300 + n // 25  # 0.1 degC
    return (t, 550 + n, t - 4, 101325 + n, 30000 + n, 80000)  # 0.1 %RH, 0.1 degC, Pa, B, B


def run_board(symbol, url, state, records, rate, ca, password, deadline, out, lock,
              batch_bytes=4096):
    import mqtt_uplink
    import record
    import utc

    log = record.open_queue(os.path.join(state, symbol), nreaders=3, commit_delta=16)
    up = mqtt_uplink.MqttUplink(log.reader(2), symbol, url, ca_file=ca, user="board",
                                password=password, batch_bytes=batch_bytes, timeout_s=5,
                                backoff_min_ms=100, backoff_max_ms=2000, log=lambda t: None)
    stored = 0
    step_ms = int(1000 / rate) if rate > 0 else 2000
    # Timestamps on the board's sampling schedule (a backlog sampled at once lies in the past)
    ts0 = utc.now_ms() - (0 if rate > 0 else records * step_ms)
    t0 = time.monotonic()
    t_end = t0 + deadline
    while time.monotonic() < t_end:
        due = records if rate <= 0 else min(records, int((time.monotonic() - t0) * rate) + 1)
        while stored < due:
            stored += 1
            log.store_record(record.encode(ts0 + stored * step_ms, sample(stored), 1,
                                           record.FLAG_UTC))
        if stored == records:
            log.commit()
        up.step()
        if stored == records and up.sent >= records and not up.pending():
            break
        time.sleep(0.005 if up.state == "sending" else 0.02)
    up.close()
    log.close()
    figs = dict(up.stats(), symbol=symbol, stored=stored, last_seqn=log.last_seqn)
    with lock:
        out.write("@@BOARD " + json.dumps(figs) + "\n")
        out.flush()
    return figs


def main(argv=None):
    import argparse

    a = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    a.add_argument("--state", required=True)
    a.add_argument("--boards", type=int, default=10)
    a.add_argument("--first", type=int, default=0, help="number of the first board")
    a.add_argument("--records", type=int, default=1000, help="records per board")
    a.add_argument("--rate", type=float, default=10, help="records/s per board (0: at once)")
    a.add_argument("--urls", required=True, help="comma-separated mqtts:// URLs")
    a.add_argument("--ca", required=True)
    a.add_argument("--credentials", required=True, help="JSON with the 'board' password")
    a.add_argument("--deadline", type=float, default=600)
    a.add_argument("--batch-bytes", type=int, default=4096)
    args = a.parse_args(argv)
    board_path()
    with open(args.credentials) as f:
        password = json.load(f)["board"]
    urls = args.urls.split(",")
    os.makedirs(args.state, exist_ok=True)  # before the threads: each makes its own folder
    lock = threading.Lock()
    threads = []
    for i in range(args.boards):
        sym = "sim%04d" % (args.first + i)
        t = threading.Thread(target=run_board, args=(
            sym, urls[i % len(urls)], args.state, args.records, args.rate, args.ca, password,
            args.deadline, sys.stdout, lock, args.batch_bytes), daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
