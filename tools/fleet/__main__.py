"""``python -m tools.fleet`` (``make fleet``): the fleet path on one machine, with a summary
that accounts for every record (docs/fleet.md).

    make fleet ARGS='--boards 20 --records 600 --rate 5 --faults'

Starts a throw-away PostgreSQL (``--store sqlite``: a SQLite data dir instead), a NATS
cluster (``--nodes``, JetStream + MQTT over TLS), ``--collectors`` collectors and the boards
(``--boards`` light ones, the firmware's MQTT module under CPython, plus ``--mp-boards``
running it on the MicroPython unix port).  ``--faults``: while the data flows, kill a NATS
node and bring it back, kill a collector mid-batch (a new one takes over), cut every
board's connection, restart PostgreSQL.  Then it waits for the store to hold what the
boards stored, stops everything and prints the summary; the last line reads
``fleet: records stored on boards N, in the store N, missing 0, duplicated 0, out of order 0``.
Exit code 0 only when every record is there exactly once, in order per board.
"""

import argparse
import json
import os
import shutil
import sys
import threading

from .run import Fleet


def faults(fleet, at, stop):
    """The fault schedule, ``at`` seconds apart, on its own thread while the data flows."""
    steps = [
        lambda: fleet.kill_node(1 % fleet.nodes),
        lambda: fleet.start_node(1 % fleet.nodes),
        lambda: fleet.kill_collector(0),
        fleet.start_collector,
        fleet.cut_boards,
        lambda: fleet.restart_store(crash=False),
    ]
    for step in steps:
        if stop.wait(at):
            return
        step()


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tools.fleet", description=__doc__.split("\n")[0])
    p.add_argument("--boards", type=int, default=20, help="light boards (CPython)")
    p.add_argument("--mp-boards", type=int, default=1, help="boards on the MicroPython port")
    p.add_argument("--records", type=int, default=300, help="records per board")
    p.add_argument("--rate", type=float, default=10, help="records/s per board (0: at once)")
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--collectors", type=int, default=2)
    p.add_argument("--store", choices=("postgresql", "sqlite"), default="postgresql")
    p.add_argument("--state-dir", default=".fleet", help="emptied first")
    p.add_argument("--faults", action="store_true", help="inject the fault schedule")
    p.add_argument("--fault-every", type=float, default=4, help="s between faults")
    p.add_argument("--deadline", type=float, default=600)
    a = p.parse_args(argv)
    shutil.rmtree(a.state_dir, ignore_errors=True)
    fleet = Fleet(a.state_dir, nodes=a.nodes, collectors=a.collectors, store=a.store,
                  boards=a.boards, mp_boards=a.mp_boards, records=a.records, rate=a.rate,
                  deadline_s=a.deadline, report_s=10)
    stop = threading.Event()
    ok = False
    try:
        fleet.start()
        fleet.start_boards()
        if a.faults:
            threading.Thread(target=faults, args=(fleet, a.fault_every, stop),
                             daemon=True).start()
        boards = fleet.wait_boards()
        stop.set()
        want = sum(b["stored"] for b in boards.values())
        fleet.wait_stored(want, timeout=120)
        s = fleet.summary(boards)
        print("fleet: collectors' last figures: %s" % json.dumps(fleet.collector_figures()))
        print("fleet: %s" % json.dumps(s, sort_keys=True))
        print("fleet: %d boards (%d on MicroPython) through %d NATS nodes and %d collectors "
              "into %s: %s records/s end to end over %s s" % (
                  s["boards"], s["micropython_boards"], a.nodes, a.collectors, a.store,
                  s.get("records_per_s"), s.get("seconds")))
        if s["unreported_boards"]:
            print("fleet: boards that never reported (crashed?): %s" % ", ".join(
                s["unreported_boards"]))
        print("fleet: records stored on boards %d, in the store %d, missing %d, duplicated %d,"
              " out of order %d" % (s["stored_on_boards"], s["in_store"], s["missing"],
                                    s["duplicated"], s["out_of_order"]))
        ok = s["ok"]
    finally:
        stop.set()
        codes = fleet.stop()
    if any(c not in (0, None, -9) for c in codes):
        print("fleet: a collector exited with %s" % codes, file=sys.stderr)
        ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
