"""The fleet on one machine: PostgreSQL (or SQLite), a NATS cluster, collectors, boards.

``Fleet(state, ...)``: ``start()`` brings up the store, the cluster (each node behind a
``proxy.Proxy`` so the boards' links can be cut) and the collectors (``python -m
tools.ingest collect`` processes sharing one durable consumer); ``start_boards()`` starts
the light CPython boards (``boards.py``, several per process) and the MicroPython boards
(host_tests/mqtt_device.py on the unix port: the firmware's module as a board runs it);
faults: ``kill_node``/``start_node``, ``kill_collector``/``start_collector``,
``cut_boards``, ``restart_store``; ``wait_boards()``, ``wait_stored()``; ``summary()``
accounts for every record each board stored; ``stop()`` stops everything it started.
"""

import json
import os
import signal
import subprocess
import sys
import time

from . import proc
from .cluster import NatsCluster
from .pg import PgServer
from .proxy import Proxy

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STREAM = "weather-data"


def micropython_binary():
    cand = os.path.join(os.path.dirname(sys.executable), "micropython")
    return cand if os.path.exists(cand) else "micropython"


class Fleet:
    def __init__(self, state, nodes=3, collectors=2, store="postgresql", boards=20,
                 mp_boards=1, records=600, rate=5.0, board_procs=2, batch=256, ack_wait_s=5,
                 report_s=10, deadline_s=600, log=print):
        self.state = os.path.abspath(state)
        os.makedirs(self.state, exist_ok=True)
        self.nodes = nodes
        self.n_collectors = collectors
        self.store_kind = store
        self.n_boards = boards
        self.n_mp = mp_boards
        self.records = records
        self.rate = rate
        self.board_procs = max(1, min(board_procs, boards or 1))
        self.batch = batch
        self.ack_wait_s = ack_wait_s
        self.report_s = report_s
        self.deadline_s = deadline_s
        self.log = log
        self.pg = self.cluster = None
        self.proxies = []
        self.collectors = []  # [(Popen, log path)]
        self.board_ps = []  # [(Popen, out path, kind)]
        self.store_url = None
        self.t_boards = None
        self.expected = []  # the symbols of every board started

    # -- the parts ------------------------------------------------------------------------
    def start(self):
        if self.store_kind == "postgresql":
            self.pg = PgServer().start()
            self.store_url = self.pg.dsn
            self.log("fleet: PostgreSQL on 127.0.0.1:%d" % self.pg.port)
        else:
            self.store_url = os.path.join(self.state, "ingest-data")
        self.cluster = NatsCluster(os.path.join(self.state, "cluster"), self.nodes).start()
        self.proxies = [Proxy(p) for p in self.cluster.mqtt_ports]
        self.log("fleet: NATS cluster of %d nodes (JetStream, MQTT over TLS on %s)" % (
            self.nodes, ", ".join(str(p) for p in self.cluster.mqtt_ports)))
        for _ in range(self.n_collectors):
            self.start_collector()
        self.wait_collectors()
        return self

    def wait_collectors(self, timeout=90):
        """Wait until every collector drains: its durable consumer exists.  Boards must
        not publish before the first one does (the message stream keeps a message only
        for the consumers there when it arrives; docs/fleet.md "First start")."""
        t_end = time.monotonic() + timeout
        for p, path in self.collectors:
            while True:
                with open(path) as f:
                    if "collect: draining" in f.read():
                        break
                if p.poll() is not None or time.monotonic() > t_end:
                    with open(path) as f:
                        raise RuntimeError("collector not draining: %s" % f.read()[-2000:])
                time.sleep(0.1)

    def start_collector(self, ack_delay_s=0):
        i = len(self.collectors)
        path = os.path.join(self.state, "collector-%d.log" % i)
        p = proc.spawn([sys.executable, "-m", "tools.ingest", "collect",
                        "--nats", ",".join(self.cluster.nats_urls),
                        "--credentials", os.path.join(self.cluster.root, "credentials.json"),
                        "--store", self.store_url, "--batch", str(self.batch),
                        "--ack-wait", str(self.ack_wait_s), "--report-s", str(self.report_s),
                        "--replicas", str(min(self.nodes, 3)),
                        "--rejects", os.path.join(self.state, "rejects.jsonl"),
                        "--ack-delay", str(ack_delay_s)],
                       path, cwd=ROOT)
        self.collectors.append((p, path))
        self.log("fleet: collector %d started (pid %d)" % (i, p.pid))
        return i

    def kill_collector(self, i, sig=signal.SIGKILL):
        p, _ = self.collectors[i]
        if p.poll() is None:
            p.send_signal(sig)
            p.wait(30)
        self.log("fleet: collector %d %s" % (i, "killed" if sig == signal.SIGKILL
                                             else "stopped"))
        return p.returncode

    def kill_node(self, i):
        self.cluster.kill(i)
        self.log("fleet: NATS node n%d killed" % i)

    def start_node(self, i):
        self.cluster.start_node(i)
        self.cluster.wait_ready([i], timeout=60)
        self.log("fleet: NATS node n%d back" % i)

    def cut_boards(self):
        n = sum(p.cut() for p in self.proxies)
        self.log("fleet: boards' connections cut (%d sockets)" % n)

    def restart_store(self, crash=False):
        if self.pg is not None:
            self.pg.restart(crash=crash)
            self.log("fleet: PostgreSQL %s" % ("crashed and restarted" if crash
                                               else "restarted"))

    # -- boards ---------------------------------------------------------------------------
    def _urls(self):
        return ",".join("mqtts://localhost:%d" % p.port for p in self.proxies)

    def start_boards(self):
        self.t_boards = time.monotonic()
        self.expected = ["sim%04d" % i for i in range(self.n_boards)] + [
            "mpb%02d" % j for j in range(self.n_mp)]
        creds = os.path.join(self.cluster.root, "credentials.json")
        per = -(-self.n_boards // self.board_procs) if self.n_boards else 0
        first = 0
        while first < self.n_boards:
            k = min(per, self.n_boards - first)
            out = os.path.join(self.state, "boards-%d.out" % first)
            p = proc.spawn([sys.executable, "-m", "tools.fleet.boards", "--state",
                            os.path.join(self.state, "boards"), "--boards", str(k), "--first",
                            str(first), "--records", str(self.records), "--rate", str(self.rate),
                            "--urls", self._urls(), "--ca", self.cluster.ca_der,
                            "--credentials", creds, "--deadline", str(self.deadline_s)],
                           out, cwd=ROOT)
            self.board_ps.append((p, out, "cpython"))
            first += k
        with open(creds) as f:
            password = json.load(f)["board"]
        urls = self._urls().split(",")
        for j in range(self.n_mp):
            d = os.path.join(self.state, "mpboard%02d" % j)
            os.makedirs(d, exist_ok=True)
            cfg = {"url": urls[(j + 1) % len(urls)], "ca": self.cluster.ca_der, "dir": d,
                   "symbol": "mpb%02d" % j, "user": "board", "password": password,
                   "count": 0, "store_during": self.records,
                   "pace_ms": int(1000 / self.rate) if self.rate > 0 else 0,
                   "deadline_s": self.deadline_s, "backoff_max_ms": 2000}
            path = os.path.join(d, "device.json")
            with open(path, "w") as f:
                json.dump(cfg, f)
            env = dict(os.environ, MICROPYPATH=":".join(
                [os.path.join(ROOT, "lib"), os.path.join(ROOT, "host_tests", "fakes"),
                 os.path.join(ROOT, "host_tests"), ".frozen"]))
            out = os.path.join(d, "device.out")
            p = proc.spawn([micropython_binary(), "-X", "heapsize=4m", "-c",
                            "import sys; sys.argv[1:] = [%r]; import mqtt_device" % path],
                           out, env=env, cwd=ROOT)
            self.board_ps.append((p, out, "micropython"))
        self.log("fleet: %d boards started (%d on MicroPython), %d records each at %g/s" % (
            self.n_boards + self.n_mp, self.n_mp, self.records, self.rate))

    def wait_boards(self, timeout=None):
        """Wait for the boards to finish; their figures ({symbol: dict})."""
        t_end = time.monotonic() + (timeout or self.deadline_s + 60)
        for p, _, _ in self.board_ps:
            try:
                p.wait(max(1, t_end - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
        self.t_acked = time.monotonic()
        figs = {}
        for _, out, kind in self.board_ps:
            with open(out) as f:
                for line in f:
                    if line.startswith("@@BOARD "):
                        d = json.loads(line[8:])
                    elif line.startswith("@@DEVICE "):
                        d = json.loads(line[9:])
                        d["stored"] = d["last_seqn"]
                        d["symbol"] = None
                    else:
                        continue
                    d["kind"] = kind
                    figs[d["symbol"] or self._mp_symbol(out)] = d
        return figs

    def _mp_symbol(self, out):
        return "mpb" + os.path.basename(os.path.dirname(out))[-2:]

    def _store(self):
        from tools.ingest.store import open_store

        return open_store(self.store_url)

    def stored_count(self):
        s = self._store()
        try:
            return s.count(STREAM) if s.has_stream(STREAM) else 0
        except Exception:  # noqa: BLE001 - PostgreSQL restarting, no table yet
            return -1
        finally:
            s.close()

    def wait_stored(self, want, timeout=120):
        t_end = time.monotonic() + timeout
        n = self.stored_count()
        while n < want and time.monotonic() < t_end:
            time.sleep(0.1)
            n = self.stored_count()
        self.t_stored = time.monotonic()
        return n

    def summary(self, boards):
        """Per board: the seqs in the store (capture-time order) against the records it
        stored; totals.  ``ok`` when every record is there exactly once, in order."""
        s = self._store()
        tot = {"boards": len(boards), "micropython_boards": sum(
            1 for b in boards.values() if b["kind"] == "micropython"),
            "stored_on_boards": 0, "acknowledged": 0, "in_store": 0, "missing": 0,
            "duplicated": 0, "out_of_order": 0, "unfinished_boards": 0,
            "unreported_boards": sorted(set(self.expected) - set(boards))}
        try:
            for sym, b in sorted(boards.items()):
                seqs = [r["seq"] for r in s.query(STREAM, symbol=sym, types=["weather_record"])]
                want = set(range(1, b["stored"] + 1))
                tot["stored_on_boards"] += b["stored"]
                tot["acknowledged"] += b["sent"]
                tot["in_store"] += len(seqs)
                tot["missing"] += len(want - set(seqs))
                tot["duplicated"] += len(seqs) - len(set(seqs))
                tot["out_of_order"] += sum(1 for x, y in zip(seqs, seqs[1:]) if y <= x)
                if b["sent"] < b["stored"]:
                    tot["unfinished_boards"] += 1
            tot["collisions"] = s.count(STREAM, collisions=True)
        finally:
            s.close()
        tot["ok"] = (tot["missing"] == tot["duplicated"] == tot["out_of_order"] == 0
                     and tot["in_store"] == tot["stored_on_boards"] > 0
                     and not tot["unreported_boards"])
        if self.t_boards is not None and getattr(self, "t_stored", None):
            tot["seconds"] = round(self.t_stored - self.t_boards, 1)
            tot["records_per_s"] = round(tot["in_store"] / max(tot["seconds"], 1e-9), 1)
        return tot

    def collector_figures(self):
        """The last figures line of each collector's log."""
        out = []
        for _, path in self.collectors:
            last = None
            with open(path) as f:
                for line in f:
                    if line.startswith("collect: figures ") or "stopped; figures" in line:
                        last = json.loads(line.split("figures ", 1)[1])
            out.append(last)
        return out

    def stop(self):
        """Stop boards, collectors (SIGTERM: batch finished, acked), cluster, store; the
        collectors' exit codes."""
        codes = []
        for p, _, _ in self.board_ps:
            proc.stop(p)
        for p, _ in self.collectors:
            codes.append(proc.stop(p, timeout=30) if p.poll() is None else None)
        for x in self.proxies:
            x.stop()
        if self.cluster is not None:
            self.cluster.stop()
        if self.pg is not None:
            self.pg.cleanup()
        return codes
