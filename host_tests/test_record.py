"""lib/record.py: layout, timestamps (UTC, untimed, year-2000 guard)."""

import record


def test_pack_roundtrip_and_size():
    buf = record.encode(1700000000123, (21.5, 55.0, 22.25, 101325.0, 12.5, 1234, 5678), 7,
                        record.FLAG_UTC)
    assert len(buf) == record.SIZE == 39
    rec = record.decode(buf)
    assert rec[0] == 1700000000123 and rec[1] == 21.5 and rec[4] == 101325.0
    assert rec[6:] == (1234, 5678, 7, record.FLAG_UTC)
    assert len(record.FIELDS) == len(rec)


def test_iso_utc_known_values():
    assert record.iso_utc(0) == "1970-01-01T00:00:00.000Z"
    assert record.iso_utc(951782400000) == "2000-02-29T00:00:00.000Z"
    assert record.iso_utc(1638102896006) == "2021-11-28T12:34:56.006Z"
    assert record.iso_utc(4102444799999) == "2099-12-31T23:59:59.999Z"
    assert record.iso_utc(1709164800000 - 1) == "2024-02-28T23:59:59.999Z"


def test_iso_utc_matches_gmtime_on_unix_epoch_ports():
    import time

    if time.gmtime(0)[0] != 1970:
        return
    for s in range(0, 4102444800, 86400 * 37 + 3601):
        g = time.gmtime(s)
        assert record.iso_utc(s * 1000 + 5) == "%04d-%02d-%02dT%02d:%02d:%02d.005Z" % g[:6]


def test_timestamp_rules():
    utc = (1700000000000, 0, 0, 0, 0, 0, 0, 0, 3, record.FLAG_UTC)
    assert record.timestamp_of(utc) == 1700000000000
    y2k = (946684800000 + 5000, 0, 0, 0, 0, 0, 0, 0, 3, record.FLAG_UTC)
    assert record.timestamp_of(y2k) is None  # a year-2000 time is never sent
    mono = (5000, 0, 0, 0, 0, 0, 0, 0, 3, 0)
    assert record.timestamp_of(mono) is None
    assert record.timestamp_of(mono, {3: 1700000000000}) == 1700000005000
    assert record.timestamp_of(mono, {4: 1700000000000}) is None


def test_utc_ms_is_1970_based():
    assert record.clock_is_set(record.utc_ms())  # the host clock is set
    assert not record.clock_is_set(946684800000)
