"""Command line: ``python -m tools.ingest serve|query|stats|collect`` (docs/ingest.md,
docs/fleet.md)."""

import argparse
import csv
import json
import os
import signal
import sys
import threading
import time

from . import config as _config
from .store import Store, open_store, parse_time

_BASE_COLS = ("symbol", "type", "seq", "timestamp", "capture_ns", "acquisition_ns",
              "collision")


def _write_ready(path, srv):
    info = {"url": srv.url, "port": srv.port, "host": srv.host, "ca_pem": srv.ca_pem,
            "ca_der": srv.ca_der, "pid": os.getpid(), "data_dir": os.path.abspath(srv.data_dir)}
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(info, f)
    os.replace(tmp, path)


def cmd_serve(a):
    from .server import IngestServer
    overrides = {"admin_api": True} if a.admin else {}
    for item in a.set or ():
        key, _, value = item.partition("=")
        try:
            value = json.loads(value)
        except ValueError:
            pass  # a bare string
        node = overrides
        *path, last = key.split(".")
        for k in path:
            node = node.setdefault(k, {})
        node[last] = value
    try:
        cfg = _config.load(a.config, overrides)
        srv = IngestServer(a.data_dir, cfg, host=a.host, port=a.port, tls=not a.http,
                           verbose=a.verbose, out=sys.stdout)
    except _config.ConfigError as e:
        print("config: %s" % e, file=sys.stderr)
        return 2
    except OSError as e:
        print("cannot serve: %s" % e, file=sys.stderr)
        return 2
    if srv.ca_pem:
        print("ca: %s (DER: %s) - copy this CA onto the board" % (srv.ca_pem, srv.ca_der))
    else:
        print("WARNING: plain HTTP (--http): passwords and tokens cross the network in clear"
              "; for local debugging only")
    for line in srv.notes:
        print(line)
    print("listening on %s" % srv.url, flush=True)
    if a.ready_file:
        _write_ready(a.ready_file, srv)

    def on_signal(signum, frame):  # stop() joins the serve loop, so not from this thread
        threading.Thread(target=srv.stop, daemon=True).start()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    if a.idle_exit:
        def watch():
            while not srv.wait(0.5):
                if time.monotonic() - srv.stats.last_activity > a.idle_exit:
                    print("idle for %s s: stopping" % a.idle_exit, flush=True)
                    srv.stop()
        threading.Thread(target=watch, daemon=True).start()
    srv.serve_forever()
    srv.wait()
    return 0


def _store_for(data_dir, config_path, where=None):
    if where:  # --store: a data dir or a postgresql:// address
        return open_store(where, _config.load(config_path)["streams"])
    if config_path:
        streams = _config.load(config_path)["streams"]
    else:  # no config: whatever streams the data dir holds
        root = os.path.join(data_dir, "streams")
        names = sorted(os.listdir(root)) if os.path.isdir(root) else []
        streams = {n: {"types": {}} for n in names}
    return Store(data_dir, streams)


def cmd_query(a):
    store = _store_for(a.data_dir, a.config, a.store)
    if not store.has_stream(a.stream):
        print("unknown stream %r (have: %s)" % (a.stream, ", ".join(sorted(store.specs))),
              file=sys.stderr)
        return 2
    try:
        since = parse_time(a.since) if a.since else None
        until = parse_time(a.until) if a.until else None
    except ValueError as e:
        print(str(e), file=sys.stderr)
        return 2
    rows = store.query(a.stream, symbol=a.symbol or None, since=since, until=until, by=a.by,
                       collisions=a.collisions)
    out = sys.stdout
    n = 0
    try:
        if a.format == "csv":
            w = None
            for r in rows:
                if w is None:
                    cols = list(_BASE_COLS) + [k for k in r if k not in _BASE_COLS]
                    w = csv.DictWriter(out, cols, extrasaction="ignore", lineterminator="\n")
                    w.writeheader()
                w.writerow(r)
                n += 1
                if a.limit and n >= a.limit:
                    break
        else:
            out.write("[")
            for r in rows:
                out.write(("," if n else "") + "\n" + json.dumps(r))
                n += 1
                if a.limit and n >= a.limit:
                    break
            out.write("\n]\n")
    except BrokenPipeError:  # `| head`: stop quietly (and keep the exit flush quiet too)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        if hasattr(rows, "close"):
            rows.close()
    print("%d rows" % n, file=sys.stderr)
    return 0


def cmd_stats(a):
    store = _store_for(a.data_dir, a.config, a.store)
    figs = {}
    for s in sorted(store.specs):
        r = store.time_range(s)
        figs[s] = {"rows": store.count(s), "collisions": store.count(s, collisions=True),
                   "files": len(store.files(s)),
                   "symbols": store.symbols(s),
                   "first": None if r is None else r[0], "last": None if r is None else r[1]}
    print(json.dumps(figs, indent=1))
    return 0


def cmd_collect(a):
    from . import collect
    return collect.main(a)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tools.ingest",
                                description="TimeBase WebAdmin-compatible ingest server")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the HTTPS server")
    s.add_argument("--config", help="JSON config file (see docs/ingest.md)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8099, help="0 picks a free port")
    s.add_argument("--data-dir", default="ingest-data")
    s.add_argument("--http", action="store_true", help="plain HTTP, local debugging only")
    s.add_argument("--admin", action="store_true", help="enable /admin/* (fault injection)")
    s.add_argument("--ready-file", help="write {url, port, ca_pem, ca_der, pid} JSON here")
    s.add_argument("--idle-exit", type=float, default=0,
                   help="stop after this many seconds without a request (0: never)")
    s.add_argument("--set", action="append", metavar="KEY=JSON",
                   help="override a config key, e.g. access_token_lifetime_s=2 or "
                        "faults.error_rate=0.1 (repeatable)")
    s.add_argument("-v", "--verbose", action="count", default=0)
    s.set_defaults(func=cmd_serve)
    q = sub.add_parser("query", help="print stored rows (bounded memory)")
    q.add_argument("--data-dir", default="ingest-data")
    q.add_argument("--config")
    q.add_argument("--stream", required=True)
    q.add_argument("--symbol", action="append", help="repeatable")
    q.add_argument("--since", help="inclusive: ISO 8601 (2026-11-24T10:00:00Z) or ns")
    q.add_argument("--until", help="exclusive: ISO 8601 or ns")
    q.add_argument("--by", choices=("capture", "acquisition"), default="capture",
                   help="which time --since/--until and the order refer to")
    q.add_argument("--format", choices=("csv", "json"), default="csv")
    q.add_argument("--limit", type=int, default=0)
    q.add_argument("--collisions", action="store_true",
                   help="only records stored under a key already taken by a different record")
    q.add_argument("--store", help="a postgresql:// address (or a data dir) instead of "
                                   "--data-dir")
    q.set_defaults(func=cmd_query)
    t = sub.add_parser("stats", help="rows, collisions, files, symbols per stream")
    t.add_argument("--data-dir", default="ingest-data")
    t.add_argument("--config")
    t.add_argument("--store", help="a postgresql:// address (or a data dir)")
    t.set_defaults(func=cmd_stats)
    c = sub.add_parser("collect", help="drain the boards' MQTT messages from NATS JetStream "
                                       "into the store (docs/fleet.md)")
    c.add_argument("--nats", required=True, help="comma-separated nats:// URLs of the cluster")
    c.add_argument("--user", default="collector")
    c.add_argument("--credentials", help="JSON file mapping user to password (else the "
                                         "NATS_PASSWORD environment variable)")
    c.add_argument("--ca", help="CA file when the NATS client port uses TLS")
    c.add_argument("--store", default="ingest-data",
                   help="a data dir (SQLite, the default) or a postgresql:// address")
    c.add_argument("--config", help="the ingest JSON config (its streams and schemas)")
    c.add_argument("--topic", action="append", metavar="TOPIC=STREAM",
                   help="an MQTT topic filter and the store stream it goes to (repeatable; "
                        "default weather/#=weather-data)")
    c.add_argument("--batch", type=int, default=256, help="messages fetched at a time")
    c.add_argument("--ack-wait", type=float, default=30,
                   help="s before a message a collector took but did not ack goes to another")
    c.add_argument("--replicas", type=int, default=3,
                   help="replicas of the message stream if the collector creates it")
    c.add_argument("--report-s", type=float, default=60, help="s between figures lines")
    c.add_argument("--rejects", help="append rejected records here (JSON lines)")
    c.add_argument("--ack-delay", type=float, default=0, help=argparse.SUPPRESS)  # tests
    c.set_defaults(func=cmd_collect)
    a = p.parse_args(argv)
    return a.func(a)


if __name__ == "__main__":
    sys.exit(main())
