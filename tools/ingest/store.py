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

* Tables ``rollup`` and ``rollup_15m`` in each day file: per ``(symbol, type, minute (a
  quarter of an hour) of capture)`` the count, first and last capture time, last
  acquisition time, and per FLOAT field (the measurements; a series of an integer field is
  read from the rows) ``<f>__n``, ``<f>__lo``, ``<f>__hi``, ``<f>__sum`` over the rows of
  that file.  Kept in the same transaction as the rows (so they always agree with them),
  built at open for a day file written before they existed.  The dashboard's series of a
  long range and the per-board summary read them instead of the rows (``downsample.py``).

Column ``collision`` is 1 on a record stored although its key was already taken by a
different record (see ``dedup.py``); ``query(collisions=True)`` lists those.

``Store.query()`` streams rows with bounded memory: one open cursor per day file, merged in
capture-time order (``heapq.merge`` holds one row per file).

The store interface (``Store`` here, ``pgstore.PgStore`` for PostgreSQL; ``open_store``
picks one; docs/ingest.md "Stores"): ``specs``, ``has_stream(name)``, ``write(stream,
rows) -> Written``, ``query(...)``, ``symbols(stream)``, ``time_range(stream, symbols)``,
``count(stream, collisions)``, ``files(stream)`` (day files or day partitions), ``close()``.

The read API the dashboard also uses (``Store`` only so far): ``summary()`` (per symbol and
type: count, first and last capture, last arrival), ``series()`` (min/max/mean per bucket,
``downsample.py``), ``latest()`` (the newest record of a type per symbol),
``streams_present()``.  Reading never creates a file or a folder, and a
``Store(readonly=True)`` (the command line's ``query`` and ``stats``) cannot write.
"""

import collections
import heapq
import os
import sqlite3
import threading
import time
import urllib.parse

from . import config as _config
from . import dedup, downsample
from .schema import format_timestamp

_SQL_TYPE = {"FLOAT": "REAL", "INTEGER": "INTEGER", "INT32": "INTEGER", "BOOLEAN": "INTEGER",
             "VARCHAR": "TEXT"}
_INDEX_VERSION = 2  # dedup.sqlite3 layout; an older one is rebuilt from the day files
_ROLLED = ("FLOAT",)  # the measurements; integer counters are read from the rows
_LEVELS = (("rollup", downsample.ROLLUP_STEPS[0]), ("rollup_15m", downsample.ROLLUP_STEPS[1]))
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


def _floordiv(expr, k):
    """SQL floor division of an integer expression by the integer ``k`` (SQLite's ``/``
    truncates toward zero)."""
    return "(CASE WHEN %s >= 0 THEN %s / %d ELSE -((-(%s) - 1) / %d) - 1 END)" % (
        expr, expr, k, expr, k)


def _connect(path, readonly=False):
    """``readonly``: True opens ``mode=ro`` (SQLite may add the -wal/-shm files of a WAL
    database); "strict" also never creates a file: a file without a -wal (no writer has
    it open, e.g. a closed day) is opened ``immutable``."""
    if readonly:
        flags = "mode=ro"
        if readonly == "strict" and not os.path.exists(path + "-wal"):
            flags += "&immutable=1"
        conn = sqlite3.connect("file:%s?%s" % (urllib.parse.quote(path), flags), uri=True,
                               check_same_thread=False)
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
        have = _columns(conn)
        if "collision" not in have:  # a day file written before collisions were kept
            conn.execute("ALTER TABLE messages ADD COLUMN collision INTEGER NOT NULL DEFAULT 0")
        for f, t in self.fields.items():  # a field added to the schema later
            if f not in have:
                conn.execute('ALTER TABLE messages ADD COLUMN "%s" %s' % (f, _SQL_TYPE[t]))
        conn.execute("CREATE INDEX IF NOT EXISTS messages_capture ON messages(capture_ns)")
        conn.execute("CREATE INDEX IF NOT EXISTS messages_symbol "
                     "ON messages(symbol, capture_ns)")
        self._ensure_rollup(conn)

    def _ensure_rollup(self, conn):
        """The rollup tables, with columns for every FLOAT field; built from the rows when
        the file has none yet (a day file written by an older version)."""
        nums = [f for f, t in self.fields.items() if t in _ROLLED]
        self.rollup_fields = nums
        for table, _ in _LEVELS:
            new = not _has_table(conn, table)
            if new:
                conn.execute("BEGIN")
                conn.execute("CREATE TABLE %s(symbol TEXT NOT NULL, type TEXT NOT NULL, "
                             "m INTEGER NOT NULL, n INTEGER NOT NULL, t0 INTEGER NOT NULL, "
                             "t1 INTEGER NOT NULL, acq INTEGER NOT NULL, "
                             "PRIMARY KEY(symbol, type, m)) WITHOUT ROWID" % table)
            have = {r[1] for r in conn.execute("PRAGMA table_info(%s)" % table)}
            for f in nums:  # a field added later: its older rows were null (n = 0)
                if f + "__n" not in have:
                    conn.execute('ALTER TABLE %s ADD COLUMN "%s__n" INTEGER NOT NULL '
                                 'DEFAULT 0' % (table, f))
                    for part in ("lo", "hi", "sum"):
                        conn.execute('ALTER TABLE %s ADD COLUMN "%s__%s" REAL' % (
                            table, f, part))
            if new:
                self.roll_up(conn, 0, only=table)
                conn.execute("COMMIT")

    def roll_up(self, conn, after_id, only=None):
        """Add the rows with ``id > after_id`` to the rollups (inside the caller's
        transaction)."""
        nums = self.rollup_fields
        agg = "".join(', count("%s"), min("%s"), max("%s"), total("%s")' % (f, f, f, f)
                      for f in nums)
        cols = "".join(', "%s__n", "%s__lo", "%s__hi", "%s__sum"' % (f, f, f, f) for f in nums)
        upd = "".join(
            ', "{0}__n" = "{0}__n" + excluded."{0}__n"'
            ', "{0}__lo" = coalesce(min("{0}__lo", excluded."{0}__lo"), "{0}__lo", '
            'excluded."{0}__lo")'
            ', "{0}__hi" = coalesce(max("{0}__hi", excluded."{0}__hi"), "{0}__hi", '
            'excluded."{0}__hi")'
            ', "{0}__sum" = coalesce("{0}__sum", 0) + excluded."{0}__sum"'.format(f)
            for f in nums)
        for table, step in _LEVELS:
            if only and table != only:
                continue
            conn.execute(
                "INSERT INTO %s(symbol, type, m, n, t0, t1, acq%s) "
                "SELECT symbol, type, %s, count(*), min(capture_ns), max(capture_ns), "
                # NOT INDEXED: the rowid range of the new rows, not a scan of an index
                "max(acquisition_ns)%s FROM messages NOT INDEXED WHERE id > ? "
                "GROUP BY 1, 2, 3 "
                "ON CONFLICT(symbol, type, m) DO UPDATE SET n = n + excluded.n, "
                "t0 = min(t0, excluded.t0), t1 = max(t1, excluded.t1), "
                "acq = max(acq, excluded.acq)%s" % (
                    table, cols, _floordiv("capture_ns", step), agg, upd), (after_id,))

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


def query_where(col, symbol, types, since, until, collisions, arrays=False):
    """(" WHERE ..." or "", args) of a query's filters (``Store.query``'s arguments; ``col``:
    the time column). ``arrays``: PostgreSQL's form (``%s`` placeholders, a list compared
    with ``= ANY``), else SQLite's (``?``, ``IN (?, ...)``)."""
    ph = "%s" if arrays else "?"
    where, args = [], []
    for name, values in (("symbol", [symbol] if isinstance(symbol, str) else symbol),
                         ("type", types or None)):
        if values is None:
            continue
        values = list(values)
        if arrays:
            where.append("%s = ANY(%%s)" % name)
            args.append(values)
        else:
            where.append("%s IN (%s)" % (name, ",".join("?" * len(values))))
            args += values
    if since is not None:
        where.append("%s >= %s" % (col, ph))
        args.append(int(since))
    if until is not None:
        where.append("%s < %s" % (col, ph))
        args.append(int(until))
    if collisions:
        where.append("collision = 1")
    return (" WHERE " + " AND ".join(where) if where else ""), args


class Store:
    """All streams of a data dir.  ``streams`` maps names to config specs ({"types": ...}).

    Thread-safe: writes are serialised by one lock; queries use their own connections.
    ``clock_ns()`` gives the acquisition time (ns since 1970 UTC); ``log(text)``, if given,
    hears about index rebuilds.  Nothing is created before the first write (or
    ``prepare()``), and reads never create a file, not even SQLite's -wal/-shm (see
    ``_connect``); ``readonly=True`` refuses writes.
    """

    def __init__(self, data_dir, streams=None, clock_ns=time.time_ns, log=None,
                 readonly=False):
        self.root = os.path.join(data_dir, "streams")
        self.specs = dict(streams if streams is not None else _config.DEFAULTS["streams"])
        self.clock_ns = clock_ns
        self.log = log
        self.readonly = readonly
        self.lock = threading.Lock()
        self._streams = {}
        self._summaries = {}  # path -> ((size, mtime), summary) of files no writer has open
        self.closed = False

    def prepare(self):
        """Open every stream for writing now: catch the dedup index up and build the
        rollups of day files that have none (done at the server's start, not at the first
        write)."""
        with self.lock:
            for name in self.specs:
                self._stream(name)

    def _stream(self, name):
        s = self._streams.get(name)
        if s is None:
            if name not in self.specs:
                raise UnknownStream(name)
            if self.readonly:
                raise RuntimeError("store opened read-only")
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
                before = conn.execute("SELECT coalesce(max(id), 0) FROM messages").fetchone()[0]
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
                s.roll_up(conn, before)
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
        if stream not in self.specs:
            raise UnknownStream(stream)
        d = os.path.join(self.root, stream)
        if not os.path.isdir(d):
            return []
        pre = stream + "-"
        return sorted(os.path.join(d, f) for f in os.listdir(d)
                      if f.startswith(pre) and f.endswith(".sqlite3"))

    def streams_present(self):
        """The configured streams that have data files."""
        return [s for s in sorted(self.specs) if self.files(s)]

    def _read(self, path):
        """A read connection, or None for a file without its table yet (a day file the
        writer is creating this instant)."""
        conn = _connect(path, readonly="strict")
        if "symbol" not in _columns(conn):
            conn.close()
            return None
        return conn

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
        where, args = query_where(col, symbol, types, since, until, collisions)
        sql = "SELECT * FROM messages%s ORDER BY %s %s, id %s" % (
            where, col, "DESC" if reverse else "ASC", "DESC" if reverse else "ASC")
        files = self.files(stream)
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
        conn = self._read(path)
        if conn is None:
            return
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

    def _file_summary(self, path):
        """{(symbol, type): [count, first capture, last capture, last acquisition]} of one
        day file; cached until the file (or its -wal) changes."""
        return self._file_info(path)[0]

    def _file_info(self, path):
        """(summary, columns of messages, columns of rollup or None) of one day file,
        cached until the file (or its -wal) changes."""
        stamp = []
        for f in (path, path + "-wal"):
            try:
                st = os.stat(f)
                stamp += [st.st_size, st.st_mtime_ns]
            except OSError:
                stamp.append(None)
        hit = self._summaries.get(path)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        conn = self._read(path)
        if conn is None:
            return {}, set(), None
        try:
            cols = _columns(conn)
            rcols = None
            if all(_has_table(conn, t) for t, _ in _LEVELS):
                rcols = {r[1] for r in conn.execute("PRAGMA table_info(rollup)")}
                sql = ("SELECT symbol, type, sum(n), min(t0), max(t1), max(acq) FROM rollup_15m"
                       " GROUP BY symbol, type")
            else:
                sql = ("SELECT symbol, type, count(*), min(capture_ns), max(capture_ns), "
                       "max(acquisition_ns) FROM messages GROUP BY symbol, type")
            out = ({(r[0], r[1]): list(r[2:]) for r in conn.execute(sql)}, cols, rcols)
        finally:
            conn.close()
        self._summaries[path] = (stamp, out)
        return out

    def summary(self, stream):
        """{symbol: {type: {"count", "first_ns", "last_ns", "last_acquisition_ns"}}}: what
        each board sent, from the rollups (fast whatever the volume)."""
        out = {}
        for p in self.files(stream):
            for (sym, tname), (n, first, last, acq) in self._file_summary(p).items():
                d = out.setdefault(sym, {}).get(tname)
                if d is None:
                    out[sym][tname] = {"count": n, "first_ns": first, "last_ns": last,
                                       "last_acquisition_ns": acq}
                else:
                    d["count"] += n
                    d["first_ns"] = min(d["first_ns"], first)
                    d["last_ns"] = max(d["last_ns"], last)
                    d["last_acquisition_ns"] = max(d["last_acquisition_ns"], acq)
        return out

    def latest(self, stream, type_name, symbols=None):
        """{symbol: row} the record of class ``type_name`` with the latest capture time,
        per symbol (rows as ``query`` gives them)."""
        best = {}
        for p in self.files(stream):
            for (sym, tname), (_, _, last, _) in self._file_summary(p).items():
                if tname == type_name and (symbols is None or sym in symbols) and \
                        (sym not in best or last > best[sym][0]):
                    best[sym] = (last, p)
        out = {}
        for sym, (last, p) in best.items():
            sql = ("SELECT * FROM messages WHERE symbol = ? AND type = ? AND capture_ns = ? "
                   "ORDER BY id DESC LIMIT 1")
            for r in self._iter_file(p, sql, [sym, type_name, last]):
                out[sym] = r
        return out

    def series(self, stream, symbol, type_name, fields, since, until, buckets):
        """Min, max and mean of ``fields`` per bucket over ``[since, until)`` (ns), about
        ``buckets`` buckets (the rule and the result: ``downsample.py``).  Reads the
        rollups when a bucket is a whole number of their steps (a minute, a quarter of an
        hour), else the rows; memory is
        bounded by the number of buckets whatever the range."""
        fields = list(fields)
        w = downsample.bucket_width(since, until, buckets)
        k0, k1 = downsample.bucket_span(since, until, w)
        rows = []
        for p in self.files(stream):
            summ, have, rcols = self._file_info(p)
            d = summ.get((symbol, type_name))
            if d is None or d[2] < k0 * w or d[1] >= k1 * w:
                continue  # nothing of this board and class in the range in this file
            conn = self._read(p)
            if conn is None:
                continue
            try:
                rows += self._file_buckets(conn, have, rcols, symbol, type_name, fields, w,
                                           k0, k1)
            finally:
                conn.close()
        return downsample.assemble(downsample.merge(rows, len(fields)), fields, w)

    def _file_buckets(self, conn, have, rcols, symbol, type_name, fields, w, k0, k1):
        div = _floordiv if k0 < 0 else (lambda e, k: "(%s / %d)" % (e, k))
        level = [(t, step) for t, step in _LEVELS if w % step == 0]
        if level and rcols is not None and all(f + "__n" in rcols for f in fields):
            table, step = level[-1]  # the coarsest that fits
            k = w // step
            parts = ['sum("{0}__n"), min("{0}__lo"), max("{0}__hi"), sum("{0}__sum")'.format(f)
                     for f in fields]
            sql = ("SELECT %s AS b, sum(n), min(t0), max(t1)%s FROM %s WHERE symbol = ? "
                   "AND type = ? AND m >= ? AND m < ? GROUP BY b" % (
                       div("m", k), "".join(", " + x for x in parts), table))
            args = (symbol, type_name, k0 * k, k1 * k)
        else:
            parts = []
            for f in fields:
                if f in have:
                    parts.append('count("{0}"), min("{0}"), max("{0}"), total("{0}")'.format(f))
                else:
                    parts.append("0, NULL, NULL, 0")
            sql = ("SELECT %s AS b, count(*), min(capture_ns), max(capture_ns)%s FROM messages "
                   "WHERE symbol = ? AND type = ? AND capture_ns >= ? AND capture_ns < ? "
                   "GROUP BY b" % (div("capture_ns", w), "".join(", " + x for x in parts)))
            args = (symbol, type_name, k0 * w, k1 * w)
        out = []
        for r in conn.execute(sql, args):
            out.append((r[0], r[1], r[2], r[3],
                        [tuple(r[4 + 4 * j:8 + 4 * j]) for j in range(len(fields))]))
        return out

    def symbols(self, stream):
        return sorted(self.summary(stream))

    def time_range(self, stream, symbols=None):
        """(first, last) capture time in ns over the stream (or the symbols), None if empty."""
        lo = hi = None
        for sym, types in self.summary(stream).items():
            if symbols and sym not in symbols:
                continue
            for d in types.values():
                lo = d["first_ns"] if lo is None else min(lo, d["first_ns"])
                hi = d["last_ns"] if hi is None else max(hi, d["last_ns"])
        return None if lo is None else (lo, hi)

    def count(self, stream, collisions=False, types=None):
        """Stored records of a stream (``collisions``: only those flagged as collisions;
        ``types``: only those classes)."""
        if not collisions:
            return sum(d["count"] for t in self.summary(stream).values()
                       for name, d in t.items() if not types or name in types)
        n = 0
        for p in self.files(stream):
            conn = self._read(p)
            if conn is None:
                continue
            try:
                if "collision" in _columns(conn):
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


def _has_table(conn, name):
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name=?", (name,)).fetchone() \
        is not None


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
