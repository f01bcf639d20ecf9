"""lib/app.py's glue for the MQTT uplink (both interpreters): loaded only when
``mqtt_host`` is set, reader 2 of a 3-reader queue, readers of unconfigured uplinks
follow it, a bad MQTT setting disables only the uplink.  The uplink itself against a
real broker: test_mqtt_uplink.py; the whole path: test_fleet_e2e.py."""

import sys

import record
import support
import utc
from test_app import _cfg, _finish, _start


def test_no_mqtt_host_no_module_and_one_reader():
    sys.modules.pop("mqtt_uplink", None)
    d = support.tmpdir("app-nomqtt")
    a, st, logs, _ = _start(d, _cfg(d))
    try:
        assert a.mqtt is None and a.queue.nreaders == 1
        assert "mqtt_uplink" not in sys.modules
        assert a.stats()["mqtt_state"] == "off"
    finally:
        _finish(a, st)


def test_mqtt_uplink_reads_reader_2_and_idle_readers_follow_it():
    d = support.tmpdir("app-mqtt")
    a, st, logs, _ = _start(d, _cfg(d, mqtt_host="mqtts://localhost:1", mqtt_insecure=True,
                                    mqtt_user="board", mqtt_pass="s3cret-pw"))
    try:
        assert a.mqtt is not None and a.queue.nreaders == 3, logs
        assert a.mqtt.topic == "weather/esptest"
        assert any("unverified TLS" in t for t in logs), logs
        assert not any("s3cret-pw" in t for t in logs)
        for _ in range(20):
            a.queue.store_record(record.encode(utc.now_ms(), (10, 20, 30, 40, 6, 7),
                                               1, record.FLAG_UTC))
        a.queue.commit()
        rd = a.mqtt._reader  # what the uplink does after a PUBACK: read, then commit
        while rd.next_record() is not None:
            pass
        rd.commit()
        assert a.queue.stats()[2] == 0  # no reader holds the records back
    finally:
        _finish(a, st)
    q = record.open_queue(d + "/q", bucket_size=16, nreaders=3)
    assert [q.reader(n).seqn for n in range(3)] == [20, 20, 20]


def test_a_bad_mqtt_setting_disables_only_the_uplink():
    d = support.tmpdir("app-mqtt-bad")
    a, st, logs, _ = _start(d, _cfg(d, mqtt_host="mqtts://localhost:1",
                                    mqtt_ca_file=d + "/missing.der"))
    try:
        assert a.mqtt is None and a.sampler is not None
        assert any("MQTT uplink disabled" in t for t in logs), logs
        assert a.stats()["mqtt_state"] == "off"
    finally:
        _finish(a, st)
