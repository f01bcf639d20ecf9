"""SQLite store: one file per stream per UTC day of arrival, WAL mode, dedup across the files.

Layout under ``<data_dir>/streams/<stream>/``:

* ``<stream>-YYYY-MM-DD.sqlite3``: table ``messages`` (``id``, ``symbol``, ``type``, ``seq``,
  ``capture_ns``, ``acquisition_ns``, then one column per schema field: REAL for FLOAT, INTEGER
  for INTEGER/INT32/BOOLEAN, TEXT for VARCHAR).  A batch goes whole into the file of the UTC day
  on which it arrived (its *acquisition* day), so files close and never change after midnight.
  ``capture_ns`` is the device's ``timestamp`` (ns since 1970 UTC; the server's time when the
  message had none, as TimeBase does); ``acquisition_ns`` is when the server stored it.
* ``dedup.sqlite3``: the dedup index (the rule is in ``dedup.py``), table ``seen(k, h)``: for
  each stored record with a key, its key and the digest of its content.  It spans all the day
  files, so a batch retried after midnight is still absorbed.  SQLite WAL cannot commit two
  files atomically, so the day file commits first and the index second; the table
  ``files(name, last_id)`` records how far each day file is indexed and ``Store()`` re-indexes
  any rows past that mark (a crash between the two commits), so the index never misses a
  stored row.  Deleting ``dedup.sqlite3`` is safe: it is rebuilt from the day files (also
  when its format is older than this code).  A row whose ``capture_ns`` equals its
  ``acquisition_ns`` is one whose message had no timestamp (the server set both from one
  clock reading), which is how the rebuild tells them apart.

Column ``collision`` is 1 on a record stored although its key was already taken by a
different record (see ``dedup.py``); ``query(collisions=True)`` lists those.

``Store.query()`` streams rows with bounded memory: one open cursor per day file, merged in
capture-time order (``heapq.merge`` holds one row per file).

The store interface (``Store`` here, ``pgstore.PgStore`` for PostgreSQL; ``open_store``
picks one; docs/ingest.md "Stores"): ``specs``, ``has_stream(name)``, ``write(stream,
rows) -> Written``, ``query(...)``, ``symbols(stream)``, ``time_range(stream, symbols)``,
``count(stream, collisions)``, ``files(stream)`` (day files or day partitions), ``close()``.
"""

import collections
import heapq
import os
import sqlite3
import threading
import time

from . import config as _config
from . import dedup
from .schema import format_timestamp

_SQL_TYPE = {"FLOAT": "REAL", "INTEGER": "INTEGER", "INT32": "INTEGER", "BOOLEAN": "INTEGER",
             "VARCHAR": "TEXT"}
_INDEX_VERSION = 2  # dedup.sqlite3 layout; an older one is rebuilt from the day files
_LOOKUP_CHUNK = 500  # keys per SELECT ... IN (...) (SQLite allows 32766 variables)
# What a row the schema let through could still raise in SQLite (defence in depth: that
# row becomes a per-message error, the rest of the batch is stored).
_ROW_ERRORS = (OverflowError, ValueError, UnicodeError, sqlite3.InterfaceError,
               sqlite3.DataError, sqlite3.IntegrityError)

# Result of Store.write: counts, plus ``rejected`` [(row index, error text)] and
# ``collided`` [row index] (stored, flagged as collisions).
Written = collections.namedtuple("Written", "written duplicates collisions rejected collided")


def utc_day(ns):
    return time.strftime("%Y-%m-%d", time.gmtime(ns // 1000000000))


def _connect(path, readonly=False):
    if readonly:
        conn = sqlite3.connect("file:%s?mode=ro" % path, uri=True, check_same_thread=False)
    else:
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


class _Stream:
    """Writer state of one stream: its dir, columns, current day file and dedup index."""

    def __init__(self, root, name, spec, log=None):
        self.name = name
        self.dir = os.path.join(root, name)
        os.makedirs(self.dir, exist_ok=True)
        self.fields = _config.stream_fields(spec)
        self.types = {c: {f: str(k).upper() for f, k in fs.items()}
                      for c, fs in spec["types"].items()}
        self.day = None
        self.conn = None
        self.idx = _connect(os.path.join(self.dir, "dedup.sqlite3"))
        self.idx.execute("CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v)")
        probe = self.idx.execute("SELECT v FROM meta WHERE k='probe'").fetchone()
        if self.idx.execute("PRAGMA user_version").fetchone()[0] != _INDEX_VERSION or \
                probe is None or probe[0] != dedup.PROBE:
            # an older layout, or digests made another way: rebuild from the day files
            self.idx.execute("DROP TABLE IF EXISTS seen")
            self.idx.execute("DROP TABLE IF EXISTS files")
            self.idx.execute("INSERT OR REPLACE INTO meta VALUES('probe', ?)", (dedup.PROBE,))
            self.idx.execute("PRAGMA user_version=%d" % _INDEX_VERSION)
        self.idx.execute("CREATE TABLE IF NOT EXISTS seen(k TEXT NOT NULL, h BLOB NOT NULL, "
                         "PRIMARY KEY(k, h)) WITHOUT ROWID")
        self.idx.execute("CREATE TABLE IF NOT EXISTS files(name TEXT PRIMARY KEY, "
                         "last_id INTEGER NOT NULL)")
        n = self._reindex()
        if n and log:
            log("%s: %d stored records added to the dedup index" % (name, n))

    def lookup(self, keys):
        """{key: set of digests} of the stored records among ``keys``."""
        out = {}
        for a in range(0, len(keys), _LOOKUP_CHUNK):
            part = keys[a:a + _LOOKUP_CHUNK]
            for k, h in self.idx.execute("SELECT k, h FROM seen WHERE k IN (%s)"
                                         % ",".join("?" * len(part)), part):
                out.setdefault(k, set()).add(h)
        return out

    def files(self):
        pre = self.name + "-"
        return sorted(os.path.join(self.dir, f) for f in os.listdir(self.dir)
                      if f.startswith(pre) and f.endswith(".sqlite3"))

    def _reindex(self):
        """Index rows of day files past their recorded mark (after a crash or a lost index).
        Returns how many rows were indexed."""
        names = list(self.fields)
        col = {n: 6 + j for j, n in enumerate(names)}
        cols = "".join(', "%s"' % n for n in names)
        count = 0
        for path in self.files():
            base = os.path.basename(path)
            row = self.idx.execute("SELECT last_id FROM files WHERE name=?", (base,)).fetchone()
            last = row[0] if row else 0
            src = _connect(path)
            try:
                self._ensure_table(src)
                rows = src.execute("SELECT id, symbol, type, seq, capture_ns, acquisition_ns%s "
                                   "FROM messages WHERE id > ? ORDER BY id" % cols, (last,))
                self.idx.execute("BEGIN")
                for r in rows:
                    rid, sym, tname, seq, cap, acq = r[:6]
                    last = rid
                    count += 1
                    dev_ts = None if cap == acq else cap  # no timestamp: server time in both
                    key = dedup.identity(sym, tname, seq, dev_ts)
                    cls = self.types.get(tname)
                    if key is not None and cls is not None:  # (a class since removed: none)
                        values = dedup.canonical(list(cls.values()), [r[col[f]] for f in cls])
                        h = dedup.digest(sym, tname, seq, dev_ts, values)
                        self.idx.execute("INSERT OR IGNORE INTO seen VALUES(?, ?)", (key, h))
                self.idx.execute("INSERT OR REPLACE INTO files VALUES(?, ?)", (base, last))
                self.idx.execute("COMMIT")
            finally:
                src.close()
        return count

    def _ensure_table(self, conn):
        cols = ", ".join('"%s" %s' % (f, _SQL_TYPE[t]) for f, t in self.fields.items())
        conn.execute("CREATE TABLE IF NOT EXISTS messages(id INTEGER PRIMARY KEY, "
                     "symbol TEXT NOT NULL, type TEXT NOT NULL, seq INTEGER, "
                     "capture_ns INTEGER NOT NULL, acquisition_ns INTEGER NOT NULL, "
                     "collision INTEGER NOT NULL DEFAULT 0%s)" % (", " + cols if cols else ""))
        have = {r[1] for r in conn.execute("PRAGMA table_info(messages)")}
        if "collision" not in have:  # a day file written before collisions were kept
            conn.execute("ALTER TABLE messages ADD COLUMN collision INTEGER NOT NULL DEFAULT 0")
        for f, t in self.fields.items():  # a field added to the schema later
            if f not in have:
                conn.execute('ALTER TABLE messages ADD COLUMN "%s" %s' % (f, _SQL_TYPE[t]))
        conn.execute("CREATE INDEX IF NOT EXISTS messages_capture ON messages(capture_ns)")
        conn.execute("CREATE INDEX IF NOT EXISTS messages_symbol "
                     "ON messages(symbol, capture_ns)")

    def day_conn(self, day):
        if day != self.day:
            if self.conn is not None:
                self.conn.close()
            self.conn = _connect(os.path.join(self.dir, "%s-%s.sqlite3" % (self.name, day)))
            self._ensure_table(self.conn)
            self.day = day
        return self.conn

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None
            self.day = None
        self.idx.close()


class UnknownStream(KeyError):
    pass


class Store:
    """All streams of a data dir.  ``streams`` maps names to config specs ({"types": ...}).

    Thread-safe: writes are serialised by one lock; queries use their own connections.
    ``clock_ns()`` gives the acquisition time (ns since 1970 UTC); ``log(text)``, if given,
    hears about index rebuilds.
    """

    def __init__(self, data_dir, streams=None, clock_ns=time.time_ns, log=None):
        self.root = os.path.join(data_dir, "streams")
        os.makedirs(self.root, exist_ok=True)
        self.specs = dict(streams if streams is not None else _config.DEFAULTS["streams"])
        self.clock_ns = clock_ns
        self.log = log
        self.lock = threading.Lock()
        self._streams = {}
        self.closed = False

    def _stream(self, name):
        s = self._streams.get(name)
        if s is None:
            if name not in self.specs:
                raise UnknownStream(name)
            s = self._streams[name] = _Stream(self.root, name, self.specs[name], self.log)
        return s

    def has_stream(self, name):
        return name in self.specs

    def write(self, stream, rows):
        """Store validated rows (see schema.validate) in one transaction, by the rule of
        ``dedup.py``: exact repeats (in the store or earlier in the batch) are absorbed, a
        different record under a taken key is stored with ``collision`` = 1.

        Returns ``Written(written, duplicates, collisions, rejected, collided)``; a row
        SQLite refuses is left out and listed in ``rejected`` (the rest is stored).
        """
        with self.lock:
            if self.closed:
                raise RuntimeError("store closed")
            s = self._stream(stream)
            keep, repeats = dedup.sort_batch(rows, s.lookup)
            if not keep:
                return Written(0, repeats, 0, [], [])
            now = self.clock_ns()
            conn = s.day_conn(utc_day(now))
            names = list(s.fields)
            sql = "INSERT INTO messages(symbol, type, seq, capture_ns, acquisition_ns, " \
                  "collision%s) VALUES(?, ?, ?, ?, ?, ?%s)" % (
                      "".join(', "%s"' % n for n in names), ", ?" * len(names))
            params = []
            for i, _, _, hit in keep:
                r = rows[i]
                cap = r["capture_ns"]
                f = r["fields"]
                params.append((r["symbol"], r["type"], r["seq"], now if cap is None else cap,
                               now, int(hit)) + tuple(map(f.get, names)))
            rejected = []
            conn.execute("BEGIN")
            try:
                try:
                    conn.executemany(sql, params)
                except _ROW_ERRORS:  # find the row(s) SQLite refuses; store the others
                    conn.execute("ROLLBACK")
                    conn.execute("BEGIN")
                    ok = []
                    for item, p in zip(keep, params):
                        try:
                            conn.execute(sql, p)
                            ok.append(item)
                        except _ROW_ERRORS as e:
                            rejected.append((item[0], "%s: %s" % (type(e).__name__, e)))
                    keep = ok
                last = conn.execute("SELECT max(id) FROM messages").fetchone()[0]
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            s.idx.execute("BEGIN")
            s.idx.executemany("INSERT OR IGNORE INTO seen VALUES(?, ?)",
                              [(k, h) for _, k, h, _ in keep if k is not None])
            if last is not None:
                s.idx.execute("INSERT OR REPLACE INTO files VALUES(?, ?)",
                              (os.path.basename(conn_path(s)), last))
            s.idx.execute("COMMIT")
            collided = [i for i, _, _, hit in keep if hit]
            return Written(len(keep), repeats, len(collided), rejected, collided)

    def close(self):
        """Wait for the current write to finish, then close every file."""
        with self.lock:
            for s in self._streams.values():
                s.close()
            self._streams.clear()
            self.closed = True

    # -- read side -------------------------------------------------------------------------
    def files(self, stream):
        """The stream's day files, oldest first."""
        return self._files(stream)

    def _files(self, stream):
        if stream not in self.specs:
            raise UnknownStream(stream)
        d = os.path.join(self.root, stream)
        if not os.path.isdir(d):
            return []
        pre = stream + "-"
        return sorted(os.path.join(d, f) for f in os.listdir(d)
                      if f.startswith(pre) and f.endswith(".sqlite3"))

    def query(self, stream, symbol=None, since=None, until=None, types=None,
              by="capture", reverse=False, collisions=False):
        """Iterate over stored messages as dicts, in capture- (or acquisition-) time order.

        ``symbol``: a string or a list of strings; ``since`` (inclusive) / ``until``
        (exclusive): ns since 1970 UTC, compared with ``capture_ns`` (``by="capture"``) or
        ``acquisition_ns`` (``by="acquisition"``); ``types``: list of class names;
        ``collisions``: only the records stored under a key already taken (see dedup.py).
        Each dict: ``symbol``, ``type``, ``seq``, ``timestamp`` (ISO, capture time),
        ``capture_ns``, ``acquisition_ns``, ``collision`` (0/1) and the schema fields.
        Memory stays bounded whatever the range.
        """
        col = {"capture": "capture_ns", "acquisition": "acquisition_ns"}[by]
        where, args = [], []
        if symbol is not None:
            syms = [symbol] if isinstance(symbol, str) else list(symbol)
            where.append("symbol IN (%s)" % ",".join("?" * len(syms)))
            args += syms
        if types:
            where.append("type IN (%s)" % ",".join("?" * len(types)))
            args += list(types)
        if since is not None:
            where.append("%s >= ?" % col)
            args.append(int(since))
        if until is not None:
            where.append("%s < ?" % col)
            args.append(int(until))
        if collisions:
            where.append("collision = 1")
        sql = "SELECT * FROM messages%s ORDER BY %s %s, id %s" % (
            " WHERE " + " AND ".join(where) if where else "", col,
            "DESC" if reverse else "ASC", "DESC" if reverse else "ASC")
        files = self._files(stream)
        if reverse:
            files.reverse()
        iters = [self._iter_file(p, sql, args) for p in files]
        if by == "acquisition":  # files are disjoint acquisition days: concatenate
            for it in iters:
                yield from it
            return
        yield from heapq.merge(*iters, key=lambda r: (r["capture_ns"], r["acquisition_ns"]),
                               reverse=reverse)

    def _iter_file(self, path, sql, args):
        conn = _connect(path, readonly=True)
        try:
            if "collision" not in _columns(conn):  # a day file from before collisions
                if "collision = 1" in sql:
                    return
            cur = conn.execute(sql, args)
            names = [d[0] for d in cur.description]
            for values in cur:
                r = dict(zip(names, values))
                del r["id"]
                r.setdefault("collision", 0)
                r["timestamp"] = format_timestamp(r["capture_ns"])
                yield r
        finally:
            conn.close()

    def symbols(self, stream):
        out = set()
        for p in self._files(stream):
            conn = _connect(p, readonly=True)
            try:
                out.update(r[0] for r in conn.execute("SELECT DISTINCT symbol FROM messages"))
            finally:
                conn.close()
        return sorted(out)

    def time_range(self, stream, symbols=None):
        """(first, last) capture time in ns over the stream (or the symbols), None if empty."""
        lo = hi = None
        where, args = "", []
        if symbols:
            where = " WHERE symbol IN (%s)" % ",".join("?" * len(symbols))
            args = list(symbols)
        for p in self._files(stream):
            conn = _connect(p, readonly=True)
            try:
                a, b = conn.execute("SELECT min(capture_ns), max(capture_ns) FROM messages"
                                    + where, args).fetchone()
            finally:
                conn.close()
            if a is not None:
                lo = a if lo is None else min(lo, a)
                hi = b if hi is None else max(hi, b)
        return None if lo is None else (lo, hi)

    def count(self, stream, collisions=False):
        """Stored records of a stream (``collisions``: only those flagged as collisions)."""
        n = 0
        for p in self._files(stream):
            conn = _connect(p, readonly=True)
            try:
                if not collisions:
                    n += conn.execute("SELECT count(*) FROM messages").fetchone()[0]
                elif "collision" in _columns(conn):
                    n += conn.execute("SELECT count(*) FROM messages WHERE collision = 1"
                                      ).fetchone()[0]
            finally:
                conn.close()
        return n


def open_store(where, streams=None, log=None):
    """The store at ``where``: a ``postgresql://`` (or ``postgres://``) address opens a
    ``pgstore.PgStore``, anything else is a data dir for the SQLite ``Store``."""
    if where.startswith(("postgresql://", "postgres://")):
        from .pgstore import PgStore

        return PgStore(where, streams, log=log)
    return Store(where, streams, log=log)


def _columns(conn):
    return {r[1] for r in conn.execute("PRAGMA table_info(messages)")}


def conn_path(s):
    return os.path.join(s.dir, "%s-%s.sqlite3" % (s.name, s.day))


def parse_time(text):
    """A query bound: integer ns, or ISO 8601 (``2026-11-24``, ``...T10:00:00Z``,
    ``...T10:00:00.123Z``, offsets allowed; naive means UTC) -> ns since 1970 UTC."""
    import datetime
    text = str(text).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        dt = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("bad time %r: use ISO 8601 (2026-11-24T10:00:00Z) or ns" % text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    delta = dt - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    return (delta.days * 86400 + delta.seconds) * 1000000000 + delta.microseconds * 1000
