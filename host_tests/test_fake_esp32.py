"""The fake esp32 module: NVS and Partition behave like the ESP32 port (both interpreters)."""

import esp32
import flash
import support

_NOT_FOUND = -0x1102  # -ESP_ERR_NVS_NOT_FOUND, as check_esp_err raises it on the board


def test_nvs_roundtrip_persists_across_objects_after_commit():
    esp32.NVS.reset()
    nvs = esp32.NVS("WIFI")
    nvs.set_blob("SSID", b"home")
    nvs.set_blob("PASS", "secret123")  # str has the buffer protocol on the board too
    nvs.set_i32("boots", -7)
    nvs.commit()
    other = esp32.NVS("WIFI")
    buf = bytearray(32)
    n = other.get_blob("SSID", buf)
    assert bytes(buf[:n]) == b"home"
    n = other.get_blob("PASS", buf)
    assert bytes(buf[:n]) == b"secret123"
    assert other.get_i32("boots") == -7
    assert esp32.NVS.store["WIFI"]["SSID"] == b"home"
    esp32.NVS.reset()


def test_nvs_errors_are_the_boards():
    esp32.NVS.reset()
    nvs = esp32.NVS("cfg")
    e = support.raises(OSError, nvs.get_i32, "missing")
    assert e.args[0] == _NOT_FOUND and "NOT_FOUND" in str(e)
    e = support.raises(OSError, nvs.get_blob, "missing", bytearray(4))
    assert e.args[0] == _NOT_FOUND
    nvs.set_i32("n", 5)
    support.raises(OSError, nvs.get_blob, "n", bytearray(4))  # looked up by type
    nvs.set_blob("b", b"12345678")
    e = support.raises(OSError, nvs.get_blob, "b", bytearray(4))
    assert "INVALID_LENGTH" in str(e)
    support.raises(OSError, nvs.set_i32, "a-key-longer-than-15", 1)
    support.raises(OverflowError, nvs.set_i32, "big", 1 << 31)
    nvs.erase_key("n")
    support.raises(OSError, nvs.get_i32, "n")
    support.raises(OSError, nvs.erase_key, "n")
    esp32.NVS.reset()


def test_nvs_uncommitted_writes_lost_on_power_cut():
    esp32.NVS.reset()
    esp32.NVS.store["WIFI"] = {"SSID": b"old"}  # a board that ran the seed firmware
    nvs = esp32.NVS("WIFI")
    nvs.set_blob("SSID", b"new")
    buf = bytearray(8)
    assert bytes(buf[:nvs.get_blob("SSID", buf)]) == b"new"  # visible at once
    esp32.NVS.power_cut()
    assert bytes(buf[:nvs.get_blob("SSID", buf)]) == b"old"
    nvs.erase_key("SSID")
    nvs.commit()
    assert "SSID" not in esp32.NVS.store["WIFI"]
    esp32.NVS.reset()


def test_partition_find_info_and_block_protocol():
    esp32.Partition.reset()
    dev = esp32.Partition.attach("vfs", flash.FlashBlockDevice(4096, 16))
    parts = esp32.Partition.find(esp32.Partition.TYPE_DATA, label="vfs")
    assert len(parts) == 1
    p = parts[0]
    t, st, addr, size, label, enc = p.info()
    assert (t, label, size, enc) == (esp32.Partition.TYPE_DATA, "vfs", 16 * 4096, False)
    assert p.ioctl(4, 0) == 16 and p.ioctl(5, 0) == 4096
    assert [q.info()[4] for q in esp32.Partition.find(esp32.Partition.TYPE_APP)] == ["factory"]
    p.writeblocks(2, b"\xab" * 4096)  # no offset: erase + program whole blocks
    buf = bytearray(8)
    p.readblocks(2, buf, 100)
    assert buf == b"\xab" * 8
    p.ioctl(6, 3)  # erase block 3, then program with an offset (LittleFS style)
    p.writeblocks(3, b"\x00\x01", 10)
    p.readblocks(3, buf, 8)
    assert bytes(buf[:4]) == b"\xff\xff\x00\x01"
    support.raises(OSError, p.writeblocks, 3, b"\xff", 10)  # NOR: 0 -> 1 needs an erase
    support.raises(OSError, p.readblocks, 16, buf)  # past the end
    assert dev.blocks_erased == 2
    esp32.Partition.reset()


@support.micropython_only("vfs.VfsLfs2 exists only in MicroPython")
def test_littlefs_mounts_on_a_partition():
    import os

    import vfs

    esp32.Partition.reset()
    esp32.Partition.attach("vfs", flash.FlashBlockDevice(4096, 32))
    p = esp32.Partition("vfs")
    vfs.VfsLfs2.mkfs(p)
    vfs.mount(vfs.VfsLfs2(p), "/_part")
    try:
        with open("/_part/hello.txt", "w") as f:
            f.write("weather")
    finally:
        vfs.umount("/_part")
    vfs.mount(vfs.VfsLfs2(esp32.Partition("vfs")), "/_part")
    try:
        with open("/_part/hello.txt") as f:
            assert f.read() == "weather"
        assert "hello.txt" in os.listdir("/_part")
    finally:
        vfs.umount("/_part")
        esp32.Partition.reset()
