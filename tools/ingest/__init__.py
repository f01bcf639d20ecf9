"""tools.ingest: a TimeBase WebAdmin-compatible ingest server (HTTPS, OAuth2, SQLite).

Run it: ``python -m tools.ingest serve --port 8099 --data-dir ingest-data`` (first run creates
``ingest-data/tls/ca.pem`` / ``ca.der``: the CA to put onto the board).  Read data back with
``python -m tools.ingest query --type weather_record --format csv|jsonl|influx``; see it
on the dashboard at ``https://127.0.0.1:8099/`` (``dashboard.py``).  docs/ingest.md has the
config keys, the limits it keeps on an open network, the wire format, the dedup rule
(``dedup.py``) and the differences from a real WebAdmin.

In-process (CPython tests, simulator)::

    from tools.ingest import IngestServer
    srv = IngestServer("/tmp/d", {"access_token_lifetime_s": 2}, port=0).start()
    srv.url, srv.port, srv.ca_pem, srv.ca_der     # https://127.0.0.1:PORT, CA files
    srv.faults.update(error_next=2)               # next 2 /write answered 503, not stored
    srv.faults.update(drop_after_store_next=1)    # store the next batch, cut before the reply
    srv.tokens.revoke_all(); srv.tokens.rotate_key()
    srv.restart()                                 # new key: all tokens invalid; data kept
    list(srv.store.query("weather-data", symbol="esp2462"))
    list(srv.store.query("weather-data", collisions=True))  # records under a taken key
    srv.notes                                     # what is served, as said at start
    srv.stats_snapshot(); srv.stop()              # stop() returns the final figures

As a subprocess (e.g. from a MicroPython test via ``os.system(... + " &")``)::

    python -m tools.ingest serve --port 0 --data-dir D --admin \
        --ready-file D/ready.json --idle-exit 60

prints ``listening on https://127.0.0.1:PORT`` and writes ``D/ready.json`` =
``{"url", "port", "host", "ca_pem", "ca_der", "pid", "data_dir"}`` once it accepts
connections.  With ``--admin``: ``POST /admin/faults`` (JSON knobs, ``{"reset": true}``),
``/admin/revoke``, ``/admin/rotate-key``, ``/admin/restart``, ``/admin/shutdown``;
``GET /stats`` always.  SIGINT/SIGTERM stop it cleanly and print the figures.
"""

from .server import IngestServer
from .store import Store, parse_time

__all__ = ["IngestServer", "Store", "parse_time"]
