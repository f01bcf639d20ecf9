"""Records that cannot go: the sender's answers to refused records (a 200 whose JSON array
lists errors, any other 200, and 400 / 403 / 413: lib/sender.py, "Outcomes of one POST",
says what each does), and the dead-letter log's writing.

Split from ``sender`` so that a board whose server takes every batch (200 ``[]``, the
usual reply) never loads this code: ``sender`` imports it at the first other reply or
dead letter, and drops it again at the next usual reply. Functions of a
``sender.Sender`` ``s``: they change its batch (``_batch``, the POST's ``_limit``) and
its set-aside records (``_suspects``: lone records refused, the cause not proven yet, as
``[(batch item, error text)]``).
"""

import json
import os
import re

import https
from micropython import const

# Lone records refused in a row before the sender blames the server rather than the
# records: up to 2 adjacent poisoned records are isolated and dead-lettered.
_SUSPECTS_MAX = const(3)
_ERR_TEXT_MAX = const(200)  # characters of an error kept in the dead-letter log


def dead_letter(s, seq, msg, err):
    """Record ``seq`` (its message ``msg``) can never go, because of ``err``: counted,
    logged and written to the sender's dead-letter log."""
    s.dead += 1
    s._log("sender: dead-letter seq %d: %s" % (seq, str(err)[:80]))
    if s._dead is not None:
        s._dead.write(seq, msg, err)


def append_dead(log, seq, message, error):
    """Append one line to ``sender.DeadLetterLog`` ``log``, first renaming a file grown
    past its ``max_bytes`` to ``path + ".1"``."""
    try:
        if os.stat(log.path)[6] > log.max_bytes:
            os.rename(log.path, log.path + ".1")
    except OSError:
        pass
    error = str(error).replace("\t", " ").replace("\n", " ")[:_ERR_TEXT_MAX]
    with open(log.path, "a") as f:
        f.write("%d\t%s\t%s\n" % (seq, message, error))


def _find_seq(text):
    """The integer after ``seq`` in an error text (``'seq':12`` or ``"seq": 12``), else None."""
    m = re.search("seq['\" ]*:['\" ]*([0-9]+)", text)
    return int(m.group(1)) if m else None


def written(s, n, resp):
    """A 200 reply to the POST of the first ``n`` batch records: its JSON array of
    errors (a "protocol" HTTPError if it is anything else: then nothing is known to be
    written, the caller backs off) sends each named record to the dead-letter log and
    counts the others as written; the records set aside were refused for themselves.
    Returns the number of records accounted for."""
    errors = None
    if not resp.truncated:
        try:
            errors = json.loads(resp.body)
        except ValueError:
            pass
    if isinstance(errors, list):
        for e in errors:  # TimeBase: objects; tools/ingest and others: strings
            if not isinstance(e, (dict, str)):
                errors = None
                break
    if not isinstance(errors, list):
        if resp.truncated and n > 1:
            s._limit = n // 2  # a long error list: fewer records, a shorter reply
        raise https.HTTPError("protocol", "HTTP 200 with %d bytes%s, not a JSON error "
                              "list (captive portal? proxy?)" % (
                                  len(resp.body), " (cut)" if resp.truncated else ""))
    done = len(s._suspects)
    for (seq, rec, _), text in s._suspects:  # the server takes other records:
        dead_letter(s, seq, s.message(seq, rec), text)  # they were the cause
    s._suspects = []
    s._accepted()
    batch = s._batch
    seqs = [batch[i][0] for i in range(n)]
    rejected = {}
    left = []  # error texts that name no record of the batch
    for e in errors:  # (each a dict or a str: checked above)
        text = e if isinstance(e, str) else json.dumps(e)
        seq = idx = None
        if isinstance(e, dict):
            seq = e.get("seq")
            idx = e.get("index")  # tools/ingest names the position in the batch
        if not isinstance(seq, int):
            seq = seqs[idx] if isinstance(idx, int) and 0 <= idx < n else _find_seq(text)
        if seq in seqs:
            rejected[seq] = text
        else:  # names no record of this batch: not counted as sent
            left.append(text)
    keep = []  # the records no error names
    for item in batch[:n]:
        seq = item[0]
        if seq in rejected:
            dead_letter(s, seq, s.message(seq, item[1]), rejected[seq])
        else:
            keep.append(item)
    if 0 < len(left) < len(keep):  # which records the unnamed errors are for is
        batch[:n] = keep  # unknown: halve to find them
        s._limit = len(keep) // 2 or 1
        return done + n - len(keep)
    for i in range(len(keep)):  # none, or one for each record left: theirs
        seq, rec, _ = keep[i]
        if i < len(left):
            dead_letter(s, seq, s.message(seq, rec), left[i])
        else:
            s.sent += 1
    s._account(n)
    return done + n


def refused(s, n, resp):
    """A 400 / 403 / 413 reply to the POST of the first ``n`` batch records: the POST is
    halved until the refused record is alone, which is then set aside; the third lone
    record refused in a row puts them all back (a "status" HTTPError: the server refuses
    everything). Returns 0 (no record accounted for)."""
    try:
        text = "HTTP %d %s" % (resp.status, resp.body[:120].decode())
    except UnicodeError:
        text = "HTTP %d" % resp.status
    if n > 1:
        s._limit = n // 2  # isolate the refused record
        s.retries += 1
        return 0
    item = s._batch.pop(0)
    if len(s._suspects) + 1 < _SUSPECTS_MAX:
        s._suspects.append((item, text))  # the next record alone tells record from
        s._limit = 1  # server
        s.retries += 1
        return 0
    # that many lone records in a row refused: the server refuses all (read-only,
    # unknown stream): keep them queued
    s._batch[:0] = [it for it, _ in s._suspects] + [item]
    s._suspects = []
    s._limit = len(s._batch)
    raise https.HTTPError("status", "server refuses every record (%s)" % text[:60],
                          resp.status)


def retry_alone(s):
    """Only set-aside records are left, with nothing to compare them with yet: they are
    sent alone again after a backoff. Returns 0."""
    for item, _ in s._suspects:
        s._batch.append(item)
    s._suspects = []
    s._limit = 1
    s._fail("only refused records are queued")
    return 0
