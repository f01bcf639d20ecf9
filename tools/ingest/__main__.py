"""Command line: ``python -m tools.ingest serve|query|stats|collect`` (docs/ingest.md,
docs/fleet.md).

Works from any directory: ``python path/to/tools/ingest ...`` runs it too, and the default
data dir is the repository's ``ingest-data`` (where ``make ingest`` keeps it), not the
current directory's.  ``query`` and ``stats`` only read: they never create a file or folder.
"""

import argparse
import json
import os
import signal
import sys
import threading
import time

if __package__ in (None, ""):  # run as a path (python tools/ingest): import as the package
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))
    __package__ = "tools.ingest"  # noqa: A001

from . import config as _config  # noqa: E402
from . import export  # noqa: E402
from .schema import format_timestamp  # noqa: E402
from .store import Store, open_store, parse_time  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA_DIR = os.path.join(ROOT, "ingest-data")


def _write_ready(path, srv):
    info = {"url": srv.url, "port": srv.port, "host": srv.host, "ca_pem": srv.ca_pem,
            "ca_der": srv.ca_der, "pid": os.getpid(), "data_dir": os.path.abspath(srv.data_dir)}
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(info, f)
    os.replace(tmp, path)


def board_lines(srv, stream="weather-data"):
    """What to put onto a board for this server: the CA file and config.json lines."""
    names = [n for n in srv.cert_names if n not in ("localhost", "127.0.0.1", "::1")]
    ips = [n for n in names if n.replace(".", "").isdigit()]
    host = (ips or names or ["127.0.0.1"])[0]
    users = srv.cfg["users"]
    writer = next((u for u, spec in sorted(users.items())
                   if "TB_ALLOW_WRITE" in (spec.get("authorities") or [])), "admin")
    creds = os.path.join(srv.data_dir, "credentials.json")
    if users == _config.DEFAULTS["users"]:
        where = "the built-in default: admin"
    elif os.path.exists(creds) and writer in _config_users(creds):
        where = "in %s" % creds
    else:
        where = "from your config"
    out = ["board: copy %s onto the board (make deploy ... CA=%s); its config.json needs:"
           % (srv.ca_der, srv.ca_der),
           '  "tb_host": "https://%s:%d", "tb_ca_file": "ca.der", "tb_stream": "%s",'
           % ("[%s]" % host if ":" in host else host, srv.port, stream),
           '  "tb_user": "%s", "tb_pass": "<the password of %s, %s>"' % (writer, writer, where)]
    if not names:
        out.append("board: this server listens on loopback only: a board cannot reach it "
                   "(serve --host 0.0.0.0, and --name for the name the board uses)")
    out.append("certificate names: %s" % ", ".join(srv.cert_names))
    return out


def _config_users(path):
    try:
        with open(path) as f:
            return json.load(f).get("users", {})
    except (OSError, ValueError, AttributeError):
        return {}


def cmd_serve(a):
    from .server import IngestServer
    overrides = {"admin_api": True} if a.admin else {}
    try:
        sets = [_config.parse_set(item) for item in a.set or ()]
        cfg = _config.load(a.config, overrides, sets)
        srv = IngestServer(a.data_dir, cfg, host=a.host, port=a.port, tls=not a.http,
                           verbose=a.verbose, out=sys.stdout, names=a.name or ())
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
    if srv.ca_pem:
        for line in board_lines(srv):
            print(line)
    print("dashboard: %s/ (sign in as a user with TB_ALLOW_READ)" % srv.url)
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


class _Refused(Exception):
    pass


def _store_for(data_dir, config_path, where=None):
    """A read-only store over the data dir (the streams of the config, or whatever streams
    the data dir holds); refuses a dir with no data instead of creating one.  ``where``
    (``--store``): a postgresql:// address (or a data dir) instead."""
    if where:
        return open_store(where, _config.load(config_path)["streams"])
    root = os.path.join(data_dir, "streams")
    if not os.path.isdir(root):
        raise _Refused("no data in %s (no %s folder): give --data-dir, e.g. the one "
                       "`serve` or `make sim` (.sim/ingest) wrote" % (
                           os.path.abspath(data_dir), "streams"))
    if config_path:
        streams = _config.load(config_path)["streams"]
    else:  # no config: the default classes, plus whatever other streams the dir holds
        streams = dict(_config.DEFAULTS["streams"])
        for n in sorted(os.listdir(root)):
            streams.setdefault(n, {"types": {}})
    return Store(data_dir, streams, readonly=True)


def _iso(ns):
    return None if ns is None else format_timestamp(ns)


def cmd_query(a):
    store = _store_for(a.data_dir, a.config, a.store)
    if not store.has_stream(a.stream):
        raise _Refused("unknown stream %r (have: %s)" % (a.stream, ", ".join(
            store.streams_present()) or "none"))
    spec = store.specs[a.stream]
    if a.type and spec["types"]:
        bad = [t for t in a.type if t not in spec["types"]]
        if bad:
            raise _Refused("stream %s has no class %s (have: %s)" % (
                a.stream, ", ".join(bad), ", ".join(sorted(spec["types"]))))
    try:
        since = parse_time(a.since) if a.since else None
        until = parse_time(a.until) if a.until else None
    except ValueError as e:
        raise _Refused(str(e))
    fields = export.columns(spec, a.type)
    if not spec["types"]:  # a stream the config does not know: its stored columns
        fields = {}
    rows = store.query(a.stream, symbol=a.symbol or None, since=since, until=until, by=a.by,
                       types=a.type, collisions=a.collisions)
    if not spec["types"]:
        rows = _with_columns(rows, fields)
    n = 0
    try:
        n = export.write(rows, sys.stdout, a.format, fields, a.limit)
    except BrokenPipeError:  # `| head`: stop quietly (and keep the exit flush quiet too)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        rows.close()
    print("%d rows" % n, file=sys.stderr)
    return 0


def _with_columns(rows, fields):
    """Rows of a stream without a config: its columns are learnt from the first row."""
    for r in rows:
        if not fields:
            for k, v in r.items():
                if k not in ("symbol", "type", "seq", "timestamp", "capture_ns",
                             "acquisition_ns", "collision"):
                    fields[k] = "FLOAT" if isinstance(v, float) else (
                        "VARCHAR" if isinstance(v, str) else "INTEGER")
        yield r


def cmd_stats(a):
    store = _store_for(a.data_dir, a.config, a.store)
    figs = {}
    for s in store.streams_present():
        r = store.time_range(s)
        if not hasattr(store, "summary"):  # PostgreSQL: no per-board summary (yet)
            figs[s] = {"rows": store.count(s), "collisions": store.count(s, collisions=True),
                       "files": len(store.files(s)), "symbols": store.symbols(s),
                       "first": _iso(r and r[0]), "last": _iso(r and r[1])}
            continue
        summ = store.summary(s)
        types = {}
        for sym in summ.values():
            for t, d in sym.items():
                types[t] = types.get(t, 0) + d["count"]
        figs[s] = {"rows": store.count(s), "collisions": store.count(s, collisions=True),
                   "files": len(store.files(s)), "symbols": sorted(summ),
                   "types": types, "first": _iso(r and r[0]), "last": _iso(r and r[1]),
                   "boards": {sym: {t: {"count": d["count"], "first": _iso(d["first_ns"]),
                                        "last": _iso(d["last_ns"]),
                                        "received": _iso(d["last_acquisition_ns"])}
                                    for t, d in sorted(ts.items())}
                              for sym, ts in sorted(summ.items())}}
    print(json.dumps(figs, indent=1))
    return 0


def cmd_collect(a):
    from . import collect
    return collect.main(a)


_SERVE_EPILOG = """defaults: --data-dir %s (the CA, the certificates, the SQLite files); users:
admin/admin with TB_ALLOW_READ and TB_ALLOW_WRITE, served on loopback only (on any other
address a password is generated at first start into DATA_DIR/credentials.json); client
web:secret; stream weather-data with classes weather_record and health_record.  Config keys
and limits: docs/ingest.md.  The dashboard is at https://HOST:PORT/ (sign in as a user with
TB_ALLOW_READ)."""


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tools.ingest",
                                description="TimeBase WebAdmin-compatible ingest server")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the HTTPS server and its dashboard",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       epilog=_SERVE_EPILOG % DATA_DIR)
    s.add_argument("--config", help="JSON config file (see docs/ingest.md; none: the "
                   "defaults below)")
    s.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; 0.0.0.0 for every interface (a LAN)")
    s.add_argument("--port", type=int, default=8099, help="0 picks a free port")
    s.add_argument("--name", action="append", metavar="NAME",
                   help="a DNS name or IP address boards use to reach this server, put into "
                        "its certificate besides localhost and 127.0.0.1 (repeatable; bound "
                        "to 0.0.0.0 the machine's own names and addresses are added)")
    s.add_argument("--data-dir", default=DATA_DIR, help="CA, certificates, SQLite files")
    s.add_argument("--http", action="store_true", help="plain HTTP, local debugging only")
    s.add_argument("--admin", action="store_true", help="enable /admin/* (fault injection)")
    s.add_argument("--ready-file", help="write {url, port, ca_pem, ca_der, pid} JSON here")
    s.add_argument("--idle-exit", type=float, default=0,
                   help="stop after this many seconds without a request (0: never)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="set one config key, nested keys with dots; VALUE is JSON or a "
                        "string, e.g. access_token_lifetime_s=2, users.admin.password=s3cret"
                        ", faults.error_rate=0.1 (repeatable)")
    s.add_argument("-v", "--verbose", action="count", default=0)
    s.set_defaults(func=cmd_serve)
    q = sub.add_parser("query", help="print stored rows: CSV, JSON lines or InfluxDB line "
                       "protocol (bounded memory; reads only)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    q.add_argument("--data-dir", default=DATA_DIR, help="the server's data dir")
    q.add_argument("--config", help="the server's config (its streams and classes)")
    q.add_argument("--stream", default="weather-data")
    q.add_argument("--symbol", action="append", help="repeatable")
    q.add_argument("--type", action="append", metavar="CLASS",
                   help="record class, e.g. weather_record or health_record (repeatable)")
    q.add_argument("--since", help="inclusive: ISO 8601 (2026-11-24T10:00:00Z) or ns")
    q.add_argument("--until", help="exclusive: ISO 8601 or ns")
    q.add_argument("--by", choices=("capture", "acquisition"), default="capture",
                   help="which time --since/--until and the order refer to")
    q.add_argument("--format", choices=export.FORMATS, default="csv",
                   help="csv, jsonl (JSON lines), influx (InfluxDB line protocol, capture "
                        "time in ns), json (one array)")
    q.add_argument("--limit", type=int, default=0, help="at most this many rows (0: all)")
    q.add_argument("--collisions", action="store_true",
                   help="only records stored under a key already taken by a different record")
    q.add_argument("--store", help="a postgresql:// address (or a data dir) instead of "
                                   "--data-dir")
    q.set_defaults(func=cmd_query)
    t = sub.add_parser("stats", help="rows, classes, collisions, files, boards per stream "
                       "(ISO UTC times; reads only)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    t.add_argument("--data-dir", default=DATA_DIR, help="the server's data dir")
    t.add_argument("--config", help="the server's config (its streams and classes)")
    t.add_argument("--store", help="a postgresql:// address (or a data dir) instead of "
                                   "--data-dir")
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
    try:
        return a.func(a)
    except (_Refused, _config.ConfigError) as e:
        print("%s: %s" % (a.cmd, e), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
