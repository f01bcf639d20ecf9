# cpython-only: host tool (the partition table `make flash` writes with esptool)
"""tools/partitions.py: the binary partition table in ESP-IDF's format, checked on the bytes
both ways (against a table computed here by hand, and by parsing what it generates), the
layout's promises, the CSV round trip, and the tables the bootloader would refuse."""

import hashlib
import subprocess
import sys
from pathlib import Path

import support

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tools import partitions as pt  # noqa: E402

# (label, type, subtype, offset, size): MicroPython's ESP32_GENERIC table (nvs, phy_init,
# factory as in its partitions-4MiB.csv) with vfs cut to 512 KiB and the queue's partition.
LAYOUT = [
    ("nvs", 0x01, 0x02, 0x9000, 0x6000),
    ("phy_init", 0x01, 0x01, 0xF000, 0x1000),
    ("factory", 0x00, 0x00, 0x10000, 0x1F0000),
    ("vfs", 0x01, 0x81, 0x200000, 0x80000),
    ("tslog", 0x01, 0x06, 0x280000, 0x180000),
]


def _by_hand(layout):
    """The table as ESP-IDF lays it out: 32-byte entries (magic AA 50, type, subtype, offset
    and size little-endian, label NUL-padded to 16, flags 0), the MD5 entry, FF to 0xC00."""
    body = b""
    for name, ptype, subtype, offset, size in layout:
        body += (b"\xaa\x50" + bytes([ptype, subtype]) + offset.to_bytes(4, "little")
                 + size.to_bytes(4, "little") + name.encode().ljust(16, b"\0") + bytes(4))
    body += b"\xeb\xeb" + b"\xff" * 14 + hashlib.md5(body).digest()
    return body + b"\xff" * (0xC00 - len(body))


def _parts():
    return pt.load(pt.CSV)


def _part(name, ptype, subtype, offset, size, flags=0):
    return pt.Partition(name, ptype, subtype, offset, size, flags)


def test_generated_bytes_equal_the_table_computed_by_hand():
    data = pt.to_binary(_parts())
    assert len(data) == 0xC00 == pt.TABLE_LEN
    assert data == _by_hand(LAYOUT)
    # Pinned: what ESP-IDF's own gen_esp32part.py (v5.3 and v5.5) makes of
    # tools/partitions.csv, byte for byte (checked when the table was made).
    assert data[:32].hex() == "aa50" "01" "02" "00900000" "00600000" "6e7673" + "00" * 17
    assert data[5 * 32:6 * 32].hex() == "ebeb" + "ff" * 14 + "59f38496a93055b767e992c1ade4ef70"
    assert data[6 * 32:] == b"\xff" * (0xC00 - 6 * 32)


def test_layout_keeps_micropythons_partitions_and_adds_tslog():
    parts = _parts()
    assert [tuple(p)[:5] for p in parts] == LAYOUT and all(p.flags == 0 for p in parts)
    by = {p.name: p for p in parts}
    tslog = by["tslog"]
    assert (tslog.type, tslog.subtype) == (pt.TYPES["data"], pt.SUBTYPES[1]["undefined"])
    assert tslog.size == 1536 * 1024 and by["vfs"].size == 512 * 1024
    # Back to back from the app's end to the end of a 4 MiB flash: nothing left unused.
    ends = sorted((p.offset, p.offset + p.size) for p in parts)
    assert all(a[1] == b[0] for a, b in zip(ends[2:], ends[3:]))
    assert ends[-1][1] == pt.FLASH_SIZE == 4 * 1024 * 1024
    assert pt.TABLE_OFFSET == 0x8000 and ends[0][0] >= pt.TABLE_OFFSET + 0x1000


def test_parse_what_is_generated_and_micropythons_own_table():
    parts = _parts()
    assert pt.from_binary(pt.to_binary(parts)) == parts
    # A table read from a board is 0xC00 or a whole 4 KiB sector.
    assert pt.from_binary(pt.to_binary(parts) + b"\xff" * 0x400) == parts
    stock = LAYOUT[:3] + [("vfs", 0x01, 0x81, 0x200000, 0x200000)]  # MicroPython 1.23-1.25
    assert [tuple(p)[:5] for p in pt.from_binary(_by_hand(stock))] == stock


def test_csv_round_trip():
    parts = _parts()
    text = pt.to_csv(parts)
    assert "tslog, data, undefined, 0x280000, 0x180000," in text.splitlines()
    assert pt.from_csv(text) == parts
    flagged = parts[:4] + [parts[4]._replace(flags=0b11)]
    assert "encrypted:readonly" in pt.to_csv(flagged)
    assert pt.from_csv(pt.to_csv(flagged)) == flagged
    assert pt.from_binary(pt.to_binary(flagged)) == flagged
    # ESP-IDF's spellings: sizes with K/M, keywords in any case, numbers for types.
    alt = pt.from_csv("nvs,data,NVS,36K,24K\nfactory,0,0,64K,1984K\nq,1,6,2M,1M,\n")
    assert alt == [_part("nvs", 1, 2, 0x9000, 0x6000), _part("factory", 0, 0, 0x10000, 0x1F0000),
                   _part("q", 1, 6, 0x200000, 0x100000)]


def _refused(parts, word, convert=pt.to_binary):
    e = support.raises(pt.TableError, convert, parts)
    assert word in str(e), (word, str(e))


def test_tables_the_bootloader_would_refuse_are_not_generated():
    good = _parts()
    nvs, phy, app, vfs, tslog = good
    _refused(good[:4] + [tslog._replace(offset=0x27F000)], "overlaps vfs")
    _refused(good[:4] + [tslog._replace(size=0x181000)], "past the end of flash")
    _refused([nvs._replace(offset=0x8000)] + good[1:], "bootloader and partition table")
    _refused([nvs, phy, app._replace(offset=0x18000)] + good[3:], "not a multiple of 0x10000")
    _refused(good[:4] + [tslog._replace(offset=0x280800, size=0x17F000)],
             "not a multiple of 0x1000")
    _refused(good[:4] + [tslog._replace(size=0x17FF00)], "4 KiB sectors")
    _refused(good[:4] + [tslog._replace(name="vfs")], "used twice")
    _refused(good[:4] + [tslog._replace(name="tslog-queue-partition")], "1 to 16")
    _refused(good[:4] + [tslog._replace(subtype=0xFF)], "out of range")
    _refused(good[:4] + [tslog._replace(flags=0x4)], "unknown flags")
    _refused([], "no partitions")
    many = [_part("p%d" % i, 1, 6, 0x9000 + i * 0x1000, 0x1000) for i in range(95)]
    _refused(many, "at most 94")
    assert len(pt.to_binary(many[:94])) == 0xC00


def _unparsable(data, word):
    _refused(data, word, pt.from_binary)


def test_corrupt_binary_tables_are_refused():
    data = bytearray(pt.to_binary(_parts()))
    flipped = bytearray(data)
    flipped[4 * 32 + 6] ^= 0x01  # one bit of tslog's offset
    _unparsable(bytes(flipped), "MD5 mismatch")
    no_md5 = bytes(data[:5 * 32]) + b"\xff" * (0xC00 - 5 * 32)
    _unparsable(no_md5, "no MD5 entry")
    bad_magic = bytearray(data)
    bad_magic[32:34] = b"\x50\xaa"
    _unparsable(bytes(bad_magic), "magic 50aa")
    _unparsable(bytes(data[:6 * 32]), "no end of table")
    after = bytes(data[:6 * 32]) + bytes(data[:32]) + b"\xff" * (0xC00 - 7 * 32)
    _unparsable(after, "follows the MD5 entry")
    erased = b"\xff" * 0xC00  # a board erased but not flashed
    _unparsable(erased, "no MD5 entry")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "tools.partitions"] + list(args),
                          cwd=str(ROOT), capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def test_command_line_writes_lists_and_checks_tables():
    d = Path(support.tmpdir("partitions"))
    out = d / "sub" / "partitions.bin"
    r = _cli("--out", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == _by_hand(LAYOUT)
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["name", "type", "subtype", "offset", "size"]
    assert lines[5].split() == ["tslog", "data", "undefined", "0x280000", "0x180000", "1536",
                                "KiB"]
    assert _cli(str(out)).stdout == r.stdout  # a binary (e.g. read from a board) lists alike
    r = _cli("--csv")
    assert r.returncode == 0 and pt.from_csv(r.stdout) == _parts()
    broken = d / "broken.bin"
    flipped = bytearray(out.read_bytes())
    flipped[102] ^= 0xFF  # a byte of vfs's offset
    broken.write_bytes(bytes(flipped))
    r = _cli(str(broken))
    assert r.returncode == 2 and "error: MD5 mismatch" in r.stderr and not r.stdout
    csv = d / "bad.csv"
    csv.write_text("# Name, Type, SubType, Offset, Size\nnvs, data, nvs, , 0x6000\n")
    r = _cli(str(csv))
    assert r.returncode == 2 and "bad.csv line 2: no offset" in r.stderr, r.stderr
    csv.write_text("vfs, data, fatt, 0x200000, 512K\n")
    r = _cli(str(csv))
    assert r.returncode == 2 and "'fatt' is not a number nor one of: ota, phy" in r.stderr
    assert "Traceback" not in r.stderr
