"""Schema evolution: v1 records queued before a firmware update stay readable and uploadable
after the update adds a layout v2 (both interpreters)."""

import json
import time

import oauth
import record
import sender
import support
import tslog
from uplink_fakes import FakeWebAdmin

T0 = 1700000000000
# The example update: two more values before boot/flags (dew point, battery voltage).
V2_FIELDS = record.FIELDS[:8] + ("dew_point", "battery_v", "boot", "flags")
V2_FORMAT = "<qfffffIIffHB"


def _v1_values(i):
    return (20.0 + i, 50.5, 21.25, 101325.0 + i, 12.5, 1000 + i, 90000 - i)


def _update_to_v2():
    return record.register(record.Layout(2, V2_FORMAT, V2_FIELDS), current=True)


def _restore():
    """The record module is shared by every test in this process: back to v1 only."""
    record.LAYOUTS.pop(2, None)
    record.CURRENT = 1


def _queue(folder):
    return tslog.TSLog(folder, record_size=record.QUEUE_RECORD_SIZE, bucket_size=8,
                       commit_delta=4, time_of=record.time_of)


def test_v1_is_unchanged_and_versionless():
    buf = record.encode(T0, _v1_values(0), 3, record.FLAG_UTC)
    assert len(buf) == record.SIZE == 39 and buf[-1] == record.FLAG_UTC  # version bits 0
    assert record.decode(buf) == (T0,) + _v1_values(0) + (3, record.FLAG_UTC)
    assert record.layout_of(buf) is record.V1 and record.V1.values == record.SENSOR_FIELDS
    assert record.V1.floats[1:8] == (True,) * 5 + (False,) * 2
    assert record.time_of(buf) == T0
    assert record.time_of(record.encode(5000, _v1_values(0), 3, 0)) is None  # untimed


def test_decode_refuses_unknown_layout_and_wrong_length():
    buf = bytearray(record.encode(T0, _v1_values(0), 3, record.FLAG_UTC))
    buf[-1] |= 7 << 5  # v8: not registered
    e = support.raises(ValueError, record.decode, bytes(buf))
    assert "v8" in str(e)
    e = support.raises(ValueError, record.decode, record.encode(T0, _v1_values(0), 3, 1) + b"x")
    support.raises(ValueError, record.encode, T0, _v1_values(0)[:6], 3, 1)


def test_register_rules():
    try:
        lay = _update_to_v2()
        assert record.CURRENT == 2 and lay.size == 47 and lay.values[-2:] == V2_FIELDS[8:10]
        assert record.register(record.Layout(2, V2_FORMAT, V2_FIELDS)) is not None  # same: ok
        support.raises(ValueError, record.register,
                       record.Layout(2, "<qfffffIIfHB", V2_FIELDS[:9] + V2_FIELDS[10:]))
        support.raises(ValueError, record.Layout, 3, "<qfHB", ("time_ms", "x", "flags", "boot"))
        support.raises(ValueError, record.Layout, 3, "<qfHB", ("time_ms", "boot", "flags"))
        big = "<q" + "d" * 6 + "HB"  # 59 bytes: more than a queue slot holds
        support.raises(ValueError, record.register, record.Layout(
            3, big, ("time_ms",) + tuple("v%d" % i for i in range(6)) + ("boot", "flags")))
    finally:
        _restore()


def test_write_v1_update_to_v2_read_and_upload_both():
    d = support.tmpdir("schema")
    log = _queue(d)
    for i in range(5):  # the old firmware
        log.store_record(record.encode(T0 + i * 2000, _v1_values(i), 1, record.FLAG_UTC))
    log.close()
    try:
        _update_to_v2()  # the firmware update: same folder, same queue, new layout
        log = _queue(d)
        for i in range(5, 9):
            vals = _v1_values(i) + (9.5 + i, 3.75)
            log.store_record(record.encode(T0 + i * 2000, vals, 2, record.FLAG_UTC))
        log.commit()
        # read every record back with its own layout
        r = log.reader(0)
        seen = []
        while True:
            raw = r.next_record()
            if raw is None:
                break
            rec = record.decode(raw)
            seen.append((r.seqn, record.layout_of(rec).version, rec))
        assert [s[1] for s in seen] == [1] * 5 + [2] * 4
        assert seen[0][2] == (T0,) + _v1_values(0) + (1, record.FLAG_UTC)
        assert seen[5][2][8:10] == (14.5, 3.75) and seen[5][2][-2] == 2
        assert record.timestamp_of(seen[8][2]) == T0 + 8 * 2000
        # the time index reads both layouts' times (time_ms first, flags last in each)
        assert [s for s, _ in log.between(T0 + 3 * 2000, T0 + 7 * 2000)] == [4, 5, 6, 7]
        # upload from a fresh reader over the same log (cursor not committed above)
        log.close()
        log = _queue(d)
        srv = FakeWebAdmin()
        auth = oauth.OAuth(srv, "admin", "pa&ss word", log=lambda m: None)
        snd = sender.Sender(log.reader(0), srv, auth, "weather-data", "esp2462", batch_max=4,
                            backoff_min_ms=0, log=lambda m: None)
        for _ in range(20):
            snd.step()
            if snd.state == "idle" and not snd.pending():
                break
            time.sleep_ms(1)
        assert srv.order == list(range(1, 10)), srv.order
        m1, m2 = srv.stored[1], srv.stored[7]
        assert "dew_point" not in m1 and m1["am2320_temp"] == 20 and m1["mem_free"] == 90000
        assert m2["dew_point"] == 15.5 and m2["battery_v"] == 3.75 and m2["mem_used"] == 1006
        assert m2["timestamp"] == record.iso_utc(T0 + 6 * 2000)
        for m in srv.stored.values():
            assert "boot" not in m and "flags" not in m
        # a v1 message is byte-for-byte what the v1 sender produced
        expect = ('{"$type":"weather_record","symbol":"esp2462","timestamp":"%s","seq":1,'
                  '"am2320_temp":20,"am2320_humidity":50.5,"bmp180_temp":21.25,'
                  '"bmp180_pressure":101325,"bmp180_altitude":12.5,"mem_used":1000,'
                  '"mem_free":90000}' % record.iso_utc(T0))
        assert snd.message(1, seen[0][2]) == expect
        assert json.loads(snd.message(6, seen[5][2]))["dew_point"] == 14.5
        log.close()
    finally:
        _restore()
