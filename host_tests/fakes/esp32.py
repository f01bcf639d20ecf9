"""Fake ``esp32`` module: ``NVS`` and ``Partition`` as the ESP32 port behaves.

NVS (ESP-IDF non-volatile storage, as ``esp32.NVS`` wraps it):
- ``NVS(namespace)``; ``set_i32``/``get_i32``, ``set_blob``/``get_blob(key, buf)``
  (reads into ``buf`` and returns the stored length), ``erase_key``, ``commit``.
- A missing key raises what the board raises: ``OSError(-4354,
  'ESP_ERR_NVS_NOT_FOUND')`` (``check_esp_err`` passes ESP-IDF codes through
  negated; only NO_MEM/TIMEOUT/NOT_SUPPORTED become errno values), so code must
  catch ``OSError`` rather than test for ENOENT.  A key read with the other type
  is not found either (NVS looks items up by type).  A buffer shorter than the
  blob raises ``ESP_ERR_NVS_INVALID_LENGTH``; names longer than 15 chars
  ``ESP_ERR_NVS_KEY_TOO_LONG``.
- Values are visible at once; ``commit()`` is what makes them durable:
  ``NVS.power_cut()`` forgets uncommitted writes.  ``NVS.store`` is the committed
  content, ``{namespace: {key: int | bytes}}`` (tests may preload it);
  ``NVS.reset()`` empties everything.

Partition: a block device over a ``flash.FlashBlockDevice`` (the same NOR
semantics, counters and power cuts), found by label or with ``find()``.  The
table is MicroPython's stock ESP32 one (nvs, phy_init, factory, vfs);
``attach(label, dev)`` puts a given flash device behind a partition (the simulator's
persisted image, a test's ``tslog`` partition), otherwise a blank one is made on first
use.
"""

import flash

_ESP_ERR_NVS_BASE = 0x1100
_NOT_FOUND = _ESP_ERR_NVS_BASE + 0x02
_KEY_TOO_LONG = _ESP_ERR_NVS_BASE + 0x09
_INVALID_LENGTH = _ESP_ERR_NVS_BASE + 0x0C
_NAMES = {
    _NOT_FOUND: "ESP_ERR_NVS_NOT_FOUND",
    _KEY_TOO_LONG: "ESP_ERR_NVS_KEY_TOO_LONG",
    _INVALID_LENGTH: "ESP_ERR_NVS_INVALID_LENGTH",
}

HEAP_DATA = 4
HEAP_EXEC = 1
WAKEUP_ALL_LOW = False
WAKEUP_ANY_HIGH = True


def _err(code):
    return OSError(-code, _NAMES[code])


class NVS:
    store = {}  # committed: namespace -> {key: int | bytes}
    _pending = {}  # written, not yet committed: namespace -> {key: value or None (erased)}

    def __init__(self, namespace):
        if len(namespace) > 15:
            raise _err(_KEY_TOO_LONG)
        self.namespace = namespace

    @classmethod
    def reset(cls):
        cls.store.clear()
        cls._pending.clear()

    @classmethod
    def power_cut(cls):
        """Forget writes that were not committed (test helper)."""
        cls._pending.clear()

    def _lookup(self, key):
        pend = NVS._pending.get(self.namespace, {})
        if key in pend:
            return pend[key]
        return NVS.store.get(self.namespace, {}).get(key)

    def _set(self, key, value):
        if len(key) > 15:
            raise _err(_KEY_TOO_LONG)
        NVS._pending.setdefault(self.namespace, {})[key] = value

    def set_i32(self, key, value):
        value = int(value)
        if not -0x80000000 <= value <= 0x7FFFFFFF:
            raise OverflowError("overflow converting long int to machine word")
        self._set(key, value)

    def get_i32(self, key):
        v = self._lookup(key)
        if not isinstance(v, int) or isinstance(v, bool):
            raise _err(_NOT_FOUND)
        return v

    def set_blob(self, key, value):
        if isinstance(value, str):
            value = value.encode()
        self._set(key, bytes(value))

    def get_blob(self, key, buffer):
        v = self._lookup(key)
        if not isinstance(v, bytes):
            raise _err(_NOT_FOUND)
        if len(buffer) < len(v):
            raise _err(_INVALID_LENGTH)
        buffer[:len(v)] = v
        return len(v)

    def erase_key(self, key):
        if self._lookup(key) is None:
            raise _err(_NOT_FOUND)
        NVS._pending.setdefault(self.namespace, {})[key] = None

    def commit(self):
        pend = NVS._pending.pop(self.namespace, {})
        ns = NVS.store.setdefault(self.namespace, {})
        for k, v in pend.items():
            if v is None:
                ns.pop(k, None)
            else:
                ns[k] = v


def idf_heap_info(capabilities):
    """(total, free, largest free block, min free) per heap region, like the board."""
    try:
        import gc

        free = gc.mem_free()
    except (ImportError, AttributeError):  # pragma: no cover
        free = 100_000
    return [(240_000, max(free, 0) + 60_000, 40_000, 20_000)]


# ---------------------------------------------------------------- partitions

_BLOCK = 4096


_DEFAULT_TABLE = {
    "nvs": (1, 0x02, 0x9000, 0x6000),
    "phy_init": (1, 0x01, 0xF000, 0x1000),
    "factory": (0, 0x00, 0x10000, 0x1F0000),
    "vfs": (1, 0x81, 0x200000, 0x200000),
}


class Partition:
    BOOT = 0
    RUNNING = 1
    TYPE_APP = 0
    TYPE_DATA = 1

    # label -> (type, subtype, address, size); ESP32 4 MB default layout
    table = dict(_DEFAULT_TABLE)
    devices = {}  # label -> FlashBlockDevice

    def __init__(self, id, block_size=_BLOCK):
        if id in (Partition.BOOT, Partition.RUNNING):
            id = "factory"
        if id not in Partition.table:
            raise ValueError("partition not found")
        self.label = id
        self.block_size = block_size
        self.type, self.subtype, self.addr, self.size = Partition.table[id]

    @classmethod
    def attach(cls, label, dev):
        """Back partition ``label`` by ``dev``; its size becomes the device's size. A label
        not in the table is added as a data partition (subtype undefined, 0x06): a board
        flashed with a table that has it (``make flash`` writes ``tslog``)."""
        t, st, addr, _size = cls.table.get(label, (1, 0x06, 0x280000, 0))
        cls.table[label] = (t, st, addr, dev.block_count * dev.block_size)
        cls.devices[label] = dev
        return dev

    @classmethod
    def reset(cls):
        cls.devices.clear()
        cls.table.clear()
        cls.table.update(_DEFAULT_TABLE)

    @staticmethod
    def find(type=TYPE_APP, subtype=0xFF, label=None, block_size=_BLOCK):
        out = []
        for name in sorted(Partition.table, key=lambda n: Partition.table[n][2]):
            t, st, _a, _s = Partition.table[name]
            if t == type and (subtype == 0xFF or st == subtype) and (
                    label is None or label == name):
                out.append(Partition(name, block_size))
        return out

    def info(self):
        return (self.type, self.subtype, self.addr, self.size, self.label, False)

    def _dev(self):
        dev = Partition.devices.get(self.label)
        if dev is None:
            dev = flash.FlashBlockDevice(_BLOCK, self.size // _BLOCK)
            Partition.devices[self.label] = dev
        return dev

    def _abs(self, block_num, offset, n):
        off = block_num * self.block_size + offset
        if off < 0 or off + n > self.size:
            raise OSError(22)  # ESP_ERR_INVALID_SIZE -> EINVAL-like
        return off

    def readblocks(self, block_num, buf, offset=0):
        off = self._abs(block_num, offset, len(buf))
        self._dev().readblocks(off // _BLOCK, buf, off % _BLOCK)

    def writeblocks(self, block_num, buf, offset=None):
        dev = self._dev()
        if offset is None:
            # Whole blocks: erase, then program (esp_partition_erase_range + write).
            off = self._abs(block_num, 0, len(buf))
            for i in range(len(buf) // _BLOCK):
                dev.erase(off // _BLOCK + i)
            dev.program(off, buf)
        else:
            off = self._abs(block_num, offset, len(buf))
            dev.program(off, buf)

    def ioctl(self, op, arg):
        if op == 4:
            return self.size // self.block_size
        if op == 5:
            return self.block_size
        if op == 6:
            off = self._abs(arg, 0, self.block_size)
            for i in range(self.block_size // _BLOCK):
                self._dev().erase(off // _BLOCK + i)
            return 0
        return 0  # 1 init, 2 deinit, 3 sync

    def set_boot(self):
        pass

    def get_next_update(self):
        raise OSError(2)

    @staticmethod
    def mark_app_valid_cancel_rollback():
        pass

    def __repr__(self):
        return "<Partition type=%d, subtype=%d, address=%d, size=%d, label=%s, encrypted=0>" % (
            self.type, self.subtype, self.addr, self.size, self.label)
