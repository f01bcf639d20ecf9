"""The board's partition table: MicroPython's own, with a raw data partition for the queue.

    python -m tools.partitions                  # list tools/partitions.csv
    python -m tools.partitions --out FILE.bin   # write the binary `make flash` writes at 0x8000
    python -m tools.partitions --csv            # print it as ESP-IDF CSV
    python -m tools.partitions TABLE            # check and list a .csv or binary table, e.g.
        # one read from a board: esptool --port PORT read-flash 0x8000 0xc00 TABLE

Layout (``tools/partitions.csv``, for 4 MiB of flash, what the ESP32_GENERIC image is built
for): ``nvs``, ``phy_init`` and ``factory`` exactly as in MicroPython's own table
(``ports/esp32/partitions-4MiB.csv`` up to 1.25, ``partitions-4MiBplus.csv`` from 1.26);
``vfs``, the LittleFS filesystem, 512 KiB at 0x200000 where MicroPython's is 2 MiB (1.26+
lists no ``vfs`` and makes one at boot from the end of the last partition to the end of
flash; when the table has one it uses that); ``tslog``, 1536 KiB at 0x280000, the queue's raw
partition. ``tslog`` is type data, subtype ``undefined`` (0x06): ESP-IDF's subtype for a
data partition that no ESP-IDF component owns (its other data subtypes are reserved for
ESP-IDF's uses; ``esp32.Partition.find`` finds it by its label either way).

Format, as ESP-IDF's ``components/partition_table/gen_esp32part.py`` writes it and its
bootloader reads it (``esp_partition_table_verify``): at 0x8000, one 32-byte entry per
partition, ``<2sBBLL16sL``: magic ``AA 50``, type, subtype, offset, size, label (NUL
padded), flags; then ``EB EB`` + 14 x ``FF`` + the MD5 of the entries before it; then ``FF``
up to 0xC00 bytes (an entry starting ``FF FF FF FF`` ends the table). Checked here, as
``gen_esp32part.py`` does: app partitions at 64 KiB offsets, the others at 4 KiB; no
partition below 0x9000 (bootloader and table), none overlapping, all inside 4 MiB (the
bootloader refuses a table that reaches past the flash size in the image header); labels
unique. Stricter than ESP-IDF: every size in whole 4 KiB sectors (what is erased).

Why this module and not a package: Espressif ships ``gen_esp32part.py`` inside ESP-IDF only,
the packages that re-implement the format are young one-person projects, and the format is
small and stable (the entry layout is unchanged since ESP-IDF 3.1 added the MD5 entry in
2018; later versions only added flag bits and type values). host_tests/test_partitions.py
checks the bytes against a table computed by hand.
"""

import argparse
import hashlib
import struct
import sys
from collections import namedtuple
from pathlib import Path

CSV = Path(__file__).resolve().with_name("partitions.csv")
TABLE_OFFSET = 0x8000  # where the bootloader reads the table (ESP-IDF's default)
TABLE_LEN = 0xC00  # entries, MD5 entry and FF padding, as gen_esp32part.py writes them
FLASH_SIZE = 0x400000  # 4 MiB
SECTOR = 0x1000
APP_ALIGN = 0x10000
_ENTRY = struct.Struct("<2sBBLL16sL")
_MAGIC = b"\xaa\x50"
_MD5_MAGIC = b"\xeb\xeb" + b"\xff" * 14

TYPES = {"app": 0x00, "data": 0x01}
SUBTYPES = {  # ESP-IDF's names (esp_partition_subtype_t)
    0x00: dict({"factory": 0x00, "test": 0x20}, **{"ota_%d" % i: 0x10 + i for i in range(16)}),
    0x01: {"ota": 0x00, "phy": 0x01, "nvs": 0x02, "coredump": 0x03, "nvs_keys": 0x04,
           "efuse": 0x05, "undefined": 0x06, "esphttpd": 0x80, "fat": 0x81, "spiffs": 0x82,
           "littlefs": 0x83},
}
FLAGS = {"encrypted": 0, "readonly": 1}  # flag name -> bit

Partition = namedtuple("Partition", "name type subtype offset size flags")


class TableError(ValueError):
    """A table that the bootloader would refuse or that breaks a rule above."""


def _number(text, keywords=None):
    """``text`` as ESP-IDF's CSV reads it: a keyword, or an int with an optional K/M suffix."""
    low = text.lower()
    if keywords and low in keywords:
        return keywords[low]
    scale = {"k": 1024, "m": 1024 * 1024}.get(low[-1:], 1)
    try:
        return int(low[:-1] if scale > 1 else low, 0) * scale
    except ValueError:
        raise TableError("%r is not a number%s" % (
            text, " nor one of: " + ", ".join(keywords) if keywords else ""))


def _name(names, value):
    for k, v in names.items():
        if v == value:
            return k
    return "0x%02x" % value


def from_csv(text, source="csv"):
    """The partitions of an ESP-IDF CSV table. Every field but the flags is required (no
    offsets left for the tool to fill in: the layout is written down whole)."""
    parts = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        f = [x.strip() for x in (line + ",,,,,").split(",")]
        try:
            fields = ("name", "type", "subtype", "offset", "size")
            missing = [k for k, v in zip(fields, f) if not v]
            if missing:
                raise TableError("no %s" % " and no ".join(missing))
            ptype = _number(f[1], TYPES)
            flags = 0
            for flag in filter(None, f[5].split(":")):
                if flag not in FLAGS:
                    raise TableError("unknown flag %r" % flag)
                flags |= 1 << FLAGS[flag]
            parts.append(Partition(f[0], ptype, _number(f[2], SUBTYPES.get(ptype, {})),
                                   _number(f[3]), _number(f[4]), flags))
        except TableError as e:
            raise TableError("%s line %d: %s" % (source, n, e))
    verify(parts)
    return parts


def to_csv(parts):
    rows = ["# Name, Type, SubType, Offset, Size, Flags"]
    for p in parts:
        flags = ":".join(k for k, bit in FLAGS.items() if p.flags >> bit & 1)
        rows.append(("%s, %s, %s, 0x%x, 0x%x, %s" % (
            p.name, _name(TYPES, p.type), _name(SUBTYPES.get(p.type, {}), p.subtype),
            p.offset, p.size, flags)).rstrip())
    return "\n".join(rows) + "\n"


def verify(parts, flash_size=FLASH_SIZE):
    """Raise TableError unless ``parts`` make a table the bootloader and MicroPython accept."""
    if not parts:
        raise TableError("no partitions")
    if (len(parts) + 1) * _ENTRY.size >= TABLE_LEN:
        raise TableError("%d partitions: at most %d fit" % (len(parts), TABLE_LEN // 32 - 2))
    names = [p.name for p in parts]
    end, last = TABLE_OFFSET + SECTOR, None
    for p in sorted(parts, key=lambda p: p.offset):
        try:
            label = p.name.encode("ascii")
        except UnicodeError:
            label = b""
        if not 1 <= len(label) <= 16 or b"\0" in label or b"," in label:
            raise TableError("label %r: 1 to 16 ASCII characters, no comma" % p.name)
        if names.count(p.name) > 1:
            raise TableError("label %r is used twice" % p.name)
        if not (0 <= p.type < 0xFF and 0 <= p.subtype < 0xFF):  # 0xFF: "any" / end
            raise TableError("%s: type 0x%x / subtype 0x%x out of range" % (
                p.name, p.type, p.subtype))
        align = APP_ALIGN if p.type == TYPES["app"] else SECTOR
        if p.offset % align:
            raise TableError("%s: offset 0x%x is not a multiple of 0x%x" % (
                p.name, p.offset, align))
        if p.size <= 0 or p.size % SECTOR:
            raise TableError("%s: size 0x%x is not a whole number of 4 KiB sectors" % (
                p.name, p.size))
        if p.offset < end:
            raise TableError("%s at 0x%x overlaps %s" % (
                p.name, p.offset, "the bootloader and partition table (below 0x%x)" % end
                if last is None else "%s (0x%x-0x%x)" % (last.name, last.offset, end - 1)))
        end, last = p.offset + p.size, p
        if end > flash_size:
            raise TableError("%s ends at 0x%x, past the end of flash (0x%x)" % (
                p.name, end, flash_size))
        if p.flags & ~sum(1 << bit for bit in FLAGS.values()):
            raise TableError("%s: unknown flags 0x%x" % (p.name, p.flags))


def to_binary(parts):
    """The 0xC00 bytes the bootloader reads at 0x8000."""
    verify(parts)
    body = b"".join(_ENTRY.pack(_MAGIC, p.type, p.subtype, p.offset, p.size,
                                p.name.encode("ascii"), p.flags) for p in parts)
    body += _MD5_MAGIC + hashlib.md5(body).digest()
    return body + b"\xff" * (TABLE_LEN - len(body))


def from_binary(data):
    """The partitions of a binary table (MD5 entry required, as ours always have one)."""
    parts, md5_at = [], None
    for at in range(0, len(data) - _ENTRY.size + 1, _ENTRY.size):
        entry = data[at:at + _ENTRY.size]
        if entry[:4] == b"\xff" * 4:  # the bootloader's end marker
            if md5_at is None:
                raise TableError("no MD5 entry before the end of the table")
            verify(parts)
            return parts
        if md5_at is not None:
            raise TableError("entry %d follows the MD5 entry" % (at // _ENTRY.size))
        if entry[:2] == _MD5_MAGIC[:2]:
            if entry[16:] != hashlib.md5(data[:at]).digest():
                raise TableError("MD5 mismatch: the table is corrupt")
            md5_at = at
            continue
        magic, ptype, subtype, offset, size, label, flags = _ENTRY.unpack(entry)
        if magic != _MAGIC:
            raise TableError("entry %d: magic %s, not aa50" % (at // _ENTRY.size, magic.hex()))
        try:
            name = label.split(b"\0")[0].decode("ascii")
        except UnicodeError:
            raise TableError("entry %d: label %r is not ASCII" % (at // _ENTRY.size, label))
        parts.append(Partition(name, ptype, subtype, offset, size, flags))
    raise TableError("no end of table (an entry of FF bytes) in %d bytes" % len(data))


def load(path):
    """The partitions of a .csv or binary table file (binary when it starts with AA 50)."""
    data = Path(path).read_bytes()
    if data[:2] == _MAGIC:
        return from_binary(data)
    return from_csv(data.decode("utf-8", "replace"), str(path))


def listing(parts):
    """A table to read: name, type, subtype, offset, size."""
    rows = ["%-9s %-5s %-10s %9s %9s" % ("name", "type", "subtype", "offset", "size")]
    for p in parts:
        rows.append("%-9s %-5s %-10s %9s %9s  %5d KiB" % (
            p.name, _name(TYPES, p.type), _name(SUBTYPES.get(p.type, {}), p.subtype),
            "0x%x" % p.offset, "0x%x" % p.size, p.size // 1024))
    return "\n".join(rows)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tools.partitions", description=__doc__.split(
        "\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("table", nargs="?", default=str(CSV),
                    help="a .csv or binary partition table (default: %(default)s)")
    ap.add_argument("--out", default="", help="write the binary table to this file")
    ap.add_argument("--csv", action="store_true", help="print the table as ESP-IDF CSV")
    a = ap.parse_args(argv)
    try:
        parts = load(a.table)
        if a.out:
            out = Path(a.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(to_binary(parts))
        print(to_csv(parts) if a.csv else listing(parts), end="\n" if not a.csv else "")
    except (OSError, TableError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
