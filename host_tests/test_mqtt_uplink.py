"""lib/mqtt_uplink.py against a real broker, under both interpreters: a NATS server with
JetStream and its MQTT listener over TLS (tools/fleet/cluster.py, one node, started by
this module as a process and stopped by its last test).  The records go through a real
TSLog; a QoS 1 subscriber (the vendored umqtt.simple) checks what the broker delivers."""

import json
import os
import time

import mqtt_uplink
import record
import support
import umqtt_simple
import utc

_srv = {}
SYMBOL = "esp246f28a1b2c3"


def broker():
    """Start the broker once per module run; its ready-file info (ports, CA, password)."""
    if not _srv:
        import binascii

        d = support.tmpdir("mqtt-" + binascii.hexlify(os.urandom(4)).decode())
        root = os.getenv("HOST_TEST_ROOT") or "."
        py = support.host_python()
        os.system("cd %s && %s -m tools.fleet.cluster --nodes 1 --root %s/c --wrong-ca "
                  "--ready-file %s/ready.json --stop-file %s/stop --max-s 300 >%s/log 2>&1 &"
                  % (root, py, d, d, d, d))
        for _ in range(600):
            try:
                with open(d + "/ready.json") as f:
                    _srv.update(json.load(f))
                break
            except (OSError, ValueError):
                time.sleep(0.05)
        else:
            raise AssertionError("broker did not start: " + open(d + "/log").read()[-2000:])
        _srv["dir"] = d
    return _srv


def url(b=None):
    return "mqtts://localhost:%d" % (b or broker())["mqtt_ports"][0]


def queue(n, name="q", timed=True, boot=1):
    """A TSLog with 3 readers holding ``n`` records (seqn 1..n), as the firmware's."""
    log = record.open_queue(support.tmpdir(name), nreaders=3)
    for i in range(1, n + 1):  # the BMP180 failed: its values null
        log.store_record(record.encode(
            utc.now_ms() if timed else 1000 * i, (200 + i, 555, 0, 0, 1000 + i, 3000),
            boot, (record.FLAG_UTC if timed else 0) | record.FLAG_NO_BMP))
    log.commit()
    return log


def uplink(log, logs=None, **kw):
    b = broker()
    kw.setdefault("ca_file", b["ca_der"])
    kw.setdefault("user", "board")
    kw.setdefault("password", b["board_password"])
    kw.setdefault("timeout_s", 5)
    kw.setdefault("backoff_min_ms", 20)
    kw.setdefault("backoff_max_ms", 200)
    say = (lambda t: logs.append(t)) if logs is not None else (lambda t: None)
    return mqtt_uplink.MqttUplink(log.reader(2), kw.pop("symbol", SYMBOL), kw.pop("url", url()),
                                  log=say, **kw)


def drain(up, limit_s=30):
    t0 = time.time()
    while time.time() - t0 < limit_s:
        up.step()
        if up.state == "idle" and not up.pending():
            return
        time.sleep(0.02)
    raise AssertionError("not drained: %r" % (up.stats(),))


class Sub:
    """A QoS 1 subscriber on ``topic`` (subscribed before anything is published)."""

    def __init__(self, topic):
        b = broker()
        self.conn = mqtt_uplink._Conn(mqtt_uplink._context(True, b["ca_der"], False))
        self.c = umqtt_simple.MQTTClient("sub%d" % (time.ticks_ms() % 100000), "localhost",
                                         b["mqtt_ports"][0], "board", b["board_password"],
                                         ssl=self.conn)
        self.messages = []
        self.c.set_callback(lambda t, m: self.messages.append(m))
        self.c.connect(timeout=5)
        self.c.subscribe(topic, qos=1)

    def records(self, want, limit_s=20):
        """Every record received (decoded JSON objects) once ``want`` have come."""
        t0 = time.time()
        while time.time() - t0 < limit_s:
            got = []
            for m in self.messages:
                got.extend(json.loads(m))
            if len(got) >= want:
                return got
            self.conn.raw.settimeout(0.3)
            try:
                self.c.wait_msg()
            except OSError:  # nothing within 0.3 s
                pass
        raise AssertionError("got %d of %d records" % (len(got), want))

    def close(self):
        self.c.disconnect()


def _seqs(recs):
    return [r["seq"] for r in recs]


def test_drain_sends_the_https_fields_and_commits_after_puback():
    import sender

    n = 300
    log = queue(n)
    sub = Sub("weather/" + SYMBOL)
    try:
        up = uplink(log)
        assert up.topic == "weather/" + SYMBOL
        drain(up)
        got = sub.records(n)
    finally:
        sub.close()
    assert sorted(_seqs(got)) == list(range(1, n + 1)), _seqs(got)[:20]
    assert up.sent == n and up.messages > 1 and up.dead == 0, up.stats()
    # The same JSON as the HTTPS sender's, record for record (null for the NaN reading).
    rd = log.reader(0)
    snd = sender.Sender(rd, None, None, "weather-data", SYMBOL)
    by_seq = {r["seq"]: r for r in got}
    for seq in range(1, n + 1):
        rec = rd.next_record()
        assert by_seq[seq] == json.loads(snd.message(rd.seqn, record.decode(rec))), seq
    assert by_seq[1]["bmp180_temp"] is None and by_seq[1]["$type"] == "weather_record"
    log.close()
    again = record.open_queue(log.folder, nreaders=3)
    assert again.reader(2).seqn == n  # committed: a reboot sends nothing again
    assert again.reader(0).seqn == 0  # the other readers are left alone


def test_a_cut_connection_sends_the_same_message_again():
    n = 200
    log = queue(n, "cut")
    sub = Sub("weather/cut1")
    logs = []
    try:
        up = uplink(log, logs, symbol="cut1", batch_bytes=1024)
        up.step()
        first = up.sent
        assert first > 0
        up._conn.raw.close()  # the link dies under the uplink
        while up.sent == first:
            up.step()
            time.sleep(0.02)
        assert up.retries >= 1 and up.connects == 2, up.stats()
        drain(up)
        got = sub.records(n)
    finally:
        sub.close()
    assert sorted(set(_seqs(got))) == list(range(1, n + 1))
    assert up.sent == n, up.stats()
    assert any("retry in" in t for t in logs), logs


def test_a_memory_error_while_filling_a_message_skips_no_record():
    """The reader is past every record a fill read: a MemoryError half-way (a fragmented
    heap) sets it back, so the next fill reads them again and none is committed unsent."""
    n = 30
    log = queue(n, "oomfill")
    sub = Sub("weather/oom1")
    real, calls = record.json_message, [0]

    def tight(*args):
        calls[0] += 1
        if calls[0] == 3:
            raise MemoryError("memory allocation failed")
        return real(*args)

    try:
        up = uplink(log, symbol="oom1", batch_bytes=1024)
        record.json_message = tight
        try:
            up.step()
            raise AssertionError("the MemoryError did not reach the caller")
        except MemoryError:
            pass
        finally:
            record.json_message = real
        assert up.sent == 0 and log.reader(2).seqn == 0
        drain(up)
        got = sub.records(n)
    finally:
        sub.close()
    assert sorted(_seqs(got)) == list(range(1, n + 1)) and up.sent == n, up.stats()


def test_an_unverified_broker_is_refused():
    b = broker()
    log = queue(20, "ca")
    logs = []
    up = uplink(log, logs, ca_file=b["dir"] + "/c/tls/wrong.der")
    assert up.step() == 0 and up.state == "backoff", up.stats()
    assert up.sent == 0 and up.connects == 0
    log.close()
    assert record.open_queue(log.folder, nreaders=3).reader(2).seqn == 0
    e = support.raises(ValueError, mqtt_uplink.MqttUplink, log.reader(2), "x",
                       "mqtt://localhost:%d" % b["mqtt_ports"][0])
    assert "unencrypted" in str(e)


def test_a_wrong_password_waits_long_and_is_never_logged():
    log = queue(5, "pw")
    logs = []
    up = uplink(log, logs, password="not-the-password-42", backoff_max_ms=60000)
    assert up.step() == 0
    assert up.state == "auth_failed" and "refused" in up.last_error, up.stats()
    assert up._next_ms - time.ticks_ms() > 50000 or time.ticks_diff(up._next_ms,
                                                                     time.ticks_ms()) > 50000
    assert not any("not-the-password-42" in t for t in logs), logs
    assert up.step() == 0 and up.retries == 1  # waiting: no second attempt yet


def test_a_broker_that_never_answers_times_out():
    import socket

    s = socket.socket()
    port = 20000 + (time.ticks_ms() * 7) % 20000
    for _ in range(50):  # MicroPython's socket has no getsockname(): find a free port
        try:
            s.bind(socket.getaddrinfo("127.0.0.1", port)[0][-1])
            break
        except OSError:
            port += 1
    s.listen(1)  # connections wait in the backlog: TCP connects, TLS never answers
    log = queue(5, "stall")
    up = uplink(log, url="mqtts://localhost:%d" % port, timeout_s=1)
    t0 = time.time()
    assert up.step() == 0
    took = time.time() - t0
    s.close()
    assert up.state == "backoff" and took < 10, (took, up.stats())
    assert up.sent == 0


def test_records_wait_for_their_boots_clock():
    log = queue(0, "clock")
    for i in range(1, 4):  # boot 3 never learnt the time, and no estimate is known
        log.store_record(record.encode(1000 * i, (10, 20, 30, 40, 6, 7), 3, 0))
    for i in range(1, 3):  # boot 4 never learnt it either: its epoch will be estimated
        log.store_record(record.encode(1000 * i, (10, 20, 30, 40, 6, 7), 4, 0))
    for i in range(1, 6):  # this boot (5), before NTP
        log.store_record(record.encode(1000 * i, (10, 20, 30, 40, 6, 7), 5, 0))
    log.commit()
    sub = Sub("weather/clock1")
    try:
        up = uplink(log, symbol="clock1", boot=5)
        assert up.step() == 0 and up.state == "waiting_clock", up.stats()
        assert up.dead == 0  # they may still get a time: this boot has not learnt it
        up.set_boot_epoch(4, 1795478300000, estimated=True)
        up.set_boot_epoch(5, 1795478400000)  # 2026-11-24T00:00:00Z
        drain(up)
        got = sub.records(7)
    finally:
        sub.close()
    assert up.dead == 3
    assert _seqs(got) == [4, 5, 6, 7, 8, 9, 10]
    assert [r.get("time_estimated") for r in got] == [True, True] + [None] * 5
    assert got[2]["timestamp"] == "2026-11-24T00:00:01.000Z", got[2]


def test_health_records_go_out_on_the_same_topic():
    log = queue(3, "health")
    sub = Sub("weather/health1")
    try:
        up = uplink(log, symbol="health1", health_ms=60000,
                    health=lambda: '{"$type":"health_record","symbol":"health1","boot":7}')
        drain(up)
        got = sub.records(4)
    finally:
        sub.close()
    assert up.health_sent == 1
    assert [r for r in got if r["$type"] == "health_record"] == [
        {"$type": "health_record", "symbol": "health1", "boot": 7}]


def test_packet_ids_wrap_before_16_bits():
    log = queue(60, "pid")
    up = uplink(log, symbol="pid1", batch_bytes=1024)
    up.step()
    up._client.pid = 65533
    drain(up)
    assert up.sent == 60 and up._client is not None and 0 < up._client.pid < 65533


def test_zz_stop_broker():
    """Last (alphabetically and in the file): the broker process ends with the tests."""
    b = broker()
    with open(b["dir"] + "/stop", "w") as f:
        f.write("stop")
