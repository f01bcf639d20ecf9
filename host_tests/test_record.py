"""lib/record.py: layout, timestamps (UTC, untimed, year-2000 guard)."""

import struct

import record
import tscodec


def test_pack_roundtrip_and_size():
    buf = record.encode(1700000000123, (215, 550, -12, 101325, 61232, 111104), 7,
                        record.FLAG_UTC)
    assert len(buf) == record.V2.size == 29 and record.CURRENT == 2
    rec = record.decode(buf)
    assert rec == (1700000000123, 215, 550, -12, 101325, 61232, 111104, 7,
                   record.FLAG_UTC | 1 << 5)
    assert len(record.V2.fields) == len(rec)
    # by field name (the sampler's way): the same bytes; a field not given is 0
    named = dict(zip(record.V2.fields[1:-2], (215, 550, -12, 101325, 61232, 111104)))
    assert record.encode(1700000000123, named, 7, record.FLAG_UTC) == buf
    named.pop("heap")
    assert record.decode(record.encode(1, named, 7, 0))[6] == 0


def test_v2_sends_the_driver_values_exactly_and_nulls():
    rec = record.decode(record.encode(1700000000000, (215, 482, -3, 100231, 61232, 111104), 3,
                                      record.FLAG_UTC))
    import bmp180

    names = [n for n, _ in record.V2.texts(rec)]
    assert names == list(record.SENSOR_FIELDS)  # the fields v1 sent, in its order
    texts = dict(record.V2.texts(rec))
    assert texts["am2320_temp"] == "21.5" and texts["am2320_humidity"] == "48.2"
    assert texts["bmp180_temp"] == "-0.3" and texts["bmp180_pressure"] == "100231"
    assert texts["bmp180_altitude"] == "%.7g" % bmp180.altitude_m(100231, 101325)
    assert texts["mem_used"] == "61232" and texts["mem_free"] == "49872"
    for t10, text in ((0, "0.0"), (-1, "-0.1"), (-400, "-40.0"), (1255, "125.5"), (9, "0.9")):
        rec = record.decode(record.encode(0, (t10, 0, 0, 0, 0, 0), 1, 0))
        assert dict(record.V2.texts(rec))["am2320_temp"] == text
    # a null group is stored as 0 whatever was given, and sent as null
    buf = record.encode(1700000000000, (215, 482, -3, 100231, 61232, 111104), 3,
                        record.FLAG_UTC | record.FLAG_NO_AM | record.FLAG_AM_REST)
    rec = record.decode(buf)
    assert rec[1:3] == (0, 0)
    texts = dict(record.V2.texts(rec))
    assert texts["am2320_temp"] is None and texts["am2320_humidity"] is None
    assert texts["bmp180_temp"] == "-0.3"
    rec = record.decode(record.encode(1, (215, 482, -3, 100231, 1, 2), 3, record.FLAG_NO_BMP))
    texts = dict(record.V2.texts(rec))
    assert texts["bmp180_pressure"] is None and texts["bmp180_altitude"] is None


def test_queue_codec_round_trips_every_layout_byte_for_byte():
    recs = []
    for i in range(40):
        flags = record.FLAG_UTC | (record.FLAG_NO_AM if i % 7 == 3 else 0)
        recs.append(record.encode(1700000000000 + 2000 * i + (i % 3), (
            215 + i % 3, 482 - i % 2, -3 + i, 100231 + 3 * (i % 5), 61232 + 16 * (i % 4),
            111104 + (i == 20)), 3 + (i == 30), flags))
    # a record of another layout in the middle: a key record with its own descriptor
    codec = tscodec.Delta(
        {2: (record.V2.format, record.V2.kinds, record.V2.nulls), 3: ("<qiHB", "tdrF")},
        select=lambda flags: (flags >> 5) + 1)
    recs.insert(10, struct.pack("<qiHB", 1700000020000, -7, 3, 0x41))
    enc = codec.encoder()
    dec = record.CODEC.decoder()  # decodes without knowing layout 3: frames carry it
    src = bytearray(48 * len(recs))
    for i, r in enumerate(recs):
        src[48 * i:48 * i + len(r)] = r
    out = bytearray(codec.max_payload(len(recs), 48))
    end = enc.encode(src, [len(r) for r in recs], 0, len(recs), 48, out, 0)
    assert end < sum(len(r) for r in recs) // 2  # key records carry their layout
    dec.load(out, 0, end)
    got = bytearray(48)
    for r in recs:
        n = dec.next(got)
        assert bytes(got[:n]) == r


def test_altitude_is_the_drivers():
    """The uploaded altitude is derived from the pressure with the driver's formula: both
    must give the same number for every pressure a BMP180 reports."""
    import bmp180

    for p in range(30000, 110001, 997):
        assert record.altitude_m(p) == bmp180.altitude_m(p, record.SEA_LEVEL_PA), p



def test_timestamp_rules():
    utc = (1700000000000, 0, 0, 0, 0, 0, 0, 0, 3, record.FLAG_UTC)
    assert record.timestamp_of(utc) == 1700000000000
    y2k = (946684800000 + 5000, 0, 0, 0, 0, 0, 0, 0, 3, record.FLAG_UTC)
    assert record.timestamp_of(y2k) is None  # a year-2000 time is never sent
    mono = (5000, 0, 0, 0, 0, 0, 0, 0, 3, 0)
    assert record.timestamp_of(mono) is None
    assert record.timestamp_of(mono, {3: 1700000000000}) == 1700000005000
    assert record.timestamp_of(mono, {4: 1700000000000}) is None
