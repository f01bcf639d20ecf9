"""PostgreSQL store: the fleet's store, with the same interface and dedup rule as ``store.Store``.

``PgStore("postgresql://user@host:port/db", streams)`` (``store.open_store`` picks it for a
``postgresql://`` address).  Per stream (a config stream, e.g. ``weather-data``):

* table ``"<stream>"``: ``id``, ``symbol``, ``type``, ``seq``, ``capture_ns``,
  ``acquisition_ns``, ``collision``, then one column per schema field (FLOAT double
  precision, INTEGER/INT32/BOOLEAN bigint, VARCHAR text), **partitioned by day of arrival**
  (range of ``acquisition_ns``, one partition ``"<stream>_YYYY_MM_DD"`` per UTC day, made
  on first use): Attic's daily rotation as a database does it.  A day's partition never
  changes after midnight: detach it, dump it, drop it for retention.  Indexed on
  ``capture_ns`` and ``(symbol, capture_ns)``.
* table ``"<stream>_seen"``: ``k`` (``dedup.identity``), ``h`` (``dedup.digest``),
  **primary key (k, h)**: the unique key that keeps parallel writers from storing a record
  twice.  It spans every partition, and it commits in the same transaction as the rows
  (unlike SQLite's two files, nothing to re-index after a crash).

Writes follow ``dedup.py`` through ``dedup.sort_batch``: exact repeats absorbed, a
different record under a taken key stored with ``collision`` = 1.  Several collectors
write at once: each batch first takes a transaction-scoped advisory lock per symbol in it
(in one order, so they never deadlock), so the lookup sees every record of those symbols
committed before, and a collision is flagged as such whichever collector stored the
first record; the primary key of ``_seen`` makes a double store impossible even without
the locks (the insert of an exact repeat then does nothing and counts as a duplicate).

Reads (``query``, ``symbols``, ``time_range``, ``count``) use their own short
transactions; ``query`` streams through a server-side cursor (bounded memory).
"""

import hashlib
import threading
import time

from . import config as _config
from . import dedup
from .schema import format_timestamp
from .store import UnknownStream, Written, query_where

_PG_TYPE = {"FLOAT": "double precision", "INTEGER": "bigint", "INT32": "bigint",
            "BOOLEAN": "bigint", "VARCHAR": "text"}
_DAY_NS = 86400 * 1000000000
_RETRIES = 3  # a deadlock or serialization failure: the batch is tried again
_FETCH = 1000  # rows per round trip of a query's server-side cursor


def _q(name):
    """A quoted SQL identifier."""
    return '"%s"' % name.replace('"', '""')


def _lock_id(text):
    """A stable signed 64-bit advisory lock id of ``text``."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big",
                          signed=True)


def _day(ns):
    return time.strftime("%Y_%m_%d", time.gmtime(ns // 1000000000))


class PgStore:
    """All streams of one PostgreSQL database; thread-safe (one connection, one lock for
    writes; reads open their own connection)."""

    kind = "postgresql"

    def __init__(self, dsn, streams=None, clock_ns=time.time_ns, log=None, connect_timeout=5):
        import psycopg  # imported here: the SQLite path needs no PostgreSQL client

        self._pg = psycopg
        self.dsn = dsn
        self.specs = dict(streams if streams is not None else _config.DEFAULTS["streams"])
        self.clock_ns = clock_ns
        self.log = log
        self.lock = threading.Lock()
        self.connect_timeout = connect_timeout
        self._conn = None
        self._ready = set()  # streams whose tables exist (this connection)
        self._parts = set()  # (stream, day) partitions known to exist
        self.closed = False

    # -- connection and schema ------------------------------------------------------------
    def _connect(self):
        return self._pg.connect(self.dsn, autocommit=True, connect_timeout=self.connect_timeout)

    def _connection(self):
        c = self._conn
        if c is None or c.closed:
            c = self._conn = self._connect()
            self._ready.clear()
            self._parts.clear()
        return c

    def _drop(self):
        c, self._conn = self._conn, None
        if c is not None:
            try:
                c.close()
            except Exception:  # noqa: BLE001 - a dead connection may fail to close
                pass

    def has_stream(self, name):
        return name in self.specs

    def _fields(self, stream):
        return _config.stream_fields(self.specs[stream])

    def _setup(self, conn, stream):
        if stream in self._ready:
            return
        t = _q(stream)
        cols = "".join(", %s %s" % (_q(f), _PG_TYPE[k]) for f, k in self._fields(stream).items())
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_id("schema:" + stream),))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS %s (id bigserial, symbol text NOT NULL, "
                "type text NOT NULL, seq bigint, capture_ns bigint NOT NULL, "
                "acquisition_ns bigint NOT NULL, collision smallint NOT NULL DEFAULT 0%s) "
                "PARTITION BY RANGE (acquisition_ns)" % (t, cols))
            for f, k in self._fields(stream).items():  # a field added to the schema later
                conn.execute("ALTER TABLE %s ADD COLUMN IF NOT EXISTS %s %s" % (t, _q(f),
                                                                              _PG_TYPE[k]))
            conn.execute("CREATE INDEX IF NOT EXISTS %s ON %s (capture_ns)" % (
                _q(stream + "_capture"), t))
            conn.execute("CREATE INDEX IF NOT EXISTS %s ON %s (symbol, capture_ns)" % (
                _q(stream + "_symbol"), t))
            conn.execute("CREATE TABLE IF NOT EXISTS %s (k text NOT NULL, h bytea NOT NULL, "
                         "PRIMARY KEY (k, h))" % _q(stream + "_seen"))
        self._ready.add(stream)

    def _partition(self, conn, stream, now_ns):
        """Make the partition of ``now_ns``'s UTC day (its own short transaction)."""
        day = _day(now_ns)
        if (stream, day) in self._parts:
            return
        lo = now_ns - now_ns % _DAY_NS
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_id("schema:" + stream),))
            conn.execute("CREATE TABLE IF NOT EXISTS %s PARTITION OF %s FOR VALUES FROM (%d) "
                         "TO (%d)" % (_q("%s_%s" % (stream, day)), _q(stream), lo,
                                      lo + _DAY_NS))
        self._parts.add((stream, day))

    # -- writing ----------------------------------------------------------------------------
    def write(self, stream, rows):
        """Store validated rows (``schema.validate``) in one transaction by the rule of
        ``dedup.py``; returns ``store.Written``.  A connection error propagates (the
        caller retries: nothing of the batch is stored then)."""
        if stream not in self.specs:
            raise UnknownStream(stream)
        with self.lock:
            if self.closed:
                raise RuntimeError("store closed")
            for attempt in range(_RETRIES):
                try:
                    return self._write(stream, rows)
                except (self._pg.errors.DeadlockDetected,
                        self._pg.errors.SerializationFailure):
                    if attempt == _RETRIES - 1:
                        raise
                except self._pg.OperationalError:
                    self._drop()  # the next call connects again
                    raise
            raise AssertionError("unreachable")

    def _write(self, stream, rows):
        conn = self._connection()
        self._setup(conn, stream)
        now = self.clock_ns()
        self._partition(conn, stream, now)
        names = list(self._fields(stream))
        seen = _q(stream + "_seen")
        sql = "INSERT INTO %s (symbol, type, seq, capture_ns, acquisition_ns, collision%s) " \
              "VALUES (%%s, %%s, %%s, %%s, %%s, %%s%s)" % (
                  _q(stream), "".join(", " + _q(n) for n in names), ", %s" * len(names))

        def lookup(keys):
            out = {}
            for k, h in conn.execute("SELECT k, h FROM %s WHERE k = ANY(%%s)" % seen, (keys,)):
                out.setdefault(k, set()).add(bytes(h))
            return out

        with conn.transaction():
            locks = sorted({_lock_id("symbol:" + r["symbol"]) for r in rows})
            if locks:
                conn.execute("SELECT count(pg_advisory_xact_lock(x)) FROM "
                             "(SELECT x FROM unnest(%s::bigint[]) WITH ORDINALITY AS t(x, i) "
                             "ORDER BY i) s", (locks,))
            keep, repeats = dedup.sort_batch(rows, lookup)
            keyed = [(k, h) for _, k, h, _ in keep if k is not None]
            if keyed:  # the unique key decides: a (k, h) already there is a repeat
                got = {(k, bytes(h)) for k, h in conn.execute(
                    "INSERT INTO %s SELECT * FROM unnest(%%s::text[], %%s::bytea[]) "
                    "ON CONFLICT DO NOTHING RETURNING k, h" % seen,
                    ([k for k, _ in keyed], [h for _, h in keyed]))}
                fresh = [it for it in keep if it[1] is None or (it[1], it[2]) in got]
                repeats += len(keep) - len(fresh)
                keep = fresh
            params = []
            for i, _, _, hit in keep:
                r = rows[i]
                cap = r["capture_ns"]
                f = r["fields"]
                params.append((r["symbol"], r["type"], r["seq"], now if cap is None else cap,
                               now, int(hit)) + tuple(map(f.get, names)))
            stored, rejected = keep, []
            try:
                with conn.transaction():  # a savepoint: a refused row is found below
                    with conn.cursor() as cur:
                        cur.executemany(sql, params)
            except self._pg.DataError:
                stored = []
                for item, p in zip(keep, params):
                    try:
                        with conn.transaction():
                            conn.execute(sql, p)
                        stored.append(item)
                    except self._pg.DataError as e:
                        rejected.append((item[0], "%s: %s" % (type(e).__name__,
                                                              str(e).strip()[:200])))
                        if item[1] is not None:  # not stored: its key stays free
                            conn.execute("DELETE FROM %s WHERE k = %%s AND h = %%s" % seen,
                                         (item[1], item[2]))
        collided = [i for i, _, _, hit in stored if hit]
        return Written(len(stored), repeats, len(collided), rejected, collided)

    def close(self):
        with self.lock:
            self._drop()
            self.closed = True

    # -- reading ----------------------------------------------------------------------------
    def _read(self, stream):
        if stream not in self.specs:
            raise UnknownStream(stream)
        conn = self._connect()
        exists = conn.execute("SELECT to_regclass(%s)", (_q(stream),)).fetchone()[0]
        return conn, exists is not None

    def files(self, stream):
        """The stream's day partitions (names), oldest first."""
        conn, ok = self._read(stream)
        try:
            if not ok:
                return []
            return sorted(r[0] for r in conn.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = to_regclass(%s)", (_q(stream),)))
        finally:
            conn.close()

    def streams_present(self):
        """The configured streams that have a table."""
        return [s for s in sorted(self.specs) if self._scalar(s, "SELECT 1 FROM %s LIMIT 1")]

    def query(self, stream, symbol=None, since=None, until=None, types=None,
              by="capture", reverse=False, collisions=False):
        """As ``store.Store.query``: dicts in capture- (or acquisition-) time order."""
        col = {"capture": "capture_ns", "acquisition": "acquisition_ns"}[by]
        where, args = query_where(col, symbol, types, since, until, collisions, arrays=True)
        order = "DESC" if reverse else "ASC"
        second = "acquisition_ns" if by == "capture" else "capture_ns"
        sql = "SELECT * FROM %s%s ORDER BY %s %s, %s %s, id %s" % (
            _q(stream), where, col, order, second, order, order)
        conn, ok = self._read(stream)
        try:
            if not ok:
                return
            with conn.transaction():
                with conn.cursor(name="query") as cur:
                    cur.itersize = _FETCH
                    cur.execute(sql, args)
                    names = None
                    for values in cur:
                        if names is None:
                            names = [d[0] for d in cur.description]
                        r = dict(zip(names, values))
                        del r["id"]
                        r["timestamp"] = format_timestamp(r["capture_ns"])
                        yield r
        finally:
            conn.close()

    def _scalar(self, stream, sql, args=()):
        conn, ok = self._read(stream)
        try:
            return conn.execute(sql % _q(stream), args).fetchone() if ok else None
        finally:
            conn.close()

    def symbols(self, stream):
        conn, ok = self._read(stream)
        try:
            if not ok:
                return []
            return [r[0] for r in conn.execute("SELECT DISTINCT symbol FROM %s ORDER BY 1"
                                               % _q(stream))]
        finally:
            conn.close()

    def time_range(self, stream, symbols=None):
        if symbols:
            r = self._scalar(stream, "SELECT min(capture_ns), max(capture_ns) FROM %s "
                                     "WHERE symbol = ANY(%%s)", (list(symbols),))
        else:
            r = self._scalar(stream, "SELECT min(capture_ns), max(capture_ns) FROM %s")
        return None if r is None or r[0] is None else (r[0], r[1])

    def count(self, stream, collisions=False):
        r = self._scalar(stream, "SELECT count(*) FROM %s" + (" WHERE collision = 1"
                                                              if collisions else ""))
        return 0 if r is None else r[0]
