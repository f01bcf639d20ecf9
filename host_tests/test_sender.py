"""lib/sender.py against an in-process fake WebAdmin and a list-backed reader."""

import gc
import json
import time

import https
import oauth
import record
import sender
import support
import utc
from uplink_fakes import FakeWebAdmin, ListReader, pack, resp, sample


class MemDead:
    def __init__(self):
        self.items = []

    def write(self, seq, msg, err):
        self.items.append((seq, msg, err))


def make(n=20, **kw):
    srv = FakeWebAdmin()
    rd = ListReader([sample(i) for i in range(n)])
    auth = oauth.OAuth(srv, "admin", "pa&ss word", log=lambda m: None)
    dead = MemDead()
    kw.setdefault("batch_max", 5)
    kw.setdefault("backoff_min_ms", 0)
    s = sender.Sender(rd, srv, auth, "weather-data", "esp2462", dead_letter=dead,
                      log=lambda m: None, **kw)
    return srv, rd, s, dead


def drain(s, limit=1000):
    for _ in range(limit):
        s.step()
        if not s.pending() and s.state == "idle":
            return
        if s.state == "backoff":
            s._next_ms = 0 if False else __import__("time").ticks_ms()  # skip the wait
    raise AssertionError("did not drain: %r" % (s.stats(),))


def test_message_format():
    srv, rd, s, _ = make(1)
    m = json.loads(s.message(7, sample(0, t0=1638102896006)))
    assert m["$type"] == "weather_record" and m["symbol"] == "esp2462" and m["seq"] == 7
    assert m["timestamp"] == "2021-11-28T12:34:56.006Z"
    assert m["bmp180_pressure"] == 101325 and m["am2320_temp"] == 20 and m["mem_free"] == 90000
    rec = record.decode(record.encode(1638102896006, (0, 0, 213, 101325, 1, 3), 1,
                                      record.FLAG_UTC | record.FLAG_NO_AM))
    m = json.loads(s.message(1, rec))
    assert m["am2320_temp"] is None and m["am2320_humidity"] is None  # a failed reading
    assert m["bmp180_temp"] == 21.3 and m["bmp180_pressure"] == 101325 and m["mem_free"] == 2
    # as _chunks writes them: the array's "[", "," and "]" around the messages
    both = s.message(1, rec, "[") + s.message(2, rec, ",", "]")
    assert [m["seq"] for m in json.loads(both)] == [1, 2]


def test_all_written_in_order_and_committed():
    import sys

    sys.modules.pop("sender_refusals", None)
    srv, rd, s, dead = make(23)
    drain(s)
    assert srv.order == list(range(1, 24)) and rd.committed == 23
    assert s.sent == 23 and s.batches == 5 and not dead.items
    assert srv.last_headers["Authorization"] == b"Bearer acc1"
    assert "sender_refusals" not in sys.modules  # the usual replies do not load its code


def test_write_mode_and_path():
    srv, rd, s, _ = make(1, write_mode="APPEND")
    assert s._path == "/api/v0/weather-data/write?writeMode=APPEND"
    srv, rd, s, _ = make(1, write_mode=None)
    assert s._path == "/api/v0/weather-data/write"


def test_per_message_errors_dead_lettered_not_success():
    srv, rd, s, dead = make(10)
    srv.poison = {3, 8}
    drain(s)
    assert sorted(srv.stored) == [1, 2, 4, 5, 6, 7, 9, 10]
    assert [d[0] for d in dead.items] == [3, 8] and s.dead == 2 and s.sent == 8
    assert "IllegalArgumentException" in dead.items[0][2]
    assert json.loads(dead.items[0][1])["seq"] == 3
    assert rd.committed == 10


def test_unattributed_errors_split_the_batch():
    srv, rd, s, dead = make(4, batch_max=4)
    calls = []

    def anon():  # an error list that does not say which message failed
        calls.append(1)
        return resp(200, '[{"description":"bad value","error":"x"}]')

    srv.script = [anon]
    drain(s)
    # halves re-sent (the fake accepts them now): nothing lost, duplicates left to seq dedup
    assert rd.committed == 4 and dead.items == [] and calls == [1]
    assert srv.order == [1, 2, 3, 4, 1, 2, 3, 4]


def test_401_refreshes_and_retries_once():
    srv, rd, s, _ = make(5)
    s.step()
    srv.valid.clear()  # server restarted with a new key: old access tokens die
    srv.refresh_valid.clear()
    rd.add(sample(5))
    drain(s)
    assert srv.token_calls == ["password", "refresh_token", "password"]
    assert sorted(srv.stored) == [1, 2, 3, 4, 5, 6]


def test_5xx_backs_off_and_keeps_records():
    srv, rd, s, _ = make(5, backoff_min_ms=1000, backoff_max_ms=8000)
    srv.script = [503, 502, 500]
    assert s.step() == 0 and s.state == "backoff" and 500 <= s.backoff_ms < 1000
    assert s.step() == 0 and srv.writes == 1  # still waiting
    delays = []
    for _ in range(2):
        s._next_ms = __import__("time").ticks_ms()
        s.step()
        delays.append(s.backoff_ms)
    assert 1000 <= delays[0] < 2000 and 2000 <= delays[1] < 4000
    assert rd.committed == 0 and s.retries == 3
    drain(s)
    assert sorted(srv.stored) == [1, 2, 3, 4, 5] and rd.committed == 5


def test_transport_errors_back_off():
    srv, rd, s, _ = make(3)

    def boom():
        raise https.HTTPError("reset", "reset after store")

    srv.script = [boom]  # the server stored the batch, the reply was lost
    s.step()
    assert s.state == "backoff" and "reset" in s.last_error and rd.committed == 0
    drain(s)
    assert srv.order == [1, 2, 3, 1, 2, 3]  # re-sent: the server dedups by seq
    assert rd.committed == 3


def test_poisoned_record_isolated_by_splitting():
    srv, rd, s, dead = make(16, batch_max=8)
    srv.refuse = {6}
    drain(s)
    assert [d[0] for d in dead.items] == [6] and "400" in dead.items[0][2]
    assert sorted(srv.stored) == [i for i in range(1, 17) if i != 6]
    assert rd.committed == 16
    import sys

    assert "sender_refusals" not in sys.modules  # dropped again at the next usual reply


def test_server_refusing_everything_is_not_a_dead_letter_flood():
    srv, rd, s, dead = make(30, batch_max=4)
    srv.script = [403] * 6  # read-only server: every POST refused
    for _ in range(40):
        s.step()
        if s.state == "backoff":
            break
    assert s.state == "backoff" and dead.items == [] and rd.committed == 0
    drain(s)  # writable again: everything arrives, in order, nothing dead-lettered
    assert srv.order == list(range(1, 31)) and dead.items == [] and rd.committed == 30


def test_poisoned_first_record_does_not_block():
    srv, rd, s, dead = make(9, batch_max=4)
    srv.refuse = {1}
    drain(s)
    assert [d[0] for d in dead.items] == [1] and sorted(srv.stored) == list(range(2, 10))
    assert rd.committed == 9


def test_poisoned_last_record_waits_for_evidence():
    srv, rd, s, dead = make(3, batch_max=4)
    srv.refuse = {3}
    for _ in range(10):
        s.step()
        s._next_ms = __import__("time").ticks_ms()
    assert sorted(srv.stored) == [1, 2] and dead.items == [] and rd.committed == 0
    rd.add(sample(3))  # the next sample shows the server takes other records
    drain(s)
    assert [d[0] for d in dead.items] == [3] and sorted(srv.stored) == [1, 2, 4]
    assert rd.committed == 4


def test_auth_failure_is_a_state_not_a_crash():
    srv, rd, s, _ = make(3)
    s._auth = oauth.OAuth(srv, refresh_token="expired", log=lambda m: None)
    assert s.step() == 0
    assert s.state == "auth_failed" and "no username" in s.last_error
    assert s.stats()["state"] == "auth_failed" and rd.committed == 0


def test_untimed_records_wait_for_the_clock_then_go():
    srv = FakeWebAdmin()
    recs = [sample(0), sample(1, t0=3000, flags=0, boot=9), sample(2)]
    rd = ListReader(recs)
    auth = oauth.OAuth(srv, "admin", "pa&ss word", log=lambda m: None)
    s = sender.Sender(rd, srv, auth, "w", "esp1", boot=9, log=lambda m: None)
    s.step()
    assert sorted(srv.stored) == [1]
    assert s.step() == 0 and s.state == "waiting_clock"
    assert rd.committed == 0  # record 2 was read but not sent: the cursor must not pass it
    s.set_boot_epoch(9, 1700000000000)
    drain(s)
    assert srv.stored[2]["timestamp"] == utc.iso(1700000005000)
    assert sorted(srv.stored) == [1, 2, 3]


def test_untimed_records_of_an_old_boot_wait_for_this_boots_clock():
    # Boot 9 never learned the time. Until this boot (10) learns it, its records wait: the
    # firmware may then estimate boot 9's epoch (clock.Epochs). Without one they are
    # dead-lettered; with an estimate they are sent, marked.
    srv, rd, s, dead = make(0, boot=10)
    rd.add(sample(0, t0=100, flags=0, boot=9))
    rd.add(sample(1))
    for _ in range(3):
        s.step()
    assert s.state == "waiting_clock" and not dead.items and not srv.stored
    s.set_boot_epoch(10, 1700000000000)
    drain(s)
    assert [d[0] for d in dead.items] == [1] and sorted(srv.stored) == [2]
    assert rd.committed == 2 and "time_estimated" not in srv.stored[2]
    srv, rd, s, dead = make(0, boot=10)
    rd.add(sample(0, t0=50000, flags=0, boot=9))  # 50 s after boot 9's start
    rd.add(sample(0, t0=3000, flags=0, boot=10))  # 3 s after this boot's
    s.set_boot_epoch(9, 1700000000000, estimated=True)
    s.set_boot_epoch(10, 1700000100000)
    drain(s)
    assert not dead.items and sorted(srv.stored) == [1, 2]
    assert srv.stored[1]["time_estimated"] is True, srv.stored[1]
    assert srv.stored[1]["timestamp"] == "2023-11-14T22:14:10.000Z"
    assert "time_estimated" not in srv.stored[2]


def test_byte_cap_limits_batch():
    srv, rd, s, _ = make(20, batch_max=100, batch_bytes=1000)
    s.step()
    assert 1 <= len(srv.order) <= 4 and srv.max_body_seen <= 1000
    assert len(s.message(1, sample(0))) < s.max_message_bytes


def test_dead_letter_file_rotates():
    d = support.tmpdir("dead")
    log = sender.DeadLetterLog(d + "/dead.log", max_bytes=100)
    for i in range(10):
        log.write(i, '{"seq":%d}' % i, "bad\tthing\n")
    import os

    names = sorted(os.listdir(d))
    assert names == ["dead.log", "dead.log.1"]
    with open(d + "/dead.log") as f:
        line = f.readline()
    assert line.count("\t") == 2 and line.endswith("bad thing \n")


def test_heap_does_not_grow_with_queue_length():
    srv, rd, s, _ = make(0, batch_max=20)
    srv.stored = None  # keep nothing, only count
    count = [0]

    def sink(method, path, headers=None, body=None, length=None):
        if path == "/oauth/token":
            return FakeWebAdmin._token(srv, dict(headers), body)
        for c in body():
            count[0] += len(c)
        return resp(200, "[]")

    srv.request = sink
    for i in range(3000):
        rd.add(sample(i))
    gc.collect()
    peaks = []
    for _ in range(150):
        s.step()
        gc.collect()
        peaks.append(gc.mem_alloc())  # live heap after each batch
    assert rd.committed == 3000 and count[0] > 3000 * 200, (rd.committed, count[0])
    assert max(peaks[-50:]) - max(peaks[:50]) < 2000, (peaks[:3], peaks[-3:])


def test_reboot_mid_batch_resends_from_the_committed_cursor():
    srv, rd, s, _ = make(12, batch_max=5)
    s.step()  # batch 1..5 written and committed
    srv.script = [503]
    s.step()  # batch 6..10 read, refused: must not be committed
    assert rd.committed == 5
    rd.rewind()  # power cut: a new sender starts from the committed cursor
    auth = oauth.OAuth(srv, "admin", "pa&ss word", log=lambda m: None)
    s2 = sender.Sender(rd, srv, auth, "weather-data", "esp2462", batch_max=5,
                       log=lambda m: None)
    drain(s2)
    assert sorted(srv.stored) == list(range(1, 13)) and rd.committed == 12


def test_413_halves_until_the_batch_fits():
    srv, rd, s, dead = make(12, batch_max=12)
    real = srv.request

    def small_server(method, path, headers=None, body=None, length=None):
        if "/write" in path and length and length > 1200:
            return resp(413, "Request is too large")
        return real(method, path, headers, body, length)

    srv.request = small_server
    drain(s)
    assert sorted(srv.stored) == list(range(1, 13)) and not dead.items


def test_out_of_memory_while_sending_keeps_records():
    srv, rd, s, _ = make(5)

    def oom():
        raise MemoryError()

    srv.script = [oom]
    s.step()
    assert s.state == "backoff" and "memory" in s.last_error and srv.closed
    assert rd.committed == 0
    drain(s)
    assert sorted(srv.stored) == [1, 2, 3, 4, 5] and rd.committed == 5


def test_two_adjacent_poisoned_records_are_isolated():
    srv, rd, s, dead = make(16, batch_max=8)
    srv.refuse = {6, 7}
    drain(s)
    assert [d[0] for d in dead.items] == [6, 7] and "400" in dead.items[0][2]
    assert sorted(srv.stored) == [i for i in range(1, 17) if i not in (6, 7)]
    assert rd.committed == 16


def test_three_lone_refusals_in_a_row_blame_the_server():
    srv, rd, s, dead = make(30, batch_max=4)
    srv.script = [403] * 5  # 4 -> 2 -> 1 refused, then the next two records alone
    for _ in range(10):
        s.step()
        if s.state == "backoff":
            break
    assert s.state == "backoff" and "refuses every record" in s.last_error
    assert srv.script == [] and dead.items == [] and rd.committed == 0


class _RawReader(ListReader):
    """Returns queue entries as stored: bytes as they are, tuples packed."""

    def next_record(self):
        rec = self.next()
        if rec is None or isinstance(rec, bytes):
            return rec
        return pack(rec)


def test_undecodable_queue_entries_are_dead_lettered_not_blocking():
    srv = FakeWebAdmin()
    bad = b"\x00" * 38 + b"\xe1"  # layout v8: unknown to this firmware
    rd = _RawReader([sample(1), bad, sample(3), b"\x01\x02", sample(5)])
    dead = MemDead()
    s = sender.Sender(rd, srv, oauth.OAuth(srv, "admin", "pa&ss word", log=lambda m: None),
                      "weather-data", "esp2462", dead_letter=dead, batch_max=5,
                      backoff_min_ms=0, log=lambda m: None)
    drain(s)
    assert [d[0] for d in dead.items] == [2, 4] and "layout" in dead.items[0][2]
    assert dead.items[0][1] == "00" * 38 + "e1"  # kept as hex: recoverable
    assert sorted(srv.stored) == [1, 3, 5] and rd.committed == 5


def test_only_undecodable_entries_left_are_committed():
    srv = FakeWebAdmin()
    rd = _RawReader([sample(1), sample(2)])
    dead = MemDead()
    s = sender.Sender(rd, srv, oauth.OAuth(srv, "admin", "pa&ss word", log=lambda m: None),
                      "weather-data", "esp2462", dead_letter=dead, batch_max=5,
                      backoff_min_ms=0, log=lambda m: None)
    drain(s)
    rd.add(b"\x00" * 38 + b"\xe1")
    drain(s)  # nothing to send, but the dead-lettered entry must not be read again
    assert rd.committed == 3 and [d[0] for d in dead.items] == [3]


def test_out_of_memory_while_logging_in_backs_off():
    srv, rd, s, _ = make(5)
    real = srv.request
    calls = []

    def tight(method, path, headers=None, body=None, length=None):
        if "/oauth/token" in path and not calls:
            calls.append(1)
            raise MemoryError()
        return real(method, path, headers, body, length)

    srv.request = tight
    s.step()
    assert s.state == "backoff" and "memory" in s.last_error and rd.committed == 0
    drain(s)
    assert sorted(srv.stored) == [1, 2, 3, 4, 5] and rd.committed == 5


def send_pending(s):
    """``step()`` while it does something at once, as the firmware's uploader loop does."""
    for _ in range(100):
        if s.step() == 0 and s.state != "sending":
            return


_PORTAL = "<html><head><title>Sign in</title></head><body>Accept the terms</body></html>"


def test_captive_portal_200_backs_off_and_keeps_records():
    # A captive portal or proxy answers the POST with 200 and an HTML page: nothing was
    # written. It once reset the back-off and re-sent the record in a tight loop.
    srv, rd, s, dead = make(5, backoff_min_ms=1000, backoff_max_ms=60000)
    drain(s)  # logged in; the first records went
    for i in range(5, 10):
        rd.add(sample(i))
    srv.portal = resp(200, _PORTAL, {"content-type": "text/html"})
    send_pending(s)
    assert srv.portal_hits == 1 and s.state == "backoff" and 500 <= s.backoff_ms < 1000
    assert "protocol" in s.last_error
    delays = []
    for _ in range(3):
        s._next_ms = time.ticks_ms()  # skip the wait
        send_pending(s)
        delays.append(s.backoff_ms)
    assert srv.portal_hits == 4 and 4000 <= delays[2] < 8000, delays  # grows, never reset
    assert rd.committed == 5 and s.sent == 5 and dead.items == []
    srv.portal = None
    drain(s)
    assert sorted(srv.stored) == list(range(1, 11)) and rd.committed == 10 and not dead.items


def test_200_that_is_not_an_error_array_is_a_failure():
    for body in (b"", b"OK", b'{"status":"ok"}', b"null", b"[1, 2]", b'"[]"', b"\xff[]"):
        srv, rd, s, dead = make(3, backoff_min_ms=1000)
        srv.script = [lambda b=body: resp(200, b)]  # a proxy mangled the server's reply
        assert s.step() == 0 and s.state == "backoff" and s.backoff_ms >= 500, body
        assert s.sent == 0 and rd.committed == 0 and dead.items == [], body
        drain(s)
        assert srv.order == [1, 2, 3, 1, 2, 3] and rd.committed == 3 and not dead.items, body


def test_cut_200_reply_backs_off_and_halves():
    srv, rd, s, dead = make(4, batch_max=4, backoff_min_ms=1000)
    cut = https.Response(200, "OK", {}, b'[{"message":"Message is invalid:{', True)
    srv.script = [lambda: cut]  # more errors than max_body holds
    assert s.step() == 0 and s.state == "backoff" and s.backoff_ms >= 500
    assert dead.items == [] and rd.committed == 0
    s._next_ms = time.ticks_ms()
    s.step()
    assert srv.order == [1, 2, 3, 4, 1, 2]  # half the batch: a shorter reply
    drain(s)
    assert rd.committed == 4 and not dead.items


def test_set_aside_record_not_dead_lettered_by_a_portal_200():
    srv, rd, s, dead = make(3, batch_max=1, backoff_min_ms=1000)
    srv.refuse = {1}
    s.step()  # record 1 alone refused: set aside until another record shows the cause
    assert dead.items == [] and s.state == "sending"
    srv.portal = resp(200, _PORTAL)
    s.step()  # record 2 meets the portal: no evidence against record 1
    assert s.state == "backoff" and dead.items == [] and rd.committed == 0
    srv.portal = None
    drain(s)  # the server takes record 2: now record 1 is the cause
    assert [d[0] for d in dead.items] == [1] and sorted(srv.stored) == [2, 3]
    assert rd.committed == 3


def test_error_naming_no_record_of_the_batch_is_not_ignored():
    srv, rd, s, dead = make(4, batch_max=4)
    srv.script = [lambda: resp(200, '[{"message":"Message is invalid: seq: 999"}]')]
    drain(s)
    # not counted as written: halves re-sent to find the failed one (accepted now)
    assert srv.order == [1, 2, 3, 4, 1, 2, 3, 4] and rd.committed == 4 and not dead.items


def test_a_memory_error_while_decoding_loses_no_record():
    """The reader is past a record once it returned it: a MemoryError while decoding it
    (a fragmented heap) must leave it to be decoded again, not skip it."""
    srv, rd, s, _ = make(5)
    real, calls = record.decode, [0]

    def tight(raw):
        calls[0] += 1
        if calls[0] == 1:
            raise MemoryError("memory allocation failed")
        return real(raw)

    record.decode = tight
    try:
        s.step()
        assert s.last_error.startswith("out of memory")
        drain(s)
    finally:
        record.decode = real
    assert sorted(srv.stored) == [1, 2, 3, 4, 5] and rd.committed == 5


def test_a_deferred_cursor_commit_never_covers_a_batch_still_in_ram():
    """cursor_commit_ms defers a commit; when it comes due the next batch may be read and
    refused (back-off). The reader's cursor is past that batch: committing it then would
    lose the batch on a power cut."""
    srv, rd, s, _ = make(20, cursor_commit_ms=20)
    s.step()  # 1-5 sent, the commit deferred
    assert sorted(srv.stored) == [1, 2, 3, 4, 5] and rd.committed == 0
    srv.script = [503] * 3
    s.step()  # 6-10 read, refused: kept in RAM
    assert s.state == "backoff" and rd.pos == 10
    time.sleep(0.05)
    s._next_ms = time.ticks_ms()  # the back-off is over
    s.step()  # the deferred commit is due, 6-10 still unsent
    assert rd.committed == 0
    s.flush()  # before a reset: same rule
    assert rd.committed == 0
    drain(s)
    s.flush()
    assert sorted(srv.stored) == list(range(1, 21)) and rd.committed == 20
