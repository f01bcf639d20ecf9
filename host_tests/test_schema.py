"""Schema evolution: records queued before a firmware update stay readable and uploadable
after the update adds a layout (both interpreters): v2 records (today's firmware) and the
example update's v3 in one queue. (Firmware 1.0's v1 records are turned into v2 when its
queue is moved: host_tests/test_oldqueue.py.)"""

import json
import time

import mqtt_uplink
import oauth
import record
import sender
import support
import tslog
import utc
from uplink_fakes import FakeWebAdmin, ListReader

T0 = 1700000000000
# The example update: two more values before boot/flags (dew point, battery voltage).
V3_FIELDS = record.V2.fields[:7] + ("dew_point", "battery_mv", "boot", "flags")
V3_FORMAT = "<qhHhiIIhHHB"


def _v2_values(i):
    return (200 + i, 505, 212, 101325 + i, 1000 + i, 91000)


def _v3():
    return record.Layout(
        3, V3_FORMAT, V3_FIELDS, decimals={"am2320_temp": 1, "am2320_humidity": 1,
                                           "bmp180_temp": 1, "dew_point": 1},
        nulls={"am2320_temp": record.FLAG_NO_AM, "am2320_humidity": record.FLAG_NO_AM,
               "bmp180_temp": record.FLAG_NO_BMP, "bmp180_pressure": record.FLAG_NO_BMP},
        rare=("heap",), derived={"bmp180_altitude": (1, ("bmp180_pressure",)),  # record._ALT
                                 "mem_free": (2, ("heap", "mem_used"))},  # record._DIFF
        send=record.SENSOR_FIELDS + ("dew_point", "battery_mv"))


def _update_to_v3():
    return record.register(_v3(), current=True)


def _restore():
    """The record module is shared by every test in this process: back to v1 and v2."""
    record.LAYOUTS.pop(3, None)
    record.CURRENT = 2


def _queue(folder):
    return tslog.TSLog(folder, record_size=record.QUEUE_RECORD_SIZE, bucket_size=8,
                       commit_delta=4, time_of=record.time_of, codec=record.CODEC)


def test_decode_refuses_unknown_layout_and_wrong_length():
    buf = bytearray(record.encode(T0, _v2_values(0), 3, record.FLAG_UTC))
    buf[-1] |= 7 << 5  # v8: not registered
    e = support.raises(ValueError, record.decode, bytes(buf))
    assert "v8" in str(e)
    e = support.raises(ValueError, record.decode, record.encode(T0, _v2_values(0), 3, 1) + b"x")
    support.raises(ValueError, record.encode, T0, _v2_values(0)[:5], 3, 1)
    # the queue refuses to store what its codec could not read back
    log = _queue(support.tmpdir("schema"))
    support.raises(ValueError, log.store_record, bytes(buf))
    support.raises(ValueError, log.store_record, record.encode(T0, _v2_values(0), 3, 1)[:-2])


def test_register_rules():
    try:
        lay = _update_to_v3()
        assert record.CURRENT == 3 and lay.size == 33 and lay.values[-2:] == V3_FIELDS[7:9]
        assert record.register(_v3()) is not None  # the same again: ok
        support.raises(ValueError, record.register,
                       record.Layout(3, "<qhHhiIIhHB", V3_FIELDS[:8] + V3_FIELDS[9:]))
        support.raises(ValueError, record.Layout, 4, "<qfHB", ("time_ms", "x", "flags", "boot"))
        support.raises(ValueError, record.Layout, 4, "<qfHB", ("time_ms", "boot", "flags"))
        big = "<q" + "d" * 6 + "HB"  # 59 bytes: more than a queue record holds
        support.raises(ValueError, record.register, record.Layout(
            4, big, ("time_ms",) + tuple("v%d" % i for i in range(6)) + ("boot", "flags")))
    finally:
        _restore()


def test_write_v2_update_to_v3_read_and_upload_all():
    d = support.tmpdir("schema")
    log = _queue(d)
    for i in range(5):  # today's firmware
        log.store_record(record.encode(T0 + i * 2000, _v2_values(i), 1, record.FLAG_UTC))
    log.close()
    try:
        _update_to_v3()  # the firmware update: same queue, new layout
        log = _queue(d)
        for i in range(5, 9):
            vals = _v2_values(i)[:6] + (95 + i, 3750)
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
        assert [s[1] for s in seen] == [2] * 5 + [3] * 4
        assert seen[3][2] == (T0 + 3 * 2000,) + _v2_values(3) + (1, record.FLAG_UTC | 1 << 5)
        assert seen[5][2][7:9] == (100, 3750) and seen[5][2][-2] == 2
        assert record.timestamp_of(seen[8][2]) == T0 + 8 * 2000
        # the time index reads every layout's times (time_ms first, flags last in each)
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
        m1, m4, m7 = srv.stored[1], srv.stored[4], srv.stored[7]
        assert "dew_point" not in m1 and m1["am2320_temp"] == 20 and m1["mem_free"] == 90000
        assert "dew_point" not in m4 and m4["am2320_temp"] == 20.3 and m4["mem_free"] == 89997
        assert m7["dew_point"] == 10.1 and m7["battery_mv"] == 3750 and m7["mem_used"] == 1006
        assert m7["timestamp"] == utc.iso(T0 + 6 * 2000)
        for m in srv.stored.values():
            assert "boot" not in m and "flags" not in m and "heap" not in m
        # a v2 message: the fields firmware 1.0 sent, in its order, the readings exact
        expect = ('{"$type":"weather_record","symbol":"esp2462","timestamp":"%s","seq":1,'
                  '"am2320_temp":20.0,"am2320_humidity":50.5,"bmp180_temp":21.2,'
                  '"bmp180_pressure":101325,"bmp180_altitude":%s,"mem_used":1000,'
                  '"mem_free":90000}' % (utc.iso(T0), "%.7g" % record.altitude_m(101325)))
        assert snd.message(1, seen[0][2]) == expect
        assert json.loads(snd.message(6, seen[5][2]))["dew_point"] == 10.0
        log.close()
    finally:
        _restore()


# A wider layout: seven more values than v2 (what a board with more sensors might log).
_MORE = ("wind_speed", "wind_dir", "rain_rate", "uv_index", "soil_moisture", "dew_point",
         "battery_mv")


def _wide():
    return record.Layout(
        4, "<qhHhiII" + "h" * len(_MORE) + "HB", record.V2.fields[:7] + _MORE + ("boot", "flags"),
        decimals={"am2320_temp": 1, "am2320_humidity": 1, "bmp180_temp": 1},
        derived={"bmp180_altitude": (1, ("bmp180_pressure",)),  # record._ALT
                 "mem_free": (2, ("heap", "mem_used"))},  # record._DIFF
        send=record.SENSOR_FIELDS + _MORE)


def test_batches_of_a_wider_layout_never_pass_batch_bytes():
    """The byte cap of a batch holds whatever layout its records have: the size bound is
    taken over every registered layout (from v2's fields alone, a batch of the wider
    layout's records would pass it): each POST body and each MQTT message (built in its
    fixed buffer) stays within ``batch_bytes``."""
    try:
        record.register(_wide(), current=True)
        # the longest text of each value: -3276.8, 6553.5, -3276.8, 2147483647 Pa (an
        # altitude of -250468.3 m), mem_used 4294967295 with heap 0 (mem_free -4294967295),
        # then -32768 each; the year 2099 and boot 65535
        values = (-32768, 65535, -32768, (1 << 31) - 1, (1 << 32) - 1, 0) + (-32768,) * 7
        worst = record.decode(record.encode(4102444799999, values, 65535, record.FLAG_UTC))
        snd = sender.Sender(None, None, None, "weather-data", "esp246f28a1b2c3",
                            log=lambda m: None)
        longest = len(snd.message(4294967295, worst))
        assert 400 < longest <= snd.max_message_bytes, (longest, snd.max_message_bytes)
        most = snd.max_message_bytes
        for cap in [n * (most + 1) + 1 for n in (1, 2, 3, 4)]:  # the tightest for n records
            srv = FakeWebAdmin()
            auth = oauth.OAuth(srv, "admin", "pa&ss word", log=lambda m: None)
            snd = sender.Sender(ListReader([worst] * 12), srv, auth, "weather-data",
                                "esp246f28a1b2c3", batch_bytes=cap, log=lambda m: None)
            while snd.step():
                pass
            assert len(srv.order) == 12 and srv.max_body_seen <= cap, (cap, srv.max_body_seen)
        for cap in range(2 * longest, 3 * longest + 3, 7):  # the ways a buffer fills
            up = mqtt_uplink.MqttUplink(ListReader([worst] * 6), "esp246f28a1b2c3",
                                        "mqtt://127.0.0.1", insecure=True, batch_bytes=cap,
                                        log=lambda m: None)
            sent = []
            up._publish = lambda data, sent=sent: sent.append(bytes(data))  # (no broker)
            while up.step():
                pass
            assert sum(len(json.loads(m)) for m in sent) == 6, cap
            assert max(len(m) for m in sent) <= cap, (cap, [len(m) for m in sent])
    finally:
        record.LAYOUTS.pop(4, None)
        _restore()
