"""SQLite store: one file per stream per UTC day of arrival, WAL mode, dedup across the files.

Layout under ``<data_dir>/streams/<stream>/``:

* ``<stream>-YYYY-MM-DD.sqlite3``: table ``messages`` (``id``, ``symbol``, ``type``, ``seq``,
  ``capture_ns``, ``acquisition_ns``, then one column per schema field: REAL for FLOAT, INTEGER
  for INTEGER/INT32/BOOLEAN, TEXT for VARCHAR).  A batch goes whole into the file of the UTC day
  on which it arrived (its *acquisition* day), so files close and never change after midnight.
  ``capture_ns`` is the device's ``timestamp`` (ns since 1970 UTC; the server's time when the
  message had none, as TimeBase does); ``acquisition_ns`` is when the server stored it.
* ``dedup.sqlite3``: the dedup index, table ``seen(k)`` with one key per stored message:
  ``(symbol, seq)`` when the message has ``seq``, else ``(symbol, $type, capture_ns)``.  It
  spans all the day files, so a batch retried after midnight is still stored once.  SQLite WAL
  cannot commit two files atomically, so the day file commits first and the index second; the
  table ``files(name, last_id)`` records how far each day file is indexed and ``Store()``
  re-indexes any rows past that mark (a crash between the two commits), so the index never
  misses a stored row and nothing is ever lost to a false duplicate.  Deleting ``dedup.sqlite3``
  is safe: it is rebuilt from the day files.

``Store.query()`` streams rows with bounded memory: one open cursor per day file, merged in
capture-time order (``heapq.merge`` holds one row per file).
"""

import heapq
import json
import os
import sqlite3
import threading
import time

from . import config as _config
from .schema import format_timestamp

_SQL_TYPE = {"FLOAT": "REAL", "INTEGER": "INTEGER", "INT32": "INTEGER", "BOOLEAN": "INTEGER",
             "VARCHAR": "TEXT"}
_BASE = ("id", "symbol", "type", "seq", "capture_ns", "acquisition_ns")


def utc_day(ns):
    return time.strftime("%Y-%m-%d", time.gmtime(ns // 1000000000))


def dedup_key(symbol, tname, seq, capture_ns):
    if seq is not None:
        return json.dumps(["s", symbol, seq])
    return json.dumps(["t", symbol, tname, capture_ns])


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

    def __init__(self, root, name, spec):
        self.name = name
        self.dir = os.path.join(root, name)
        os.makedirs(self.dir, exist_ok=True)
        self.fields = _config.stream_fields(spec)
        self.day = None
        self.conn = None
        self.idx = _connect(os.path.join(self.dir, "dedup.sqlite3"))
        self.idx.execute("CREATE TABLE IF NOT EXISTS seen(k TEXT PRIMARY KEY) WITHOUT ROWID")
        self.idx.execute("CREATE TABLE IF NOT EXISTS files(name TEXT PRIMARY KEY, "
                         "last_id INTEGER NOT NULL)")
        self._reindex()

    def files(self):
        pre = self.name + "-"
        return sorted(os.path.join(self.dir, f) for f in os.listdir(self.dir)
                      if f.startswith(pre) and f.endswith(".sqlite3"))

    def _reindex(self):
        """Index rows of day files past their recorded mark (after a crash or a lost index)."""
        for path in self.files():
            base = os.path.basename(path)
            row = self.idx.execute("SELECT last_id FROM files WHERE name=?", (base,)).fetchone()
            last = row[0] if row else 0
            src = _connect(path)
            try:
                self._ensure_table(src)
                rows = src.execute("SELECT id, symbol, type, seq, capture_ns FROM messages "
                                   "WHERE id > ? ORDER BY id", (last,))
                self.idx.execute("BEGIN")
                for rid, sym, tname, seq, cap in rows:
                    self.idx.execute("INSERT OR IGNORE INTO seen VALUES(?)",
                                     (dedup_key(sym, tname, seq, cap),))
                    last = rid
                self.idx.execute("INSERT OR REPLACE INTO files VALUES(?, ?)", (base, last))
                self.idx.execute("COMMIT")
            finally:
                src.close()

    def _ensure_table(self, conn):
        cols = ", ".join('"%s" %s' % (f, _SQL_TYPE[t]) for f, t in self.fields.items())
        conn.execute("CREATE TABLE IF NOT EXISTS messages(id INTEGER PRIMARY KEY, "
                     "symbol TEXT NOT NULL, type TEXT NOT NULL, seq INTEGER, "
                     "capture_ns INTEGER NOT NULL, acquisition_ns INTEGER NOT NULL%s)"
                     % (", " + cols if cols else ""))
        have = {r[1] for r in conn.execute("PRAGMA table_info(messages)")}
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
    ``clock_ns()`` gives the acquisition time (ns since 1970 UTC).
    """

    def __init__(self, data_dir, streams=None, clock_ns=time.time_ns):
        self.root = os.path.join(data_dir, "streams")
        os.makedirs(self.root, exist_ok=True)
        self.specs = dict(streams if streams is not None else _config.DEFAULTS["streams"])
        self.clock_ns = clock_ns
        self.lock = threading.Lock()
        self._streams = {}
        self.closed = False

    def _stream(self, name):
        s = self._streams.get(name)
        if s is None:
            if name not in self.specs:
                raise UnknownStream(name)
            s = self._streams[name] = _Stream(self.root, name, self.specs[name])
        return s

    def has_stream(self, name):
        return name in self.specs

    def write(self, stream, rows):
        """Store validated rows (see schema.validate) in one transaction.

        Returns ``(written, duplicates)``.  Duplicates (already stored, or repeated inside the
        batch) are skipped silently: a retried batch is stored once.
        """
        with self.lock:
            if self.closed:
                raise RuntimeError("store closed")
            s = self._stream(stream)
            keys, fresh, seen = [], [], set()
            for r in rows:
                k = dedup_key(r["symbol"], r["type"], r["seq"], r["capture_ns"])
                if k in seen or s.idx.execute("SELECT 1 FROM seen WHERE k=?", (k,)).fetchone():
                    continue
                seen.add(k)
                keys.append(k)
                fresh.append(r)
            if not fresh:
                return 0, len(rows)
            now = self.clock_ns()
            conn = s.day_conn(utc_day(now))
            names = list(s.fields)
            sql = "INSERT INTO messages(symbol, type, seq, capture_ns, acquisition_ns%s) " \
                  "VALUES(?, ?, ?, ?, ?%s)" % ("".join(', "%s"' % n for n in names),
                                               ", ?" * len(names))
            conn.execute("BEGIN")
            try:
                for r in fresh:
                    cap = r["capture_ns"] if r["capture_ns"] is not None else now
                    f = r["fields"]
                    conn.execute(sql, (r["symbol"], r["type"], r["seq"], cap, now)
                                 + tuple(f.get(n) for n in names))
                last = conn.execute("SELECT max(id) FROM messages").fetchone()[0]
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            s.idx.execute("BEGIN")
            s.idx.executemany("INSERT OR IGNORE INTO seen VALUES(?)", ((k,) for k in keys))
            s.idx.execute("INSERT OR REPLACE INTO files VALUES(?, ?)",
                          (os.path.basename(conn_path(s)), last))
            s.idx.execute("COMMIT")
            return len(fresh), len(rows) - len(fresh)

    def close(self):
        """Wait for the current write to finish, then close every file."""
        with self.lock:
            for s in self._streams.values():
                s.close()
            self._streams.clear()
            self.closed = True

    # -- read side -------------------------------------------------------------------------
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
              by="capture", reverse=False):
        """Iterate over stored messages as dicts, in capture- (or acquisition-) time order.

        ``symbol``: a string or a list of strings; ``since`` (inclusive) / ``until``
        (exclusive): ns since 1970 UTC, compared with ``capture_ns`` (``by="capture"``) or
        ``acquisition_ns`` (``by="acquisition"``); ``types``: list of class names.  Each dict:
        ``symbol``, ``type``, ``seq``, ``timestamp`` (ISO, capture time), ``capture_ns``,
        ``acquisition_ns`` and the schema fields.  Memory stays bounded whatever the range.
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
            cur = conn.execute(sql, args)
            names = [d[0] for d in cur.description]
            for values in cur:
                r = dict(zip(names, values))
                del r["id"]
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

    def count(self, stream):
        n = 0
        for p in self._files(stream):
            conn = _connect(p, readonly=True)
            try:
                n += conn.execute("SELECT count(*) FROM messages").fetchone()[0]
            finally:
                conn.close()
        return n


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
