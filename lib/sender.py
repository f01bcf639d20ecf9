"""Upload committed TSLog records to TimeBase WebAdmin (or tools/ingest) in batches.

One batch = up to ``batch_max`` records and ``batch_bytes`` bytes of JSON (by an
upper bound of one message's size, ``max_message_bytes``), read
in sequence order from a ``TSReader`` and POSTed as a JSON array to
``{base}/api/v0/{stream}/write[?writeMode=APPEND]`` with a Bearer token.  The
JSON is generated message by message while it is written to the socket, so
the heap used does not grow with the batch beyond ``batch_max`` decoded records
(each decoded once; its JSON measured once for Content-Length, made again when sent).

The reader's cursor is committed only when every record of the batch is
accounted for (written, or moved to the dead-letter log with its error), and at most
once every ``cursor_commit_ms`` (the firmware: 60 s): each commit is a flash write, and
on the raw partition the cursor blocks' wear is what bounds the flash's life
(docs/tslog.md). ``flush()`` commits what is accounted for at once (before a reset). A
power cut may so send again up to ``cursor_commit_ms`` of uploads; a receiver that
deduplicates by (symbol, seq) absorbs them (the bundled server does; WebAdmin does not).

Outcomes of one POST:

* 200 ``[]``: all written.
* 200 with a JSON array of errors: each error is matched to its record by the
  ``seq`` quoted in the error text; those go to the dead-letter log, the rest
  count as written.  Errors that name no record of the batch: the batch is split
  and re-sent in halves (a server without ``seq`` dedup may then store the good
  ones twice; TimeBase's error text quotes the message, so this is rare).
* 200 with any other body (HTML from a captive portal or a proxy, a JSON object
  or an array of numbers, a reply cut at the client's ``max_body``): nothing is
  known to be written, so it is a failure ("protocol") with backoff, like a 5xx;
  no record is dead-lettered.  A cut reply also halves the next POST (a long
  error list is the likely cause).
* 401: the token is renewed and the POST retried once.
* 400 / 403 / 413: the batch is halved until the refused record is alone.  It
  is set aside and the following records are sent: if the server accepts them,
  the set-aside records were the cause and go to the dead-letter log; if
  3 lone records in a row are refused, the server refuses
  everything (read-only, unknown stream, no write permission): all stay queued
  and the sender backs off.
* 5xx, timeouts, resets, DNS/TLS errors: capped exponential backoff with
  jitter; the records stay queued.
* ``oauth.AuthError`` (credentials refused for good): state "auth_failed",
  retried every ``backoff_max_ms``; never a reboot.

The answers to refused records (the error list, any other 200, 400 / 403 / 413) and the
dead-letter log's writing are in ``lib/sender_refusals.py``, imported at the first such
reply or dead letter and dropped again at the next usual reply (200 ``[]``): a board
whose server takes every batch never loads that code, and one that met a refusal does
not keep it.

Call ``step()`` (at most one HTTP exchange) from the main loop or a thread, again
while it returns records or ``state`` is "sending".  Figures: ``stats()``.
"""

import binascii
import json
import random
import sys
import time

import https
import oauth
import record
from micropython import const

_JSON = "application/json"
# After days of running, a board's heap has KBs free but in holes smaller than a login's
# ~1 KB reply and its tokens. A block held since the last login is given up for the next
# one (and when a step runs out of memory, so the retry finds room); it is taken again
# once the login succeeded, not after every batch: on a small heap the batches need it.
_RESERVE = const(2048)


class DeadLetterLog:
    """Append-only text file of refused records: ``seq<TAB>message<TAB>error``.

    When it grows past ``max_bytes`` it is renamed to ``path + ".1"`` (one old
    generation kept), so it never fills the flash. (Written by
    ``sender_refusals.append_dead``: a rare path, its code loaded at the first.)
    """

    def __init__(self, path, max_bytes=65536):
        self.path = path
        self.max_bytes = max_bytes

    def write(self, seq, message, error):
        import sender_refusals

        sender_refusals.append_dead(self, seq, message, error)


def write_path(stream, write_mode):
    """``/api/v0/{stream}/write``, with ``?writeMode=`` when ``write_mode`` is set."""
    path = "/api/v0/%s/write" % stream
    return path + "?writeMode=" + write_mode if write_mode else path


def post(client, auth, path, body, length=None):
    """POST a JSON array (``body`` as ``https.Client.request`` takes it) to TimeBase's
    ``write_path`` with ``auth``'s Bearer token; returns the ``https.Response``. A 401
    (the token expired, or the server restarted with a new key) forgets the token, and
    the POST is sent once more with a new one. The sender's and ``health``'s POST."""
    for _ in (0, 1):
        resp = client.request("POST", path, (("Authorization", auth.authorization()),
                                             ("Content-Type", _JSON), ("Accept", _JSON)),
                              body, length)
        if resp.status != 401:
            break
        auth.invalidate()
    return resp  # type: ignore


class Sender:
    """Batch uploader.

    ``reader``: a TSReader (``next_record()`` -> packed bytes, None when empty; ``seqn``;
    ``commit()``).  ``client``: an ``https.Client``; ``auth``: an ``oauth.OAuth`` on the
    same client.

    ``boot``: the current boot counter (see ``record``); untimed records of an
    older boot with no known epoch are dead-lettered, those of this boot wait
    for ``set_boot_epoch``.  ``dead_letter``: object with ``write(seq, msg, err)``.
    """

    def __init__(self, reader, client, auth, stream, symbol, write_mode="APPEND",
                 batch_max=50, batch_bytes=16384, dead_letter=None, type_name="weather_record",
                 backoff_min_ms=1000, backoff_max_ms=300000, boot=None,
                 cursor_commit_ms=0, log=print):
        self._reader = reader
        self._client = client
        self._auth = auth
        self._path = write_path(stream, write_mode)
        self._prefix = '{"$type":%s,"symbol":%s,"timestamp":"' % (
            json.dumps(type_name), json.dumps(symbol))
        most = self.max_message_bytes = record.json_bound(self._prefix)
        self._batch_max = min(batch_max, max(1, (batch_bytes - 1) // (most + 1)))
        self._dead = dead_letter
        self._bmin = backoff_min_ms
        self._bmax = backoff_max_ms
        self._boot = boot
        self._log = log
        self._epochs = {}
        self._estimated = set()
        # [(seq, decoded record, length of its JSON)] read, not yet accounted for: each
        # record is decoded once and its message measured once (Content-Length); the
        # message itself is made again when sent (held, a batch of them would take
        # ~300 B of heap a record instead of ~100)
        self._batch = []
        self._held = None  # (seq, decoded record) read but waiting for its boot's epoch
        self._reserve = None
        self._keep_reserve()
        self._raw = None  # (seq, bytes) read, not decoded yet (a MemoryError came between)
        self._limit = 0  # records from the batch front to send in the next POST
        self._fails = 0  # consecutive transient failures
        self._suspects = []  # [(batch item, error text)]: refused alone, cause not yet proven
        self._read = False  # records read from the reader since its last commit
        self._next_ms = time.ticks_ms()
        self._commit_ms = cursor_commit_ms
        self._committed_ms = self._next_ms
        self._dirty = False  # records accounted for, the cursor not committed yet
        # figures
        self.sent = 0
        self.batches = 0
        self.dead = 0
        self.retries = 0
        self.last_ok_ms = None  # ticks_ms of the last accepted POST
        self.last_error = None  # short text of the last failure
        self.state = "idle"  # idle|sending|backoff|waiting_clock|auth_failed
        self.backoff_ms = 0

    # -- configuration ---------------------------------------------------
    def set_boot_epoch(self, boot, utc_ms_at_boot, estimated=False):
        """Tell the sender the UTC ms at which boot ``boot``'s monotonic clock read 0
        (``estimated``: a boot that never learned the time, ``clock.Epochs``: its records
        are sent with ``"time_estimated":true``)."""
        self._epochs[boot] = utc_ms_at_boot
        if estimated:
            self._estimated.add(boot)
        else:
            self._estimated.discard(boot)

    def stats(self):
        """Figures as a dict (no secrets)."""
        return {"sent": self.sent, "batches": self.batches, "dead": self.dead,
                "retries": self.retries, "queued": len(self._batch),
                "last_ok_ms": self.last_ok_ms, "backoff_ms": self.backoff_ms,
                "state": self.state, "last_error": self.last_error}

    # -- JSON -------------------------------------------------------------
    def message(self, seq, rec, lead="", tail=""):
        """The JSON text of decoded record ``rec`` (str), between ``lead`` and ``tail``."""
        return record.json_message(self._prefix, seq, rec, record.timestamp_of(rec, self._epochs),
                                   self._estimated, lead, tail)

    def _chunks(self):
        """Generator of the JSON array of the POST's records (the batch's first ``_limit``),
        a message a chunk (one socket write each: a message is ~300 bytes)."""
        n = self._limit
        for i in range(n):
            seq, rec, _ = self._batch[i]
            yield self.message(seq, rec, "," if i else "[", "]" if i == n - 1 else "")

    # -- reading ----------------------------------------------------------
    def _next(self):
        """The next (seq, decoded record): the held one, else the reader's; None when
        none is left. Entries no layout decodes are dead-lettered on the way."""
        item, self._held = self._held, None
        rd = self._reader
        while item is None:
            if self._raw is None:
                raw = rd.next_record()
                if raw is None:
                    return None
                self._read = True
                self._raw = rd.seqn, raw  # kept until decoded: the reader is past it
            seq, raw = self._raw
            try:
                item = seq, record.decode(raw)
            except ValueError as e:  # unknown layout or length: never block the queue
                self._dead_letter(seq, binascii.hexlify(raw).decode(), str(e))
            self._raw = None
        return item

    def _fill(self):
        """Read records until the batch is full; returns False if waiting for the clock."""
        batch = self._batch
        while len(batch) < self._batch_max:
            item = self._held = self._next()  # held until in the batch (MemoryError)
            if item is None:
                break
            seq, rec = item
            if record.timestamp_of(rec, self._epochs) is None:
                if record.waits(rec, self._epochs, self._boot):
                    break  # it may get its time once this boot learns it: wait (held)
                self._dead_letter(seq, "", "no wall-clock time for boot %d" % rec[record.I_BOOT])
            else:
                batch.append((seq, rec, len(self.message(seq, rec))))
            self._held = None
        self._account(0)
        return bool(batch) or self._held is None

    def _dead_letter(self, seq, msg, err):
        import sender_refusals  # (rare: its code is loaded at the first dead letter)

        sender_refusals.dead_letter(self, seq, msg, err)

    def _account(self, n):
        """The first ``n`` batch records are done; the cursor is committed when every
        record read is done (none in the batch, held or set aside)."""
        del self._batch[:n]
        self._limit = len(self._batch)
        if self._read and not self.pending():
            self._commit()

    def _keep_reserve(self):
        if self._reserve is None:
            try:
                self._reserve = bytearray(_RESERVE)
            except MemoryError:
                pass  # again after the next login

    def _commit(self, now=False):
        t = time.ticks_ms()
        ms = self._commit_ms
        self._read = False
        if not now and ms and time.ticks_diff(t, self._committed_ms) < ms:
            self._dirty = True
        else:
            self._reader.commit()
            self._committed_ms = t
            self._dirty = False

    def flush(self):
        """Commit the reader's cursor now if records were accounted for since the last
        commit (before a reset or a shutdown), unless records read after them are still
        in RAM: the cursor is the reader's, past those too (they wait for the next commit,
        or are sent again after a reboot)."""
        if self._dirty and not self.pending():
            self._commit(True)

    # -- sending ----------------------------------------------------------
    def pending(self):
        """True if records are held in RAM waiting to go."""
        return (bool(self._batch) or self._held is not None or self._raw is not None
                or bool(self._suspects))

    def step(self):
        """At most one POST.  Returns the number of records accounted for
        (written or dead-lettered); 0 if idle, waiting or backing off."""
        now = time.ticks_ms()
        if self._dirty and time.ticks_diff(now, self._committed_ms) >= self._commit_ms:
            self.flush()  # idle since: the cursor still goes to flash in time
        if self.state in ("backoff", "auth_failed") and time.ticks_diff(self._next_ms, now) > 0:
            return 0
        doing = "logging in"
        try:
            if not self._batch:
                if not self._auth.valid():
                    if self._held is None:
                        self._held = self._next()
                    if self._held is not None:  # log in before the batch is in RAM: the
                        self._reserve = None  # TLS handshake is the peak; the login gets
                        self._auth.token()  # the reserve's room
                        self._keep_reserve()
                doing = "reading"
                if not self._fill():
                    self.state = "waiting_clock"
                    return 0
                if not self._batch and self._suspects:
                    import sender_refusals

                    return sender_refusals.retry_alone(self)
                if not self._batch:
                    self.state = "idle"
                    return 0
            self.state = doing = "sending"
            return self._post()
        except oauth.AuthError as e:
            self._fail(str(e), auth=True)
        except https.HTTPError as e:
            self._fail("%s: %s" % (e.category, e))
        except MemoryError:  # the records stay queued; a smaller batch_max would help
            self._client.close()
            self._reserve = None  # room for the retry (see _RESERVE)
            self._fail("out of memory while " + doing)
        return 0

    def _fail(self, text, auth=False):
        self.last_error = text
        self._fails += 1
        self.retries += 1
        if auth:
            delay = self._bmax
            self.state = "auth_failed"
        else:
            delay = min(self._bmin << min(self._fails - 1, 20), self._bmax)
            delay = delay // 2 + (delay // 2) * random.getrandbits(16) // 65536  # jitter: [d/2, d)
            self.state = "backoff"
        self.backoff_ms = delay
        self._next_ms = time.ticks_add(time.ticks_ms(), delay)
        self._log("sender: %s; retry in %d ms" % (text, delay))

    def _post(self):
        n = self._limit
        length = n + 1  # "[", "]" and n-1 commas
        for i in range(n):
            length += self._batch[i][2]
        resp = post(self._client, self._auth, self._path, self._chunks, length)
        st = resp.status
        if st == 200 and resp.body.strip() == b"[]" and not (resp.truncated or self._suspects):
            sys.modules.pop("sender_refusals", None)  # back to usual: drop the rare code
            self._accepted()  # all written: the usual reply
            self.sent += n
            self._account(n)
            return n
        if st != 200 and st not in (400, 403, 413):
            raise https.HTTPError("status", "HTTP %d %s" % (st, resp.reason), st)
        import sender_refusals  # the rare replies' code: loaded at the first one

        return (sender_refusals.written if st == 200 else sender_refusals.refused)(self, n, resp)

    def _accepted(self):
        """The server answered a POST with 200 and a JSON error list (empty or not)."""
        self._fails = 0
        self.backoff_ms = 0
        self.last_ok_ms = time.ticks_ms()
        self.batches += 1
